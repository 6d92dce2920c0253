"""A running system for end-to-end tests: the session broker, real worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.fakes import acme
from orchestrator.intake.client import RequestPublisher
from orchestrator.intake.publishers import IssuedKey
from orchestrator.runtime import demo
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from orchestrator.status.view import StatusView, read_status
from schemas.envelope import Envelope, decode
from schemas.events import RequestStatusChanged
from schemas.kafka import KafkaSettings
from tests import factories

#: Systems besides the four demo ones: a broken one and a flaky one.
EXTRA_SYSTEMS = [
    factories.failing_ledger("ledger"),
    {
        "name": "flaky",
        "kind": "other",
        "connector": "memory",
        "settings": {"fail": "retryable"},
        "data_categories": ["email"],
        "purposes": ["testing"],
        "legal_basis": ["consent"],
        "profiling": "none",
        "retention": "1 day",
    },
    factories.paper_archive("paper_archive"),
]
DEMO_SYSTEMS = ["crm", "mailing", "chat", "support"]


@dataclass
class System:
    """A running system under test."""

    stack: Stack
    kafka: KafkaSettings
    systems_dir: Path
    data_dir: Path
    log_dir: Path
    spec_dir: Path
    signing: IssuedKey  # the publisher key the orchestrator knows

    def publisher(self) -> RequestPublisher:
        return RequestPublisher(self.kafka, source="tests", signer=self.signing.signer())

    def wait_for(
        self,
        request_id: str,
        condition: Callable[[RequestStatusChanged], bool],
        timeout: float = 60,
    ) -> StatusView:
        """Read status events until the request's latest status meets `condition`."""

        def done(view: StatusView) -> bool:
            self.stack.check()
            status = view.get(request_id)
            return status is not None and condition(status)

        view = asyncio.run(read_status(self.kafka, until=done, timeout=timeout))
        status = view.get(request_id)
        assert status is not None and condition(status), (
            f"request {request_id} did not reach the expected state in {timeout}s; "
            f"latest: {status.status if status else None}"
        )
        return view

    def wait_final(self, request_id: str, timeout: float = 60) -> RequestStatusChanged:
        view = self.wait_for(request_id, lambda s: s.status.is_final, timeout)
        status = view.get(request_id)
        assert status is not None
        return status


ACME_SPEC = Path(__file__).parents[2] / "examples" / "connectors" / "acme.yaml"


@pytest.fixture(scope="session")
def acme_fake() -> Iterator[acme.AcmeCRM]:
    """The fake Acme CRM vendor on a loopback port, for the declarative system `acme`."""
    with acme.AcmeCRM() as server:
        yield server


@pytest.fixture(scope="session")
def running(
    kafka_settings: KafkaSettings,
    tmp_path_factory: pytest.TempPathFactory,
    acme_fake: acme.AcmeCRM,
    test_publisher: IssuedKey,
) -> Iterator[System]:
    """Orchestrator and connector workers on the session broker, with the demo systems."""
    root = tmp_path_factory.mktemp("system")
    systems_dir = demo.seed(root / "systems")
    spec_dir = root / "connectors"
    spec_dir.mkdir()
    # Only access at first; a test edits the file while the worker runs.
    spec = yaml.safe_load(ACME_SPEC.read_text())
    spec["rights"] = ["access"]
    (spec_dir / "acme.yaml").write_text(yaml.safe_dump(spec))
    data = yaml.safe_load(demo.sql_register_path().read_text())
    data["systems"] += EXTRA_SYSTEMS
    data["systems"].append(
        {
            "name": "acme",
            "kind": "crm",
            "connector": "acme",  # the spec file in DSR_CONNECTOR_DIR
            "settings": {
                "base_url": f"{acme_fake.url}/api",
                "credentials": {"token": acme.TOKEN},
            },
            "data_categories": ["contact details"],
            "purposes": ["sales"],
            "legal_basis": ["contract"],
            "profiling": "none",
            "retention": "2 years",
        }
    )
    register = root / "register.yaml"
    register.write_text(yaml.safe_dump(data))
    settings = Settings(
        register_file=register,
        data_dir=root / "data",
        kafka=kafka_settings,
        retry_delay_seconds=0.2,
        tick_interval_seconds=1.0,
        record_grace_seconds=0.5,
        # Small enough that some systems' results spill into record files, and others travel
        # sealed in their outcome events: both paths, end to end.
        record_inline_bytes=400,  # Anna: crm 287 and chat 334 bytes inline; support, mailing files
        publisher_keys=test_publisher.keys_file,
    )
    env = {"DSR_DEMO_DIR": str(systems_dir), "DSR_CONNECTOR_DIR": str(spec_dir)}
    stack = Stack(settings, log_dir=root / "logs", extra_env=env)
    with stack:
        yield System(
            stack,
            kafka_settings,
            systems_dir,
            root / "data",
            root / "logs",
            spec_dir,
            test_publisher,
        )


def read_topic(
    kafka: KafkaSettings, topic: str, timeout: float = 5.0
) -> list[tuple[object, Envelope | None]]:
    """Every record on a topic (until idle), with its decoded envelope when it decodes."""
    from schemas.envelope import EnvelopeError

    async def _read() -> list[tuple[object, Envelope | None]]:
        consumer = AIOKafkaConsumer(**kafka.consumer_options(), enable_auto_commit=False)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            found: list[tuple[object, Envelope | None]] = []
            idle = 0
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while idle < 3 and loop.time() < end:
                batches = await consumer.getmany(timeout_ms=300)
                records = [r for b in batches.values() for r in b]
                idle = 0 if records else idle + 1
                for record in records:
                    try:
                        envelope: Envelope | None = decode(record.value, record.headers)
                    except EnvelopeError:
                        envelope = None
                    found.append((record, envelope))
            return found
        finally:
            await consumer.stop()

    return asyncio.run(_read())


def committed_offset(kafka: KafkaSettings, group: str, topic: str, partition: int) -> int | None:
    """A consumer group's committed offset of one partition; None when it committed none."""
    from kafka import KafkaAdminClient
    from kafka.structs import TopicPartition as Partition

    tp = Partition(topic, partition)
    admin = KafkaAdminClient(**kafka.kafka_python_options())
    try:
        # Named partitions: the embedded broker answers an all-partitions fetch with nothing.
        found = admin.list_group_offsets({group: [tp]})[group].get(tp)
    finally:
        admin.close()
    return None if found is None or found.offset < 0 else found.offset
