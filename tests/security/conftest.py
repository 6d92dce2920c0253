"""A system of its own for the security tests: its own broker, real worker processes, and
publishers whose keys the orchestrator knows (one restricted, one with two keys)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from orchestrator.intake.publishers import IssuedKey, create_publisher, rotate_publisher
from orchestrator.runtime.broker import EmbeddedBroker
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from schemas.envelope import EnvelopeError, KafkaMessage, decode, encode
from schemas.events import (
    DeadLetter,
    RequestStatusChanged,
    RequestSubmitted,
    TaskDispatched,
)
from schemas.kafka import KafkaSettings
from schemas.topics import DEAD_LETTER, REQUESTS, STATUS, TASKS
from tests import factories
from tests.conftest import OLD_DEFAULT

SUBJECT_EMAIL = "anna.secure@example.nl"
SYSTEMS = ["alpha", "beta"]  # fuzzed tasks name "crm": nobody serves it
ORCHESTRATOR = Settings.model_fields["source"].default  # what the orchestrator publishes as


@dataclass
class SecureSystem:
    """The running system and its publishers."""

    stack: Stack
    kafka: KafkaSettings
    keys_file: Path
    desk: IssuedKey  # Ed25519, every request event; has a second key, `desk_next`
    desk_next: IssuedKey
    web_form: IssuedKey  # HMAC, may only submit

    def assert_alive(self) -> None:
        """Every worker process still runs."""
        dead = {n: p.returncode for n, p in self.stack.processes.items() if p.poll() is not None}
        assert not dead, f"worker processes died: {dead}; logs in {self.stack.log_dir}"


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureSystem]:
    """Broker, orchestrator and one connector worker, with publisher keys configured."""
    root = tmp_path_factory.mktemp("secure")
    keys_file = root / "publishers" / "publisher-keys.yaml"
    desk = create_publisher(keys_file, "desk", "ed25519", events=OLD_DEFAULT)
    desk_next = rotate_publisher(keys_file, "desk")
    web_form = create_publisher(
        keys_file, "web-form", "hmac-sha256", events=["dsr.request.submitted.v1"]
    )
    register = root / "register.yaml"
    record = {"collection": "contacts", "data": {"email": SUBJECT_EMAIL}}
    register.write_text(
        yaml.safe_dump(
            {
                "systems": [
                    {
                        "name": name,
                        "kind": "other",
                        "connector": "memory",
                        "settings": {"records": [record]},
                        "data_categories": ["email address"],
                        "purposes": ["testing"],
                        "legal_basis": ["consent"],
                        "profiling": "none",
                        "retention": "1 day",
                    }
                    for name in SYSTEMS
                ]
            }
        )
    )
    with EmbeddedBroker(log_path=root / "broker.log") as broker:
        settings = Settings(
            register_file=register,
            data_dir=root / "data",
            publisher_keys=keys_file,
            retry_delay_seconds=0.2,
            tick_interval_seconds=1.0,
        ).for_embedded(broker.bootstrap)
        with Stack(settings, log_dir=root / "logs") as stack:
            yield SecureSystem(stack, settings.kafka, keys_file, desk, desk_next, web_form)


# -- publishing and watching ---------------------------------------------------------------------


def new_request(request_id: str, *, verified: bool = True) -> RequestSubmitted:
    """A valid access request for the subject both systems know."""
    return factories.request(request_id, SUBJECT_EMAIL, verified=verified)


Coordinates = tuple[str, int, int]  # topic, partition, offset


@dataclass
class Raw:
    """One record to produce exactly as given."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, message: KafkaMessage, topic: str = REQUESTS.name) -> Raw:
        """A record from an encoded (and perhaps signed or tampered) message."""
        return cls(topic, message.key, message.value, list(message.headers))


def signed(issued: IssuedKey, body: BaseModel) -> KafkaMessage:
    """A body encoded and signed with one publisher key."""
    return issued.signer().sign(encode(body, source="tests"))


async def produce(kafka: KafkaSettings, records: Sequence[Raw]) -> list[Coordinates]:
    """Produce records in order; return where each one landed."""
    producer = AIOKafkaProducer(
        **kafka.aiokafka_options(),
        acks="all",
        linger_ms=5,
        enable_idempotence=False,
        max_request_size=8 * 1024 * 1024,  # the fuzzer sends megabyte fields
    )
    await producer.start()
    try:
        futures = [
            await producer.send(r.topic, key=r.key, value=r.value, headers=r.headers)
            for r in records
        ]
        landed = [await f for f in futures]
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in landed]


@dataclass
class Observed:
    """What the system published, read back from its output topics."""

    dead_letters: dict[Coordinates, DeadLetter] = field(default_factory=dict)
    statuses: dict[str, RequestStatusChanged] = field(default_factory=dict)
    tasks: dict[str, list[TaskDispatched]] = field(default_factory=dict)

    def final(self, request_id: str) -> bool:
        """The request reached a final status."""
        status = self.statuses.get(request_id)
        return status is not None and status.status.is_final


async def _observe(
    kafka: KafkaSettings, until: Callable[[Observed], bool], timeout: float
) -> Observed:
    consumer = AIOKafkaConsumer(
        **kafka.consumer_options(),
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    observed = Observed()
    try:
        topics = (DEAD_LETTER.name, STATUS.name, TASKS.name)
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for record in (r for batch in batches.values() for r in batch):
                try:
                    envelope = decode(record.value, record.headers)
                except EnvelopeError:
                    continue  # a fuzzed task: the connector worker dead-letters it
                body = envelope.body
                if isinstance(body, DeadLetter):
                    observed.dead_letters[(body.source_topic, body.partition, body.offset)] = body
                elif isinstance(body, RequestStatusChanged):
                    observed.statuses[body.request_id] = body
                elif isinstance(body, TaskDispatched) and envelope.source == ORCHESTRATOR:
                    # (fuzzed records on the tasks topic are read here too: not the orchestrator's)
                    observed.tasks.setdefault(body.request_id, []).append(body)
            if not batches and until(observed):
                break
    finally:
        await consumer.stop()
    return observed


def observe(
    kafka: KafkaSettings, until: Callable[[Observed], bool], timeout: float = 45.0
) -> Observed:
    """Read dead letters, status events and tasks until `until` holds (or the time is up)."""
    return asyncio.run(_observe(kafka, until, timeout))
