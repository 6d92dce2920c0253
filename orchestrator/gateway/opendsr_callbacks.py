"""Status callbacks from OpenDSR processors we send requests to: `/opendsr/callbacks/{system}`.

The `opendsr` connector gives a processor `<public URL>/opendsr/callbacks/<system>` as its
`status_callback_urls`. Here a callback is authenticated as OpenDSR 2.0 says ("Callback
Authentication"), before its body is parsed:

1. the system must be an `opendsr` system of the register;
2. `X-OpenDSR-Processor-Domain` must be the domain that system's processor signs as (its
   `processor_domain`, else the host of its `base_url`), and its certificate must name it;
3. `X-OpenDSR-Signature` must be that certificate's signature over SHA-256 of the raw body.
   The certificate is the system's pinned `certificate_file`, else the one its discovery
   document names, fetched once and cached (fetched again, at most once a minute, when a
   signature does not verify: the processor may have rotated its key);
4. then the body: `status_callback_url` must be this very URL, `controller_id` ours.

Anything unsigned, forged or for another domain answers 401 and publishes nothing. An accepted
callback becomes `OpenDsrCallbackReceived` on `dsr.opendsr.callbacks.v1` (keyed by system),
answered 200 once Kafka has it (503 otherwise, so the processor retries). The connector worker
takes it as a reason to read the status from the processor itself; `results_url` (a download
link) is left out of the event. The intake holds no credentials: it reads only the public
discovery document and certificate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import ConnectorError
from connectors.http import HttpClient, RetryPolicy, json_body
from orchestrator.gateway.errors import json_error, validation_error
from orchestrator.intake.client import PublishError
from schemas.gateway import OpenDsrCallbackReceived
from schemas.primitives.opendsr import (
    DOMAIN_HEADER,
    SIGNATURE_HEADER,
    CertificateError,
    ProcessorCertificate,
    header,
)
from schemas.register import System
from schemas.topics import OPENDSR_CALLBACKS

if TYPE_CHECKING:
    from orchestrator.gateway.context import GatewayState

log = logging.getLogger("dsr.intake.opendsr")

CONNECTOR = "opendsr"
PATH = "/opendsr/callbacks/{system}"
#: Callbacks per system and minute before 429: a processor sends one per status change.
RATE = "600/minute"
_REFRESH_SECONDS = 60.0
_CACHE_SECONDS = 3600.0


class _Callback(BaseModel):
    """The parts of a verified callback body we use (OpenDSR 2.0, "Callback Request")."""

    model_config = ConfigDict(extra="ignore")

    controller_id: str
    status_callback_url: str
    subject_request_id: str = Field(max_length=64)
    request_status: Literal["pending", "in_progress", "completed", "cancelled"]
    results_count: int | None = Field(default=None, ge=0)


def _setting(system: System, name: str) -> str | None:
    """A setting as the register writes it; None when absent or a `${VAR}` (not expanded
    here: the intake holds no credentials)."""
    value = system.settings.get(name)
    if not isinstance(value, str) or not value or value.startswith("${"):
        return None
    return value


def processor_domain(system: System) -> str:
    """The domain the system's processor signs as."""
    base = _setting(system, "base_url") or ""
    return (_setting(system, "processor_domain") or urlsplit(base).hostname or "").lower()


class Certificates:
    """Each processor's certificate: pinned, or from its discovery document, cached."""

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy(attempts=2, max_wait_seconds=2.0)
        self._cached: dict[str, tuple[float, ProcessorCertificate]] = {}

    def pinned(self, system: System) -> bool:
        """Whether the register pins the system's certificate."""
        return _setting(system, "certificate_file") is not None

    async def get(self, system: System, *, refresh: bool = False) -> ProcessorCertificate:
        """The certificate; `refresh` fetches it again unless fetched within the last minute."""
        pinned = _setting(system, "certificate_file")
        if pinned is not None:
            where = f"certificate_file of system {system.name!r}"
            try:
                pem = await asyncio.to_thread(Path(pinned).read_bytes)
            except OSError as exc:
                raise CertificateError(f"{where} cannot be read ({exc.strerror})") from None
            return ProcessorCertificate.from_pem(pem, where=where)
        cached = self._cached.get(system.name)
        now = time.monotonic()
        if cached is not None:
            age = now - cached[0]
            if age < (_REFRESH_SECONDS if refresh else _CACHE_SECONDS):
                return cached[1]
        certificate = await self._fetch(system)
        self._cached[system.name] = (now, certificate)
        log.info("%s: processor certificate SHA-256 %s", system.name, certificate.fingerprint)
        return certificate

    async def _fetch(self, system: System) -> ProcessorCertificate:
        base = _setting(system, "base_url")
        if base is None:
            raise CertificateError(f"system {system.name!r} has no base_url to discover from")
        discovery = json_body(await self._get(system.name, base.rstrip("/") + "/v1/discovery"))
        url = discovery.get("processor_certificate") if isinstance(discovery, dict) else None
        if not isinstance(url, str):
            raise CertificateError(f"the discovery of {system.name!r} names no certificate")
        response = await self._get(system.name, url)
        return ProcessorCertificate.from_pem(
            response.content, where=f"the certificate of system {system.name!r}"
        )

    async def _get(self, system: str, url: str) -> Any:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CertificateError(f"system {system!r}: a certificate URL must be http(s)")
        segments = [unquote(p) for p in parts.path.split("/") if p]
        template = "/" + "/".join(f"{{p{n}}}" for n in range(len(segments)))
        client = HttpClient(
            f"{system} (intake)", f"{parts.scheme}://{parts.netloc}", retry=self.retry, timeout=10
        )
        try:
            return await client.request(
                "GET", template, path_params={f"p{n}": p for n, p in enumerate(segments)}
            )
        finally:
            await client.aclose()


def _refusal(message: str, field: str = SIGNATURE_HEADER) -> web.Response:
    return json_error(401, "unauthenticated", message, field=field)


async def _verified(
    state: GatewayState, certificates: Certificates, system: System, request: web.Request
) -> bytes | web.Response:
    """The raw body once its signature checks out; else the refusal to send."""
    raw = await request.read()
    signature = header(request.headers, SIGNATURE_HEADER)
    domain = header(request.headers, DOMAIN_HEADER)
    if not signature:
        return _refusal(f"the callback is not signed: {SIGNATURE_HEADER} is required")
    expected = processor_domain(system)
    if domain is None or domain.strip().lower() != expected:
        return _refusal(
            f"{DOMAIN_HEADER} must name the domain of system {system.name!r}'s processor",
            DOMAIN_HEADER,
        )
    try:
        certificate = await certificates.get(system)
        certificate.check_valid()
        if not certificate.verifies(signature, raw) and not certificates.pinned(system):
            certificate = await certificates.get(system, refresh=True)  # a rotated key?
    except (CertificateError, ConnectorError) as exc:
        log.warning("%s: no processor certificate to verify a callback: %s", system.name, exc)
        return json_error(
            503, "certificate_unavailable", "the processor's certificate cannot be read now"
        )
    if not certificate.issued_for(expected):
        return _refusal(f"the processor certificate is not issued to {expected!r}")
    if not certificate.verifies(signature, raw):
        log.warning("%s: refused a callback whose signature does not verify", system.name)
        return _refusal(
            f"{SIGNATURE_HEADER} is not the processor certificate's signature of this body"
        )
    return raw


def setup(app: web.Application, state: GatewayState) -> None:
    """Add `POST /opendsr/callbacks/{system}`."""
    certificates = Certificates()

    async def callback(request: web.Request) -> web.Response:
        name = request.match_info["system"]
        system = next((s for s in state.register.current().systems if s.name == name), None)
        if system is None or system.connector != CONNECTOR:
            return json_error(
                404, "unknown_system", "no OpenDSR system of this name in the register",
                field="system",
            )  # fmt: skip
        wait = state.limits.hit(RATE, "opendsr-callbacks", name)
        if wait is not None:
            return json_error(
                429, "rate_limited", "too many callbacks", headers={"Retry-After": f"{wait:g}"}
            )
        verified = await _verified(state, certificates, system, request)
        if isinstance(verified, web.Response):
            return verified
        return await _accept(state, system, request, verified)

    app.add_routes([web.post(PATH, callback)])


async def _accept(
    state: GatewayState, system: System, request: web.Request, raw: bytes
) -> web.Response:
    """Check the verified body and publish it for the connector worker."""
    try:
        body = _Callback.model_validate(json.loads(raw))
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            return validation_error(exc, 400)
        return json_error(400, "invalid_body", "the body is not JSON", field="body")
    own = _setting(system, "callback_url") or f"{state.public_url}{request.path}"
    if body.status_callback_url.rstrip("/") != own.rstrip("/"):
        return json_error(
            400, "wrong_callback_url", "status_callback_url is not this endpoint",
            field="status_callback_url",
        )  # fmt: skip
    controller = _setting(system, "controller_id")
    if controller is not None and body.controller_id != controller:
        return json_error(
            400, "wrong_controller", "controller_id is not ours", field="controller_id"
        )
    try:
        event = OpenDsrCallbackReceived(
            system=system.name,
            subject_request_id=body.subject_request_id,
            request_status=body.request_status,
            results_count=body.results_count,
            received_at=datetime.now(UTC),
        )
    except ValidationError as exc:
        return validation_error(exc, 400)
    try:
        await state.bus.publish(
            event,
            source=f"opendsr-processor:{system.name}",
            topic=OPENDSR_CALLBACKS.name,
            key=system.name,
        )
    except PublishError as exc:
        log.error("%s: a verified callback was not published: %s", system.name, exc)
        return json_error(503, "unavailable", "try again later", headers={"Retry-After": "5"})
    return web.json_response({"status": "accepted"})


__all__ = ["PATH", "Certificates", "processor_domain", "setup"]
