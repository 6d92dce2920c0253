"""The orchestrator's batches: `Stream.take_events`, with the wait counted from the first event.

Faust's `take_events(max, within)` yields what it has buffered every `within` seconds, counted
from the end of the previous batch. While a batch is processed, the buffer is closed: newer
events queue up in the stream. So every batch began with a full `within` of waiting, also when
its events had been waiting a whole batch already. Under `bench/pipeline.py` at half load that
was 10.7 ms of a 33 ms cycle (`within` = 10 ms), and an event waits for about one and a half
cycles at each of its request's two passes through the orchestrator.

`take_batches` waits as a Kafka producer lingers: at most `within` from the first event of
the batch (when it arrived, also while the previous batch was being processed), and then only
as long as events keep coming in (no new one for `IDLE_SECONDS`: the queued ones are in), but
never longer than `within` after the buffer opened again: under full load the queue does not run
dry, and a batch takes in as much as `take_events` gave it (an earlier version, which cut such a
batch off `within` after its first event, made smaller batches and lost a tenth of the full-load
throughput). A full buffer (`max_`) is yielded at once. Events are acked after the agent is
done with their batch, as `take_events` does: a batch is committed only once it is processed.

It is `take_events` itself apart from the wait, and uses the same parts of `faust.Stream` (a
processor that fills the buffer, the stream consumed passively), some of them private: the
version of faust-streaming is pinned in the lock, and `tests/e2e/test_batches.py`
runs it on a real stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import faust
from faust.types import EventT
from mode.utils.aiter import aiter
from mode.utils.futures import notify

#: A batch past its `within` is yielded once no event came in for this long: the events queued
#: while the previous batch was processed are in by then (they are added at tens per ms).
IDLE_SECONDS = 0.001


def take_batches(
    stream: faust.StreamT[Any], max_: int, within: float
) -> AsyncGenerator[list[EventT], None]:
    """Batches of at most `max_` events; the first one waits at most about `within` seconds
    for the others (see the module docstring). Each batch is acked when the next is asked for.

    Kept on the stream like `take_events`, so that a stopping stream closes it (and restores
    what it changed) even if the agent let go of it."""
    batches = _batches(stream, max_, within)
    stream._active_agens.add(batches)  # type: ignore[attr-defined]
    return batches


class _Buffer:
    """The events of the batch being gathered, and when the first of them arrived."""

    def __init__(self, stream: Any, max_: int, within: float) -> None:
        self.stream = stream
        self.max = max_
        self.within = within
        self.loop = asyncio.get_running_loop()
        self.events: list[EventT] = []
        self.first_at: float | None = None
        #: When the buffer last opened (after a batch): events queued before it are drained
        #: for at most `within` from here, however long ago the first of them arrived.
        self.opened_at = self.loop.time()
        self.full = asyncio.Event()
        #: Set when an empty buffer gets its first event.
        self.started = asyncio.Event()
        self.consumed = asyncio.Event()
        #: Set while the agent processes a batch: newer events wait for it.
        self.consuming: asyncio.Future[None] | None = None

    async def add(self, value: Any) -> Any:
        """The stream's processor: buffer the event (after the batch being processed)."""
        s = self.stream
        arrived = self.loop.time()
        try:
            if self.consuming is not None:
                try:
                    await self.consuming
                finally:
                    self.consuming = None
            event = s.current_event
            if event is None:
                raise RuntimeError("an event left the stream before it was buffered")
            if not self.events:
                self.first_at = arrived
                self.started.set()
            self.events.append(event)
            if len(self.events) >= self.max:
                self.full.set()
                self.consumed.clear()
                await s.wait(self.consumed)  # never more than `max_`
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as take_events: the stream crashes, the agent sees it
            s.log.exception("Error adding to take buffer: %r", exc)
            await s.crash(exc)
        return value

    async def ready(self) -> bool:
        """Wait until the batch should go (see the module docstring); False if the stream
        stops first."""
        while not self.stream.should_stop:
            if self.full.is_set() and self.events:
                return True
            if self.first_at is None:  # nothing buffered yet: wait for the first event
                await self.stream.wait_for_stopped(self.started)
                continue
            left = self.first_at + self.within - self.loop.time()
            if left > 0:
                await self._wait(left)
                continue
            seen = len(self.events)
            await self._wait(IDLE_SECONDS)
            until = max(self.first_at, self.opened_at) + self.within
            if len(self.events) == seen or self.loop.time() >= until:
                return bool(self.events)
        return False

    async def _wait(self, seconds: float) -> None:
        """Until the buffer is full, the stream stops, or `seconds` have passed. (What mode's
        `wait_for_stopped` returns says nothing: a timeout counts as stopped.)"""
        await self.stream.wait_for_stopped(self.full, timeout=seconds)

    async def taken(self) -> None:
        """After the agent is done with the batch: ack its events, open the buffer again."""
        done = list(self.events)
        self.events.clear()
        self.first_at = None
        self.started.clear()
        for event in done:
            await self.stream.ack(event)
        notify(self.consuming)
        self.full.clear()
        self.consumed.set()
        self.opened_at = self.loop.time()


async def _batches(
    stream: faust.StreamT[Any], max_: int, within: float
) -> AsyncGenerator[list[EventT], None]:
    s: Any = stream  # faust's typing hides the parts `take_events` uses
    buffer = _Buffer(s, max_, within)
    acks = s.enable_acks
    s.enable_acks = False  # acked here, once the agent is done with the batch
    s.add_processor(buffer.add)
    s._enable_passive(aiter(s.channel))
    try:
        while await buffer.ready():
            buffer.consuming = buffer.loop.create_future()
            try:
                yield list(buffer.events)
            finally:
                await buffer.taken()
    finally:
        s.enable_acks = acks
        s._processors.remove(buffer.add)


__all__ = ["IDLE_SECONDS", "take_batches"]
