"""OpenDSR 2.0 for controllers: we act as their processor (`/opendsr/v1/...`).

A controller that has us process personal data on its behalf sends its data-subject requests
here; Art. 28(3)(e) GDPR obliges a processor to assist the controller in answering them.

- `GET /opendsr/v1/discovery`: what we support. Identities: `email` and
  `controller_customer_id` (our `customer_id`), raw, and hashed (`sha256`, `md5`, `sha1`)
  only when every system in the register has a connector that matches hashes
  (`Connector.identifier_formats`): we say only what we can do.
- `GET /opendsr/v1/certificate.pem`: our processor certificate (`opendsr_keys`).
- `POST /opendsr/v1/requests`: a request becomes a `RequestSubmitted` with the
  `subject_request_id` as request id, published by the intake (source
  `opendsr:<controller>`); answered 201 with `processor_signature`: our signature over the
  `encoded_request` (base64 of the body as received), a receipt of exactly what we got.
  Repeated with the same body: the same answer; another body under the same id: 409.
- `GET /opendsr/v1/requests/{id}`: the status object (`opendsr_status`), for the controller
  that sent the request only (any other gets 404, as for an unknown id).
- `DELETE /opendsr/v1/requests/{id}`: cancels a `pending` request (202), else 400.

Every answer carries `X-OpenDSR-Processor-Domain` and `X-OpenDSR-Signature` (our key over
the raw body); errors have OpenDSR's shape (`{"error": {code, message, errors: [{domain,
reason, message}]}}`) and name the field, never a value.

Identity verification: the controller verified its subject before it sent the request
(OpenDSR's flow, step 2; Art. 12(6) GDPR puts identification on the controller), and a
processor acts on the controller's documented instructions (Art. 28(3)(a), Art. 29 GDPR):
it neither asks the subject for proof nor second-guesses the controller. So the request is
published verified, `method: other`, `verified_by: opendsr:<controller>`: the record names who
vouched. The verification policy decides whether that counts: a deployment that acts as
processor adds `other` to the methods for access, portability and erasure
(`DSR_VERIFICATION_POLICY`), else such requests wait for verification (a warning at start
says so). The intake's own key needs `dsr.request.identity_verified.v1` (and, for
cancellations, `dsr.request.decision_recorded.v1`) in its publisher `events` for this.

Cancellation: our model cancels a request with a refusal (`DecisionRecorded` `refuse`, reason
`other`, `decided_by: opendsr:<controller>`), which stops it before anything is carried out.
The cancellation is recorded first (`cancelled_at` in `dsr.intake.v1`); when the orchestrator
has not seen the request yet, the refusal follows once it has (`CallbackSender`).

OpenDSR is off (no routes) until `DSR_OPENDSR_CONTROLLERS` names a controllers file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import rfc8785
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.base import ConnectorConfigError
from connectors.registry import connector_class
from orchestrator.gateway.opendsr_keys import (
    Controller,
    Controllers,
    OpenDsrSettings,
    ProcessorSigner,
)
from orchestrator.gateway.opendsr_status import (
    API_VERSION,
    PENDING_STATUSES,
    CallbackSender,
    opendsr_status,
    rfc3339,
    status_object,
)
from orchestrator.intake.client import PublishError
from orchestrator.lifecycle.deadlines import DeadlinePolicy
from orchestrator.lifecycle.verification import VerificationPolicy
from schemas.events import (
    DecisionKind,
    DecisionRecorded,
    Identifier,
    IdentityVerification,
    RefusalReason,
    RequestStatusChanged,
    RequestSubmitted,
    RequestType,
    Subject,
    VerificationMethod,
)
from schemas.gateway import IntakeRecorded, OpenDsrInbound
from schemas.primitives.opendsr import DOMAIN_HEADER, SIGNATURE_HEADER

if TYPE_CHECKING:
    from orchestrator.gateway.context import GatewayState

log = logging.getLogger("dsr.intake.opendsr")

PREFIX = "/opendsr/v1"
#: OpenDSR identity types we accept, and our identifier type for each.
IDENTITY_TYPES = {"email": "email", "controller_customer_id": "customer_id"}
HASHED_FORMATS = ("sha256", "md5", "sha1")
_UUID4 = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
#: How far a controller's clock may run ahead of ours.
_CLOCK_SKEW = timedelta(minutes=5)
_CANCELLED = (
    "The controller withdrew this request before it was carried out (OpenDSR cancellation); "
    "we acted as its processor (Art. 28 GDPR)."
)


class _Identity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity_type: Annotated[str, Field(max_length=64)]
    identity_value: Annotated[str, Field(min_length=1, max_length=320)]
    identity_format: Literal["raw", "sha256", "md5", "sha1"]

    @field_validator("identity_type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in IDENTITY_TYPES:
            raise ValueError(f"not supported here; use one of {', '.join(IDENTITY_TYPES)}")
        return value


class _Submission(BaseModel):
    """An OpenDSR request body (section 7.1.1), as strict as the spec."""

    model_config = ConfigDict(extra="forbid")
    regulation: Literal["gdpr"]
    subject_request_id: Annotated[str, Field(pattern=_UUID4)]
    subject_request_type: Literal["access", "portability", "erasure"]
    subject_identities: Annotated[list[_Identity], Field(min_length=1, max_length=20)]
    submitted_time: str
    api_version: Annotated[str | None, Field(pattern=r"^2(\.\d+)?$")] = None
    status_callback_urls: Annotated[
        list[Annotated[str, Field(max_length=2048)]], Field(max_length=10)
    ] = Field(default_factory=list)
    extensions: dict[str, Any] | None = None

    @field_validator("submitted_time")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        if not _RFC3339.match(value):
            raise ValueError("must be an RFC 3339 date-time with offset, e.g. 2026-05-01T12:00:00Z")
        return value

    def submitted(self) -> datetime:
        """`submitted_time` as an aware datetime."""
        return datetime.fromisoformat(self.submitted_time.upper().replace("Z", "+00:00"))


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(frozen=True, slots=True)
class _Accepted:
    controller: Controller
    submission: _Submission
    raw: bytes
    digest: str


def opendsr_error(
    status: int, message: str, reason: str, *, domain: str = "Validation"
) -> web.Response:
    """An OpenDSR error object (section 7.6); `message` names the field, never a value."""
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": domain, "reason": reason, "message": message}],
        }
    }
    headers = {"WWW-Authenticate": 'Bearer realm="opendsr"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


def _field_errors(exc: ValidationError) -> web.Response:
    errors = []
    for e in exc.errors(include_input=False, include_url=False)[:20]:
        field = ""
        for part in e["loc"]:
            field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
        message = f"{field or 'body'}: {e['msg']}"
        errors.append({"domain": "Validation", "reason": e["type"], "message": message})
    body = {"error": {"code": 400, "message": errors[0]["message"], "errors": errors}}
    return web.json_response(body, status=400)


class ProcessorApi:
    """The OpenDSR routes (module docstring) and their callback sender."""

    def __init__(
        self,
        state: GatewayState,
        settings: OpenDsrSettings,
        signer: ProcessorSigner | None = None,
        controllers: Controllers | None = None,
    ) -> None:
        self.state = state
        self.settings = settings
        domain = settings.processor_domain or urlsplit(state.public_url).hostname or "localhost"
        self.signer = signer or ProcessorSigner.load(
            settings, state.settings.key_store_dir(), domain
        )
        self.controllers = controllers or Controllers.load(settings.controllers)
        self.deadlines = DeadlinePolicy.parse(
            state.settings.deadline_policy, state.settings.deadline_timezone
        )
        self.sender = CallbackSender(state, self.signer, settings, on_cancel=self._cancel_later)
        #: Request id -> the status sequence a cancellation's refusal was published at.
        self._refused_at: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def routes(self) -> list[web.RouteDef]:
        """The OpenDSR routes."""
        return [
            web.get(f"{PREFIX}/discovery", self.discovery),
            web.get(f"{PREFIX}/certificate.pem", self.certificate),
            web.post(f"{PREFIX}/requests", self._guarded(self.submit)),
            web.get(PREFIX + "/requests/{request_id}", self._guarded(self.status)),
            web.delete(PREFIX + "/requests/{request_id}", self._guarded(self.cancel)),
        ]

    @staticmethod
    def _guarded(handler: Any) -> Any:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except _Refused as refused:
                return refused.response

        guarded.__doc__ = handler.__doc__
        return guarded

    def signed(self, body: dict[str, Any], status: int = 200) -> web.Response:
        """A JSON answer with our domain and our signature over its raw bytes."""
        raw = json.dumps(body, separators=(",", ":")).encode()
        headers = {DOMAIN_HEADER: self.signer.domain, SIGNATURE_HEADER: self.signer.sign(raw)}
        return web.Response(
            body=raw, status=status, headers=headers, content_type="application/json"
        )

    # -- discovery ----------------------------------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response:
        """What we support (section 6.3)."""
        formats = ["raw", *self.hashed_formats()]
        return self.signed(
            {
                "api_version": API_VERSION,
                "supported_identities": [
                    {"identity_type": kind, "identity_format": fmt}
                    for kind in IDENTITY_TYPES
                    for fmt in formats
                ],
                "supported_subject_request_types": [t.value for t in _TYPES.values()],
                "processor_certificate": f"{self.state.public_url}{PREFIX}/certificate.pem",
            }
        )

    async def certificate(self, request: web.Request) -> web.Response:
        """Our processor certificate, PEM."""
        return web.Response(body=self.signer.certificate_pem, content_type="application/x-pem-file")

    def hashed_formats(self) -> list[str]:
        """The hashed formats every system of the register can match (none: raw only)."""
        formats = set(HASHED_FORMATS)
        for system in self.state.register.current().systems:
            try:
                formats &= connector_class(system.connector).identifier_formats
            except ConnectorConfigError:  # e.g. a declarative spec: raw values only
                return []
        return [f for f in HASHED_FORMATS if f in formats]

    # -- submit -------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        """Accept a request (section 7)."""
        controller = self._controller(request)
        accepted = await self._read(request, controller)
        self._ready()
        sub = accepted.submission
        rid = sub.subject_request_id
        encoded = base64.b64encode(accepted.raw).decode()
        entry = self._seen_before(accepted)
        if entry is None:
            entry = await self._accept(accepted, encoded)
        assert entry.opendsr is not None
        inbound = entry.opendsr
        body = {
            "controller_id": inbound.controller_id,
            "expected_completion_time": rfc3339(inbound.expected_completion_time),
            "received_time": rfc3339(inbound.received_time),
            "encoded_request": encoded,
            "subject_request_id": rid,
            "processor_signature": self.signer.sign(encoded.encode()),
            "api_version": API_VERSION,
        }
        return self.signed(body, status=201)

    def _controller(self, request: web.Request) -> Controller:
        controller = self.controllers.authenticate(request.headers.get("Authorization"))
        if controller is None:
            raise _Refused(
                opendsr_error(
                    401,
                    "Authorization: a valid bearer token of a registered controller is required",
                    "Unauthorized",
                    domain="Authentication",
                )
            )
        return controller

    async def _read(self, request: web.Request, controller: Controller) -> _Accepted:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self.state.intake.max_body_bytes
            raise _Refused(
                opendsr_error(413, f"body: larger than {limit} bytes", "BodyTooLarge")
            ) from None
        try:
            document = json.loads(raw)
            digest = hashlib.sha256(rfc8785.dumps(document)).hexdigest()
        except (ValueError, rfc8785.CanonicalizationError):
            raise _Refused(opendsr_error(400, "body: not valid JSON", "InvalidJson")) from None
        try:
            submission = _Submission.model_validate(document)
        except ValidationError as exc:
            raise _Refused(_field_errors(exc)) from None
        self._check_submission(submission, controller)
        return _Accepted(controller, submission, raw, digest)

    def _check_submission(self, sub: _Submission, controller: Controller) -> None:
        if sub.submitted() > datetime.now(UTC) + _CLOCK_SKEW:
            raise _Refused(
                opendsr_error(400, "submitted_time: lies in the future", "InvalidSubmittedTime")
            )
        for n, url in enumerate(sub.status_callback_urls):
            if not controller.may_call_back(url):
                raise _Refused(
                    opendsr_error(
                        400,
                        f"status_callback_urls[{n}]: not allowed: use https and one of the "
                        "callback URL prefixes registered for your controller id",
                        "CallbackUrlNotAllowed",
                    )
                )
        hashed = set(self.hashed_formats())
        for n, identity in enumerate(sub.subject_identities):
            if identity.identity_format != "raw" and identity.identity_format not in hashed:
                raise _Refused(
                    opendsr_error(
                        400,
                        f"subject_identities[{n}].identity_format: not supported here (see "
                        "supported_identities in our discovery document)",
                        "UnsupportedIdentityFormat",
                    )
                )

    def _ready(self) -> None:
        for event, topic in (
            (self.state.accepted.caught_up, "intake topic"),
            (self.state.status.caught_up, "status topic"),
        ):
            if not event.is_set():
                response = opendsr_error(
                    503, f"starting: still reading the {topic}; retry shortly", "Starting",
                    domain="Service",
                )  # fmt: skip
                response.headers["Retry-After"] = "2"
                raise _Refused(response)

    def _seen_before(self, accepted: _Accepted) -> IntakeRecorded | None:
        """The earlier record of the same request, None for a new one; 409 when the id is
        taken by another body, another controller or a request that came in another way."""
        rid = accepted.submission.subject_request_id
        entry = self.state.accepted.get(rid)
        if entry is None and self.state.status.view.get(rid) is None:
            return None
        publisher = f"opendsr:{accepted.controller.id}"
        if (
            entry is not None
            and entry.opendsr is not None
            and (
                entry.publisher,
                entry.body_sha256,
            )
            == (publisher, accepted.digest)
        ):
            return entry
        raise _Refused(
            opendsr_error(
                409,
                "subject_request_id: already in use for a different request; the same body "
                "again is answered as the first time",
                "Conflict",
            )
        )

    async def _accept(self, accepted: _Accepted, encoded: str) -> IntakeRecorded:
        """Publish the request, then record it; the record."""
        sub, controller = accepted.submission, accepted.controller
        received = datetime.now(UTC)
        event = self._request_event(sub, controller, received)
        publisher = f"opendsr:{controller.id}"
        inbound = OpenDsrInbound(
            controller_id=controller.id,
            subject_request_id=sub.subject_request_id,
            subject_request_type=sub.subject_request_type,
            regulation=sub.regulation,
            status_callback_urls=sub.status_callback_urls,
            submitted_time=sub.submitted(),
            received_time=received,
            expected_completion_time=self.deadlines.deadline(sub.submitted()),
            processor_signature=self.signer.sign(encoded.encode()),
        )
        entry = IntakeRecorded(
            request_id=sub.subject_request_id,
            channel="opendsr",
            publisher=publisher,
            body_sha256=accepted.digest,
            accepted_at=received,
            opendsr=inbound,
        )
        try:
            await self.state.bus.publish(event, source=publisher)
            await self.state.accepted.record(entry)
        except PublishError as exc:
            log.error("OpenDSR: request %s not accepted: %s", sub.subject_request_id, exc)
            response = opendsr_error(
                503, "Kafka did not acknowledge the request; send it again", "NotPublished",
                domain="Service",
            )  # fmt: skip
            response.headers["Retry-After"] = "5"
            raise _Refused(response) from None
        log.info("OpenDSR: request %s accepted from %s", sub.subject_request_id, controller.id)
        return entry

    def _request_event(
        self, sub: _Submission, controller: Controller, received: datetime
    ) -> RequestSubmitted:
        """Our event for an OpenDSR request; a 400 naming the identity that is invalid."""
        identifiers = []
        for n, identity in enumerate(sub.subject_identities):
            try:
                identifiers.append(
                    Identifier(
                        type=IDENTITY_TYPES[identity.identity_type],
                        value=identity.identity_value,
                        format=identity.identity_format,
                    )
                )
            except ValidationError as exc:
                reason = exc.errors(include_input=False, include_url=False)[0]["msg"]
                raise _Refused(
                    opendsr_error(
                        400, f"subject_identities[{n}].identity_value: {reason}", "InvalidIdentity"
                    )
                ) from None
        by = f"opendsr:{controller.id}"
        return RequestSubmitted(
            request_id=sub.subject_request_id,
            type=_TYPES[sub.subject_request_type],
            subject=Subject(identifiers=identifiers),
            # The controller's receipt starts the month of Art. 12(3); we help it keep it.
            received_at=sub.submitted(),
            verification=IdentityVerification(
                verified=True, method=VerificationMethod.OTHER, verified_at=received, verified_by=by
            ),
            requested_by=by,
            language="en",
        )

    # -- status and cancellation ----------------------------------------------------------

    def _own(self, request: web.Request) -> tuple[Controller, OpenDsrInbound]:
        controller = self._controller(request)
        entry = self.state.accepted.get(request.match_info["request_id"])
        if entry is None or entry.opendsr is None or entry.opendsr.controller_id != controller.id:
            raise _Refused(
                opendsr_error(
                    404, "subject_request_id: no such request", "NotFound", domain="Request"
                )
            )
        return controller, entry.opendsr

    async def status(self, request: web.Request) -> web.Response:
        """The status object (section 8.3)."""
        _, inbound = self._own(request)
        current = self.state.status.view.get(inbound.subject_request_id)
        return self.signed(status_object(inbound, current, self.signer.domain))

    async def cancel(self, request: web.Request) -> web.Response:
        """Cancel a pending request (section 9): 202, else 400."""
        controller, inbound = self._own(request)
        rid = inbound.subject_request_id
        current = self.state.status.view.get(rid)
        value = opendsr_status(current, inbound.cancelled_at)
        if inbound.cancelled_at is None and value != "pending":
            raise _Refused(
                opendsr_error(
                    400,
                    f"subject_request_id: the request is {value}; only a pending request can be "
                    "cancelled",
                    "NotCancellable",
                    domain="Request",
                )
            )
        if inbound.cancelled_at is None:
            entry = self.state.accepted.get(rid)
            assert entry is not None
            inbound = inbound.model_copy(update={"cancelled_at": datetime.now(UTC)})
            try:
                await self.state.accepted.record(entry.model_copy(update={"opendsr": inbound}))
            except PublishError:
                response = opendsr_error(
                    503, "the cancellation was not recorded; send it again", "NotPublished",
                    domain="Service",
                )  # fmt: skip
                response.headers["Retry-After"] = "5"
                raise _Refused(response) from None
            if current is not None and current.status in PENDING_STATUSES:
                await self._refuse(inbound, current)
        assert inbound.cancelled_at is not None
        body = {
            "controller_id": controller.id,
            "received_time": rfc3339(inbound.cancelled_at),
            "subject_request_id": rid,
            "api_version": API_VERSION,
        }
        # The signature covers the answer without itself (compact JSON, keys sorted).
        core = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        return self.signed(body | {"processor_signature": self.signer.sign(core)}, status=202)

    def _cancel_later(self, inbound: OpenDsrInbound, status: RequestStatusChanged) -> None:
        """A cancelled request the orchestrator shows pending: refuse it (once per status)."""
        if self._refused_at.get(inbound.subject_request_id) == status.sequence:
            return
        self._refused_at[inbound.subject_request_id] = status.sequence
        task = asyncio.create_task(self._refuse(inbound, status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, inbound: OpenDsrInbound, status: RequestStatusChanged) -> None:
        """Publish the refusal that cancels the request in our model."""
        assert inbound.cancelled_at is not None
        self._refused_at[inbound.subject_request_id] = status.sequence
        decision = DecisionRecorded(
            request_id=inbound.subject_request_id,
            decision=DecisionKind.REFUSE,
            reason_code=RefusalReason.OTHER,
            explanation=_CANCELLED,
            decided_by=f"opendsr:{inbound.controller_id}",
            # The same instant every time: a refusal published again is the same decision.
            decided_at=inbound.cancelled_at,
        )
        try:
            await self.state.bus.publish(decision, source=f"opendsr:{inbound.controller_id}")
        except PublishError as exc:
            self._refused_at.pop(inbound.subject_request_id, None)  # the sender tries again
            log.error("OpenDSR: cancellation of %s not published: %s", status.request_id, exc)


_TYPES = {
    "access": RequestType.ACCESS,
    "portability": RequestType.PORTABILITY,
    "erasure": RequestType.ERASURE,
}


def setup(app: web.Application, state: GatewayState) -> None:
    """Add the OpenDSR routes and the callback sender, when a controllers file is set."""
    settings = OpenDsrSettings.model_validate({})
    if settings.controllers is None:
        log.info("OpenDSR inbound is off: DSR_OPENDSR_CONTROLLERS names no controllers file")
        return
    api = ProcessorApi(state, settings)
    app.add_routes(api.routes())
    state.background.append(api.sender.run)
    policy = VerificationPolicy.parse(state.settings.verification_policy)
    waiting = [t.value for t in _TYPES.values() if not policy.accepts(t, VerificationMethod.OTHER)]
    if waiting:
        log.warning(
            "OpenDSR: controllers' %s requests will wait for identity verification: "
            "DSR_VERIFICATION_POLICY does not accept 'other' (the controller's own check) for "
            "them; see docs/opendsr.md",
            ", ".join(waiting),
        )


__all__ = ["IDENTITY_TYPES", "PREFIX", "ProcessorApi", "opendsr_error", "setup"]
