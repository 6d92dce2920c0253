"""A BSN sent to the orchestrator is dead-lettered and reaches no topic, file or log (Art. 46 UAVG).

Signed requests carrying a BSN (as the identifier type, as a customer number that passes the
11-proef, and as a rectification's new value) are published as raw bytes, as a non-Python
producer would: our own client refuses to build them. The test then reads every topic on the
broker, every file in the data dir and every log file, and looks for each BSN as digits and as
it was written.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid

import pytest
from kafka import KafkaProducer

from schemas.envelope import KafkaMessage, encode
from schemas.events import DeadLetter, FieldChange, RequestStatusChanged, passes_bsn_check
from schemas.topics import DEAD_LETTER, REQUESTS, STATUS
from tests.e2e.conftest import System, read_topic
from tests.e2e.test_pipeline import ANNA, new_request
from tests.e2e.test_shredding import _raw, _topics

pytestmark = pytest.mark.broker


def _new_bsn(rng: random.Random) -> str:
    """A number passing the 11-proef that no other test uses."""
    while True:
        candidate = f"{rng.randrange(10**8, 10**9):09d}"
        if passes_bsn_check(candidate):
            return candidate


def _forms(bsn: str) -> list[bytes]:
    """A BSN as digits and in the ways it is written (1234.56.782, 123 456 782)."""
    return [
        f"{bsn}".encode(),
        f"{bsn[:4]}.{bsn[4:6]}.{bsn[6:]}".encode(),
        f"{bsn[:3]} {bsn[3:6]} {bsn[6:]}".encode(),
    ]


def _bodies(rng: random.Random) -> dict[str, tuple[str, dict[str, object]]]:
    """Request id -> (its BSN, a request body carrying it)."""
    bodies: dict[str, tuple[str, dict[str, object]]] = {}
    marker = uuid.uuid4().hex[:8]
    as_type, as_customer, as_change = _new_bsn(rng), _new_bsn(rng), _new_bsn(rng)

    body = new_request("access", ANNA).model_dump(mode="json")
    body["subject"] = {"identifiers": [{"type": "BSN", "value": as_type}]}
    bodies[f"bsn-type-{marker}"] = (as_type, body)

    body = new_request("erasure", ANNA).model_dump(mode="json")
    written = f"{as_customer[:4]}.{as_customer[4:6]}.{as_customer[6:]}"
    body["subject"]["identifiers"].append({"type": "customer_id", "value": written})
    bodies[f"bsn-customer-{marker}"] = (as_customer, body)

    change = FieldChange(field="phone", value="+31687654321")
    body = new_request("rectification", ANNA, changes=[change]).model_dump(mode="json")
    body["changes"] = [{"field": "customer_ref", "value": as_change}]
    bodies[f"bsn-change-{marker}"] = (as_change, body)

    for request_id, (_, body) in bodies.items():
        body["request_id"] = request_id
    return bodies


def _publish_signed(system: System, bodies: dict[str, tuple[str, dict[str, object]]]) -> None:
    """Publish each body as a CloudEvent signed by a publisher the orchestrator knows."""
    headers = encode(new_request("access", ANNA), source="tests").headers
    producer = KafkaProducer(**system.kafka.kafka_python_options())
    try:
        for request_id, (_, body) in bodies.items():
            message = KafkaMessage(request_id.encode(), json.dumps(body).encode(), headers)
            signed = system.signing.signer().sign(message)
            producer.send(REQUESTS.name, key=signed.key, value=signed.value, headers=signed.headers)
        producer.flush(10)
    finally:
        producer.close()


def _dead_letters(system: System, keys: set[str], timeout: float = 60) -> dict[str, DeadLetter]:
    """The dead letters keyed `keys`, once all of them are on the topic."""
    deadline = time.monotonic() + timeout
    while True:
        system.stack.check()
        letters = {
            e.body.key: e.body
            for _, e in read_topic(system.kafka, DEAD_LETTER.name)
            if e is not None and isinstance(e.body, DeadLetter) and e.body.key in keys
        }
        if set(letters) == keys or time.monotonic() > deadline:
            return letters
        time.sleep(0.5)


@pytest.fixture(scope="module")
def refused(
    running: System,
) -> tuple[dict[str, tuple[str, dict[str, object]]], dict[str, DeadLetter]]:
    """The BSN requests, published once, and their dead letters."""
    bodies = _bodies(random.Random(uuid.uuid4().int))
    _publish_signed(running, bodies)
    return bodies, _dead_letters(running, set(bodies))


def test_art_46_uavg_bsn_request_is_dead_lettered_with_the_rule_not_the_value(
    running: System,
    refused: tuple[dict[str, tuple[str, dict[str, object]]], dict[str, DeadLetter]],
) -> None:
    bodies, letters = refused
    assert set(letters) == set(bodies), "every BSN request is dead-lettered"
    for request_id, (bsn, _) in bodies.items():
        letter = letters[request_id]
        assert letter.stage == "body" and letter.source_topic == REQUESTS.name
        assert "Art. 46 UAVG" in letter.reason and "BSN" in letter.reason, letter.reason
        assert not [f for f in _forms(bsn) if f.decode() in letter.reason], letter.reason
    # Refused before the lifecycle: no status event, so no dashboard ever shows them.
    statuses = [
        e.body.request_id
        for _, e in read_topic(running.kafka, STATUS.name)
        if e is not None and isinstance(e.body, RequestStatusChanged)
    ]
    assert not set(bodies) & set(statuses)
    running.stack.check()  # no worker died


def test_art_46_uavg_bsn_reaches_no_topic_file_or_log(
    running: System,
    refused: tuple[dict[str, tuple[str, dict[str, object]]], dict[str, DeadLetter]],
) -> None:
    """Every topic but the publisher's own requests topic, every data file and log file."""
    bodies, letters = refused
    assert set(letters) == set(bodies)
    secrets = [form for bsn, _ in bodies.values() for form in _forms(bsn)]

    def holds(data: bytes) -> list[bytes]:
        return [s for s in secrets if s in data]

    # The scan can see a BSN: the requests topic, written by the publisher, holds them.
    on_requests = b"".join(_raw(r) for r, _ in read_topic(running.kafka, REQUESTS.name))
    assert all(any(f in on_requests for f in _forms(bsn)) for bsn, _ in bodies.values())

    topics = _topics(running.kafka) - {REQUESTS.name}
    assert {DEAD_LETTER.name, STATUS.name} <= topics
    for topic in sorted(topics):
        for record, _ in read_topic(running.kafka, topic):
            found = holds(_raw(record))
            assert not found, f"a BSN on {topic} at offset {record.offset}"  # type: ignore[attr-defined]

    logs = [p for p in running.log_dir.rglob("*") if p.is_file()]
    # The scan sees the log line of the refusal: it names the rule, not the number.
    assert any(b"Art. 46 UAVG" in p.read_bytes() for p in logs)
    for path in [*running.data_dir.rglob("*"), *logs]:
        if path.is_file():
            assert not holds(path.read_bytes()), f"a BSN in {path}"


def test_art_46_uavg_bsn_dead_letter_does_not_keep_the_value(
    refused: tuple[dict[str, tuple[str, dict[str, object]]], dict[str, DeadLetter]],
) -> None:
    bodies, letters = refused
    for request_id, (bsn, _) in bodies.items():
        letter = letters[request_id]
        kept = base64.b64decode(letter.value_base64)
        assert not [f for f in _forms(bsn) if f in kept], f"{request_id}: the BSN is kept"
        assert letter.value_withheld and letter.value_base64 == ""
        assert (letter.source_topic, letter.offset) != ("", -1)  # where it was, still said
