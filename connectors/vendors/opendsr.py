"""OpenDSR 2.0: hand a request to a processor that speaks it, wait for it, collect the result.

A processor (Art. 28 GDPR) must assist the controller in answering the subject (Art. 28(3)(e));
OpenDSR is the protocol some of them offer for it. Per task the connector:

1. reads the processor's discovery document once (`GET /v1/discovery`): the identity types
   and formats it accepts and the request types it carries out. A right it does not list is
   a manual task saying so; its signing certificate is the pinned `certificate_file` or the
   one the discovery names (its SHA-256 fingerprint is logged);
2. names the request `subject_request_id`: derived from our request id, the system and the
   right (SHA-1, as a UUID 5 is, stamped version 4 because OpenDSR requires a v4 UUID), so a
   retried or re-delivered task, also after a worker restart, resumes the processor's request
   (`GET /v1/requests/{id}`) instead of submitting a second one;
3. submits it if the processor does not know it yet (`POST /v1/requests`) with the subject's
   identities it accepts (hashed when it only takes digests) and our callback URL
   (`callback_url`: the intake's `/opendsr/callbacks/{system}`);
4. waits: a status callback (verified by the intake process, handed over by the worker as
   `receive`) wakes it at once; otherwise it polls the status with backoff. Either way it
   reads the status from the processor itself, and checks the processor's signature on it
   (`X-OpenDSR-Signature`), so a callback is only ever a reason to look;
5. when completed: an access or portability request downloads `results_url` (the records, as
   `{<results_path>: {collection: [record, ...]}}` or a list), an erasure reports
   `results_count` as deleted with the processor's signed status object as evidence; a
   request the processor cancelled fails, with that reason.

A task waits at most `max_wait_seconds` (keep it below the orchestrator's task timeout); then
it fails retryable and the next attempt resumes the same processor request.

Outside a connector worker (`current_task` unset, e.g. a test calling the connector directly)
each call is a new processor request with a random id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import ConnectorConfigError, ConnectorError, Result, current_task
from connectors.http import Auth, HttpClient, RateLimit, json_body, lookup
from connectors.vendors.base import RECORD_RIGHTS, HttpConnector, HttpSettings
from schemas.envelope import describe_validation_error
from schemas.events import Counts, Evidence, Identifier, OutcomeStatus, Record, Subject
from schemas.gateway import OpenDsrCallbackReceived
from schemas.primitives.opendsr import (
    DOMAIN_HEADER,
    SIGNATURE_HEADER,
    CertificateError,
    ProcessorCertificate,
    header,
)

log = logging.getLogger(__name__)

API_VERSION = "2.0"
#: The namespace of our subject_request_ids (fixed: changing it would orphan running requests).
_NAMESPACE = uuid.UUID("5b0f2a4e-3d5c-4f1e-9a57-0d7c1e2b8a60")
_FINAL = ("completed", "cancelled")
#: Hashed formats, most preferred first, for a processor that takes no raw identity.
_HASHES = ("sha256", "sha1", "md5")


class OpenDsrSettings(HttpSettings):
    """Register settings of an OpenDSR processor."""

    base_url: str = Field(description="The processor's OpenDSR root (the `/v1/...` paths below).")
    token: str = Field(repr=False, min_length=1, description="Bearer token, e.g. ${VAR}.")
    controller_id: str = Field(min_length=1, description="Our id in the processor's system.")
    callback_url: str | None = Field(
        default=None,
        description="Where it sends status callbacks: the intake's public URL + "
        "/opendsr/callbacks/<system>. None: polling only.",
    )
    certificate_file: Path | None = Field(
        default=None, description="The processor's signing certificate (PEM), pinned."
    )
    processor_domain: str | None = Field(
        default=None, description="The domain its certificate names; default: base_url's host."
    )
    regulation: Literal["gdpr", "ccpa"] = "gdpr"
    #: Our identifier types -> OpenDSR identity types.
    identity_types: dict[str, str] = {"email": "email", "customer_id": "controller_customer_id"}
    results_path: str = Field(
        default="results", description="Where a results document's records are."
    )
    poll_seconds: Annotated[float, Field(gt=0)] = 5.0
    max_poll_seconds: Annotated[float, Field(gt=0)] = 300.0
    max_wait_seconds: Annotated[float, Field(gt=0)] = 600.0
    rate_limit: RateLimit = RateLimit(requests=10, per_seconds=1.0, concurrency=4)

    def url(self) -> str:
        """The OpenDSR root, without a trailing slash."""
        return self.base_url.rstrip("/")

    def auth(self) -> Auth:
        """The bearer token."""
        return Auth(type="bearer", token=self.token)

    def domain(self) -> str:
        """The domain the processor signs as."""
        return (self.processor_domain or urlsplit(self.base_url).hostname or "").lower()


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SupportedIdentity(_Model):
    """An identity type and format a processor accepts."""

    identity_type: str
    identity_format: str


class Discovery(_Model):
    """A processor's discovery document."""

    api_version: str
    supported_identities: list[SupportedIdentity]
    supported_subject_request_types: list[str]
    processor_certificate: str


class ProcessorStatus(_Model):
    """A processor's status object of one request, as it signed it."""

    controller_id: str
    subject_request_id: str
    request_status: Literal["pending", "in_progress", "completed", "cancelled"]
    expected_completion_time: str | None = None
    api_version: str | None = None
    results_url: str | None = None
    results_count: Annotated[int, Field(ge=0)] | None = None
    #: The processor's signature of the status object (X-OpenDSR-Signature).
    signature: str | None = None


def subject_request_id(request_id: str, system: str, action: str) -> str:
    """Our request's id at the processor: the same for every attempt of the same task."""
    digest = uuid.uuid5(_NAMESPACE, f"{request_id}\n{system}\n{action}").bytes
    return str(uuid.UUID(bytes=digest, version=4))  # OpenDSR: "UUID v4 string"


class OpenDsrConnector(HttpConnector[OpenDsrSettings]):
    """An OpenDSR 2.0 processor: submit, wait for its callback or poll, collect the result."""

    capabilities = RECORD_RIGHTS
    identifier_formats: ClassVar[frozenset[str]] = frozenset({"raw", *_HASHES})
    waits = True
    description = "OpenDSR 2.0 processor: access, portability, erasure, signed statuses"

    def __init__(self, system: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self._discovery: Discovery | None = None
        self._certificate: ProcessorCertificate | None = None
        self._wakeups: dict[str, set[asyncio.Event]] = {}
        pinned = self.settings.certificate_file
        if pinned is not None:
            try:
                self._certificate = ProcessorCertificate.from_pem(
                    pinned.read_bytes(), where=f"certificate_file of system {system!r}"
                )
            except OSError as exc:
                raise ConnectorConfigError(
                    f"system {system!r}: certificate_file cannot be read ({exc.strerror})"
                ) from None
            except CertificateError as exc:
                raise ConnectorConfigError(str(exc)) from None

    # ------------------------------------------------------------------- the processor

    async def _discover(self) -> Discovery:
        if self._discovery is not None:
            return self._discovery
        response = await self.http.request("GET", "/v1/discovery")
        try:
            discovery = Discovery.model_validate(json_body(response))
        except ValidationError as exc:
            raise ConnectorError(
                f"{self.system}: the processor's discovery document is invalid: "
                f"{describe_validation_error(exc)}"
            ) from None
        if self._certificate is None:
            pem = await self._get(discovery.processor_certificate, "certificate")
            try:
                self._certificate = ProcessorCertificate.from_pem(
                    pem.content, where=f"the certificate of system {self.system!r}"
                )
            except CertificateError as exc:
                raise ConnectorError(str(exc)) from None
        certificate = self._certificate
        try:
            certificate.check_valid()
        except CertificateError as exc:
            raise ConnectorConfigError(f"{self.system}: {exc}") from None
        domain = self.settings.domain()
        if not certificate.issued_for(domain):
            raise ConnectorConfigError(
                f"{self.system}: the processor certificate is not issued to {domain!r} (it "
                f"names {', '.join(sorted(certificate.domains))}); set processor_domain"
            )
        log.info(
            "%s: OpenDSR %s processor, certificate SHA-256 %s; request types %s",
            self.system,
            discovery.api_version,
            certificate.fingerprint,
            ", ".join(discovery.supported_subject_request_types),
        )
        self._discovery = discovery
        return discovery

    def _signed(self, response: httpx.Response, what: str) -> Any:
        """The JSON body of a processor's answer, once its signature checks out."""
        certificate = self._certificate
        assert certificate is not None  # discovery came first
        domain = header(response.headers, DOMAIN_HEADER)
        if domain is not None and domain.strip().lower() != self.settings.domain():
            raise ConnectorError(f"{self.system}: the answer to {what} names another domain")
        if not certificate.verifies(header(response.headers, SIGNATURE_HEADER), response.content):
            if self.settings.certificate_file is None:
                self._discovery = self._certificate = None  # a rotated key: fetched again
            raise ConnectorError(
                f"{self.system}: the answer to {what} is not signed by the processor's "
                f"certificate (SHA-256 {certificate.fingerprint}); if it rotated its key, "
                "update certificate_file",
                retryable=self.settings.certificate_file is None,
            )
        return json_body(response)

    async def _status(self, request_id: str) -> ProcessorStatus | None:
        response = await self.http.request(
            "GET", "/v1/requests/{id}", path_params={"id": request_id}, expected=(200, 404)
        )
        if response.status_code == 404:
            return None
        body = self._signed(response, "a status request")
        try:
            status = ProcessorStatus.model_validate(
                {**body, "signature": header(response.headers, SIGNATURE_HEADER)}
            )
        except (ValidationError, TypeError):
            raise ConnectorError(
                f"{self.system}: the processor's status object is invalid"
            ) from None
        self._check_controller(status.controller_id)
        return status

    def _check_controller(self, controller_id: str) -> None:
        if controller_id != self.settings.controller_id:
            raise ConnectorConfigError(
                f"{self.system}: the processor knows our token as controller "
                f"{controller_id!r}, the register says {self.settings.controller_id!r}"
            )

    async def _submit(
        self, request_id: str, request_type: str, identities: list[Identifier]
    ) -> str:
        """POST the request; the processor's signed receipt (`processor_signature`)."""
        values: dict[str, Any] = {f"v{n}": i.value for n, i in enumerate(identities)}
        task = current_task.get()
        submitted = task.dispatched_at if task is not None else datetime.now(UTC)
        body: dict[str, Any] = {
            "regulation": self.settings.regulation,
            "subject_request_id": request_id,
            "subject_request_type": request_type,
            "subject_identities": [
                {
                    "identity_type": i.type,
                    "identity_value": f"{{v{n}}}",
                    "identity_format": i.format,
                }
                for n, i in enumerate(identities)
            ],
            "submitted_time": submitted.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "api_version": API_VERSION,
        }
        if self.settings.callback_url:
            values["callback"] = self.settings.callback_url
            body["status_callback_urls"] = ["{callback}"]
        response = await self.http.request(
            "POST", "/v1/requests", path_params=values, json=body, expected=(201, 400)
        )
        if response.status_code == 400:
            reason, message = _error_of(json_body(response))
            if reason == "DuplicateRequest":
                return ""  # submitted by an earlier attempt meanwhile: resumed
            raise ConnectorError(f"{self.system}: the processor refused the request: {message}")
        receipt = self._signed(response, "the request")
        if not isinstance(receipt, dict) or receipt.get("subject_request_id") != request_id:
            raise ConnectorError(f"{self.system}: the processor's receipt names another request")
        self._check_controller(str(receipt.get("controller_id")))
        return str(receipt.get("processor_signature") or "")

    # ----------------------------------------------------------------------- waiting

    def receive(self, event: BaseModel) -> None:
        """A processor's callback (through the intake and Kafka): wake the task waiting."""
        if isinstance(event, OpenDsrCallbackReceived) and event.system == self.system:
            for wakeup in self._wakeups.get(event.subject_request_id, ()):
                wakeup.set()

    async def _wait(self, request_id: str) -> ProcessorStatus:
        """The processor's final status of the request: read when a callback says it changed,
        else polled with backoff; a retryable failure after `max_wait_seconds`."""
        s = self.settings
        deadline = time.monotonic() + s.max_wait_seconds
        delay = s.poll_seconds
        wakeup = asyncio.Event()
        self._wakeups.setdefault(request_id, set()).add(wakeup)
        try:
            while True:
                wakeup.clear()  # before reading: a callback from now on is not missed
                status = await self._status(request_id)
                if status is None:
                    raise ConnectorError(
                        f"{self.system}: the processor does not know request {request_id}",
                        retryable=True,
                    )
                if status.request_status in _FINAL:
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConnectorError(
                        f"{self.system}: OpenDSR request {request_id} is still "
                        f"{status.request_status} after {s.max_wait_seconds:g}s (the processor "
                        f"expects to finish by {status.expected_completion_time}); the next "
                        "attempt resumes it",
                        retryable=True,
                    )
                try:
                    await asyncio.wait_for(wakeup.wait(), min(delay, remaining))
                except TimeoutError:
                    delay = min(delay * 2, s.max_poll_seconds)
        finally:
            waiting = self._wakeups.get(request_id, set())
            waiting.discard(wakeup)
            if not waiting:
                self._wakeups.pop(request_id, None)

    async def _carry_out(
        self, subject: Subject, request_type: str, right: str
    ) -> tuple[ProcessorStatus, list[Evidence]] | Result:
        """Submit (or resume) the request and wait for it; a Result when it cannot be sent."""
        discovery = await self._discover()
        if request_type not in discovery.supported_subject_request_types:
            listed = ", ".join(discovery.supported_subject_request_types) or "none"
            return Result.manual(
                f"The processor behind {self.system!r} does not carry out {right} requests "
                f"over OpenDSR (it lists: {listed}). Ask it to by its own channel, under the "
                "processing agreement (Art. 28(3)(e) GDPR).",
                reason=f"the processor does not support OpenDSR {request_type} requests",
            )
        identities = self._identities(subject, discovery)
        if not identities:
            accepted = ", ".join(
                f"{i.identity_type} ({i.identity_format})" for i in discovery.supported_identities
            )
            return Result.manual(
                f"The processor behind {self.system!r} accepts only {accepted}, and the "
                f"request names the subject by none of these. Send the {right} request to it "
                "by its own channel.",
                reason="the processor accepts none of the subject's identifier types",
            )
        request_id = self._request_id(request_type)
        evidence = [Evidence(kind="opendsr_subject_request_id", value=request_id)]
        if await self._status(request_id) is None:
            receipt = await self._submit(request_id, request_type, identities)
            if receipt:
                evidence.append(Evidence(kind="opendsr_receipt_signature", value=receipt))
        else:
            log.info("%s: resuming OpenDSR request %s", self.system, request_id)
        status = await self._wait(request_id)
        evidence.append(
            Evidence(
                kind="opendsr_status",
                value=status.model_dump_json(
                    exclude={"results_url", "signature"}, exclude_none=True
                ),
            )
        )
        if status.signature:
            evidence.append(Evidence(kind="opendsr_status_signature", value=status.signature))
        return status, evidence

    def _request_id(self, action: str) -> str:
        task = current_task.get()
        if task is None:
            return str(uuid.uuid4())
        return subject_request_id(task.request_id, self.system, action)

    def _identities(self, subject: Subject, discovery: Discovery) -> list[Identifier]:
        """The subject's identifiers as OpenDSR identities the processor accepts (`type` is
        the OpenDSR identity type); a raw value is hashed for a processor taking digests."""
        accepted: dict[str, set[str]] = {}
        for pair in discovery.supported_identities:
            accepted.setdefault(pair.identity_type, set()).add(pair.identity_format)
        found: list[Identifier] = []
        for identifier in subject.identifiers:
            kind = self.settings.identity_types.get(identifier.type)
            formats = accepted.get(kind or "", set())
            value, form = identifier.value, str(identifier.format)
            if form == "raw" and "raw" not in formats:
                form = next((h for h in _HASHES if h in formats), "")
                value = Identifier.digest(form, value) if form else value
            if kind and form in formats:
                found.append(Identifier.model_construct(type=kind, value=value, format=form))
        return list({(i.type, i.value, i.format): i for i in found}.values())

    # ------------------------------------------------------------------------- rights

    async def access(self, subject: Subject) -> Result:
        """The records the processor holds about the subject (Art. 15)."""
        return await self._records(subject, "access", "access (Art. 15)")

    async def portability(self, subject: Subject) -> Result:
        """The data the subject provided (Art. 20); an access where only that is offered."""
        discovery = await self._discover()
        if "portability" in discovery.supported_subject_request_types:
            return await self._records(subject, "portability", "portability (Art. 20)")
        return await self.access(subject)

    async def _records(self, subject: Subject, request_type: str, right: str) -> Result:
        done = await self._carry_out(subject, request_type, right)
        if isinstance(done, Result):
            return done
        status, evidence = done
        if status.request_status == "cancelled":
            return _cancelled(status)
        records = await self._results(status)
        result = Result.found(records)
        result.evidence = evidence
        return result

    async def erase(self, subject: Subject) -> Result:
        """Have the processor erase the subject's data (Art. 17); its count as deleted."""
        done = await self._carry_out(subject, "erasure", "erasure (Art. 17)")
        if isinstance(done, Result):
            return done
        status, evidence = done
        if status.request_status == "cancelled":
            return _cancelled(status)
        count = status.results_count
        if count == 0:
            return Result(OutcomeStatus.NOT_FOUND, evidence=evidence)
        if count is None:
            evidence.append(Evidence(kind="vendor_note", value="the processor reported no count"))
        return Result.completed(Counts(found=count or 0, deleted=count or 0), evidence=evidence)

    async def _results(self, status: ProcessorStatus) -> list[Record]:
        """The records at the status's `results_url`."""
        if not status.results_url:
            if status.results_count:
                raise ConnectorError(
                    f"{self.system}: the processor found {status.results_count} results but "
                    "gave no results_url",
                    retryable=True,
                )
            return []
        response = await self._get(status.results_url, "results")
        body = json_body(response)
        found = lookup(body, self.settings.results_path) if self.settings.results_path else body
        if isinstance(found, list):
            found = {"records": found}
        if not isinstance(found, dict):
            raise ConnectorError(
                f"{self.system}: the results document has no records at "
                f"{self.settings.results_path!r}"
            )
        return [
            Record(
                collection=str(collection), data=item if isinstance(item, dict) else {"value": item}
            )
            for collection, items in found.items()
            for item in (items if isinstance(items, list) else [items])
        ]

    async def _get(self, url: str, what: str) -> httpx.Response:
        """GET a URL the processor gave (its certificate, results): with our token on the
        processor's own origin, without it elsewhere (and only over HTTPS there)."""
        parts = urlsplit(url)
        own = urlsplit(self.settings.url())
        same = (parts.scheme, parts.netloc) == (own.scheme, own.netloc)
        if not same and parts.scheme != "https":
            raise ConnectorError(
                f"{self.system}: the processor's {what} URL is on another host without HTTPS; "
                "refused"
            )
        s = self.settings
        client = HttpClient(
            self.system,
            f"{parts.scheme}://{parts.netloc}",
            s.auth() if same else None,
            s.rate_limit,
            s.retry,
            s.timeout_seconds,
        )
        # The path and query go in as values: a results URL can hold a download token.
        segments = [unquote(p) for p in parts.path.split("/") if p]
        values: dict[str, Any] = {f"p{n}": p for n, p in enumerate(segments)}
        params = {}
        for n, (name, value) in enumerate(parse_qsl(parts.query, keep_blank_values=True)):
            params[name] = f"{{q{n}}}"
            values[f"q{n}"] = value
        template = "/" + "/".join(f"{{p{n}}}" for n in range(len(segments)))
        try:
            return await client.request("GET", template, path_params=values, params=params)
        finally:
            await client.aclose()


def _cancelled(status: ProcessorStatus) -> Result:
    return Result(
        OutcomeStatus.FAILED,
        reason=f"the processor cancelled OpenDSR request {status.subject_request_id}; "
        "send the request again to have it carried out",
        evidence=[
            Evidence(
                kind="opendsr_status",
                value=status.model_dump_json(
                    exclude={"results_url", "signature"}, exclude_none=True
                ),
            )
        ],
    )


def _error_of(body: Any) -> tuple[str, str]:
    """The reason and message of an OpenDSR error object (messages cut short)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", "no error object"
    details = error.get("errors")
    first = (
        details[0] if isinstance(details, list) and details and isinstance(details[0], dict) else {}
    )
    message = str(error.get("message") or first.get("message") or "no message")[:200]
    return str(first.get("reason") or ""), message


__all__ = [
    "API_VERSION",
    "Discovery",
    "OpenDsrConnector",
    "OpenDsrSettings",
    "ProcessorStatus",
    "subject_request_id",
]
