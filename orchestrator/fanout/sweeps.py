"""Retention sweeps in the orchestrator: their table, their events, their timer.

The pure lifecycle is `orchestrator.lifecycle.sweeps`; this is its shell. Sweep states live in
a Faust table of their own (`sweeps`, keyed by sweep id, JSON in the clear: a sweep holds
rules and counts, nothing personal), so the request path pays nothing for them and their
crash safety is that of requests: the state is stored before the batch's outputs are sent,
and the changelog is flushed before the batch's offsets count as done.

On the timer, each system whose `SweepPolicy.schedule` has elapsed since its last scheduled
start gets a sweep (`sweep-<system>-<UTC yyyymmddHHMM>`). The last start is kept in the same
table (key `@schedule/<system>`, which no sweep id can be), so a restart neither runs a
sweep again nor skips one. With several orchestrator workers the worker that owns that key's
partition schedules the system, and starts the sweep in a minute whose sweep id falls on a
partition it owns too: the sweep's state must live where its outcome will arrive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.artifacts.casefiles import sweep_case_files
from orchestrator.artifacts.sweep_certificate import SweepCertificateIssuer
from orchestrator.fanout.output import Sender
from orchestrator.intake.decode import SweepInput, partition_for
from orchestrator.lifecycle import sweeps as lifecycle
from orchestrator.lifecycle.sweeps import SweepContext, SweepEffects, SweepState
from orchestrator.runtime.config import Settings
from schemas.envelope import KafkaRecord
from schemas.primitives.sealing import DataKeys
from schemas.register import Register, parse_period

log = logging.getLogger("dsr.orchestrator")

#: Table keys that are not sweep ids start with "@" (a sweep id starts with a letter or digit).
_SCHEDULE_KEY = "@schedule/{}"
_CASE_FILES_KEY = "@case-files"


class SweepTable:
    """Loads and stores sweep states and schedule marks; knows which sweeps are still open."""

    def __init__(self, table: MutableMapping[str, str], partitions: int) -> None:
        self.table = table
        self.partitions = partitions

    def load(self, sweep_id: str) -> SweepState | None:
        """The sweep's state; raises `ValueError` when the stored value does not validate."""
        raw = self.table.get(sweep_id)
        return SweepState.model_validate_json(raw) if raw else None

    def store(self, state: SweepState) -> None:
        """Write the state."""
        self.table[state.sweep_id] = state.model_dump_json(exclude_defaults=True)

    def mark(self, key: str) -> dict[str, Any]:
        """A schedule mark (`{"started": iso time, "sweep_id": ...}`), empty when none."""
        raw = self.table.get(key)
        try:
            return dict(json.loads(raw)) if raw else {}
        except (ValueError, TypeError):
            return {}

    def set_mark(self, key: str, started: datetime, sweep_id: str | None = None) -> None:
        """Note when a scheduled job last started (and the sweep it started)."""
        mark = {"started": started.isoformat(), "sweep_id": sweep_id}
        self.table[key] = json.dumps(mark)

    def open(self, owned: set[int]) -> Iterator[SweepState]:
        """Every sweep of the `owned` partitions that is not final."""
        for key, raw in list(self.table.items()):
            if not raw or key.startswith("@") or self.partition(key) not in owned:
                continue
            try:
                state = SweepState.model_validate_json(raw)
            except ValidationError:
                log.error("state of sweep %s cannot be read; it is left as it is", key)
                continue
            if not state.is_final:
                yield state

    def partition(self, key: str) -> int:
        """The partition of a table key (and of a sweep's events)."""
        return partition_for(key, self.partitions)


#: Sends queued outputs and waits for the broker; then flushes the table's changelog.
Flush = Callable[[], Awaitable[Any]]


class SweepRunner:
    """Decides sweep events, issues certificates, and runs schedules and retries on the timer."""

    def __init__(
        self,
        settings: Settings,
        table: SweepTable,
        sender: Sender,
        *,
        register: Callable[[], Register],
        data_keys: DataKeys,
        owned_partitions: Callable[[], set[int]],
    ) -> None:
        self.settings = settings
        self.table = table
        self.sender = sender
        self._register = register
        self._data_keys = data_keys
        self._owned_partitions = owned_partitions
        policy = settings.policy()
        self._zone = policy.deadline.zone
        self._max_attempts = policy.max_attempts
        self._retry_delay = policy.retry_delay
        self._timeout = timedelta(seconds=settings.sweep_timeout_seconds)
        self.certificates_dir = settings.data_dir / "sweeps"
        #: Open sweeps of the owned partitions -> when `tick` must look at them next.
        self._due: dict[str, datetime | None] = {}
        self._watched: set[int] | None = None
        self._case_files_missing = False

    def context(self, now: datetime | None = None) -> SweepContext:
        """The register as it is now, the policy, the clock."""
        return SweepContext(
            systems={s.name: s for s in self._register().systems},
            now=now or datetime.now(UTC),
            timezone=self._zone,
            max_attempts=self._max_attempts,
            retry_delay=self._retry_delay,
            task_timeout=self._timeout,
        )

    def handle(
        self, items: Iterable[tuple[KafkaRecord, SweepInput]], pending: list[Awaitable[Any]]
    ) -> bool:
        """Decide a batch's sweep events in order; outputs and dead letters go to `pending`.

        True when a state was written (the changelog must be flushed before the offsets).
        """
        changed = False
        for record, event in items:
            try:
                state = self.table.load(event.sweep_id)
                state, effects = lifecycle.apply(state, event, self.context())
            except Exception as exc:  # a bug or a broken state must not stop the worker
                log.error("processing failed for sweep %s", event.sweep_id, exc_info=exc)
                reason = f"processing failed: {type(exc).__name__}"
                pending.append(self.sender.dead_letter(record, "process", reason))
                continue
            if effects.dead_letter:
                pending.append(self.sender.dead_letter(record, "process", effects.dead_letter))
            if state is not None and effects.changed:
                self._commit(state, effects, pending)
                changed = True
        return changed

    async def tick(self, flush: Flush) -> None:
        """Start scheduled sweeps, dispatch retries and timed-out tasks, sweep our case files."""
        owned = self._owned_partitions()
        if owned != self._watched:
            self._due = {s.sweep_id: None for s in self.table.open(owned)}
            self._watched = owned
        ctx = self.context()
        pending: list[Awaitable[Any]] = []
        changed = self._start_scheduled(ctx, owned, pending)
        for sweep_id, due in list(self._due.items()):
            if due is not None and ctx.now < due:
                continue
            try:
                state = self.table.load(sweep_id)
                if state is not None:
                    state, effects = lifecycle.tick(state, ctx)
            except Exception as exc:  # one broken sweep must not hold up the others
                log.error("sweep %s cannot be looked at on the timer", sweep_id, exc_info=exc)
                state = None
            if state is None:
                self._due.pop(sweep_id, None)
                continue
            if effects.changed:
                self._commit(state, effects, pending)
                changed = True
            else:
                self._watch(state, ctx)
        if changed:
            await self.sender.wait(pending)
            await flush()
        await self._sweep_case_files(ctx.now, owned)

    def _start_scheduled(
        self, ctx: SweepContext, owned: set[int], pending: list[Awaitable[Any]]
    ) -> bool:
        """Start the sweep of each system whose schedule has elapsed (see the module doc)."""
        if not self.settings.sweep_schedules:
            return False
        started = False
        for system in ctx.systems.values():
            key = _SCHEDULE_KEY.format(system.name)
            if system.sweep is None or self.table.partition(key) not in owned:
                continue
            mark = self.table.mark(key)
            last = datetime.fromisoformat(mark["started"]) if mark.get("started") else None
            if not lifecycle.schedule_due(system, last, ctx.now) or self._still_open(mark):
                continue
            event = lifecycle.scheduled_request(system, ctx.now)
            if self.table.partition(event.sweep_id) not in owned:
                continue  # next minute, another sweep id: one on a partition of ours
            if self.table.load(event.sweep_id) is not None:
                continue  # started this very minute (before a restart)
            state, effects = lifecycle.request(None, event, ctx)
            if state is None:  # cannot happen: the system has a sweep policy
                continue
            self._commit(state, effects, pending)
            self.table.set_mark(key, ctx.now, event.sweep_id)
            log.info("sweep %s started on the schedule of system %s", event.sweep_id, system.name)
            started = True
        return started

    def _still_open(self, mark: dict[str, Any]) -> bool:
        """The last scheduled sweep still counts, waits for approval, or sweeps: not another."""
        sweep_id = mark.get("sweep_id")
        try:
            state = self.table.load(sweep_id) if sweep_id else None
        except ValueError:
            return False
        return state is not None and not state.is_final

    def _commit(
        self, state: SweepState, effects: SweepEffects, pending: list[Awaitable[Any]]
    ) -> None:
        """Certificate first, then the state, then the outputs (as a finished request)."""
        if effects.certificate:
            self._issue_certificate(state, effects)
        self.table.store(state)
        self._watch(state, self.context())
        self.sender.sweep_effects(effects, pending)

    def _watch(self, state: SweepState, ctx: SweepContext) -> None:
        if state.is_final:
            self._due.pop(state.sweep_id, None)
        elif self._watched is None or self.table.partition(state.sweep_id) in self._watched:
            self._due[state.sweep_id] = lifecycle.next_check(state, ctx) or datetime.max.replace(
                tzinfo=UTC
            )

    def _issue_certificate(self, state: SweepState, effects: SweepEffects) -> None:
        """Sign the sweep's certificate; a broken one never stops the worker, the status says so."""
        register = self._register()
        issuer_name = register.controller.name if register.controller else self.settings.app_id
        try:
            issuer = SweepCertificateIssuer.for_register(
                self.settings.key_store_dir(), issuer_name, register
            )
            status = effects.statuses[-1]
            path: Path | None = issuer.issue(status, self.certificates_dir)
        except Exception as exc:
            log.error("sweep %s: the certificate could not be issued", state.sweep_id, exc_info=exc)
            lifecycle.certificate_issued(state, effects, None, type(exc).__name__)
            return
        lifecycle.certificate_issued(state, effects, str(path))

    async def _sweep_case_files(self, now: datetime, owned: set[int]) -> None:
        """Our own case files past their retention go, on `case_files.schedule`.

        In a thread: the sweep reads every case file's folder entry (thousands of requests'
        results, exports and letters) and removes files. On the event loop, the first tick
        after a start under load held up every request in flight for 50 ms and more, and
        queued the disk behind it."""
        if self.table.partition(_CASE_FILES_KEY) not in owned:
            return
        policy = self._register().case_files
        mark = self.table.mark(_CASE_FILES_KEY)
        if mark.get("started"):
            last = datetime.fromisoformat(mark["started"])
            if now < last + parse_period(policy.schedule):
                return
        try:  # it logs what it removed itself
            await asyncio.to_thread(
                sweep_case_files,
                self.settings.data_dir,
                policy,
                self._data_keys,
                now=now,
                pause=_let_the_loop_run,
            )
        except NotImplementedError:
            if not self._case_files_missing:
                log.warning("case files are not swept: this version cannot sweep them yet")
                self._case_files_missing = True
            return
        except Exception as exc:  # the next schedule tries again; the worker goes on
            log.error("the case-file sweep failed", exc_info=exc)
        self.table.set_mark(_CASE_FILES_KEY, now)


def _let_the_loop_run() -> None:
    """A moment off the interpreter for the event loop (threads share one; Python switches
    between them only every few milliseconds otherwise)."""
    time.sleep(0.001)


__all__ = ["SweepRunner", "SweepTable"]
