"""The connector worker: consumes tasks for its systems, runs connectors, publishes outcomes.

Retention sweeps (`SweepDispatched`) arrive on the same tasks topic and run under the same
per-system limit; their outcome (`SweepOutcome`, keyed by sweep id) goes to the outcomes topic.

One consumer group per worker group (`System.group` in the register), so a slow vendor can be
given its own workers. Offsets are committed only after every outcome of a batch was taken
by the broker: a crash means re-delivery, never a lost task (at least once; connectors are
idempotent and the orchestrator ignores duplicate outcomes).

The bus is authenticated (`schemas.primitives.signing`): a task runs only when signed by a
publisher allowed to dispatch it (the orchestrator); anything else is dead-lettered at stage
`signature` and not run. Outcomes are signed with the group's own key (`connectors-<group>`),
which the orchestrator accepts only for the systems this group serves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from connectors import registry
from connectors.base import Connector, ConnectorError, Result, SweepResult
from connectors.execute import outcome_of, perform, perform_sweep, sweep_outcome_of
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
from schemas.topics import DEAD_LETTER, OUTCOMES, TASKS

log = logging.getLogger("dsr.connectors")


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
        self._watched = register if isinstance(register, WatchedRegister) else None
        self._connectors: dict[str, Connector | ConnectorError] = {}
        self._retired: list[Connector] = []
        self._limits: dict[str, asyncio.Semaphore] = {}
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
        """Consume and process tasks until `stop()` is called."""
        self._keys_from_env()
        consumer = AIOKafkaConsumer(
            TASKS.name,
            **self.kafka.consumer_options(),
            group_id=f"dsr-connectors-{self.group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_batch,
        )
        producer = AIOKafkaProducer(
            **self.kafka.aiokafka_options(), acks="all", linger_ms=2, enable_idempotence=False
        )
        await producer.start()
        await consumer.start()
        log.info("connector worker %s serving %s", self.group, ", ".join(sorted(self.systems)))
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                if ready is not None and consumer.assignment():
                    ready.set()
                records = [r for batch in batches.values() for r in batch]
                if not records:
                    continue
                self._refresh()
                await self._process(records, producer)
                await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()
            for connector in [*self._connectors.values(), *self._retired]:
                if isinstance(connector, Connector):
                    await connector.aclose()

    def stop(self) -> None:
        """Ask `run()` to finish after the current batch."""
        self._stopping.set()

    async def _process(self, records: Iterable[ConsumerRecord], producer: AIOKafkaProducer) -> None:
        jobs = []
        for record in records:
            try:
                envelope = decode(record.value, record.headers, key=record.key, expect=TASKS.events)
            except EnvelopeError as exc:
                letter = self._dead_letter(
                    producer, record, exc.stage, str(exc), exc.ce_type, withhold=exc.withhold
                )
                jobs.append(letter)
                continue
            task = envelope.body
            if not isinstance(task, (TaskDispatched, SweepDispatched)):
                continue  # the tasks topic carries nothing else (decode checked the type)
            if task.system not in self.systems:
                continue  # another group's: it verifies (and dead-letters) its own
            try:
                self._verified(record, envelope.type)
            except EnvelopeError as exc:
                jobs.append(self._dead_letter(producer, record, exc.stage, str(exc), exc.ce_type))
                continue
            jobs.append(self._run_task(producer, task))
        futures = await asyncio.gather(*jobs)
        await asyncio.gather(*futures)

    async def _run_task(
        self, producer: AIOKafkaProducer, task: TaskDispatched | SweepDispatched
    ) -> asyncio.Future[object]:
        # Sweeps share the system's limit with tasks: a sweep must not starve requests.
        limit = self._limits.setdefault(task.system, asyncio.Semaphore(self.concurrency))
        outcome: TaskOutcome | SweepOutcome
        if isinstance(task, SweepDispatched):
            async with limit:
                outcome = await self.execute_sweep(task)
        else:
            if task.not_before is not None:
                wait = (task.not_before - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    await asyncio.sleep(min(wait, 300))
            async with limit:
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
        return await perform(
            connector,
            task,
            frozenset(rights) if rights is not None else None,
            store=self.records,
        )

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


__all__ = ["ConnectorWorker"]
