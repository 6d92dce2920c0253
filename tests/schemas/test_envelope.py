"""The CloudEvents envelope: round trips, and every way a message can be rejected."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from schemas.envelope import (
    EVENT_TYPES,
    JSON,
    STRUCTURED,
    TYPE_OF,
    EnvelopeError,
    decode,
    encode,
    header_dict,
)
from schemas.events import DeadLetter, RequestSubmitted, TaskOutcome
from schemas.topics import ALL_TOPICS, OUTCOMES, REQUESTS, STATUS
from tests.schemas.conftest import NOW, REQUEST_ID, request_submitted

SECRET_EMAIL = "Geheim.Persoon@Example.NL"


def _binary(body: BaseModel | None = None, **kwargs: Any) -> tuple[bytes, list[tuple[str, bytes]]]:
    message = encode(body or request_submitted(), source="web-form", **kwargs)
    return message.value, message.headers


def _with_header(headers: list[tuple[str, bytes]], name: str, value: bytes | None) -> list:
    """The headers with one replaced (or removed when value is None)."""
    kept = [(k, v) for k, v in headers if k != name]
    return kept if value is None else [*kept, (name, value)]


def _structured(data: object, **attrs: object) -> tuple[bytes, list[tuple[str, bytes]]]:
    event = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "portal",
        "type": "dsr.request.submitted.v1",
        "time": "2026-03-10T12:00:00Z",
        "datacontenttype": JSON,
        **attrs,
        "data": data,
    }
    event = {k: v for k, v in event.items() if v is not None or k == "data"}
    return json.dumps(event).encode(), [("content-type", STRUCTURED.encode())]


def _reject(value: bytes | None, headers: object, **kwargs: Any) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        decode(value, headers, **kwargs)
    return caught.value


# --- encode ---------------------------------------------------------------------------------


def test_encode_writes_binary_mode_headers_and_keys_by_request_id() -> None:
    message = encode(request_submitted(), source="web-form", event_id="evt-7", time=NOW)
    assert message.key == REQUEST_ID.encode()
    assert header_dict(message.headers) == {
        "ce_specversion": "1.0",
        "ce_id": "evt-7",
        "ce_source": "web-form",
        "ce_type": "dsr.request.submitted.v1",
        "ce_time": "2026-03-10T12:00:00Z",
        "content-type": JSON,
    }
    assert json.loads(message.value)["request_id"] == REQUEST_ID


def test_encode_generates_unique_ids_and_a_utc_time() -> None:
    first, second = (header_dict(_binary()[1]) for _ in range(2))
    assert first["ce_id"] != second["ce_id"]
    assert first["ce_time"].endswith("Z")


def test_encode_key_can_be_overridden_and_is_absent_without_request_id(
    samples: dict[str, BaseModel],
) -> None:
    assert encode(request_submitted(), source="s", key="other").key == b"other"
    letter = samples["dsr.deadletter.v1"]
    assert isinstance(letter, DeadLetter)
    assert encode(letter.model_copy(update={"key": None}), source="s").key is None


def test_every_event_type_maps_to_one_model() -> None:
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)
    assert all(TYPE_OF[model] == name for name, model in EVENT_TYPES.items())
    on_topics = {model for topic in ALL_TOPICS for model in topic.events}
    assert on_topics == set(EVENT_TYPES.values())


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("ce_type", sorted(EVENT_TYPES))
def test_binary_mode_round_trip(ce_type: str, samples: dict[str, BaseModel]) -> None:
    body = samples[ce_type]
    message = encode(body, source="tests", event_id="evt-1", time=NOW)
    envelope = decode(message.value, message.headers, key=message.key)
    assert envelope.body == body
    assert type(envelope.body) is EVENT_TYPES[ce_type]
    assert (envelope.id, envelope.source, envelope.type) == ("evt-1", "tests", ce_type)
    assert envelope.time == NOW


@pytest.mark.parametrize("ce_type", sorted(EVENT_TYPES))
def test_structured_mode_round_trip(ce_type: str, samples: dict[str, BaseModel]) -> None:
    body = samples[ce_type]
    value, headers = _structured(body.model_dump(mode="json"), type=ce_type)
    envelope = decode(
        value,
        headers,
        key=(getattr(body, "request_id", None) or getattr(body, "sweep_id", "x")).encode(),
    )
    assert envelope.body == body
    assert (envelope.id, envelope.source, envelope.type) == ("evt-1", "portal", ce_type)
    assert envelope.time == NOW


def test_structured_mode_content_type_may_carry_parameters() -> None:
    value, _ = _structured(request_submitted().model_dump(mode="json"))
    headers = [("content-type", b"Application/CloudEvents+JSON; charset=utf-8")]
    assert decode(value, headers).body == request_submitted()


def test_binary_mode_accepts_json_with_charset_and_no_content_type() -> None:
    value, headers = _binary()
    with_charset = _with_header(headers, "content-type", b"application/json; charset=utf-8")
    assert decode(value, with_charset).body == request_submitted()
    assert decode(value, _with_header(headers, "content-type", None)).body == request_submitted()


def test_time_is_optional_and_offsets_are_kept() -> None:
    value, headers = _binary()
    assert decode(value, _with_header(headers, "ce_time", None)).time is None
    plus_two = _with_header(headers, "ce_time", b"2026-03-10T14:00:00+02:00")
    decoded = decode(value, plus_two).time
    assert decoded == NOW
    assert decoded is not None and decoded.utcoffset() == timedelta(hours=2)
    cet = datetime(2026, 3, 10, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert decode(*_binary(time=cet)).time == NOW


def test_headers_from_any_client_shape() -> None:
    value, headers = _binary()
    as_tuple = tuple((k, bytearray(v)) for k, v in headers)  # aiokafka: tuple of tuples
    assert decode(value, as_tuple).body == request_submitted()
    assert header_dict([("a", b"\xff"), ("b", None), ("c", "text")]) == {"a": "\\xff", "c": "text"}
    assert header_dict(None) == {}


def test_key_is_optional() -> None:
    assert decode(*_binary(), key=None).body == request_submitted()


# --- rejected envelopes ---------------------------------------------------------------------


def test_tombstone_is_rejected() -> None:
    error = _reject(None, _binary()[1])
    assert error.stage == "envelope"
    assert "tombstone" in str(error)


@pytest.mark.parametrize("headers", [[], None, [("content-type", JSON.encode())]])
def test_message_without_cloudevents_headers_says_how_to_fix(headers: object) -> None:
    error = _reject(_binary()[0], headers)
    assert error.stage == "envelope"
    assert "ce_specversion=1.0" in str(error)
    assert STRUCTURED in str(error)


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type"])
def test_missing_required_attribute_is_named(name: str) -> None:
    value, headers = _binary()
    for replacement in (None, b""):
        error = _reject(value, _with_header(headers, f"ce_{name}", replacement))
        assert error.stage == "envelope"
        assert f"'{name}' is missing or empty" in str(error)


def test_missing_attribute_in_structured_mode_is_named() -> None:
    error = _reject(*_structured({}, source=None))
    assert error.stage == "envelope"
    assert "'source' is missing" in str(error)


def test_wrong_specversion_is_rejected() -> None:
    value, headers = _binary()
    error = _reject(value, _with_header(headers, "ce_specversion", b"0.3"))
    assert error.stage == "envelope"
    assert "'0.3' is not supported; use '1.0'" in str(error)
    assert "not supported" in str(_reject(*_structured({}, specversion="2.0")))


def test_unknown_type_lists_the_known_ones() -> None:
    value, headers = _binary()
    error = _reject(value, _with_header(headers, "ce_type", b"dsr.request.submitted.v9"))
    assert error.stage == "envelope"
    assert error.ce_type == "dsr.request.submitted.v9"
    assert "unknown event type 'dsr.request.submitted.v9'" in str(error)
    assert all(name in str(error) for name in EVENT_TYPES)


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [(OUTCOMES, True), (REQUESTS, False), (STATUS, False)],
)
def test_type_not_allowed_on_topic(topic: Any, allowed: bool, samples: dict) -> None:
    outcome = samples["dsr.task.outcome.v1"]
    assert isinstance(outcome, TaskOutcome)
    message = encode(outcome, source="crm-connector")
    if allowed:
        assert decode(message.value, message.headers, expect=topic.events).body == outcome
        return
    error = _reject(message.value, message.headers, expect=topic.events)
    assert error.stage == "envelope"
    assert error.ce_type == "dsr.task.outcome.v1"
    assert "does not belong on this topic" in str(error)
    assert all(TYPE_OF[model] in str(error) for model in topic.events)


def test_unsupported_content_type_in_binary_mode() -> None:
    value, headers = _binary()
    error = _reject(value, _with_header(headers, "content-type", b"application/avro"))
    assert error.stage == "envelope"
    assert "'application/avro' is not supported" in str(error)


@pytest.mark.parametrize("stamp", [b"yesterday", b"2026-03-10T12:00:00", b"2026-03-10"])
def test_time_must_be_rfc3339_with_offset(stamp: bytes) -> None:
    value, headers = _binary()
    error = _reject(value, _with_header(headers, "ce_time", stamp))
    assert error.stage == "envelope"
    assert "'time' is not RFC 3339" in str(error)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b'{"data": {"email": "' + SECRET_EMAIL.encode(), "not valid JSON"),
        (b"\xff\xfe" + SECRET_EMAIL.encode(), "not valid JSON"),
        (json.dumps([SECRET_EMAIL]).encode(), "must be a JSON object"),
        (json.dumps({"specversion": "1.0", "x": SECRET_EMAIL}).encode(), "no 'data' member"),
    ],
)
def test_invalid_structured_event(value: bytes, message: str) -> None:
    error = _reject(value, [("content-type", STRUCTURED.encode())])
    assert error.stage == "envelope"
    assert message in str(error)
    assert SECRET_EMAIL.lower() not in str(error).lower()


# --- rejected bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b'{"request_id": "web-1", "subject": {"identifiers": [{"type": "email", "value": "'
        + SECRET_EMAIL.encode(),
        b"\xff\xfe" + SECRET_EMAIL.encode(),
        json.dumps(SECRET_EMAIL).encode(),
        b"",
    ],
)
def test_invalid_json_body(value: bytes) -> None:
    error = _reject(value, _binary()[1])
    assert error.stage == "body"
    assert error.ce_type == "dsr.request.submitted.v1"
    assert SECRET_EMAIL.lower() not in str(error).lower()


def _body(**changes: object) -> bytes:
    data = request_submitted().model_dump(mode="json")
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (
            _body(
                subject={
                    "identifiers": [{"type": "email", "value": SECRET_EMAIL.removesuffix(".NL")}]
                }
            ),
            "subject.identifiers.0",
        ),
        (_body(subject={"identifiers": [{"type": "phone", "value": SECRET_EMAIL}]}), "identifiers"),
        (_body(subject={"identifiers": []}), "subject.identifiers"),
        (_body(request_id="has spaces " + SECRET_EMAIL), "request_id"),
        (_body(type=SECRET_EMAIL), "type"),
        (_body(received_at=SECRET_EMAIL), "received_at"),
        (_body(received_at="2026-03-10T12:00:00"), "received_at"),
        (_body(jurisdiction=SECRET_EMAIL), "jurisdiction"),
        (_body(requested_by=None), "requested_by"),
        (_body(verification={"verified": True}), "verification"),
        (_body(unexpected=SECRET_EMAIL), "unexpected"),
    ],
)
def test_invalid_body_names_the_field_but_not_the_value(value: bytes, field: str) -> None:
    error = _reject(value, _binary()[1])
    assert error.stage == "body"
    assert error.ce_type == "dsr.request.submitted.v1"
    assert str(error).startswith("dsr.request.submitted.v1: ")
    assert field in str(error)
    assert SECRET_EMAIL.lower() not in str(error).lower()
    assert "Geheim" not in str(error)


def test_invalid_structured_body_is_a_body_error() -> None:
    data = request_submitted().model_dump(mode="json")
    data["subject"] = {"identifiers": [{"type": "email", "value": SECRET_EMAIL + "@"}]}
    error = _reject(*_structured(data))
    assert error.stage == "body"
    assert SECRET_EMAIL.lower() not in str(error).lower()


def test_many_errors_are_summarised() -> None:
    error = _reject(b'{"unexpected": 1}', _binary()[1])
    assert error.stage == "body"
    assert "and 1 more" in str(error)  # five required fields missing and one extra


def test_key_differing_from_request_id_is_rejected() -> None:
    value, headers = _binary()
    error = _reject(value, headers, key=b"web-2026-999999")
    assert error.stage == "body"
    assert error.ce_type == "dsr.request.submitted.v1"
    assert "key differs from the body's request_id" in str(error)
    assert "web-2026-999999" not in str(error)
    # Structured mode is held to the same rule.
    value, headers = _structured(request_submitted().model_dump(mode="json"))
    assert _reject(value, headers, key=b"other").stage == "body"


def test_dead_letters_have_no_request_id_so_any_key_is_accepted(
    samples: dict[str, BaseModel],
) -> None:
    message = encode(samples["dsr.deadletter.v1"], source="orchestrator", key="anything")
    assert decode(message.value, message.headers, key=message.key).type == "dsr.deadletter.v1"


def test_decoded_body_is_normalised_like_the_model() -> None:
    data = request_submitted().model_dump(mode="json")
    data["subject"] = {"identifiers": [{"type": "email", "value": f"  {SECRET_EMAIL} "}]}
    body = decode(json.dumps(data).encode(), _binary()[1]).body
    assert isinstance(body, RequestSubmitted)
    assert body.subject.first("email") == SECRET_EMAIL.lower()
    assert body.received_at == NOW and body.received_at.tzinfo is not None
    assert body.received_at.astimezone(UTC) == NOW


def test_a_sweep_event_keyed_by_another_sweep_is_refused() -> None:
    """Sweep events are keyed by their sweep id, checked like request ids: the key decides
    the partition, and so which worker holds the sweep's state."""
    from datetime import UTC, datetime

    from schemas.envelope import EnvelopeError, decode, encode
    from schemas.sweeps import SweepApproved

    body = SweepApproved(sweep_id="sweep-a", approved_by="officer-1", approved_at=datetime.now(UTC))
    message = encode(body, source="test")
    assert message.key == b"sweep-a"
    assert decode(message.value, message.headers, key=message.key).body == body
    with pytest.raises(EnvelopeError, match="sweep_id"):
        decode(message.value, message.headers, key=b"sweep-b")
