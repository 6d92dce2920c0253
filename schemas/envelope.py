"""CloudEvents 1.0 envelope, Kafka protocol binding.

We write binary content mode: CloudEvents attributes travel as `ce_*` headers, the body is
the JSON of one of the models in `schemas.events`, the Kafka key is the request id. On read we
also accept structured mode (`content-type: application/cloudevents+json`, the whole event as
the value), which some producers find easier.

This is a few dozen lines on purpose: the official SDK converts through its own event type
and dict copies on every message, and the orchestrator's hot path decodes each message once,
straight into the pydantic model.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import pydantic_core
from pydantic import BaseModel, ValidationError

from schemas.errors import DsrError
from schemas.events import (
    BSN_REFUSED,
    DeadLetter,
    DeadlineExtended,
    DecisionRecorded,
    DeliveryRecorded,
    IdentityVerified,
    RequestStatusChanged,
    RequestSubmitted,
    TaskDispatched,
    TaskOutcome,
)
from schemas.gateway import IntakeRecorded, OpenDsrCallbackReceived
from schemas.sweeps import (
    SweepApproved,
    SweepDispatched,
    SweepOutcome,
    SweepRequested,
    SweepStatusChanged,
)

SPEC_VERSION = "1.0"
#: The Kafka header that carries a request event's signature (`schemas.primitives.signing`).
SIGNATURE_HEADER = "dsr_signature"
JSON = "application/json"
STRUCTURED = "application/cloudevents+json"
#: A dead letter keeps at most this much of the original value (the whole record stays on its
#: topic): a dead letter must fit in a Kafka message, whatever was sent.
DEAD_LETTER_VALUE_LIMIT = 256 * 1024
#: CloudEvents attributes longer than this are refused (they end up in logs and dead letters).
ATTRIBUTE_LIMIT = 1024
_HEADER_VALUE_LIMIT = 1024
_MAX_HEADERS = 64
_QUOTE_LIMIT = 64

#: CloudEvents `type` attribute -> body model. The version is part of the type.
EVENT_TYPES: dict[str, type[BaseModel]] = {
    "dsr.request.submitted.v1": RequestSubmitted,
    "dsr.request.identity_verified.v1": IdentityVerified,
    "dsr.request.deadline_extended.v1": DeadlineExtended,
    "dsr.request.decision_recorded.v1": DecisionRecorded,
    "dsr.request.delivery_recorded.v1": DeliveryRecorded,
    "dsr.sweep.requested.v1": SweepRequested,
    "dsr.sweep.approved.v1": SweepApproved,
    "dsr.task.dispatched.v1": TaskDispatched,
    "dsr.task.outcome.v1": TaskOutcome,
    "dsr.sweep.dispatched.v1": SweepDispatched,
    "dsr.sweep.outcome.v1": SweepOutcome,
    "dsr.request.status_changed.v1": RequestStatusChanged,
    "dsr.sweep.status_changed.v1": SweepStatusChanged,
    "dsr.deadletter.v1": DeadLetter,
    "dsr.intake.recorded.v1": IntakeRecorded,
    "dsr.opendsr.callback_received.v1": OpenDsrCallbackReceived,
}
TYPE_OF: dict[type[BaseModel], str] = {model: name for name, model in EVENT_TYPES.items()}


class EnvelopeError(DsrError, ValueError):
    """A message is not a valid event; `stage` says whether the envelope or the body is wrong."""

    def __init__(
        self, stage: str, message: str, ce_type: str | None = None, *, withhold: bool = False
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.ce_type = ce_type
        #: The message holds data we may not keep (a BSN): its dead letter leaves the value out.
        self.withhold = withhold


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """What goes on the wire: key, value and headers."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded event: CloudEvents attributes plus the validated body."""

    id: str
    source: str
    type: str
    time: datetime | None
    body: BaseModel


def encode(
    body: BaseModel,
    *,
    source: str,
    key: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> KafkaMessage:
    """Wrap a body model in a binary-mode CloudEvent keyed by its request id (a sweep's
    events: by its sweep id)."""
    ce_type = TYPE_OF[type(body)]
    if key is None:
        key = getattr(body, "request_id", None) or getattr(body, "sweep_id", None)
    stamp = (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", stamp.encode()),
        ("content-type", JSON.encode()),
    ]
    return KafkaMessage(
        key=key.encode() if key is not None else None,
        value=body.model_dump_json(exclude_none=False).encode(),
        headers=headers,
    )


def header_dict(headers: object) -> dict[str, str]:
    """Kafka headers (pairs or a mapping, bytes values) as a dict of text; undecodable bytes
    escaped. The last of repeated headers wins; anything that is not a pair is skipped."""
    if isinstance(headers, Mapping):
        pairs: list[Any] = list(headers.items())
    elif isinstance(headers, list | tuple):
        pairs = list(headers)
    else:
        pairs = []
    result: dict[str, str] = {}
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            continue
        name, raw = pair
        if isinstance(name, bytes | bytearray):
            name = bytes(name).decode("utf-8", errors="backslashreplace")
        if isinstance(raw, bytes | bytearray):
            result[str(name)] = bytes(raw).decode("utf-8", errors="backslashreplace")
        elif raw is not None:
            result[str(name)] = str(raw)
    return result


def _quote(text: str) -> str:
    """A value from a message for an error message: repr, cut short (it may be huge)."""
    if len(text) <= _QUOTE_LIMIT:
        return repr(text)
    return repr(text[:_QUOTE_LIMIT]) + f"... ({len(text)} characters)"


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event as received, before its body is parsed: what a signature check looks at."""

    attributes: Mapping[str, str]  # CloudEvents attributes without the `ce_` prefix
    key: bytes | None
    value: bytes
    headers: Mapping[str, str]


class KafkaRecord(Protocol):
    """What aiokafka's ConsumerRecord and Faust's Message both have."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


def dead_letter_for(
    record: KafkaRecord,
    *,
    stage: Literal["envelope", "signature", "body", "process"],
    reason: str,
    ce_type: str | None = None,
    withhold: bool = False,
) -> DeadLetter:
    """A dead letter keeping the original record (value base64-encoded).

    `withhold` leaves the value out (`value_withheld`): it holds data we may not store, such as
    a BSN (Art. 46 UAVG); the reason and the source offset still say what and where it was.

    Bounded whatever was sent, so it always fits in a Kafka message: a value over
    `DEAD_LETTER_VALUE_LIMIT` is kept in part (`value_truncated`), long header values and
    many headers are cut; the whole record stays at its source topic, partition and offset.
    """
    key = record.key.decode("utf-8", "replace") if record.key else None
    value = record.value or b""
    headers = {
        name[:_HEADER_VALUE_LIMIT]: text[:_HEADER_VALUE_LIMIT]
        for name, text in list(header_dict(record.headers).items())[:_MAX_HEADERS]
    }
    return DeadLetter(
        reason=reason[:2000],
        stage=stage,
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key if key and len(key) <= 256 else None,
        ce_type=ce_type if ce_type is None or len(ce_type) <= 256 else ce_type[:256],
        value_base64="" if withhold else base64.b64encode(value[:DEAD_LETTER_VALUE_LIMIT]).decode(),
        value_truncated=not withhold and len(value) > DEAD_LETTER_VALUE_LIMIT,
        value_withheld=withhold,
        headers=headers,
        failed_at=datetime.now(UTC),
    )


def decode(
    value: bytes | None,
    headers: object,
    *,
    key: bytes | None = None,
    expect: tuple[type[BaseModel], ...] | None = None,
    verify: Callable[[RawEvent], None] | None = None,
) -> Envelope:
    """Validate a Kafka message as one of our CloudEvents; raise `EnvelopeError` saying why not.

    `verify` (e.g. `schemas.primitives.signing.RequestVerifier`) sees the event once its
    envelope is read and before its body is parsed; it raises `EnvelopeError` to reject it.
    """
    if value is None:
        raise EnvelopeError("envelope", "message has no value (a tombstone?); expected an event")
    hdrs = header_dict(headers)
    attrs, data = _attributes_and_data(value, hdrs)
    _check_attributes(attrs)
    ce_type = attrs["type"]
    model = _model_of(ce_type, expect)
    time = _event_time(attrs, ce_type)
    if verify is not None:
        verify(RawEvent(attributes=attrs, key=key, value=value, headers=hdrs))
    try:
        body = (
            model.model_validate_json(data)
            if isinstance(data, bytes)
            else model.model_validate(data)
        )
    except ValidationError as exc:
        withhold = any(error["type"] == BSN_REFUSED for error in exc.errors())
        raise EnvelopeError(
            "body", f"{ce_type}: {describe_validation_error(exc)}", ce_type, withhold=withhold
        ) from None

    id_field = "request_id" if hasattr(body, "request_id") else "sweep_id"
    body_key = getattr(body, id_field, None)
    if key is not None and body_key is not None and key.decode("utf-8", "replace") != body_key:
        raise EnvelopeError(
            "body",
            f"message key differs from the body's {id_field}; key events by {id_field}",
            ce_type,
        )
    return Envelope(id=attrs["id"], source=attrs["source"], type=ce_type, time=time, body=body)


def _attributes_and_data(value: bytes, hdrs: dict[str, str]) -> tuple[dict[str, str], object]:
    """The CloudEvents attributes and the data, in structured or binary content mode."""
    content_type = hdrs.get("content-type", "").split(";")[0].strip().lower()
    if content_type == STRUCTURED:
        return _structured(value)
    if "ce_type" in hdrs or "ce_specversion" in hdrs:
        if content_type and content_type != JSON:
            raise EnvelopeError(
                "envelope", f"content-type {_quote(content_type)} is not supported; use {JSON!r}"
            )
        return {k[3:]: v for k, v in hdrs.items() if k.startswith("ce_")}, value
    raise EnvelopeError(
        "envelope",
        "not a CloudEvent: set headers ce_specversion=1.0, ce_id, ce_source, ce_type "
        f"(binary mode) or content-type {STRUCTURED!r} with the whole event as the value",
    )


def _check_attributes(attrs: dict[str, str]) -> None:
    """Required attributes present, none too long, and the one spec version we speak."""
    for name in ("specversion", "id", "source", "type"):
        if not attrs.get(name):
            raise EnvelopeError("envelope", f"CloudEvents attribute {name!r} is missing or empty")
    for name in ("specversion", "id", "source", "type", "time"):
        if len(attrs.get(name, "")) > ATTRIBUTE_LIMIT:
            raise EnvelopeError(
                "envelope",
                f"CloudEvents attribute {name!r} is longer than {ATTRIBUTE_LIMIT} characters",
            )
    if attrs["specversion"] != SPEC_VERSION:
        raise EnvelopeError(
            "envelope", f"specversion {_quote(attrs['specversion'])} is not supported; use '1.0'"
        )


def _model_of(ce_type: str, expect: tuple[type[BaseModel], ...] | None) -> type[BaseModel]:
    """The body model of an event type, if it is known and belongs on this topic."""
    model = EVENT_TYPES.get(ce_type)
    if model is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise EnvelopeError(
            "envelope", f"unknown event type {_quote(ce_type)}; known: {known}", ce_type
        )
    if expect is not None and model not in expect:
        allowed = ", ".join(TYPE_OF[m] for m in expect)
        raise EnvelopeError(
            "envelope",
            f"event type {_quote(ce_type)} does not belong on this topic; expected {allowed}",
            ce_type,
        )
    return model


def _event_time(attrs: dict[str, str], ce_type: str) -> datetime | None:
    """The optional `time` attribute, which RFC 3339 requires to carry an offset."""
    if not attrs.get("time"):
        return None
    try:
        time = datetime.fromisoformat(attrs["time"].replace("Z", "+00:00"))
    except ValueError:
        time = None
    if time is None or time.tzinfo is None:
        raise EnvelopeError("envelope", "CloudEvents attribute 'time' is not RFC 3339", ce_type)
    return time


def _structured(value: bytes) -> tuple[dict[str, str], object]:
    # pydantic's parser, not `json`: that one raises RecursionError on deep nesting and a
    # plain ValueError on integers of over 4300 digits, and lets lone surrogates through.
    try:
        event = pydantic_core.from_json(value)
    except ValueError as exc:
        raise EnvelopeError(
            "envelope", f"structured CloudEvent is not valid JSON ({str(exc)[:200]})"
        ) from None
    if not isinstance(event, dict):
        raise EnvelopeError("envelope", "structured CloudEvent must be a JSON object")
    if "data" not in event:
        raise EnvelopeError("envelope", "structured CloudEvent has no 'data' member")
    attrs = {k: str(v) for k, v in event.items() if k != "data" and v is not None}
    return attrs, event["data"]


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """Name each invalid field and what is wrong with it, never echoing the input value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False)[:limit]:
        location = ".".join(str(p) for p in error["loc"]) or "(body)"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


__all__ = [
    "EVENT_TYPES",
    "TYPE_OF",
    "Envelope",
    "EnvelopeError",
    "KafkaMessage",
    "RawEvent",
    "dead_letter_for",
    "decode",
    "describe_validation_error",
    "encode",
    "header_dict",
]
