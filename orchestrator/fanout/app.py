"""The orchestrator as a Faust app: one thin agent over requests and outcomes, one table.

One event's path, in order:

1. `orchestrator.intake.decode`: the agent takes a batch (`fanout.batches`); each record is
   decoded into its model, a request event's signature checked before its body is parsed.
   Invalid records are turned away (dead letters), misrouted ones rerouted.
2. `orchestrator.fanout.table`: the request's state is loaded (sealed, `lifecycle.state`).
3. `orchestrator.lifecycle.reducer.decide`: the pure lifecycle decides the request's events of
   the batch: new state and effects, one status event per request per batch.
4. `orchestrator.fanout.table`: the state is stored once per request per batch; the watchlist
   (`lifecycle.watch`) notes when the timer must look at it next.
5. `orchestrator.fanout.finish`: outcomes are saved; a finished request gets its export or
   certificate, letters and result file (`orchestrator.artifacts`), before its final status.
6. `orchestrator.fanout.output`: tasks (sealed with the request's data key), status events,
   dead letters and reroutes are sent; the batch waits until the broker has them all, then the
   table's changelog is flushed, and only then do the batch's offsets count as done.

Retention sweeps' events are sorted aside by intake and decided by `orchestrator.fanout.sweeps`
(their own table and lifecycle), in the same batch and with the same flush before the offsets.

Beside the agent, `orchestrator.fanout.timers` runs on Faust's timer: deadlines, shredding, the
recovery index, resending final statuses after a restart. The per-event cost of Faust, not the
broker, limits throughput; hence batches. Delivery is at least once; the reducer is idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from faust.types import TP, EventT

from orchestrator.artifacts.delivery import DeliveryError
from orchestrator.fanout.batches import take_batches
from orchestrator.fanout.faust_app import create_app, input_topic, requests_table, sweeps_table
from orchestrator.fanout.finish import AnyRegister, Finisher
from orchestrator.fanout.output import OutputProducer, Sender
from orchestrator.fanout.sweeps import SweepRunner, SweepTable
from orchestrator.fanout.table import RequestTable
from orchestrator.fanout.timers import Timers
from orchestrator.intake.decode import Intake, partition_for, sort_batch
from orchestrator.lifecycle import reducer as lifecycle
from orchestrator.lifecycle.reducer import Context, Effects, RequestState
from orchestrator.lifecycle.watch import Watchlist
from orchestrator.runtime.config import Settings
from schemas.events import RequestSubmitted
from schemas.primitives.sealing import SealingError
from schemas.topics import REQUESTS

log = logging.getLogger("dsr.orchestrator")


class Orchestrator:
    """Builds the Faust app, and wires its agent and timer to the collaborators."""

    def __init__(self, settings: Settings, register: AnyRegister) -> None:
        self.settings = settings
        # Before anything else: without publisher keys there is nothing to accept requests by.
        self.verifier = settings.request_verifier()
        self.policy = settings.policy()
        self.partitions = settings.kafka.partitions
        # Only this process destroys data keys, so it may cache them.
        self.data_keys = settings.data_keys(cache_size=4096)
        self.finisher = Finisher(settings, register, self.data_keys, self.policy.verification)
        self.systems = tuple(self.finisher.register().names)
        self.app = create_app(settings)
        self.output = OutputProducer(settings.kafka.aiokafka_options(), self.partitions)
        self.sender = Sender(self.output, self.data_keys, settings.source)
        self.table = requests_table(self.app, self.partitions)
        watchlist = Watchlist(self.policy)
        self.requests = RequestTable(
            self.table, self.data_keys, watchlist, self.partitions, create_keys_ahead=True
        )
        self.sweeps = SweepRunner(
            settings,
            SweepTable(sweeps_table(self.app, self.partitions), self.partitions),
            self.sender,
            register=self.finisher.register,
            data_keys=self.data_keys,
            owned_partitions=self._owned_partitions,
        )
        self.timers = Timers(
            self.requests,
            self.finisher,
            context=self._context,
            carry_out=self._carry_out,
            owned_partitions=self._owned_partitions,
            data_dir=settings.data_dir,
            sweeps=self.sweeps,
            flush=self._flush,
        )
        self.app.agent(input_topic(self.app), name="lifecycle")(self._agent)
        self.app.timer(settings.tick_interval_seconds)(self.timers.tick)
        self.app.on_partitions_revoked.connect(self._partitions_revoked)

    def _partitions_revoked(
        self, sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any
    ) -> None:
        """A rebalance: what the timer knows of these partitions' requests may go stale."""
        revoked: set[TP] = args[0]
        self.timers.partitions_revoked(
            {tp.partition for tp in revoked if tp.topic == REQUESTS.name}
        )

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        try:
            async for events in take_batches(
                stream, self.settings.batch_size, within=self.settings.batch_within_seconds
            ):
                await self.handle(events)
        finally:
            await self.output.stop()
            # A clean stop has saved the table: the exported requests' records can go now.
            self.finisher.discard_records(everything=True)
            await asyncio.to_thread(self.finisher.close)

    async def handle(self, events: Sequence[EventT]) -> None:
        """Process one batch: decode, decide per request, store state once, carry out effects."""
        self.systems = tuple(self.finisher.register().names)  # picks up an edited register
        self.timers.note_partitions(self._owned_partitions())
        intake = sort_batch((e.message for e in events), self.verifier, self.partitions)
        pending = self.sender.turned_away(intake.turned_away)
        await self.requests.prepare(
            request_id
            for request_id, items in intake.by_request.items()
            if any(isinstance(event, RequestSubmitted) for _, event in items)
        )
        all_effects, finished = self._decide(intake, pending)
        swept = bool(intake.sweeps) and self.sweeps.handle(intake.sweeps, pending)
        await self._carry_out(all_effects, finished, pending)
        if all_effects or swept:
            # Faust commits a batch's offsets once the agent moves on, but writes the table's
            # changelog through a buffer: a worker killed in between would lose the state of
            # requests whose events count as done, and they would never finish. Flush first.
            await self.app.producer.flush()

    def _decide(
        self, intake: Intake, pending: list[Awaitable[Any]]
    ) -> tuple[list[Effects], list[tuple[RequestState, Effects]]]:
        """Decide each request's events and store its state; refused events go to `pending`."""
        all_effects: list[Effects] = []
        finished: list[tuple[RequestState, Effects]] = []
        dead_letter = self.sender.dead_letter
        for request_id, items in intake.by_request.items():
            try:
                state = self.requests.load(request_id)
            except SealingError as exc:
                log.error("state of request %s cannot be opened: %s", request_id, exc)
                reason = f"the state of request {request_id!r} cannot be opened: {exc}"
                pending += [dead_letter(record, "process", reason) for record, _ in items]
                continue
            # A decision that raises part-way is redone from the stored state (`decide`).
            reload = functools.partial(self.requests.load, request_id)
            decision = lifecycle.decide(state, items, self._context, reload=reload)
            for record, reason, error in decision.refused:
                if error is not None:  # a bug must not stop the worker: the event is kept
                    log.error("processing failed for request %s", request_id, exc_info=error)
                pending.append(dead_letter(record, "process", reason))
            if decision.state is None or not decision.effects.changed:
                continue
            if decision.extended:
                self.finisher.extension_notice(decision.state, decision.effects)
            if decision.effects.notices:
                self.finisher.notices(decision.state, decision.effects)
            # A state final already when loaded was finished by a previous owner, which may
            # have died before sending its final status: the timer's rebuild looks at it.
            inherited_final = state is not None and state.is_final
            self.requests.store(request_id, decision.state, inherited_final=inherited_final)
            all_effects.append(decision.effects)
            if decision.effects.finished:
                finished.append((decision.state, decision.effects))
        return all_effects, finished

    async def _carry_out(
        self,
        all_effects: list[Effects],
        finished: list[tuple[RequestState, Effects]],
        pending: list[Awaitable[Any]] | None = None,
    ) -> None:
        """Documents first, then the sends; wait until the broker has every output."""
        if any(effects.stored_outcomes for effects in all_effects):
            # In a thread: creating files can stall on a busy disk, the event loop must not.
            await asyncio.to_thread(self.finisher.save_outcomes, all_effects)
        if finished:
            letters = await self.finisher.finish_all(finished)
            if self.finisher.mailer is not None:
                # Each answer is e-mailed on its own connection: side by side.
                results = await asyncio.gather(
                    *(
                        self._deliver(state, effects, documents)
                        for (state, effects), documents in zip(finished, letters, strict=True)
                    ),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
        pending = [] if pending is None else pending
        self.sender.effects(all_effects, pending)
        await self.sender.wait(pending)

    async def _deliver(self, state: RequestState, effects: Effects, documents: list[Path]) -> None:
        """E-mail the answer when SMTP is configured: the request is then delivered (Art. 12(3))."""
        mailer = self.finisher.mailer
        if mailer is None:
            return
        try:
            event = await mailer.deliver(state, documents)
        except DeliveryError as exc:
            log.warning("request %s: the answer could not be e-mailed: %s", state.request_id, exc)
            more = lifecycle.delivery_failed(state, str(exc), self._context())
        else:
            if event is None:
                return
            _, more = lifecycle.deliver(state, event, self._context())
        artifact = effects.statuses[-1].artifact if effects.statuses else None
        effects.statuses += [s.model_copy(update={"artifact": artifact}) for s in more.statuses]
        self.requests.store(state.request_id, state)

    async def _flush(self) -> None:
        """Write the tables' changelog buffer out (before offsets count as done)."""
        await self.app.producer.flush()

    def _context(self) -> Context:
        return Context(systems=self.systems, policy=self.policy, now=datetime.now(UTC))

    def _owned_partitions(self) -> set[int]:
        assigned = self.app.assignor.assigned_actives()
        return {tp.partition for tp in assigned if tp.topic == REQUESTS.name}


__all__ = ["Orchestrator", "partition_for"]
