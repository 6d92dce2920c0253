"""What the orchestrator sends: tasks, status events, dead letters and rerouted events.

Every send is queued without waiting; `Sender.wait` then waits until the broker has taken all
of a batch's outputs, before the batch counts as done. Tasks are signed with the orchestrator's
publisher key (DSR_PUBLISHER_ID `orchestrator`, DSR_PUBLISHER_KEY_FILE): connector workers run
only tasks signed by a publisher allowed to dispatch them (`schemas.primitives.signing`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

from orchestrator.intake.decode import Misrouted, Refused, Stage, partition_for
from orchestrator.lifecycle.reducer import Effects
from orchestrator.lifecycle.sweeps import SweepEffects
from schemas.envelope import KafkaMessage, KafkaRecord, dead_letter_for, encode
from schemas.primitives.producer import SerialProducer
from schemas.primitives.sealing import DataKeys, seal_task
from schemas.primitives.signing import RequestSigner
from schemas.topics import DEAD_LETTER, STATUS, TASKS

log = logging.getLogger("dsr.orchestrator")

#: Topic, partition, offset, stage, reason: where a record was and why it was refused.
_DEAD_LETTERED = "dead-lettered %s[%s]@%s (%s): %s"


class OutputProducer:
    """A batching aiokafka producer for our output events, started on first use.

    Faust's own producer keeps writing the table changelog (single-record batches on the
    embedded broker, which loses table updates on recovery otherwise); outputs go through
    this one, which batches freely and skips Faust's per-message machinery.
    """

    def __init__(self, options: dict[str, Any], partitions: int) -> None:
        self._options = options
        self.partitions = partitions
        self.producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        # Started on first use: Faust starts extra services after the agents.
        if self.producer is None:
            async with self._lock:
                if self.producer is None:
                    producer = SerialProducer(
                        **self._options, acks="all", linger_ms=1, enable_idempotence=False
                    )
                    await producer.start()
                    self.producer = producer
        return self.producer

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def send(
        self, topic: str, message: KafkaMessage, partition: int | None = None
    ) -> Awaitable[Any]:
        """Queue one message; the returned future resolves when the broker has it."""
        producer = await self._started()
        if partition is None and message.key is not None:
            partition = partition_for(message.key.decode(), self.partitions)
        return await producer.send(
            topic,
            key=message.key,
            value=message.value,
            headers=message.headers,
            partition=partition,
        )


class Sender:
    """Queues the outputs of decisions on an `OutputProducer`, and waits for the broker.

    Tasks are signed with `signer`; by default the key the process environment names
    (DSR_PUBLISHER_ID, DSR_PUBLISHER_KEY_FILE), read once here. Without one they go unsigned
    (tools and tests), and connector workers that verify tasks dead-letter them.
    """

    def __init__(
        self,
        output: OutputProducer,
        keys: DataKeys,
        source: str,
        *,
        signer: RequestSigner | None = None,
    ) -> None:
        self.output = output
        self.keys = keys
        self.source = source
        self.signer = signer or RequestSigner.from_env()
        if self.signer is None:
            log.warning(
                "tasks are sent unsigned: connector workers dead-letter them unless they run "
                "with DSR_ALLOW_UNSIGNED_REQUESTS=true; set DSR_PUBLISHER_ID=orchestrator and "
                "DSR_PUBLISHER_KEY_FILE"
            )

    def _task(self, message: KafkaMessage) -> KafkaMessage:
        """A task message signed with the orchestrator's key (when it has one)."""
        return self.signer.sign(message) if self.signer is not None else message

    def effects(self, all_effects: Iterable[Effects], pending: list[Awaitable[Any]]) -> None:
        """Queue the tasks and status events of decisions (after their documents are written)."""
        for effects in all_effects:
            for task in effects.tasks:
                # The subject travels sealed; only the connector workers can open it.
                # Keyed by system: one connector worker owns a system's partition, and with
                # it the vendor's whole rate budget (docs/vendor-budget.md).
                message = encode(
                    seal_task(task, self.keys.get(task.request_id)),
                    source=self.source,
                    key=task.system,
                    event_id=f"{task.task_id}#{task.attempt}",
                )
                pending.append(self.output.send(TASKS.name, self._task(message)))
            for status in effects.statuses:
                event_id = f"{status.request_id}#{status.sequence}"
                message = encode(status, source=self.source, event_id=event_id)
                pending.append(self.output.send(STATUS.name, message))

    def sweep_effects(self, effects: SweepEffects, pending: list[Awaitable[Any]]) -> None:
        """Queue a sweep decision's tasks and status events (nothing personal: not sealed)."""
        for task in effects.tasks:
            event_id = f"{task.task_id}#{task.attempt}"
            message = encode(task, source=self.source, key=task.system, event_id=event_id)
            pending.append(self.output.send(TASKS.name, self._task(message)))
        for status in effects.statuses:
            event_id = f"{status.sweep_id}#{status.sequence}"
            message = encode(status, source=self.source, event_id=event_id)
            pending.append(self.output.send(STATUS.name, message))

    def turned_away(self, records: Iterable[Refused | Misrouted]) -> list[Awaitable[Any]]:
        """Dead letters for refused input, and misrouted events moved to their partition."""
        return [
            self.dead_letter(r.record, r.stage, r.reason, r.ce_type, withhold=r.withhold)
            if isinstance(r, Refused)
            else self._reroute(r.record, r.request_id)
            for r in records
        ]

    async def dead_letter(
        self,
        record: KafkaRecord,
        stage: Stage,
        reason: str,
        ce_type: str | None = None,
        *,
        withhold: bool = False,
    ) -> Awaitable[Any]:
        """Keep a refused record on the dead-letter topic, with why (no personal data)."""
        log.warning(_DEAD_LETTERED, record.topic, record.partition, record.offset, stage, reason)
        letter = dead_letter_for(
            record, stage=stage, reason=reason, ce_type=ce_type, withhold=withhold
        )
        message = encode(letter, source=self.source, key=letter.key)
        return await self.output.send(DEAD_LETTER.name, message)

    async def _reroute(self, record: KafkaRecord, request_id: str) -> Awaitable[Any]:
        raw = record.headers or []
        headers = list(raw.items()) if isinstance(raw, Mapping) else list(raw)
        moved = KafkaMessage(request_id.encode(), record.value or b"", headers)
        partition = partition_for(request_id, self.output.partitions)
        return await self.output.send(record.topic, moved, partition=partition)

    @staticmethod
    async def wait(pending: list[Awaitable[Any]]) -> None:
        """Wait until the broker has taken every queued output."""
        # One after the other, in order: queued concurrently, a thousand sends to a full batch
        # all woke at each drain and all but a few waited again (aiokafka's add_message).
        futures = [await send for send in pending]
        if futures:
            await asyncio.gather(*(f for f in futures if f is not None))


__all__ = ["OutputProducer", "Sender"]
