"""Consumer lag of the orchestrator's and the connector workers' consumer groups.

Lag is a group's committed offset against the partition's end offset (ListOffsets), per topic:
what `kafka-consumer-groups --describe` shows. It needs only Describe rights on the groups and
topics: the dashboard never reads the topics that carry personal data.

On the embedded broker (Tansu) the end offset is reported low after multi-record batches, so
lag there can read lower than it is (never higher); on Kafka it is exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.kafka import KafkaSettings

log = logging.getLogger("dsr.dashboard.lag")

#: The prefix of the connector workers' groups (`connectors.runtime`).
CONNECTOR_GROUP_PREFIX = "dsr-connectors-"


class GroupLag(NamedTuple):
    """Messages a consumer group has yet to process on one topic."""

    group: str
    topic: str
    lag: int


def our_groups(app_id: str) -> Callable[[str], bool]:
    """The orchestrator's group (its app id) and every connector worker group."""
    return lambda group: group == app_id or group.startswith(CONNECTOR_GROUP_PREFIX)


def our_topics(app_id: str) -> Callable[[str], bool]:
    """Our topics (`dsr.*`) and the orchestrator's internal ones (`<app id>-*`)."""
    return lambda topic: topic.startswith("dsr.") or topic.startswith(f"{app_id}-")


class ConsumerLag:
    """Measures lag every `interval` seconds; `latest` holds the last measurement."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        groups: Callable[[str], bool],
        topics: Callable[[str], bool],
        interval: float = 15.0,
    ) -> None:
        self.kafka = kafka
        self.groups = groups
        self.topics = topics
        self.interval = interval
        self.latest: list[GroupLag] = []
        #: time.time() of the last successful measurement.
        self.measured_at: float | None = None
        #: Why the last measurement failed (no personal data), or None.
        self.problem: str | None = None

    async def run(self) -> None:
        """Measure until cancelled; a failure is kept as `problem` and tried again next time."""
        while True:
            try:
                self.latest = await self.measure()
                self.measured_at = time.time()
                self.problem = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker may not allow it: report, do not crash
                self.problem = f"{type(exc).__name__}: {exc}"
                log.warning("consumer lag not measured: %s", self.problem)
            await asyncio.sleep(self.interval)

    async def measure(self) -> list[GroupLag]:
        """One measurement of every matching group on every matching topic."""
        options = self.kafka.aiokafka_options()
        admin = AIOKafkaAdminClient(**options)
        try:
            await admin.start()
            consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
            try:
                await consumer.start()
                names = sorted(t for t in await consumer.topics() if self.topics(t))
                partitions = [
                    TopicPartition(topic, p)
                    for topic in names
                    for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
                if not partitions:
                    return []
                groups = sorted(
                    {g[0] for g in await admin.list_consumer_groups() if self.groups(g[0])}
                )
                ends = await consumer.end_offsets(partitions)
                found = []
                for group in groups:
                    # Partitions named: the embedded broker cannot answer "all of them".
                    committed = await admin.list_consumer_group_offsets(
                        group, partitions=partitions
                    )
                    per_topic: dict[str, int] = {}
                    for tp, meta in committed.items():
                        if meta.offset >= 0 and tp in ends:
                            lag = max(0, ends[tp] - meta.offset)
                            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + lag
                    found += [GroupLag(group, t, n) for t, n in sorted(per_topic.items())]
                return found
            finally:
                await consumer.stop()
        finally:
            await admin.close()


__all__ = ["CONNECTOR_GROUP_PREFIX", "ConsumerLag", "GroupLag", "our_groups", "our_topics"]
