"""Hypothesis strategies for raw Kafka records that are wrong in every way a producer can be.

Each record says which topic it is for and which dead-letter stages may refuse it. Every
record made here is invalid for its topic (the decode-level fuzz test checks that), so on a
real system each one must end as exactly one dead letter.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from schemas.envelope import SIGNATURE_HEADER, STRUCTURED, KafkaMessage, encode
from schemas.events import (
    Identifier,
    OutcomeStatus,
    RequestSubmitted,
    RequestType,
    Subject,
    TaskDispatched,
    TaskOutcome,
)
from schemas.primitives.signing import RequestSigner
from schemas.topics import OUTCOMES, REQUESTS, TASKS
from tests import factories

MEGABYTE = "x" * (1024 * 1024)
EMAIL = "fuzz.subject@example.nl"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class FuzzRecord:
    """One raw record to publish, and the dead-letter stages allowed to refuse it."""

    topic: str
    kind: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    stages: frozenset[str] = frozenset({"envelope"})
    request_id: str | None = None  # when it names one: no task may ever be dispatched for it

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep megabytes out
        size = len(self.value) if self.value is not None else None
        return f"FuzzRecord({self.topic}, {self.kind}, key={self.key!r:.60}, value={size} bytes)"


def request_body(request_id: str) -> dict[str, Any]:
    """A valid request body as JSON data."""
    return factories.request(request_id, EMAIL, received_at=NOW, requested_by="fuzz").model_dump(
        mode="json"
    )


def task_body(request_id: str) -> dict[str, Any]:
    """A valid task body (for a system nobody serves) as JSON data."""
    return TaskDispatched(
        request_id=request_id,
        task_id=f"{request_id}/crm",
        system="crm",
        action=RequestType.ACCESS,
        subject=Subject(identifiers=[Identifier(type="email", value=EMAIL)]),
        deadline=NOW + timedelta(days=30),
        dispatched_at=NOW,
    ).model_dump(mode="json")


def outcome_body(request_id: str) -> dict[str, Any]:
    """A valid outcome body (for a task nobody dispatched) as JSON data."""
    return TaskOutcome(
        request_id=request_id,
        task_id=f"{request_id}/crm",
        system="crm",
        action=RequestType.ACCESS,
        status=OutcomeStatus.COMPLETED,
        completed_at=NOW,
    ).model_dump(mode="json")


#: Per topic: the CloudEvents type, a valid body, fields that must be strings (or objects).
_TOPICS: dict[str, tuple[str, Any, tuple[str, ...], tuple[str, ...]]] = {
    REQUESTS.name: (
        "dsr.request.submitted.v1",
        request_body,
        ("request_id", "requested_by", "type"),
        ("request_id", "type", "subject", "received_at", "requested_by"),
    ),
    TASKS.name: (
        "dsr.task.dispatched.v1",
        task_body,
        ("request_id", "task_id", "system", "action"),
        ("request_id", "task_id", "system", "action", "subject", "deadline", "dispatched_at"),
    ),
    OUTCOMES.name: (
        "dsr.task.outcome.v1",
        outcome_body,
        ("request_id", "task_id", "system", "status"),
        ("request_id", "task_id", "system", "action", "status", "completed_at"),
    ),
}

#: JSON values that are no string (nor anything pydantic would turn into one).
not_a_string = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
junk_headers = st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=64)), max_size=6).map(
    list
)
# Unknown CloudEvents types: nothing in our EVENT_TYPES (a few near misses, then anything).
unknown_types = st.one_of(
    st.sampled_from(
        ["dsr.request.submitted.v2", "dsr.request.submitted", "DSR.REQUEST.SUBMITTED.V1", "x"]
    ),
    st.text(min_size=1, max_size=40).filter(lambda t: not t.startswith("dsr.")),
)


class Records:
    """Strategies for invalid records on one topic; request events signed by `signer`."""

    def __init__(self, signer: RequestSigner, run: str = "") -> None:
        self.signer = signer
        self.run = run or uuid.uuid4().hex[:6]

    def request_ids(self) -> st.SearchStrategy[str]:
        """Fresh request ids (a counter, so every record has its own)."""
        return st.integers(0, 10**9).map(lambda n: f"fz-{self.run}-{n}-{uuid.uuid4().hex[:6]}")

    def _message(
        self, topic: str, body: Any, request_id: str, *, sign: bool, **headers: str
    ) -> KafkaMessage:
        ce_type, _, _, _ = _TOPICS[topic]
        value = body if isinstance(body, bytes) else json.dumps(body).encode()
        template = encode(
            RequestSubmitted.model_validate(request_body(request_id)), source="fuzz", time=NOW
        )
        base = dict(template.headers) | {"ce_type": ce_type.encode()}
        for name, text in headers.items():
            base[name] = text.encode("utf-8", "surrogatepass")
        message = KafkaMessage(request_id.encode(), value, list(base.items()))
        if sign and topic == REQUESTS.name:
            with contextlib.suppress(ValueError):  # a line break cannot be signed: unsigned
                message = self.signer.sign(message)
        return message

    def _record(
        self, topic: str, kind: str, message: KafkaMessage, stages: set[str], request_id: str
    ) -> FuzzRecord:
        return FuzzRecord(
            topic,
            kind,
            message.key,
            message.value,
            list(message.headers),
            frozenset(stages),
            request_id,
        )

    def _body_stage(self, topic: str) -> set[str]:
        # Outcomes also reach the lifecycle, which refuses unknown tasks ("process").
        return {"body", "process"} if topic == OUTCOMES.name else {"body"}

    def random_bytes(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """Any bytes, any headers, any key (or none)."""
        return st.builds(
            lambda key, value, headers: FuzzRecord(topic, "random-bytes", key, value, headers),
            st.one_of(st.none(), st.binary(max_size=40)),
            st.binary(max_size=2000),
            junk_headers,
        )

    def tombstone(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """A record without a value."""
        return st.builds(
            lambda key: FuzzRecord(topic, "tombstone", key, None),
            st.binary(min_size=1, max_size=20),
        )

    def invalid_utf8(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """Proper (signed) headers, a body that is not UTF-8."""

        def build(request_id: str, junk: bytes) -> FuzzRecord:
            body = b'{"request_id": "' + b"\xff\xfe" + junk + b'"}'
            message = self._message(topic, body, request_id, sign=True)
            return self._record(topic, "invalid-utf8", message, {"body"}, request_id)

        return st.builds(build, self.request_ids(), st.binary(max_size=50))

    def wrong_types(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """A valid body with one string field given another JSON type."""
        _, make, strings, _ = _TOPICS[topic]

        def build(request_id: str, name: str, value: Any) -> FuzzRecord:
            body = make(request_id) | {name: value}
            message = self._message(topic, body, request_id, sign=True)
            return self._record(topic, f"wrong-type:{name}", message, {"body"}, request_id)

        return st.builds(build, self.request_ids(), st.sampled_from(strings), not_a_string)

    def missing_fields(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """A valid body without one or more required fields."""
        _, make, _, required = _TOPICS[topic]

        def build(request_id: str, dropped: list[str]) -> FuzzRecord:
            body = {k: v for k, v in make(request_id).items() if k not in dropped}
            message = self._message(topic, body, request_id, sign=True)
            stages = {"body"} if "request_id" in dropped else self._body_stage(topic)
            return self._record(topic, "missing-fields", message, stages, request_id)

        return st.builds(
            build,
            self.request_ids(),
            st.lists(st.sampled_from(required), min_size=1, max_size=3, unique=True),
        )

    def huge_field(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """A 1 MB string in a body field, a CloudEvents attribute or the key."""
        _, make, strings, _ = _TOPICS[topic]

        def in_body(request_id: str, name: str) -> FuzzRecord:
            body = make(request_id) | {name: MEGABYTE}
            message = self._message(topic, body, request_id, sign=True)
            return self._record(topic, f"huge-body:{name}", message, {"body"}, request_id)

        def in_header(request_id: str, name: str) -> FuzzRecord:
            message = self._message(topic, make(request_id), request_id, sign=False)
            message = KafkaMessage(
                message.key, message.value, [*message.headers, (name, MEGABYTE.encode())]
            )
            return self._record(topic, f"huge-header:{name}", message, {"envelope"}, request_id)

        def in_key(request_id: str) -> FuzzRecord:
            message = self._message(topic, make(request_id), request_id, sign=True)
            message = KafkaMessage(MEGABYTE.encode(), message.value, message.headers)
            stages = {"signature"} if topic == REQUESTS.name else {"body"}
            return self._record(topic, "huge-key", message, stages, request_id)

        return st.one_of(
            st.builds(in_body, self.request_ids(), st.sampled_from(strings)),
            st.builds(
                in_header, self.request_ids(), st.sampled_from(["ce_source", "ce_id", "ce_type"])
            ),
            st.builds(in_key, self.request_ids()),
        )

    def unknown_specversion(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """CloudEvents versions we do not speak."""
        _, make, _, _ = _TOPICS[topic]

        def build(request_id: str, version: str) -> FuzzRecord:
            message = self._message(
                topic, make(request_id), request_id, sign=True, ce_specversion=version
            )
            return self._record(topic, "unknown-specversion", message, {"envelope"}, request_id)

        versions = st.one_of(
            st.sampled_from(["0.3", "1.1", "2.0", "1.0 ", "v1.0"]),
            st.text(min_size=1, max_size=10).filter(lambda v: v != "1.0"),
        )
        return st.builds(build, self.request_ids(), versions)

    def unknown_event_type(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """Event types that do not exist, or belong on another topic."""
        _, make, _, _ = _TOPICS[topic]
        elsewhere = [t for name, (t, _, _, _) in _TOPICS.items() if name != topic]

        def build(request_id: str, ce_type: str) -> FuzzRecord:
            message = self._message(topic, make(request_id), request_id, sign=True, ce_type=ce_type)
            return self._record(topic, "unknown-type", message, {"envelope"}, request_id)

        return st.builds(
            build, self.request_ids(), st.one_of(unknown_types, st.sampled_from(elsewhere))
        )

    def unknown_request_type(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """A request type (or task action) that is not a right."""
        _, make, _, _ = _TOPICS[topic]
        name = "type" if topic == REQUESTS.name else "action"
        rights = {t.value for t in RequestType}

        def build(request_id: str, kind: str) -> FuzzRecord:
            body = make(request_id) | {name: kind}
            message = self._message(topic, body, request_id, sign=True)
            return self._record(topic, "unknown-request-type", message, {"body"}, request_id)

        kinds = st.one_of(
            st.sampled_from(["teleport", "ACCESS", "erase", "access "]),
            st.text(max_size=20).filter(lambda k: k not in rights),
        )
        return st.builds(build, self.request_ids(), kinds)

    def structured_junk(self, topic: str) -> st.SearchStrategy[FuzzRecord]:
        """Structured mode with JSON that breaks parsers: deep nesting, huge numbers."""
        junk = st.one_of(
            st.integers(50, 5000).map(lambda n: b"[" * n + b"]" * n),
            st.integers(4000, 6000).map(lambda n: b"1" * n),
            st.integers(4000, 6000).map(
                lambda n: b'{"specversion":"1.0","id":' + b"9" * n + b',"data":{}}'
            ),
            st.just(b'{"specversion": "1.0", "data": "\\ud800"}'),
            st.binary(max_size=200),
        )
        return st.builds(
            lambda key, value: FuzzRecord(
                topic, "structured-junk", key, value, [("content-type", STRUCTURED.encode())]
            ),
            st.one_of(st.none(), st.binary(max_size=20)),
            junk,
        )

    def unsigned(self) -> st.SearchStrategy[FuzzRecord]:
        """A valid-looking request without a signature."""

        def build(request_id: str) -> FuzzRecord:
            message = self._message(REQUESTS.name, request_body(request_id), request_id, sign=False)
            return self._record(REQUESTS.name, "unsigned", message, {"signature"}, request_id)

        return st.builds(build, self.request_ids())

    def forged(self) -> st.SearchStrategy[FuzzRecord]:
        """A valid-looking request whose signature header is anything but right."""

        def build(request_id: str, header: bytes) -> FuzzRecord:
            message = self._message(REQUESTS.name, request_body(request_id), request_id, sign=True)
            headers = [(k, header if k == SIGNATURE_HEADER else v) for k, v in message.headers]
            return FuzzRecord(
                REQUESTS.name,
                "forged",
                message.key,
                message.value,
                headers,
                frozenset({"signature"}),
                request_id,
            )

        signer = self.signer
        headers = st.one_of(
            st.binary(max_size=120),
            st.binary(min_size=32, max_size=32).map(
                lambda sig: (
                    (
                        f"v1;alg={signer.key.algorithm};publisher={signer.publisher};"
                        f"kid={signer.key_id};sig="
                    ).encode()
                    + base64.b64encode(sig + sig)
                )
            ),
            st.text(max_size=60).map(lambda t: ("v1;" + t).encode("utf-8", "surrogatepass")),
        )
        return st.builds(build, self.request_ids(), headers)

    def any_record(self, topics: tuple[str, ...]) -> st.SearchStrategy[FuzzRecord]:
        """Any invalid record on any of `topics`."""
        choices: list[st.SearchStrategy[FuzzRecord]] = []
        for topic in topics:
            choices += [
                self.random_bytes(topic),
                self.tombstone(topic),
                self.invalid_utf8(topic),
                self.wrong_types(topic),
                self.missing_fields(topic),
                self.huge_field(topic),
                self.unknown_specversion(topic),
                self.unknown_event_type(topic),
                self.unknown_request_type(topic),
                self.structured_junk(topic),
            ]
            if topic == REQUESTS.name:
                choices += [self.unsigned(), self.forged()]
        return st.one_of(choices)


__all__ = ["MEGABYTE", "FuzzRecord", "Records", "request_body"]
