"""OpenDSR status: our request statuses in OpenDSR's words, and signed status callbacks.

OpenDSR 2.0 knows four statuses (section 8); ours map onto them (`opendsr_status`):

- `pending`: received, not yet acted on: no status yet, awaiting verification, approval or
  a fee. Only now may the controller cancel (section 9).
- `in_progress`: being carried out: in_progress, action_required (a person acts in a
  system), stalled (dispatched again), and failed: a failed request waits for a person
  (`dsr tasks ...`), it is not done, so the controller is not told it is.
- `completed`: completed, partially_completed, delivered. What was kept or refused per system
  is in our answer, which the controller gets under the data processing agreement.
- `cancelled`: the controller cancelled it (refused on its instruction), or refused.

Our own status and progress travel beside it under `extensions.<our domain>` (section 7.1.2),
never personal data.

Callbacks (section 8.5): `CallbackSender` posts the status object to every
`status_callback_urls` entry each time the OpenDSR status changes, the first (`pending`)
included, with `X-OpenDSR-Processor-Domain` and `X-OpenDSR-Signature` (our certificate key
over the raw body, `opendsr_keys`). A callback is sent again with exponential backoff (and a
server's `Retry-After`) until the controller answers 2xx, at least once: which status each
URL acknowledged is kept in `DATA_DIR/opendsr/callbacks.json`, so after a restart only what
was not acknowledged is sent (again). Each replica of the intake sends: with several, a
controller may get a callback twice (at least once, not exactly once).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from connectors.http import server_wait
from schemas.events import RequestStatus, RequestStatusChanged, RequestType
from schemas.gateway import OpenDsrInbound, OpenDsrStatus
from schemas.primitives.files import atomic_write
from schemas.primitives.opendsr import DOMAIN_HEADER, SIGNATURE_HEADER

if TYPE_CHECKING:
    from orchestrator.gateway.context import GatewayState
    from orchestrator.gateway.opendsr_keys import OpenDsrSettings, ProcessorSigner

log = logging.getLogger("dsr.intake.opendsr")

API_VERSION = "2.0"

#: Nothing carried out yet: the controller may still cancel.
PENDING_STATUSES = frozenset(
    {
        RequestStatus.AWAITING_VERIFICATION,
        RequestStatus.AWAITING_APPROVAL,
        RequestStatus.AWAITING_FEE,
    }
)
_COMPLETED = frozenset(
    {RequestStatus.COMPLETED, RequestStatus.PARTIALLY_COMPLETED, RequestStatus.DELIVERED}
)
_EXPORTS = frozenset({RequestType.ACCESS, RequestType.PORTABILITY})


def opendsr_status(
    status: RequestStatusChanged | None, cancelled_at: datetime | None = None
) -> OpenDsrStatus:
    """The OpenDSR status of a request in `status` (None: not seen yet), cancelled or not."""
    if status is None:
        return "cancelled" if cancelled_at is not None else "pending"
    if status.status == RequestStatus.REFUSED:
        return "cancelled"
    if status.status in _COMPLETED:
        return "completed"  # carried out before the cancellation reached it
    if cancelled_at is not None:
        return "cancelled"  # the refusal on the controller's instruction is on its way
    return "pending" if status.status in PENDING_STATUSES else "in_progress"


def rfc3339(moment: datetime) -> str:
    """`2026-05-01T21:59:59Z`: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def status_object(
    inbound: OpenDsrInbound,
    status: RequestStatusChanged | None,
    domain: str,
    *,
    callback_url: str | None = None,
) -> dict[str, Any]:
    """The OpenDSR status object (section 8.3; a callback's body with `callback_url`)."""
    value = opendsr_status(status, inbound.cancelled_at)
    deadline = status.deadline if status is not None else inbound.expected_completion_time
    body: dict[str, Any] = {
        "controller_id": inbound.controller_id,
        "expected_completion_time": rfc3339(deadline),
        "subject_request_id": inbound.subject_request_id,
        "request_status": value,
        "api_version": API_VERSION,
    }
    if callback_url is not None:
        body["status_callback_url"] = callback_url
    if status is not None and value == "completed" and status.request_type in _EXPORTS:
        body["results_count"] = sum(p.counts.found for p in status.systems.values())
    ours: dict[str, Any] = {"status": status.status.value if status else "received"}
    if status is not None:
        ours |= {"systems_total": status.systems_total, "systems_done": status.systems_done}
    body["extensions"] = {domain: ours}
    return body


class CallbackLedger:
    """Which OpenDSR status each callback URL of each request acknowledged (a JSON file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._acked: dict[str, dict[str, str]] = json.loads(path.read_text())
        except FileNotFoundError:
            self._acked = {}
        except (OSError, ValueError):
            log.warning("OpenDSR: %s is unreadable; every callback is sent again", path)
            self._acked = {}

    def acknowledged(self, request_id: str, url: str) -> str | None:
        """The status `url` last acknowledged for the request, or None."""
        return self._acked.get(request_id, {}).get(url)

    def mark(self, request_id: str, url: str, status: str) -> None:
        """Remember an acknowledged callback (written at once)."""
        self._acked.setdefault(request_id, {})[url] = status
        atomic_write(self.path, json.dumps(self._acked, sort_keys=True), mode=0o600)


class _NotAcknowledged(Exception):
    """The controller's endpoint did not answer 2xx (`retry_after`: what it asked to wait)."""

    def __init__(self, status_code: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.retry_after = retry_after


class CallbackSender:
    """Follows status changes of OpenDSR requests and posts signed callbacks (module doc)."""

    def __init__(
        self,
        state: GatewayState,
        certificate: ProcessorSigner,
        settings: OpenDsrSettings,
        *,
        on_cancel: Callable[[OpenDsrInbound, RequestStatusChanged], None] | None = None,
    ) -> None:
        self.state = state
        self.certificate = certificate
        self.settings = settings
        self.ledger = CallbackLedger(state.settings.data_dir / "opendsr" / "callbacks.json")
        self.on_cancel = on_cancel
        self._sending: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._given_up: dict[tuple[str, str], str] = {}
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        """Until cancelled: once both topics are read, look for changes every poll interval."""
        await self.state.status.caught_up.wait()
        await self.state.accepted.caught_up.wait()
        self._client = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        try:
            while True:
                self.scan()
                await asyncio.sleep(self.settings.poll_seconds)
        finally:
            for task in list(self._sending.values()):
                task.cancel()
            await asyncio.gather(*self._sending.values(), return_exceptions=True)
            await self._client.aclose()

    def scan(self) -> None:
        """Start a delivery for every callback URL whose acknowledged status is not current."""
        for entry in self.state.accepted.entries():
            inbound = entry.opendsr
            if inbound is None:
                continue
            status = self.state.status.view.get(entry.request_id)
            if (
                inbound.cancelled_at is not None
                and status is not None
                and status.status in PENDING_STATUSES
                and self.on_cancel is not None
            ):
                self.on_cancel(inbound, status)
            current = opendsr_status(status, inbound.cancelled_at)
            for url in inbound.status_callback_urls:
                key = (entry.request_id, url)
                if key in self._sending or current in (
                    self.ledger.acknowledged(*key),
                    self._given_up.get(key),
                ):
                    continue
                self._sending[key] = asyncio.create_task(self._deliver(entry.request_id, url))

    def body(self, request_id: str, url: str) -> tuple[bytes, str] | None:
        """The callback body for `url` as of now, and its OpenDSR status."""
        entry = self.state.accepted.get(request_id)
        if entry is None or entry.opendsr is None:
            return None
        status = self.state.status.view.get(request_id)
        obj = status_object(entry.opendsr, status, self.certificate.domain, callback_url=url)
        return json.dumps(obj, separators=(",", ":")).encode(), obj["request_status"]

    async def _deliver(self, request_id: str, url: str) -> None:
        key = (request_id, url)
        sent: str | None = None
        try:
            async for attempt in AsyncRetrying(
                wait=self._wait,
                stop=stop_after_delay(self.settings.callback_give_up_hours * 3600),
                retry=retry_if_exception_type((_NotAcknowledged, httpx.HTTPError)),
                reraise=True,
            ):
                with attempt:
                    sent = await self._post(request_id, url)
            if sent is not None:
                self.ledger.mark(request_id, url, sent)
        except (_NotAcknowledged, httpx.HTTPError) as exc:
            log.warning(
                "OpenDSR: a status callback for request %s was not acknowledged within %gh "
                "(last: %s); it is sent again when the status changes or the intake restarts",
                request_id,
                self.settings.callback_give_up_hours,
                type(exc).__name__ if isinstance(exc, httpx.HTTPError) else exc,
            )
            body = self.body(request_id, url)
            if body is not None:
                self._given_up[key] = body[1]
        finally:
            self._sending.pop(key, None)

    async def _post(self, request_id: str, url: str) -> str | None:
        """Send the current status once; its status when acknowledged (raises otherwise)."""
        assert self._client is not None
        built = self.body(request_id, url)
        if built is None:
            return None
        raw, value = built
        headers = {
            "Content-Type": "application/json",
            DOMAIN_HEADER: self.certificate.domain,
            SIGNATURE_HEADER: self.certificate.sign(raw),
        }
        response = await self._client.post(url, content=raw, headers=headers)
        if not 200 <= response.status_code < 300:
            log.info(
                "OpenDSR: callback for request %s answered %d; retrying",
                request_id,
                response.status_code,
            )
            raise _NotAcknowledged(response.status_code, server_wait(response))
        return value

    def _wait(self, retry_state: RetryCallState) -> float:
        backoff = wait_exponential(
            multiplier=self.settings.callback_backoff_seconds,
            max=self.settings.callback_max_backoff_seconds,
        )(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, _NotAcknowledged) and error.retry_after is not None:
            return min(max(error.retry_after, backoff), self.settings.callback_max_backoff_seconds)
        return backoff


__all__ = [
    "API_VERSION",
    "PENDING_STATUSES",
    "CallbackLedger",
    "CallbackSender",
    "opendsr_status",
    "rfc3339",
    "status_object",
]
