"""The kafka-python publishing client, against the real embedded broker."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from orchestrator.intake.client import PublishError, RequestPublisher, publish_request
from orchestrator.intake.publishers import IssuedKey
from schemas.envelope import JSON, Envelope, decode, header_dict
from schemas.events import (
    Identifier,
    IdentityVerified,
    RequestSubmitted,
    RequestType,
    Subject,
    VerificationMethod,
)
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import RequestVerifier
from schemas.topics import REQUESTS

EMAIL = "anna.de.vries@example.nl"


def new_request(**changes: object) -> RequestSubmitted:
    """A valid, unverified access request with a fresh id."""
    data: dict[str, object] = {
        "request_id": f"test-{uuid.uuid4().hex[:12]}",
        "type": RequestType.ACCESS,
        "subject": Subject(identifiers=[Identifier(type="email", value=EMAIL)]),
        "received_at": datetime.now(UTC).replace(microsecond=0),
        "requested_by": "tests",
    }
    data.update(changes)
    return RequestSubmitted.model_validate(data)


def read_published(
    settings: KafkaSettings, request_id: str, count: int = 1, timeout: float = 20.0
) -> list[tuple[int, bytes | None, list[tuple[str, bytes]], Envelope]]:
    """Read the requests topic from the start until `count` events of this request are found."""
    consumer = KafkaConsumer(
        **settings.kafka_python_options(),
        enable_auto_commit=False,
        consumer_timeout_ms=500,
        request_timeout_ms=10_000,
    )
    found: list[tuple[int, bytes | None, list[tuple[str, bytes]], Envelope]] = []
    try:
        partitions = consumer.partitions_for_topic(REQUESTS.name) or set()
        assert partitions, f"topic {REQUESTS.name} has no partitions"
        assigned = [TopicPartition(REQUESTS.name, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(found) < count:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key != request_id.encode():
                        continue
                    envelope = decode(record.value, record.headers, key=record.key)
                    found.append((record.partition, record.key, list(record.headers), envelope))
    finally:
        consumer.close()
    assert len(found) >= count, f"found {len(found)} of {count} events for {request_id}"
    return found


def java_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for a key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def assert_cloudevent(headers: list[tuple[str, bytes]], ce_type: str, source: str) -> None:
    """Binary-mode CloudEvents headers, as the AsyncAPI document describes them."""
    attrs = header_dict(headers)
    assert attrs["ce_specversion"] == "1.0"
    assert attrs["ce_type"] == ce_type
    assert attrs["ce_source"] == source
    assert attrs["ce_id"]
    assert attrs["content-type"] == JSON


@pytest.mark.broker
def test_publish_reaches_the_requests_topic(kafka_settings: KafkaSettings) -> None:
    request = new_request()
    with RequestPublisher(kafka_settings, source="web-form") as publisher:
        publisher.publish(request)

    ((partition, key, headers, envelope),) = read_published(kafka_settings, request.request_id)
    assert envelope.body == request
    assert key == request.request_id.encode()
    assert envelope.type == "dsr.request.submitted.v1"
    assert envelope.source == "web-form"
    assert envelope.time is not None
    assert_cloudevent(headers, "dsr.request.submitted.v1", "web-form")
    assert partition == java_partition(request.request_id, kafka_settings.partitions)


@pytest.mark.broker
def test_verify_identity_follows_the_request(kafka_settings: KafkaSettings) -> None:
    request = new_request()
    verified = IdentityVerified(
        request_id=request.request_id,
        method=VerificationMethod.ID_DOCUMENT,
        verified_at=datetime.now(UTC).replace(microsecond=0),
        verified_by="desk-3",
    )
    with RequestPublisher(kafka_settings.require_bootstrap(), source="portal") as publisher:
        publisher.publish(request)
        publisher.verify_identity(verified)

    events = read_published(kafka_settings, request.request_id, count=2)
    assert [e.body for _, _, _, e in events] == [request, verified]
    assert len({partition for partition, _, _, _ in events}) == 1  # same key, same order
    assert_cloudevent(events[1][2], "dsr.request.identity_verified.v1", "portal")


@pytest.mark.broker
def test_publish_request_helper(kafka_settings: KafkaSettings) -> None:
    request = new_request(type=RequestType.ERASURE)
    publish_request(request, bootstrap=kafka_settings.require_bootstrap(), source="support-tool")
    ((_, _, _, envelope),) = read_published(kafka_settings, request.request_id)
    assert envelope.body == request
    assert envelope.source == "support-tool"


@pytest.mark.broker
def test_invalid_request_is_not_published_and_not_echoed(kafka_settings: KafkaSettings) -> None:
    # model_copy(update=...) skips validation; the publisher validates again.
    bad = new_request().model_copy(update={"type": RequestType.RECTIFICATION})
    with (
        RequestPublisher(kafka_settings, source="tests") as publisher,
        pytest.raises(PublishError) as caught,
    ):
        publisher.publish(bad)
    assert "rectification request needs 'changes'" in str(caught.value)
    assert "not published" in str(caught.value)
    assert EMAIL not in str(caught.value)
    assert caught.value.__cause__ is None  # pydantic's error would echo the input


@pytest.mark.broker
def test_wrong_argument_type_and_closed_publisher(kafka_settings: KafkaSettings) -> None:
    publisher = RequestPublisher(kafka_settings, source="tests")
    with pytest.raises(TypeError, match="expected a RequestSubmitted"):
        publisher.publish(new_request().model_dump())  # type: ignore[arg-type]
    publisher.close()
    publisher.close()
    with pytest.raises(PublishError, match="closed"):
        publisher.publish(new_request())


def test_unreachable_broker_is_a_clear_error() -> None:
    started = time.monotonic()
    with pytest.raises(PublishError) as caught:
        RequestPublisher("127.0.0.1:1", source="tests", timeout=1.0)
    assert "cannot connect to Kafka at 127.0.0.1:1" in str(caught.value)
    assert "DSR_KAFKA_BOOTSTRAP" in str(caught.value)
    assert time.monotonic() - started < 10


def test_missing_bootstrap_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(PublishError, match="DSR_KAFKA_BOOTSTRAP"):
        publish_request(new_request())
    with pytest.raises(ValueError, match="source"):
        RequestPublisher("127.0.0.1:1", source="")


def test_importing_the_client_does_not_import_faust_or_aiokafka() -> None:
    code = (
        "import sys, orchestrator.intake.client; "
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'aiokafka', 'mode'}); "
        "print(','.join(loaded))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


@pytest.mark.broker
def test_request_events_are_signed_with_the_key_from_the_environment(
    kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch, test_publisher: IssuedKey
) -> None:
    for name, value in test_publisher.env().items():
        monkeypatch.setenv(name, value)
    request = new_request()
    with RequestPublisher(kafka_settings, source="web-form") as publisher:
        assert publisher.signer is not None and publisher.signer.publisher == "tests"
        publisher.publish(request)
    ((_, key, headers, _),) = read_published(kafka_settings, request.request_id)
    verifier = RequestVerifier(test_publisher.keys_file)
    envelope = decode(request.model_dump_json().encode(), headers, key=key, verify=verifier)
    assert envelope.body == request


def test_incomplete_signing_configuration_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DSR_PUBLISHER_ID", "web-form")
    monkeypatch.delenv("DSR_PUBLISHER_KEY_FILE", raising=False)
    monkeypatch.delenv("DSR_PUBLISHER_SECRET", raising=False)
    with pytest.raises(PublishError, match="DSR_PUBLISHER_KEY_FILE"):
        RequestPublisher("127.0.0.1:1", source="tests")
