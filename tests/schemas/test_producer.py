"""One caller at a time into aiokafka's `send`: no herd at a full batch (issue 19)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.producer.message_accumulator import MessageBatch

from schemas.kafka import KafkaSettings
from schemas.primitives.producer import SerialProducer

SENDS = 400


async def _send_all(
    producer_class: type[AIOKafkaProducer], kafka: KafkaSettings, topic: str
) -> int:
    """Send SENDS messages at once into small batches; how often a caller waited for a drain."""
    waits = 0
    original = MessageBatch.wait_drain

    async def counted(self: MessageBatch, timeout: Any = None) -> None:
        nonlocal waits
        waits += 1
        await original(self, timeout)

    producer = producer_class(
        **kafka.aiokafka_options(), acks="all", linger_ms=1, max_batch_size=2048
    )
    await producer.start()
    try:
        MessageBatch.wait_drain = counted  # type: ignore[method-assign]
        futures = await asyncio.gather(
            *(
                producer.send(topic, value=b"%05d" % n + b"x" * 200, partition=0)
                for n in range(SENDS)
            )
        )
        await asyncio.gather(*futures)
    finally:
        MessageBatch.wait_drain = original  # type: ignore[method-assign]
        await producer.stop()
    return waits


async def _values(kafka: KafkaSettings, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, **kafka.consumer_options(), auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(120):  # bounded: at most a minute
            if len(values) >= SENDS:
                break
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
            values += [r.value[:5] for rs in batches.values() for r in rs if r.value is not None]
    finally:
        await consumer.stop()
    return values


def test_concurrent_sends_wait_once_per_full_batch_and_keep_their_order(
    kafka_settings: KafkaSettings,
) -> None:
    """Four hundred sends at once into 2 KiB batches (about nine messages each): each full
    batch makes one caller wait, not every caller; and they reach the broker in call order."""
    serial = asyncio.run(_send_all(SerialProducer, kafka_settings, "test-serial-producer"))
    assert serial <= SENDS // 9 + 2
    assert asyncio.run(_values(kafka_settings, "test-serial-producer")) == [
        b"%05d" % n for n in range(SENDS)
    ]
    # The plain producer, for contrast: every waiter wakes at each drain and most wait again.
    plain = asyncio.run(_send_all(AIOKafkaProducer, kafka_settings, "test-plain-producer"))
    assert plain > 10 * serial
