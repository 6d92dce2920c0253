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
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from schemas.events import (
    DeadLetter,
    DeadlineExtended,
    IdentityVerified,
    RequestStatusChanged,
    RequestSubmitted,
    TaskDispatched,
    TaskOutcome,
)

SPEC_VERSION = "1.0"
JSON = "application/json"
STRUCTURED = "application/cloudevents+json"

#: CloudEvents `type` attribute -> body model. The version is part of the type.
EVENT_TYPES: dict[str, type[BaseModel]] = {
    "dsr.request.submitted.v1": RequestSubmitted,
    "dsr.request.identity_verified.v1": IdentityVerified,
    "dsr.request.deadline_extended.v1": DeadlineExtended,
    "dsr.task.dispatched.v1": TaskDispatched,
    "dsr.task.outcome.v1": TaskOutcome,
    "dsr.request.status_changed.v1": RequestStatusChanged,
    "dsr.deadletter.v1": DeadLetter,
}
TYPE_OF: dict[type[BaseModel], str] = {model: name for name, model in EVENT_TYPES.items()}


class EnvelopeError(ValueError):
    """A message is not a valid event; `stage` says whether the envelope or the body is wrong."""

    def __init__(self, stage: str, message: str, ce_type: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.ce_type = ce_type


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
    """Wrap a body model in a binary-mode CloudEvent keyed by its request id."""
    ce_type = TYPE_OF[type(body)]
    if key is None:
        key = getattr(body, "request_id", None)
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
    """Kafka headers (list of pairs, bytes values) as a dict of text; undecodable bytes escaped."""
    result: dict[str, str] = {}
    for name, raw in list(headers or []):  # type: ignore[call-overload]
        if isinstance(raw, bytes | bytearray):
            result[str(name)] = bytes(raw).decode("utf-8", errors="backslashreplace")
        elif raw is not None:
            result[str(name)] = str(raw)
    return result


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
    stage: Literal["envelope", "body", "process"],
    reason: str,
    ce_type: str | None = None,
) -> DeadLetter:
    """A dead letter keeping the original record unchanged (value base64-encoded)."""
    key = record.key.decode("utf-8", "replace") if record.key else None
    return DeadLetter(
        reason=reason,
        stage=stage,
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key if key and len(key) <= 256 else None,
        ce_type=ce_type,
        value_base64=base64.b64encode(record.value or b"").decode(),
        headers=header_dict(record.headers),
        failed_at=datetime.now(UTC),
    )


def decode(
    value: bytes | None,
    headers: object,
    *,
    key: bytes | None = None,
    expect: tuple[type[BaseModel], ...] | None = None,
) -> Envelope:
    """Validate a Kafka message as one of our CloudEvents; raise `EnvelopeError` saying why not."""
    if value is None:
        raise EnvelopeError("envelope", "message has no value (a tombstone?); expected an event")
    hdrs = header_dict(headers)
    content_type = hdrs.get("content-type", "").split(";")[0].strip().lower()
    if content_type == STRUCTURED:
        attrs, data = _structured(value)
    elif "ce_type" in hdrs or "ce_specversion" in hdrs:
        attrs = {k[3:]: v for k, v in hdrs.items() if k.startswith("ce_")}
        if content_type and content_type != JSON:
            raise EnvelopeError(
                "envelope", f"content-type {content_type!r} is not supported; use {JSON!r}"
            )
        data = value
    else:
        raise EnvelopeError(
            "envelope",
            "not a CloudEvent: set headers ce_specversion=1.0, ce_id, ce_source, ce_type "
            f"(binary mode) or content-type {STRUCTURED!r} with the whole event as the value",
        )

    for name in ("specversion", "id", "source", "type"):
        if not attrs.get(name):
            raise EnvelopeError("envelope", f"CloudEvents attribute {name!r} is missing or empty")
    if attrs["specversion"] != SPEC_VERSION:
        raise EnvelopeError(
            "envelope", f"specversion {attrs['specversion']!r} is not supported; use '1.0'"
        )
    ce_type = attrs["type"]
    model = EVENT_TYPES.get(ce_type)
    if model is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise EnvelopeError("envelope", f"unknown event type {ce_type!r}; known: {known}", ce_type)
    if expect is not None and model not in expect:
        allowed = ", ".join(TYPE_OF[m] for m in expect)
        raise EnvelopeError(
            "envelope",
            f"event type {ce_type!r} does not belong on this topic; expected {allowed}",
            ce_type,
        )
    time = None
    if attrs.get("time"):
        try:
            time = datetime.fromisoformat(attrs["time"].replace("Z", "+00:00"))
        except ValueError:
            time = None
        if time is None or time.tzinfo is None:  # RFC 3339 requires the offset
            raise EnvelopeError("envelope", "CloudEvents attribute 'time' is not RFC 3339", ce_type)
    try:
        body = (
            model.model_validate_json(data)
            if isinstance(data, bytes)
            else model.model_validate(data)
        )
    except ValidationError as exc:
        raise EnvelopeError(
            "body", f"{ce_type}: {describe_validation_error(exc)}", ce_type
        ) from None

    body_key = getattr(body, "request_id", None)
    if key is not None and body_key is not None and key.decode("utf-8", "replace") != body_key:
        raise EnvelopeError(
            "body",
            "message key differs from the body's request_id; key events by request_id",
            ce_type,
        )
    return Envelope(id=attrs["id"], source=attrs["source"], type=ce_type, time=time, body=body)


def _structured(value: bytes) -> tuple[dict[str, str], object]:
    try:
        event = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(
            "envelope", f"structured CloudEvent is not valid JSON ({exc.__class__.__name__})"
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
    "dead_letter_for",
    "decode",
    "describe_validation_error",
    "encode",
    "header_dict",
]
