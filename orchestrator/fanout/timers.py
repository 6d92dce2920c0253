"""What the orchestrator does on its timer: deadlines, crypto-shredding, recovery after a restart.

Every tick the deadline rules (`lifecycle.tick`) look at the open requests whose time has come
(the watchlist says which), final requests past their retention window are shredded, the index
of open requests on disk is brought up to date (`orchestrator.lifecycle.recovery`), and the
record files of exported requests go once their grace period is over. Retention sweeps
(`orchestrator.fanout.sweeps`) start on their schedules, retry and time out here too.

When this worker's partitions change, the watchlist is rebuilt from the table (opening only
the states this worker did not write itself), and requests finished recently by a previous
owner get their final status event again: it may have died before sending it, or before
writing their documents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.fanout.finish import Finisher
from orchestrator.fanout.sweeps import Flush, SweepRunner
from orchestrator.fanout.table import RequestTable
from orchestrator.intake.decode import partition_for
from orchestrator.lifecycle import recovery
from orchestrator.lifecycle import reducer as lifecycle
from orchestrator.lifecycle.reducer import Context, Effects, RequestState
from schemas.primitives.sealing import SealingError

log = logging.getLogger("dsr.orchestrator")

#: After a worker (re)starts, requests finished this recently get their final status again.
RESEND_WINDOW = timedelta(hours=1)
#: Request states opened between two turns of the event loop when the watchlist is rebuilt.
_REBUILD_SLICE = 100
#: Table keys looked at (most of them known, not opened) between two turns of the loop.
_REBUILD_KEYS = 2000

#: Carries out decided effects: (all effects, the finished requests among them).
CarryOut = Callable[[list[Effects], list[tuple[RequestState, Effects]]], Awaitable[None]]


class Timers:
    """The orchestrator's periodic work; `tick` runs on Faust's timer."""

    def __init__(
        self,
        requests: RequestTable,
        finisher: Finisher,
        *,
        context: Callable[[], Context],
        carry_out: CarryOut,
        owned_partitions: Callable[[], set[int]],
        data_dir: Path,
        sweeps: SweepRunner | None = None,
        flush: Flush | None = None,
    ) -> None:
        self.requests = requests
        self.watchlist = requests.watchlist
        self.finisher = finisher
        self._context = context
        self._carry_out = carry_out
        self._owned_partitions = owned_partitions
        self._data_dir = data_dir
        self._watched_partitions: set[int] | None = None
        # Finished requests whose final status is sent again after a (re)assignment.
        self._resend: set[str] = set()
        # When this worker took each partition it owns (`note_partitions`).
        self._acquired: dict[int, datetime] = {}
        self._seen_partitions: set[int] = set()
        self._sweeps = sweeps
        self._flush = flush

    async def tick(self) -> None:
        """Let the deadline rules look at every open request whose time has come."""
        owned = self._owned_partitions()
        if owned != self._watched_partitions:
            await self._rebuild(owned)
        all_effects: list[Effects] = []
        finished: list[tuple[RequestState, Effects]] = []
        for request_id in self.watchlist.due(self._context().now):
            try:
                state = self.requests.load(request_id)
            except SealingError as exc:
                log.error("state of request %s cannot be opened: %s", request_id, exc)
                state = None
            if state is None:
                self.watchlist.drop(request_id)
                continue
            inherited_final = state.is_final
            state, effects = lifecycle.tick(state, self._context())
            if effects.shred:
                self._shred(request_id, effects)
            elif not effects.changed:
                self.watchlist.update(request_id, state)  # nothing to write back
                continue
            if effects.notices:  # e.g. the reminder of an ID request: written before it is stored
                self.finisher.notices(state, effects)
            # After shredding: the stub, nothing personal.
            self.requests.store(request_id, state, inherited_final=inherited_final)
            all_effects.append(effects)
            if effects.finished and not effects.shred:
                finished.append((state, effects))
        if all_effects:
            await self._carry_out(all_effects, finished)
        if self._resend:
            await self._resend_finished()
        # Files in a thread: removing a thousand exported requests' record folders, or
        # rewriting the open-requests index, must not hold up the requests in flight.
        if self.watchlist.dirty:
            await asyncio.to_thread(self._write_open_index, self._open_by_partition())
        if due := self.finisher.records_due():
            await asyncio.to_thread(self.finisher.remove_records, due)
        if self._sweeps is not None and self._flush is not None:
            try:
                await self._sweeps.tick(self._flush)
            except Exception as exc:  # a sweep's bug must not stop the timer: next tick again
                log.error("retention sweeps failed on the timer", exc_info=exc)

    def _shred(self, request_id: str, effects: Effects) -> None:
        """Destroy a request's data key, and with it every copy of its personal data: in the
        tasks and the table's changelog (sealed with it), and the files sealed with it."""
        self.requests.keys.destroy(request_id)
        self.finisher.shred(request_id, effects)
        log.info("request %s shredded: its data key was destroyed", request_id)

    def _open_by_partition(self) -> dict[int, dict[str, str]]:
        """The open requests per owned partition (taken on the event loop, written in a
        thread by `_write_open_index`)."""
        partitions = self.requests.partitions
        by_partition: dict[int, dict[str, str]] = {p: {} for p in self._watched_partitions or ()}
        for request_id, status in self.watchlist.open.items():
            by_partition.setdefault(partition_for(request_id, partitions), {})[request_id] = status
        self.watchlist.dirty = False
        return by_partition

    def _write_open_index(self, by_partition: dict[int, dict[str, str]]) -> None:
        """The open requests per owned partition on disk (see `orchestrator.lifecycle.recovery`)."""
        for partition, requests in by_partition.items():
            recovery.write_open(self._data_dir, partition, requests)

    def note_partitions(self, owned: set[int]) -> None:
        """The agent tells, before each batch, which partitions this worker owns: a request of
        a partition finished after this worker took it was finished here, final status sent."""
        if owned == self._seen_partitions:
            return
        now = datetime.now(UTC)
        for partition in owned - self._seen_partitions:
            self._acquired[partition] = now
        self._forget(owned - self._seen_partitions)
        for partition in self._seen_partitions - owned:
            self._acquired.pop(partition, None)
        self._seen_partitions = set(owned)

    def partitions_revoked(self, revoked: set[int]) -> None:
        """Faust took these partitions away (a rebalance; they may come straight back): what
        this worker knew of their requests may be out of date by the time they return, so
        the next tick rebuilds the watchlist, and reopens them."""
        self._seen_partitions -= revoked
        for partition in revoked:
            self._acquired.pop(partition, None)
        self._forget(revoked)
        self._watched_partitions = None

    def _forget(self, partitions: set[int]) -> None:
        count = self.requests.partitions
        if len(partitions) >= count:  # all of them (a rebalance revokes all): no hashing
            self.watchlist.known.clear()
        elif partitions:
            self.watchlist.forget(lambda r: partition_for(r, count) not in partitions)

    async def _rebuild(self, owned: set[int]) -> None:
        """The watchlist of the partitions this worker owns now, from the table.

        Requests finished recently by a previous owner get their final status again (it may
        have died before sending it); not those this worker finished itself since it took the
        partition: after a start under load those are thousands, and sending them all again
        holds up the requests in flight.

        Only the states this worker does not know are opened (`Watchlist.known`: those it
        wrote since it took their partition, unless they were final already when it loaded
        them): after a start under load the first tick opened every request the agent had
        just written, and held up the requests in flight. The rest is read in slices with
        the event loop let run between them: a restarted worker's table can hold a hundred
        thousand.
        """
        partitions = self.requests.partitions
        self._forget({p for p in owned if p not in self._acquired})
        if len(owned) < partitions:  # some went to other workers: their requests go
            self.watchlist.keep(lambda r: partition_for(r, partitions) in owned)
        recent = self._context().now - RESEND_WINDOW
        opened = 0
        for seen, request_id in enumerate(self.requests.owned(owned), 1):
            if seen % _REBUILD_KEYS == 0:
                await asyncio.sleep(0)  # a hundred thousand known ones take a while too
            if request_id in self.watchlist.known:
                continue
            opened += 1
            if opened % _REBUILD_SLICE == 0:
                await asyncio.sleep(0)  # what the agent stores meanwhile is known when it comes
                if request_id in self.watchlist.known:
                    continue
            view = self.requests.view(request_id)
            if view is None:
                continue
            self.watchlist.update(request_id, view)
            self.watchlist.known.add(request_id)
            if view.is_final and view.finished_at is not None and view.finished_at > recent:
                since = self._acquired.get(partition_for(request_id, partitions))
                if since is None or view.finished_at < since:
                    self._resend.add(request_id)
        self._watched_partitions = owned

    async def _resend_finished(self) -> None:
        """Send recently finished requests' final status events again (see `resend_final`).

        A request whose result file is missing (the worker died after saving the finished
        state, before writing its documents) gets its documents written first, at the same
        paths, exactly as when it finished.
        """
        resent: list[Effects] = []
        unwritten: list[tuple[RequestState, Effects]] = []
        ctx = self._context()
        for request_id in sorted(self._resend):
            try:
                state = self.requests.load(request_id)
            except SealingError:
                continue
            event = lifecycle.resend_final(state, ctx) if state is not None else None
            if state is None or event is None:
                continue
            result = self.finisher.artifacts.result_path(request_id)
            effects = Effects(statuses=[event], finished=True)
            if result.exists():
                effects.statuses = [event.model_copy(update={"artifact": str(result)})]
            else:
                unwritten.append((state, effects))
            resent.append(effects)
        self._resend.clear()
        if resent:
            await self._carry_out(resent, unwritten)
            log.info("sent the final status of %d recently finished requests again", len(resent))


__all__ = ["RESEND_WINDOW", "Timers"]
