"""Events of the HTTP intake process (`dsr intake`): what it accepted, and OpenDSR callbacks.

Requests arriving over HTTP (the intake API, the public request page, OpenDSR controllers)
become ordinary `RequestSubmitted` events on the requests topic. Beside them the intake keeps
two small topics of its own:

- `dsr.intake.v1` (compacted, keyed by request id): one `IntakeRecorded` per request accepted
  over HTTP, so that every intake replica, also after a restart, answers a repeated
  `POST` with the same body the same way and a different body under the same id with 409;
  for a request from an OpenDSR controller it also carries what the OpenDSR status object
  and the status callbacks need (`OpenDsrInbound`).
- `dsr.opendsr.callbacks.v1` (keyed by system): a status callback from a processor we sent an
  OpenDSR request to, published only after its signature was verified against that
  processor's certificate; the connector worker serving the system waits for it.

No personal data in either: hashes, ids, URLs of the controller's own endpoints, statuses.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import REQUEST_ID_PATTERN, RequestId, SystemName

#: OpenDSR 2.0's request statuses (`request_status` in its status object and callbacks).
OpenDsrStatus = Literal["pending", "in_progress", "completed", "cancelled"]
#: The request types OpenDSR 2.0 defines.
OpenDsrRequestType = Literal["access", "portability", "erasure"]
#: How a request reached the intake process.
IntakeChannel = Literal["api", "public_page", "opendsr"]

_SHA256_HEX = r"^[0-9a-f]{64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenDsrInbound(_Model):
    """What we keep of a request an OpenDSR controller sent us (we act as its processor)."""

    controller_id: Annotated[str, Field(min_length=1, max_length=256)]
    subject_request_id: Annotated[str, Field(pattern=REQUEST_ID_PATTERN)]
    subject_request_type: OpenDsrRequestType
    regulation: Literal["gdpr", "ccpa", "lgpd"] = "gdpr"
    status_callback_urls: list[Annotated[str, Field(max_length=2048)]] = Field(
        default_factory=list, max_length=10
    )
    submitted_time: AwareDatetime
    received_time: AwareDatetime
    expected_completion_time: AwareDatetime
    #: The 201 answer's signature (over its `encoded_request`), the receipt we gave. The
    #: `encoded_request` itself (the body, identities included) is never kept: a repeated POST
    #: brings the same body, and the signature (RSASSA-PKCS1-v1_5) comes out the same.
    processor_signature: str
    cancelled_at: AwareDatetime | None = None


class IntakeRecorded(_Model):
    """A request the intake process accepted and published (key: its request id)."""

    request_id: RequestId
    channel: IntakeChannel
    #: The API publisher's id, `public-page`, or `opendsr:<controller id>`.
    publisher: Annotated[str, Field(min_length=1, max_length=300)]
    #: SHA-256 (hex) of the canonical JSON (RFC 8785) of the request body as received.
    body_sha256: Annotated[str, Field(pattern=_SHA256_HEX)]
    accepted_at: AwareDatetime
    opendsr: OpenDsrInbound | None = None


class OpenDsrCallbackReceived(_Model):
    """A processor's status callback for one of our outbound OpenDSR requests, verified."""

    system: SystemName
    subject_request_id: Annotated[str, Field(pattern=REQUEST_ID_PATTERN)]
    request_status: OpenDsrStatus
    results_url: Annotated[str | None, Field(max_length=2048)] = None
    results_count: Annotated[int | None, Field(ge=0)] = None
    received_at: AwareDatetime


__all__ = [
    "IntakeChannel",
    "IntakeRecorded",
    "OpenDsrCallbackReceived",
    "OpenDsrInbound",
    "OpenDsrRequestType",
    "OpenDsrStatus",
]
