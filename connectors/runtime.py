"""The connector worker: consumes tasks for its systems, runs connectors, publishes outcomes.

Retention sweeps (`SweepDispatched`) arrive on the same tasks topic and run under the same
per-system limit; their outcome (`SweepOutcome`, keyed by sweep id) goes to the outcomes topic.

One consumer group per worker group (`System.group` in the register), so a slow vendor can be
given its own workers. Tasks are keyed by system, so one worker of the group owns a system's
partition, and its limiter (`connectors.http`) is the vendor's rate budget and concurrency cap
for the whole deployment (docs/vendor-budget.md). Tasks run as they arrive, a system's beside
the others': a throttled vendor holds up no other system, also not one on its partition. An
offset is committed once its task and every task before it on the partition are done and their
outcomes taken by the broker (out-of-order completion, in-order commit): a crash means
re-delivery, never a lost task (at least once; connectors are idempotent and the orchestrator
ignores duplicate outcomes).

On a rebalance the worker stops starting calls for the partitions it gives up, lets the calls
in flight end (for at most half the rebalance timeout), and commits what is done. A partition
it is given starts with its systems' last window counted as used (`connectors.http.take_over`):
the old owner and the new one together never exceed a vendor's limit in any window.

A connector whose tasks wait for the vendor (`Connector.waits`, e.g. OpenDSR: minutes until
the processor is done) runs them beside the batches, so they hold up no other task; their
offsets are committed when they start. A worker that dies meanwhile loses them, and the
orchestrator dispatches them again after its task timeout; the connector then resumes the
vendor's work by the task's request id (`current_task`), it does not start it twice. The
worker also follows `dsr.opendsr.callbacks.v1` (processors' status callbacks, verified by the
intake) and hands each to its system's connector (`Connector.receive`) to wake the task.

The bus is authenticated (`schemas.primitives.signing`): a task runs only when signed by a
publisher allowed to dispatch it (the orchestrator); anything else is dead-lettered at stage
`signature` and not run. Outcomes are signed with the group's own key (`connectors-<group>`),
which the orchestrator accepts only for the systems this group serves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from connectors import registry
from connectors.base import Connector, ConnectorError, Result, SweepResult, current_task
from connectors.execute import outcome_of, perform, perform_sweep, sweep_outcome_of
from connectors.http import take_over
from schemas.envelope import (
    EnvelopeError,
    KafkaMessage,
    RawEvent,
    dead_letter_for,
    decode,
    encode,
    header_dict,
)
from schemas.events import OutcomeStatus, TaskDispatched, TaskOutcome
from schemas.kafka import KafkaSettings
from schemas.primitives.producer import SerialProducer
from schemas.primitives.records import RecordStore
from schemas.primitives.sealing import (
    DataKeyDestroyed,
    DataKeyMissing,
    DataKeys,
    SealingError,
    open_task,
)
from schemas.primitives.signing import (
    TASK_EVENT_TYPES,
    PublisherKeyError,
    RequestSigner,
    RequestVerifier,
    connector_publisher,
)
from schemas.register import Register, System, WatchedRegister
from schemas.sweeps import SweepDispatched, SweepOutcome
from schemas.topics import DEAD_LETTER, OPENDSR_CALLBACKS, OUTCOMES, TASKS

log = logging.getLogger("dsr.connectors")


@dataclass(eq=False)
class _Partition:
    """An owned partition of the tasks topic: its tasks in flight, for in-order commits."""

    since: float = field(default_factory=time.monotonic)  # when it was assigned to us
    unfinished: set[int] = field(default_factory=set)
    jobs: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    #: Offsets whose task has begun (holds its system's slot): it may be calling the vendor.
    started: set[int] = field(default_factory=set)
    #: Systems whose limiter was told we took the partition over (`take_over`).
    primed: set[str] = field(default_factory=set)
    fetched: int | None = None  # one past the last offset taken
    committed: int | None = None
    #: Never committed by the group when assigned: nobody called its systems' vendors for it
    #: before (see `_Handover.on_partitions_assigned`), so its first calls need not wait.
    fresh: bool = False

    def done_up_to(self) -> int | None:
        """The offset to commit: the first not done (every task before it is)."""
        if self.fetched is None:
            return None
        return min(self.unfinished) if self.unfinished else self.fetched


class _Handover(ConsumerRebalanceListener):
    """Hands partitions over between the group's workers (awaited by aiokafka in order)."""

    def __init__(self, worker: ConnectorWorker, consumer: AIOKafkaConsumer) -> None:
        self.worker = worker
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Stop starting tasks there, let running ones end (bounded), commit what is done."""
        await self.worker._release(self.consumer, list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Each assigned partition starts afresh: its systems wait out the last window, unless
        the group never committed the partition. A worker commits a partition before it starts
        the first task there (`ConnectorWorker._claim`), so "never committed" means no worker
        ever called a vendor for its tasks: the first start of a deployment (or `dsr up`) need
        not wait a window (Freshdesk's is a minute)."""
        owned = sorted(tp.partition for tp in assigned)
        for tp in assigned:
            committed = await self.consumer.committed(tp)
            self.worker._partitions[tp] = _Partition(fresh=committed is None)
        log.info("connector worker %s owns %s partitions %s", self.worker.group, TASKS.name, owned)


class ConnectorWorker:
    """Runs the connectors of one worker group against the tasks topic."""

    def __init__(
        self,
        kafka: KafkaSettings,
        register: Register | WatchedRegister,
        group: str = "default",
        *,
        concurrency: int = 8,
        source: str = "dsr-connectors",
        max_batch: int = 500,
        max_pending: int = 5_000,
        records: RecordStore | None = None,
        data_keys: DataKeys | None = None,
        verify: Callable[[RawEvent], None] | None = None,
        signer: RequestSigner | None = None,
    ) -> None:
        self.kafka = kafka
        #: The tasks' signature check, and the group's key for outcomes. None: `run()` takes
        #: them from the environment; `_process` alone (tests, tools) leaves them out.
        self.verify = verify
        self.signer = signer
        #: Where access and portability records go; None sends them inline (tests, dry runs).
        self.records = records
        #: Opens the sealed subject of a task (the orchestrator seals every task it sends).
        self.data_keys = data_keys
        self.group = group
        self.concurrency = concurrency
        self.source = f"{source}/{group}"
        self.max_batch = max_batch
        #: Tasks a partition may have in flight before it is paused (memory stays bounded; a
        #: throttled system fills it only after this many of its tasks are waiting).
        self.max_pending = max_pending
        #: How long a revoked partition's running tasks may take to end before they are
        #: cancelled (the group waits for us); half the rebalance timeout.
        self.handover_seconds = kafka.rebalance_timeout_ms / 2000
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._failure: BaseException | None = None
        self._watched = register if isinstance(register, WatchedRegister) else None
        self._connectors: dict[str, Connector | ConnectorError] = {}
        self._retired: list[Connector] = []
        self._limits: dict[str, asyncio.Semaphore] = {}
        #: Tasks of waiting connectors (`Connector.waits`), running beside the batches.
        self._waiting: set[asyncio.Task[object]] = set()
        self._stopping = asyncio.Event()
        self.systems: dict[str, System] = {}
        self._register: Register | None = None
        self._load(register.current() if isinstance(register, WatchedRegister) else register)
        self.processed = 0

    def _load(self, register: Register) -> None:
        """Take our group's systems from the register; rebuild the connectors that changed."""
        systems = {s.name: s for s in register.systems if s.group == self.group}
        for name in list(self._connectors):
            if systems.get(name) != self.systems.get(name):
                old = self._connectors.pop(name)
                if isinstance(old, Connector):
                    self._retired.append(old)
        self.systems = systems
        self._register = register

    def _refresh(self) -> None:
        """Pick up a changed register file before the next batch."""
        if self._watched is not None and self._watched.current() is not self._register:
            self._load(self._watched.current())
            log.info(
                "connector worker %s now serves %s", self.group, ", ".join(sorted(self.systems))
            )

    def _connector(self, name: str) -> Connector | ConnectorError:
        if name not in self._connectors:
            try:
                self._connectors[name] = registry.build(self.systems[name])
            except ConnectorError as exc:  # kept, so every task for it reports the reason
                log.error("connector for system %s cannot start: %s", name, exc)
                self._connectors[name] = exc
        return self._connectors[name]

    def _keys_from_env(self) -> None:
        """The keys a worker process runs with: DSR_PUBLISHER_KEYS (to verify tasks) and its
        group's key, DSR_PUBLISHER_ID `connectors-<group>` with DSR_PUBLISHER_KEY_FILE.

        Fails closed: without them the worker does not start (unless
        DSR_ALLOW_UNSIGNED_REQUESTS=true, the trusted test setup). Read once, not per message.
        """
        env = os.environ
        allow = env.get("DSR_ALLOW_UNSIGNED_REQUESTS", "").strip().lower() in ("1", "true", "yes")
        if self.verify is None:
            self.verify = RequestVerifier(
                env.get("DSR_PUBLISHER_KEYS") or None,
                allow_unsigned=allow,
                only_events=TASK_EVENT_TYPES,  # no request publisher's secret needed here
            )
        if self.signer is None:
            self.signer = RequestSigner.from_env(env)
        expected = connector_publisher(self.group)
        if (self.signer.publisher != expected) if self.signer is not None else not allow:
            raise PublisherKeyError(
                f"connector worker group {self.group!r} signs its outcomes as publisher "
                f"{expected!r}: set DSR_PUBLISHER_ID={expected} and DSR_PUBLISHER_KEY_FILE to "
                "its key (`dsr publishers create "
                f"{expected} --event dsr.task.outcome.v1 --event dsr.sweep.outcome.v1`)"
            )

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Consume and carry out tasks until `stop()` is called."""
        self._keys_from_env()
        consumer = AIOKafkaConsumer(
            **self.kafka.consumer_options(),
            group_id=f"dsr-connectors-{self.group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_batch,
            rebalance_timeout_ms=self.kafka.rebalance_timeout_ms,
        )
        # One task's outcome send at a time (`SerialProducer`: no herd at a full batch).
        producer = SerialProducer(
            **self.kafka.aiokafka_options(), acks="all", linger_ms=2, enable_idempotence=False
        )
        await producer.start()
        await consumer.start()
        consumer.subscribe([TASKS.name], listener=_Handover(self, consumer))
        log.info("connector worker %s serving %s", self.group, ", ".join(sorted(self.systems)))
        callbacks = asyncio.create_task(self._follow_callbacks()) if self._any_waits() else None
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                if ready is not None and consumer.assignment():
                    ready.set()
                if self._failure is not None:
                    raise self._failure  # as before: the worker stops, its tasks come again
                if batches:
                    self._refresh()
                for tp, records in batches.items():
                    await self._claim(consumer, tp, records)
                    self._take(tp, records, producer)
                await self._commit(consumer)
                self._pace(consumer)
        finally:
            await self._release(consumer, list(self._partitions))
            # A waiting task cut short is dispatched again by the orchestrator and resumed.
            for task in [*self._waiting, *([callbacks] if callbacks else [])]:
                task.cancel()
            await asyncio.gather(
                *self._waiting, *([callbacks] if callbacks else []), return_exceptions=True
            )
            await consumer.stop()
            await producer.stop()
            for connector in [*self._connectors.values(), *self._retired]:
                if isinstance(connector, Connector):
                    await connector.aclose()

    def stop(self) -> None:
        """Ask `run()` to finish: no further task starts, running ones end, done ones commit."""
        self._stopping.set()

    async def _claim(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        """Before the first task of a never-committed partition starts, commit its position:
        from then on a later owner knows calls may have been made and waits one window."""
        part = self._partitions.get(tp)
        if part is None or not part.fresh or part.committed is not None or not records:
            return
        try:
            await consumer.commit({tp: records[0].offset})
        except KafkaError as exc:  # then do not count on freshness: wait like any new owner
            log.warning("connector worker %s: claim not committed (%r)", self.group, exc)
            part.fresh = False
            return
        part.committed = records[0].offset

    def _take(
        self, tp: TopicPartition, records: list[ConsumerRecord], producer: AIOKafkaProducer
    ) -> None:
        """Start a job per record of an owned partition; jobs finish in any order."""
        part = self._partitions.get(tp)
        if part is None:
            return  # given up meanwhile: its new owner reads these again
        for record in records:
            part.fetched = record.offset + 1
            part.unfinished.add(record.offset)
            job = asyncio.create_task(self._handle(record, producer, part))
            part.jobs[record.offset] = job
            job.add_done_callback(functools.partial(self._finished, part, record.offset))

    def _finished(self, part: _Partition, offset: int, job: asyncio.Task[None]) -> None:
        part.jobs.pop(offset, None)
        part.started.discard(offset)
        if job.cancelled():
            return  # not done: the partition's next owner gets the task again
        failure = job.exception()
        if failure is not None:
            self._failure = self._failure or failure
            return
        part.unfinished.discard(offset)

    async def _commit(
        self, consumer: AIOKafkaConsumer, parts: dict[TopicPartition, _Partition] | None = None
    ) -> None:
        """Commit each partition up to its first task not done (in order, whatever finished
        first). A failed commit only means those tasks come again (at least once)."""
        parts = self._partitions if parts is None else parts
        offsets = {}
        for tp, part in parts.items():
            done = part.done_up_to()
            if done is not None and done != part.committed:
                offsets[tp] = done
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("connector worker %s: offsets not committed (%r)", self.group, exc)
            return
        for tp, done in offsets.items():
            parts[tp].committed = done

    def _pace(self, consumer: AIOKafkaConsumer) -> None:
        """Pause fetching a partition with `max_pending` tasks in flight; resume at half."""
        for tp, part in self._partitions.items():
            if len(part.unfinished) >= self.max_pending:
                consumer.pause(tp)
            elif len(part.unfinished) <= self.max_pending // 2:
                consumer.resume(tp)

    async def _release(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Give partitions up: cancel their tasks that have not begun, give the running ones
        `handover_seconds` to end (then cancel them), and commit what is done. Awaited by
        aiokafka before the group assigns the partitions again, so from the new owner's
        assignment on, this worker starts no call for their systems."""
        parts = {tp: self._partitions.pop(tp) for tp in tps if tp in self._partitions}
        jobs = [(o in p.started, job) for p in parts.values() for o, job in p.jobs.items()]
        for started, job in jobs:
            if not started:
                job.cancel()
        running = [job for started, job in jobs if started]
        if running:
            _, late = await asyncio.wait(running, timeout=self.handover_seconds)
            for job in late:
                job.cancel()
        await asyncio.gather(*(job for _, job in jobs), return_exceptions=True)
        await self._commit(consumer, parts)

    async def _process(self, records: Iterable[ConsumerRecord], producer: AIOKafkaProducer) -> None:
        """Carry out records of the tasks topic (tools and tests; `run()` takes them as they
        arrive instead), until the broker has every outcome."""
        await asyncio.gather(*(self._handle(record, producer) for record in records))

    async def _handle(
        self, record: ConsumerRecord, producer: AIOKafkaProducer, part: _Partition | None = None
    ) -> None:
        """Carry out one record: dead-letter it, skip another group's task, or run ours; done
        when the broker has its outcome (a waiting connector's: when it starts)."""
        try:
            envelope = decode(record.value, record.headers, expect=TASKS.events)
            if isinstance(envelope.body, (TaskDispatched, SweepDispatched)):
                _check_key(record.key, envelope.body, envelope.type)
        except EnvelopeError as exc:
            await (
                await self._dead_letter(
                    producer, record, exc.stage, str(exc), exc.ce_type, withhold=exc.withhold
                )
            )
            return
        task = envelope.body
        if not isinstance(task, (TaskDispatched, SweepDispatched)):
            return  # the tasks topic carries nothing else (decode checked the type)
        if task.system not in self.systems:
            return  # another group's: it verifies (and dead-letters) its own
        try:
            self._verified(record, envelope.type)
        except EnvelopeError as exc:
            await (await self._dead_letter(producer, record, exc.stage, str(exc), exc.ce_type))
            return
        started = None
        if part is not None:
            if task.system not in part.primed:
                part.primed.add(task.system)
                if not part.fresh:
                    take_over(task.system, part.since)
            started = functools.partial(part.started.add, record.offset)
        if isinstance(task, TaskDispatched) and self._waits(task.system):
            self._beside(self._run_task(producer, task))
            return
        await (await self._run_task(producer, task, started))

    def _waits(self, system: str) -> bool:
        connector = self._connector(system)
        return isinstance(connector, Connector) and connector.waits

    def _any_waits(self) -> bool:
        """Whether a system of this group has a waiting connector (checked by its class)."""
        for system in self.systems.values():
            try:
                if registry.connector_class(system.connector).waits:
                    return True
            except ConnectorError:
                continue  # a declarative spec, or a broken entry: not a waiting connector
        return False

    def _beside(self, job: Coroutine[Any, Any, asyncio.Future[object]]) -> None:
        """Run a waiting connector's task beside the batches; its outcome is sent when done."""

        async def run() -> object:
            return await (await job)

        task = asyncio.create_task(run())
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _follow_callbacks(self) -> None:
        """Hand processors' status callbacks to their system's connector, from now on (one
        missed while no task waits is harmless: a task reads the status before it waits)."""
        consumer = AIOKafkaConsumer(
            OPENDSR_CALLBACKS.name,
            **self.kafka.consumer_options(),
            group_id=None,  # every replica: any of them may hold the waiting task
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            async for record in consumer:
                try:
                    envelope = decode(record.value, record.headers, expect=OPENDSR_CALLBACKS.events)
                except EnvelopeError:
                    continue  # a hint only: the connector reads the status itself
                body = envelope.body
                connector = self._connectors.get(getattr(body, "system", ""))
                if isinstance(connector, Connector):
                    connector.receive(body)
        finally:
            await consumer.stop()

    async def _run_task(
        self,
        producer: AIOKafkaProducer,
        task: TaskDispatched | SweepDispatched,
        started: Callable[[], None] | None = None,
    ) -> asyncio.Future[object]:
        """Run a task in its system's slot (`started` is told when it has one); the returned
        future resolves when the broker has the outcome."""
        # Sweeps share the system's limit with tasks: a sweep must not starve requests.
        limit = self._limits.setdefault(task.system, asyncio.Semaphore(self.concurrency))
        outcome: TaskOutcome | SweepOutcome
        if isinstance(task, SweepDispatched):
            async with limit:
                if started is not None:
                    started()
                outcome = await self.execute_sweep(task)
        else:
            if task.not_before is not None:
                wait = (task.not_before - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    await asyncio.sleep(min(wait, 300))
            async with limit:
                if started is not None:
                    started()
                outcome = await self.execute(task)
        self.processed += 1
        # Keyed by request id, or a sweep's by its sweep id (`encode`).
        message = self._signed(
            encode(outcome, source=self.source, event_id=f"{task.task_id}#{task.attempt}")
        )
        return await producer.send(
            OUTCOMES.name, key=message.key, value=message.value, headers=message.headers
        )

    def _verified(self, record: ConsumerRecord, ce_type: str) -> None:
        """Raise `EnvelopeError` (stage 'signature') unless the task is signed by a publisher
        allowed to dispatch it. Checked only for our own systems' tasks (each group checks its
        own), after the body is parsed to see whose it is; nothing runs before."""
        if self.verify is None:
            return
        headers = header_dict(record.headers)
        attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
        attributes.setdefault("type", ce_type)
        self.verify(RawEvent(attributes, record.key, record.value or b"", headers))

    def _signed(self, message: KafkaMessage) -> KafkaMessage:
        """An outcome message signed with the group's key (when it has one)."""
        return self.signer.sign(message) if self.signer is not None else message

    async def execute(self, task: TaskDispatched) -> TaskOutcome:
        """Run one task with the system's connector; a broken connector, or a subject that cannot
        be opened, gives a failed outcome."""
        try:
            task = self._opened(task)
        except SealingError as exc:
            log.warning("task %s: the subject cannot be opened: %s", task.task_id, exc)
            if isinstance(exc, DataKeyDestroyed):
                reason = (
                    "the request's data key was destroyed (crypto-shredded); the subject can no "
                    "longer be read, so this task cannot be carried out"
                )
            else:
                reason = f"the task's sealed subject cannot be opened: {exc}"
            return outcome_of(task, Result(OutcomeStatus.FAILED, reason=reason))
        connector = self._connector(task.system)
        if isinstance(connector, ConnectorError):
            result = Result(OutcomeStatus.FAILED, reason=str(connector))
            return outcome_of(task, result, retryable=connector.retryable)
        rights = self.systems[task.system].rights
        token = current_task.set(task)
        try:
            return await perform(
                connector,
                task,
                frozenset(rights) if rights is not None else None,
                store=self.records,
            )
        finally:
            current_task.reset(token)

    async def execute_sweep(self, task: SweepDispatched) -> SweepOutcome:
        """Run one retention sweep with the system's connector; a connector that cannot start
        gives a failed outcome, one that cannot sweep a manual task."""
        connector = self._connector(task.system)
        if isinstance(connector, ConnectorError):
            failed = SweepResult(OutcomeStatus.FAILED, reason=str(connector))
            return sweep_outcome_of(task, failed, retryable=connector.retryable)
        return await perform_sweep(connector, task)

    def _opened(self, task: TaskDispatched) -> TaskDispatched:
        """The task with its subject in the clear (it is sealed with the request's data key)."""
        if task.sealed_subject is None:
            return task  # sent in the clear by a tool or a test
        if self.data_keys is None:
            raise DataKeyMissing(
                "this connector worker has no data-key store; give it DSR_DEK_DIR and "
                "DSR_BUS_KEY_FILE like the orchestrator"
            )
        return open_task(task, self.data_keys.get(task.request_id))

    async def _dead_letter(
        self,
        producer: AIOKafkaProducer,
        record: ConsumerRecord,
        stage: str,
        reason: str,
        ce_type: str | None,
        *,
        withhold: bool = False,
    ) -> asyncio.Future[object]:
        log.warning(
            "dead-lettered %s[%s]@%s (%s): %s",
            record.topic,
            record.partition,
            record.offset,
            stage,
            reason,
        )
        letter = dead_letter_for(
            record,
            stage=stage,  # type: ignore[arg-type]
            reason=reason,
            ce_type=ce_type,
            withhold=withhold,
        )
        message = encode(letter, source=self.source, key=letter.key)
        return await producer.send(
            DEAD_LETTER.name, key=message.key, value=message.value, headers=message.headers
        )


def _check_key(key: bytes | None, task: TaskDispatched | SweepDispatched, ce_type: str) -> None:
    """Tasks are keyed by their system (one worker owns its budget); those sent before that
    by their request (or sweep) id. Any other key: the task was misrouted."""
    own_id = task.request_id if isinstance(task, TaskDispatched) else task.sweep_id
    if key is not None and key.decode("utf-8", "replace") not in (task.system, own_id):
        raise EnvelopeError(
            "body", "the task's Kafka key is not its system; key tasks by system", ce_type
        )


__all__ = ["ConnectorWorker"]
