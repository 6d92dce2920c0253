"""The intake's memory of what it accepted: `dsr.intake.v1`, followed from its start.

Every intake replica reads the whole (compacted) topic at start-up and follows it, so a
repeated `POST` gets the same answer from any replica, also after a restart; `record`
publishes (awaiting Kafka's acknowledgement) and updates this replica's view at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.gateway.bus import BusPublisher
from schemas.envelope import EnvelopeError, decode
from schemas.gateway import IntakeRecorded
from schemas.kafka import KafkaSettings
from schemas.topics import INTAKE

log = logging.getLogger("dsr.intake.log")


class IntakeLog:
    """Request id -> the latest `IntakeRecorded` for it."""

    def __init__(self, kafka: KafkaSettings, bus: BusPublisher, *, retry_seconds: float = 2.0):
        self.kafka = kafka
        self.bus = bus
        self.caught_up = asyncio.Event()
        self._entries: dict[str, IntakeRecorded] = {}
        self._retry_seconds = retry_seconds

    def get(self, request_id: str) -> IntakeRecorded | None:
        """What was accepted under `request_id`, or None."""
        return self._entries.get(request_id)

    def entries(self) -> Iterator[IntakeRecorded]:
        """Every request accepted (latest record of each)."""
        return iter(list(self._entries.values()))

    async def record(self, entry: IntakeRecorded) -> None:
        """Publish `entry` (raises `PublishError` unless acknowledged), then remember it."""
        await self.bus.publish(entry, source="intake", topic=INTAKE.name, key=entry.request_id)
        self._entries[entry.request_id] = entry

    async def run(self) -> None:
        """Follow the topic until cancelled; a lost connection is retried, the view kept."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # KafkaError and friends: keep serving, retry
                log.warning("reading %s failed (%s); retrying", INTAKE.name, type(exc).__name__)
                await asyncio.sleep(self._retry_seconds)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.kafka.consumer_options(), enable_auto_commit=False, group_id=None
        )
        try:
            await consumer.start()
            partitions = consumer.partitions_for_topic(INTAKE.name) or set()
            while not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(INTAKE.name) or set()
                if not partitions:
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(INTAKE.name, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[TopicPartition, int] = {}
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        self._apply(record.value, record.headers)
                for tp in tps:
                    end = consumer.highwater(tp)
                    if end is not None:
                        ends.setdefault(tp, end)
                if len(ends) == len(tps):
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    if all(positions[tp] >= end for tp, end in ends.items()):
                        self.caught_up.set()
        finally:
            await consumer.stop()

    def _apply(self, value: bytes | None, headers: Any) -> None:
        try:
            envelope = decode(value, headers, expect=INTAKE.events)
        except EnvelopeError:
            return  # written only by intake processes; anything else is not ours
        body = envelope.body
        assert isinstance(body, IntakeRecorded)
        self._entries[body.request_id] = body


__all__ = ["IntakeLog"]
