"""Reading the status topic: the latest state of every request, built from its events.

Any service can build the same view; the CLI (`dsr status`, `dsr demo`) and the dashboard do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.envelope import EnvelopeError, decode
from schemas.events import RequestStatusChanged
from schemas.kafka import KafkaSettings
from schemas.topics import STATUS


@dataclass
class StatusView:
    """Latest status per request, folded from status events (out-of-order safe by sequence)."""

    requests: dict[str, RequestStatusChanged] = field(default_factory=dict)
    history: dict[str, list[RequestStatusChanged]] = field(default_factory=dict)

    def apply(self, event: RequestStatusChanged) -> None:
        """Fold one status event in; a re-delivered or older event changes nothing."""
        timeline = self.history.setdefault(event.request_id, [])
        if any(e.sequence == event.sequence for e in timeline):
            return
        timeline.append(event)
        timeline.sort(key=lambda e: e.sequence)
        current = self.requests.get(event.request_id)
        if current is None or event.sequence > current.sequence:
            self.requests[event.request_id] = event

    def get(self, request_id: str) -> RequestStatusChanged | None:
        """The latest status of one request."""
        return self.requests.get(request_id)


async def read_status(
    kafka: KafkaSettings,
    view: StatusView | None = None,
    *,
    until: Callable[[StatusView], bool] | None = None,
    timeout: float = 10.0,
    idle: float = 1.0,
) -> StatusView:
    """Read the status topic from the start into a view.

    Stops when `until(view)` is true, or (without `until`) once nothing new arrived for `idle`
    seconds; never later than `timeout` seconds.
    """
    view = view or StatusView()
    consumer = AIOKafkaConsumer(**kafka.consumer_options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(STATUS.name) or set()
        deadline = time.monotonic() + timeout
        while not partitions and time.monotonic() < deadline:
            await consumer.topics()  # refreshes metadata: the topic may be created just now
            partitions = consumer.partitions_for_topic(STATUS.name) or set()
            await asyncio.sleep(0.2)
        tps = [TopicPartition(STATUS.name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last_message = time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        envelope = decode(record.value, record.headers, expect=STATUS.events)
                    except EnvelopeError:
                        continue  # not ours to judge; the status topic is written by us only
                    assert isinstance(envelope.body, RequestStatusChanged)
                    view.apply(envelope.body)
                    last_message = time.monotonic()
            if until is not None:
                if until(view):
                    break
            elif time.monotonic() - last_message > idle:
                break
        return view
    finally:
        await consumer.stop()


__all__ = ["StatusView", "read_status"]
