"""The intake API for publishers: data-subject requests and officers' steps over HTTP.

- `POST /v1/requests`: the `RequestSubmitted` event's JSON; idempotent on `request_id`
  (the same body again: the same 202; another body: 409); answered 202 with the status URL
  only after Kafka acknowledged the event.
- `GET /v1/requests/{request_id}`: the latest status, for the publisher that submitted it.
- `POST /v1/requests/{request_id}/verifications|decisions|extensions|deliveries`: the
  `IdentityVerified`, `DecisionRecorded`, `DeadlineExtended`, `DeliveryRecorded` events, for
  publishers whose `events` in the publisher keys file list the type.
- `GET /v1/openapi.json`: the OpenAPI 3.1 document (`orchestrator.gateway.openapi`).

Every call is signed with the publisher's key (`orchestrator.gateway.signatures`, RFC 9421)
and counted against the publisher's rate limit (`DSR_INTAKE_PUBLISHER_RATE`). What a caller
sends is published signed by the intake's own key, with the CloudEvents source
`http:<publisher>`; the intake enforces the caller's permissions as the orchestrator would
enforce them on the caller's own Kafka events (Art. 32(1)(b) GDPR).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import rfc8785
from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ValidationError

from orchestrator.gateway.errors import json_error, validation_error
from orchestrator.gateway.openapi import (
    STEPS,
    Accepted,
    RequestState,
    StepAccepted,
    openapi_document,
)
from orchestrator.gateway.signatures import (
    BODY_COMPONENTS,
    COMPONENTS,
    Caller,
    SignatureChecker,
    SignatureRefused,
)
from orchestrator.intake.client import PublishError
from orchestrator.intake.publishers import check_claims
from schemas.envelope import TYPE_OF, EnvelopeError, RawEvent, encode, header_dict
from schemas.events import RequestSubmitted
from schemas.gateway import IntakeRecorded
from schemas.primitives.signing import RequestVerifier

if TYPE_CHECKING:
    from orchestrator.gateway.context import GatewayState

log = logging.getLogger("dsr.intake.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Model = TypeVar("_Model", bound=BaseModel)
_SUBMITTED = TYPE_OF[RequestSubmitted]
_ACCEPT_SIGNATURE = "dsr=(" + " ".join(f'"{c}"' for c in COMPONENTS + BODY_COMPONENTS) + ");created"


class _Refused(Exception):
    """A call answered with an error before it did anything (the response says why)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _canonical_sha256(raw: bytes) -> str:
    """SHA-256 (hex) of the body's canonical JSON (RFC 8785): key order and spacing aside,
    the same request is the same hash."""
    try:
        return hashlib.sha256(rfc8785.dumps(json.loads(raw))).hexdigest()
    except (ValueError, rfc8785.CanonicalizationError):
        raise _Refused(
            json_error(
                422,
                "invalid_body",
                "body: numbers must fit JSON's interoperable range (RFC 8785)",
                field="body",
            )
        ) from None


def _parse(model: type[_Model], raw: bytes) -> _Model:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _Refused(validation_error(exc)) from None


def _claims(caller: Caller, body: RequestSubmitted) -> None:
    """`check_claims` on the event as the orchestrator will read it (`verified: true`)."""
    message = encode(body, source=f"http:{caller.publisher}")
    headers = header_dict(message.headers)
    event = RawEvent(
        attributes={k.removeprefix("ce_"): v for k, v in headers.items() if k.startswith("ce_")},
        key=message.key,
        value=message.value,
        headers=headers,
    )
    try:
        check_claims(caller.keys, caller.publisher, event)
    except EnvelopeError:
        raise _Refused(
            json_error(
                403,
                "forbidden",
                f"publisher {caller.publisher!r} may not submit a request with "
                "verification.verified: true: that needs dsr.request.identity_verified.v1 in "
                "its `events` in the publisher keys file; submit it unverified",
                field="verification.verified",
            )
        ) from None


class IntakeApi:
    """The `/v1` routes over one `GatewayState`."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.checker = self._checker()
        #: Per request id: its lock and how many calls hold or wait for it.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        try:
            self._version = importlib.metadata.version("dsr-orchestrator")
        except importlib.metadata.PackageNotFoundError:
            self._version = "0"

    def _checker(self) -> SignatureChecker | None:
        path = self.state.settings.publisher_keys
        if path is None:
            log.warning("DSR_PUBLISHER_KEYS is not set: the intake API answers 503")
            return None
        verifier = RequestVerifier(path)  # re-reads the file when it changes
        return SignatureChecker(
            verifier.current, authorities=self.state.intake.signature_authorities
        )

    def routes(self) -> list[web.RouteDef]:
        """The routes, each answering refusals as JSON errors."""
        steps = "|".join(STEPS)
        return [
            web.post("/v1/requests", _guarded(self.submit)),
            web.get("/v1/requests/{request_id}", _guarded(self.status)),
            web.post(f"/v1/requests/{{request_id}}/{{step:{steps}}}", _guarded(self.step)),
            web.get("/v1/openapi.json", self.openapi),
        ]

    # -- the routes ------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        """POST /v1/requests: publish a new request, or answer a repeated one as before."""
        caller, raw = await self._authenticated(request)
        _permit(caller, _SUBMITTED)
        body = _parse(RequestSubmitted, raw)
        _claims(caller, body)
        digest = _canonical_sha256(raw)
        self._ready(self.state.accepted.caught_up, "intake topic")
        request_id = body.request_id
        async with self._one_at_a_time(request_id):
            if not self._seen_before(caller, request_id, digest):
                await self._publish(body, caller)
                await self._record(request_id, caller, digest)
        return self._accepted(Accepted(request_id=request_id, status_url=self._url(request_id)))

    async def status(self, request: web.Request) -> web.Response:
        """GET /v1/requests/{request_id}: the latest status, for the submitting publisher."""
        caller, _ = await self._authenticated(request)
        request_id = request.match_info["request_id"]
        entry = self.state.accepted.get(request_id)
        if entry is None or entry.channel != "api" or entry.publisher != caller.publisher:
            return json_error(
                404,
                "not_found",
                "no request with this request_id was submitted by this publisher",
                field="request_id",
            )
        status = self.state.status.view.get(request_id)
        if status is None:
            self._ready(self.state.status.caught_up, "status topic")
        state = RequestState(request_id=request_id, accepted_at=entry.accepted_at, status=status)
        return web.json_response(text=state.model_dump_json())

    async def step(self, request: web.Request) -> web.Response:
        """POST /v1/requests/{request_id}/<step>: publish an officer's or verifier's event."""
        caller, raw = await self._authenticated(request)
        model = STEPS[request.match_info["step"]]
        _permit(caller, TYPE_OF[model])
        body = _parse(model, raw)
        request_id = request.match_info["request_id"]
        if getattr(body, "request_id", None) != request_id:
            return json_error(
                422,
                "invalid_body",
                "request_id: must be the request id in the path",
                field="request_id",
            )
        await self._publish(body, caller)
        answer = StepAccepted(
            request_id=request_id, event=TYPE_OF[model], status_url=self._url(request_id)
        )
        return self._accepted(answer)

    async def openapi(self, request: web.Request) -> web.Response:
        """GET /v1/openapi.json (not signed: it describes how to sign)."""
        return web.json_response(openapi_document(self._version))

    # -- the steps of a call ---------------------------------------------------------------

    async def _authenticated(self, request: web.Request) -> tuple[Caller, bytes]:
        """The verified caller and the body; refused when unsigned, wrong or over the limit."""
        if self.checker is None:
            raise _Refused(
                json_error(
                    503,
                    "not_configured",
                    "the intake API has no publisher keys: set DSR_PUBLISHER_KEYS",
                )
            )
        raw = await request.read()
        try:
            caller = self.checker.check(request, raw)
        except SignatureRefused as exc:
            log.info("intake API: %s %s refused: %s", request.method, request.path, exc.code)
            raise _Refused(
                json_error(
                    401,
                    exc.code,
                    exc.message,
                    field=exc.field,
                    headers={
                        "WWW-Authenticate": 'Signature realm="dsr-intake"',
                        "Accept-Signature": _ACCEPT_SIGNATURE,
                    },
                )
            ) from None
        if request.body_exists and request.content_type != "application/json":
            raise _Refused(
                json_error(
                    415,
                    "unsupported_media_type",
                    "send the body as Content-Type: application/json",
                    field="Content-Type",
                )
            )
        wait = self.state.limits.hit(
            self.state.intake.publisher_rate, "publisher", caller.publisher
        )
        if wait is not None:
            raise _Refused(
                json_error(
                    429,
                    "rate_limited",
                    f"publisher {caller.publisher!r} is over its rate limit "
                    f"({self.state.intake.publisher_rate}); retry after {wait:g} s",
                    headers={"Retry-After": str(int(wait))},
                )
            )
        return caller, raw

    def _ready(self, caught_up: asyncio.Event, topic: str) -> None:
        if not caught_up.is_set():
            raise _Refused(
                json_error(
                    503,
                    "starting",
                    f"the intake is still reading the {topic}; retry shortly",
                    headers={"Retry-After": "2"},
                )
            )

    def _seen_before(self, caller: Caller, request_id: str, digest: str) -> bool:
        """True for the same request again, False for a new one; 409 when the id is taken
        (by another body, another publisher, or a request that came in another way)."""
        entry = self.state.accepted.get(request_id)
        if entry is None and self.state.status.view.get(request_id) is None:
            return False
        if entry is not None and (entry.channel, entry.publisher, entry.body_sha256) == (
            "api",
            caller.publisher,
            digest,
        ):
            return True
        raise _Refused(
            json_error(
                409,
                "request_id_conflict",
                "request_id is already in use for a different request; choose a new "
                "request_id (the same body again is answered as the first time)",
                field="request_id",
            )
        )

    async def _publish(self, body: BaseModel, caller: Caller) -> None:
        try:
            await self.state.bus.publish(body, source=f"http:{caller.publisher}")
        except PublishError as exc:
            log.error(
                "intake API: %s from %s not published: %s",
                TYPE_OF[type(body)],
                caller.publisher,
                exc,
            )
            raise _Refused(
                json_error(
                    503,
                    "not_published",
                    "Kafka did not acknowledge the event; nothing was accepted, send it again",
                    headers={"Retry-After": "5"},
                )
            ) from None
        log.info(
            "intake API: %s for request %s published for %s",
            TYPE_OF[type(body)],
            getattr(body, "request_id", "?"),
            caller.publisher,
        )

    async def _record(self, request_id: str, caller: Caller, digest: str) -> None:
        entry = IntakeRecorded(
            request_id=request_id,
            channel="api",
            publisher=caller.publisher,
            body_sha256=digest,
            accepted_at=datetime.now(UTC),
        )
        try:
            await self.state.accepted.record(entry)
        except PublishError as exc:
            # The request is on the bus; sending it again republishes (the orchestrator
            # dedupes by request id) and records it then.
            log.error("intake API: request %s published, not recorded: %s", request_id, exc)
            raise _Refused(
                json_error(
                    503,
                    "not_published",
                    "Kafka did not acknowledge; send the same request again",
                    headers={"Retry-After": "5"},
                )
            ) from None

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, request_id: str) -> AsyncIterator[None]:
        """Calls with the same request id one after the other (two identical POSTs at once
        publish once); other ids are not held up."""
        lock, users = self._locks.get(request_id, (asyncio.Lock(), 0))
        self._locks[request_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[request_id]
            if users == 1:
                del self._locks[request_id]
            else:
                self._locks[request_id] = (lock, users - 1)

    def _url(self, request_id: str) -> str:
        return f"{self.state.public_url}/v1/requests/{request_id}"

    def _accepted(self, answer: Accepted | StepAccepted) -> web.Response:
        return web.json_response(
            text=answer.model_dump_json(),
            status=202,
            headers={"Location": answer.status_url},
        )


def _permit(caller: Caller, ce_type: str) -> None:
    """403 unless the publisher's `events` allow `ce_type`."""
    if ce_type not in caller.events:
        raise _Refused(
            json_error(
                403,
                "forbidden",
                f"publisher {caller.publisher!r} may not publish {ce_type}: add it to the "
                "publisher's `events` in the publisher keys file",
                field="events",
            )
        )


def _guarded(handler: Handler) -> Handler:
    """`handler` with `_Refused` answered by its response."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Refused as refused:
            return refused.response

    guarded.__doc__ = handler.__doc__
    return guarded


def _body_too_large(limit: int) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            if not request.path.startswith("/v1/"):
                raise
            return json_error(
                413,
                "body_too_large",
                f"the body is larger than {limit} bytes (DSR_INTAKE_MAX_BODY_BYTES)",
                field="body",
            )

    return middleware


def setup(app: web.Application, state: GatewayState) -> None:
    """Add the `/v1` routes and the JSON 413 for bodies over `max_body_bytes`."""
    app.middlewares.append(_body_too_large(state.intake.max_body_bytes))
    app.add_routes(IntakeApi(state).routes())


__all__ = ["IntakeApi", "setup"]
