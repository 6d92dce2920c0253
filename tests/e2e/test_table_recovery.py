"""The request table is restored exactly from a changelog written in multi-record batches.

The embedded broker's ListOffsets reports a partition's end as its last batch's first offset
plus one. A table restored only up to there loses the rest of that batch: the states of
requests whose events already count as done. `orchestrator.runtime.offsets` confirms each end
by a fetch, and the orchestrator's Faust app restores its tables up to the confirmed end; so the
changelog is batched on the embedded broker too, as on Kafka.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orchestrator.runtime.broker import EmbeddedBroker
from orchestrator.runtime.offsets import confirmed_ends
from schemas.kafka import KafkaSettings
from schemas.topics import REQUESTS
from tests.processes import read_until

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this test's own: it sends an event no orchestrator of another test should see."""
    with EmbeddedBroker() as broker:
        yield broker


def _table_app(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.table_app", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def _send_one(kafka: KafkaSettings) -> None:
    producer = AIOKafkaProducer(**kafka.aiokafka_options(), enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(REQUESTS.name, b"write", key=b"go")
    finally:
        await producer.stop()


def test_a_table_written_in_multi_record_batches_is_restored_exactly_after_kill_9(
    own_broker: EmbeddedBroker,
) -> None:
    kafka = KafkaSettings().for_embedded(own_broker.bootstrap)
    count = 3000
    writer = _table_app("write", own_broker.bootstrap, "recovery-test", str(count))
    try:
        read_until(writer, "ready", 90)
        asyncio.run(_send_one(kafka))
        read_until(writer, "written", 60)  # the changelog is flushed: on the broker
    finally:
        writer.kill()  # no clean stop: the next worker has only the changelog
        writer.communicate(timeout=30)
    reader = _table_app("read", own_broker.bootstrap, "recovery-test")
    try:
        output, _ = reader.communicate(timeout=120)
    finally:
        reader.kill()
    tables = [line.split("table ", 1)[1] for line in output.splitlines() if "table {" in line]
    assert tables, output[-2000:]
    restored = json.loads(tables[-1])
    expected = {f"key-{n:05d}": f"value-{n}" for n in range(count)}
    missing = sorted(set(expected) - set(restored))
    assert not missing, f"{len(missing)} of {count} entries lost, e.g. {missing[:5]}"
    assert restored == expected


async def _produce_in_batches(kafka: KafkaSettings, topic: str) -> int:
    """300 records in a few large batches, then one batch of 7 into partition 0: the count."""
    producer = AIOKafkaProducer(**kafka.aiokafka_options(), linger_ms=20, enable_idempotence=False)
    await producer.start()
    try:
        for size in (300, 7):
            sent = [await producer.send(topic, b"x" * 40, partition=0) for _ in range(size)]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return 307


async def _ends(kafka: KafkaSettings, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka.aiokafka_options(), group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        while not (consumer.partitions_for_topic(topic) or set()) >= {0, 1}:
            await consumer.topics()  # refresh metadata until the topic is known
        return await confirmed_ends(kafka, await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


def test_end_offsets_count_every_record_of_a_multi_record_batch(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    topic = "end-offsets-test"

    async def scenario() -> dict[TopicPartition, int]:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(**kafka_settings.aiokafka_options())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()
        await _produce_in_batches(kafka_settings, topic)
        return await _ends(kafka_settings, topic)

    ends = asyncio.run(scenario())
    assert ends == {TopicPartition(topic, 0): 307, TopicPartition(topic, 1): 0}
