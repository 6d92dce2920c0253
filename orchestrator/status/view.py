"""Reading the status topic: the latest state of every request and every retention sweep,
built from their events.

Any service can build the same view; the CLI (`dsr status`, `dsr sweep`, `dsr demo`) and the
dashboard do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.envelope import EnvelopeError, decode
from schemas.events import RequestStatusChanged
from schemas.kafka import KafkaSettings
from schemas.sweeps import SweepStatusChanged
from schemas.topics import STATUS

log = logging.getLogger("dsr.status")

#: What the status topic carries: a request's or a retention sweep's change of state.
StatusEvent = RequestStatusChanged | SweepStatusChanged


@dataclass
class StatusView:
    """Latest status per request and per sweep, folded from status events (out-of-order safe
    by sequence)."""

    requests: dict[str, RequestStatusChanged] = field(default_factory=dict)
    history: dict[str, list[RequestStatusChanged]] = field(default_factory=dict)
    #: Retention sweeps, by sweep id: the latest status and every status in sequence order.
    sweeps: dict[str, SweepStatusChanged] = field(default_factory=dict)
    sweep_history: dict[str, list[SweepStatusChanged]] = field(default_factory=dict)

    def apply(self, event: StatusEvent) -> bool:
        """Fold one status event in; False when it was known already (a re-delivery)."""
        if isinstance(event, SweepStatusChanged):
            return _fold(self.sweeps, self.sweep_history, event.sweep_id, event)
        return _fold(self.requests, self.history, event.request_id, event)

    def get(self, request_id: str) -> RequestStatusChanged | None:
        """The latest status of one request."""
        return self.requests.get(request_id)

    def sweep(self, sweep_id: str) -> SweepStatusChanged | None:
        """The latest status of one retention sweep."""
        return self.sweeps.get(sweep_id)


_Event = TypeVar("_Event", RequestStatusChanged, SweepStatusChanged)


def _fold(
    latest: dict[str, _Event], history: dict[str, list[_Event]], key: str, event: _Event
) -> bool:
    """Add `event` to its timeline and make it the latest when its sequence is the highest."""
    timeline = history.setdefault(key, [])
    if any(e.sequence == event.sequence for e in timeline):
        return False
    timeline.append(event)
    timeline.sort(key=lambda e: e.sequence)
    current = latest.get(key)
    if current is None or event.sequence > current.sequence:
        latest[key] = event
    return True


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
    consumer = _consumer(kafka)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        await _assign_from_start(consumer, deadline)
        last_message = time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    event = _decode(record.value, record.headers)
                    if event is not None:
                        view.apply(event)
                        last_message = time.monotonic()
            if until is not None:
                if until(view):
                    break
            elif time.monotonic() - last_message > idle:
                break
        return view
    finally:
        await consumer.stop()


class StatusFollower:
    """Follows the status topic from its start into a view, for as long as `run` runs.

    `caught_up` is set once everything that was on the topic when following began has been
    read. The end is the high watermark a fetch reports, not ListOffsets: the embedded broker
    answers ListOffsets wrongly after multi-record batches (docs: embedded-broker.md).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        view: StatusView | None = None,
        *,
        on_change: Callable[[StatusEvent], None] | None = None,
        retry_seconds: float = 2.0,
    ) -> None:
        self.kafka = kafka
        self.view = view or StatusView()
        self.on_change = on_change
        self.caught_up = asyncio.Event()
        #: Status events read (re-deliveries included) and records that were not ours.
        self.events_read = 0
        self.events_skipped = 0
        #: Events on the topic not read yet (None until a fetch told the end).
        self.lag: int | None = None
        #: Why following is stalled right now (no personal data), or None.
        self.problem: str | None = None
        self._retry_seconds = retry_seconds

    async def run(self) -> None:
        """Follow until cancelled; a lost connection is retried, the view kept."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # KafkaError and friends: keep serving, say why, retry
                self.problem = f"reading {STATUS.name} failed ({type(exc).__name__}); retrying"
                log.warning("%s: %s", self.problem, exc)
                await asyncio.sleep(self._retry_seconds)

    async def _follow(self) -> None:
        consumer = _consumer(self.kafka)
        try:
            await consumer.start()
            self.problem = f"waiting for topic {STATUS.name}"
            tps = await _assign_from_start(consumer, deadline=None)
            self.problem = None
            end_at_start: dict[TopicPartition, int] = {}
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        self._apply(record.value, record.headers)
                positions = {tp: await consumer.position(tp) for tp in tps}
                ends = {tp: consumer.highwater(tp) for tp in tps}
                known = {tp: end for tp, end in ends.items() if end is not None}
                for tp, end in known.items():
                    end_at_start.setdefault(tp, end)
                self.lag = (
                    sum(max(0, end - positions[tp]) for tp, end in known.items())
                    if len(known) == len(tps)
                    else None
                )
                if len(end_at_start) == len(tps) and all(
                    positions[tp] >= end for tp, end in end_at_start.items()
                ):
                    self.caught_up.set()
        finally:
            await consumer.stop()

    def _apply(self, value: bytes | None, headers: Any) -> None:
        event = _decode(value, headers)
        if event is None:
            self.events_skipped += 1
            return
        self.events_read += 1
        if self.view.apply(event) and self.on_change is not None:
            self.on_change(event)


def _consumer(kafka: KafkaSettings) -> AIOKafkaConsumer:
    """A consumer outside any group: readers of the status topic never commit."""
    return AIOKafkaConsumer(**kafka.consumer_options(), enable_auto_commit=False, group_id=None)


async def _assign_from_start(
    consumer: AIOKafkaConsumer, deadline: float | None
) -> list[TopicPartition]:
    """Assign every partition of the status topic, from offset 0; waits for the topic to exist
    (it may be created just now) until `deadline` (monotonic; None: for ever)."""
    partitions = consumer.partitions_for_topic(STATUS.name) or set()
    while not partitions and (deadline is None or time.monotonic() < deadline):
        await consumer.topics()  # refreshes metadata
        partitions = consumer.partitions_for_topic(STATUS.name) or set()
        if not partitions:
            await asyncio.sleep(0.2)
    tps = [TopicPartition(STATUS.name, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if tps:
        await consumer.seek_to_beginning(*tps)
    return tps


def _decode(value: bytes | None, headers: Any) -> StatusEvent | None:
    """The status event in a record, or None for anything else."""
    try:
        envelope = decode(value, headers, expect=STATUS.events)
    except EnvelopeError:
        return None  # not ours to judge; the status topic is written by us only
    assert isinstance(envelope.body, RequestStatusChanged | SweepStatusChanged)
    return envelope.body


__all__ = ["StatusEvent", "StatusFollower", "StatusView", "read_status"]
