"""The orchestrator as a Faust app: one thin agent over requests and outcomes, one table.

All decisions live in `orchestrator.lifecycle.reducer`; this module decodes events, loads and stores
request state, and carries out the effects. Events are processed in batches
(`stream.take_events`) with one table write per request per batch: the per-event cost of Faust,
not the broker, limits throughput. Delivery is at least once; the reducer is idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from faust.types import EventT

from orchestrator.artifacts import letters as documents
from orchestrator.artifacts.certificate import CertificateIssuer
from orchestrator.artifacts.export import write_export
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.lifecycle import recovery
from orchestrator.lifecycle import reducer as lifecycle
from orchestrator.lifecycle.reducer import Context, Effects, RequestState
from orchestrator.lifecycle.state import decode_state, encode_state, watch_view
from orchestrator.runtime.config import Settings
from schemas.envelope import EnvelopeError, KafkaMessage, dead_letter_for, decode, encode
from schemas.events import (
    DeadlineExtended,
    IdentityVerified,
    Record,
    RequestSubmitted,
    RequestType,
    TaskOutcome,
)
from schemas.primitives.records import RecordStore, RecordStoreError
from schemas.primitives.sealing import SealingError, seal_task
from schemas.register import Register, WatchedRegister
from schemas.topics import DEAD_LETTER, OUTCOMES, REQUESTS, STATUS, TASKS

log = logging.getLogger("dsr.orchestrator")

TABLE_NAME = "requests"


#: After a worker (re)starts, requests finished this recently get their final status again.
_RESEND_WINDOW = timedelta(hours=1)


@functools.lru_cache(maxsize=65536)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for a key (cached: it is
    computed in pure Python, and every event of a request asks for the same key)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _set_faust_fetch_wait(milliseconds: int) -> None:
    """Make Faust's consumer use our fetch wait (faust-streaming 0.15 hard-codes 1500 ms).

    The embedded broker answers a fetch only when its wait is over, even if data arrived
    sooner: with 1500 ms every hop through the orchestrator would cost up to 1.5 s.
    """
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    create = getattr(thread, "_dsr_create_worker_consumer", thread._create_worker_consumer)

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = milliseconds  # read when the consumer starts
        return consumer

    thread._dsr_create_worker_consumer = create  # type: ignore[attr-defined]
    thread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


def _faust_broker_options(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    servers = kafka.require_bootstrap().split(",")
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{s.strip()}" for s in servers),
        "broker_client_id": kafka.client_id,
        "broker_session_timeout": kafka.session_timeout_ms / 1000,
        "broker_heartbeat_interval": kafka.heartbeat_interval_ms / 1000,
        "broker_rebalance_timeout": kafka.rebalance_timeout_ms / 1000,
    }
    ssl_context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    if kafka.sasl_mechanism:
        options["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    elif ssl_context is not None:
        options["broker_credentials"] = faust.SSLCredentials(ssl_context)
    return options


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
                    producer = AIOKafkaProducer(
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


class Orchestrator:
    """Builds the Faust app and carries out the lifecycle's effects."""

    def __init__(self, settings: Settings, register: Register | WatchedRegister) -> None:
        self.settings = settings
        # Before anything else: without publisher keys there is nothing to accept requests by.
        self.verifier = settings.request_verifier()
        self._register = register
        self.systems = tuple(self._current_register().names)
        self.policy = settings.policy()
        self.artifacts = ArtifactStore(settings.data_dir)
        # Only this process destroys data keys, so it may cache them.
        self.data_keys = settings.data_keys(cache_size=4096)
        self.records = RecordStore(settings.record_store_dir(), self.data_keys)
        self._certificates: CertificateIssuer | None = None
        self.partitions = settings.kafka.partitions
        _set_faust_fetch_wait(settings.kafka.fetch_max_wait_ms)
        self.app = faust.App(
            settings.app_id,
            **_faust_broker_options(settings),
            store="memory://",
            processing_guarantee="at_least_once",
            producer_max_batch_size=settings.producer_max_batch_size,
            topic_partitions=self.partitions,
            topic_replication_factor=settings.kafka.replication_factor,
            web_enabled=False,
            autodiscover=False,
            table_standby_replicas=0,
        )
        self.inputs = self.app.topic(
            REQUESTS.name,
            OUTCOMES.name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.output = OutputProducer(settings.kafka.aiokafka_options(), self.partitions)
        self.table = self.app.Table(
            TABLE_NAME,
            default=None,
            partitions=self.partitions,
            use_partitioner=True,
            key_type=str,
            value_type=str,
        )
        # Open requests -> when the deadline timer must next look at them; rebuilt from the
        # table whenever this worker's partitions change, so a tick never scans every state.
        self._watch: dict[str, datetime] = {}
        # Open requests (id -> status), written to disk by the timer: if the embedded broker's
        # in-memory log is lost, `dsr up` can say which requests were in flight.
        self._open: dict[str, str] = {}
        self._open_dirty = False
        # Finished requests whose final status is sent again after a (re)assignment.
        self._resend: set[str] = set()
        # Exported requests -> when their record files may go (see `_discard_records`).
        self._discard_at: dict[str, float] = {}
        self._watched_partitions: set[int] | None = None
        self.app.agent(self.inputs, name="lifecycle")(self._agent)
        self.app.timer(settings.tick_interval_seconds)(self._tick)

    # -- agent ------------------------------------------------------------------------------

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        try:
            async for events in stream.take_events(  # type: ignore[attr-defined]
                self.settings.batch_size, within=self.settings.batch_within_seconds
            ):
                await self.handle(events)
        finally:
            await self.output.stop()
            # A clean stop has saved the table: the exported requests' records can go now.
            for request_id in list(self._discard_at):
                self.records.discard(request_id)
            self._discard_at.clear()

    def _write_export(self, state: RequestState, *, portability: bool) -> None:
        """The export ZIP: data per system and collection, manifest, Art. 15 report."""

        def records(system: str) -> Iterable[Record]:
            outcome = self.artifacts.load_outcome(state.request_id, system)
            if outcome is None:
                return []
            if outcome.records_ref is not None:
                return self.records.read(outcome.records_ref, state.request_id)
            return outcome.records

        write_export(
            self.artifacts.export_path(state.request_id),
            state,
            self._current_register(),
            records,
            generated_at=datetime.now(UTC),
            portability=portability,
            key=self.data_keys.get(state.request_id),
        )

    def _write_document(self, kind: documents.DocumentKind, state: RequestState) -> Path:
        """A letter to the subject in the request's language (`orchestrator.artifacts.letters`)."""
        return documents.write(
            kind,
            state,
            self._current_register(),
            self.artifacts.root / "documents",
            now=datetime.now(UTC),
        )

    def _certificate_issuer(self) -> CertificateIssuer:
        if self._certificates is None:
            register = self._current_register()
            keys_dir = self.settings.key_store_dir()
            issuer = register.controller.name if register.controller else self.settings.app_id
            titles = {s.name: s.display_name for s in register.systems}
            self._certificates = CertificateIssuer(keys_dir, issuer, titles)
        return self._certificates

    def _current_register(self) -> Register:
        register = self._register
        return register.current() if isinstance(register, WatchedRegister) else register

    def _context(self) -> Context:
        return Context(systems=self.systems, policy=self.policy, now=datetime.now(UTC))

    def _load(self, request_id: str) -> RequestState | None:
        """The request's state; raises a `SealingError` when it cannot be opened."""
        raw = self.table.get(request_id)
        if raw:
            return decode_state(raw, self.data_keys)
        if self.data_keys.destroyed(request_id):
            # Shredded, and the table entry is gone too (a new changelog): never start over.
            return lifecycle.shredded(RequestState(request_id=request_id), datetime.now(UTC))
        return None

    async def handle(self, events: Sequence[EventT]) -> None:
        """Process one batch: decode, decide per request, store state once, carry out effects."""
        self.systems = tuple(self._current_register().names)  # picks up an edited register
        pending: list[Awaitable[Any]] = []
        by_request: dict[str, list[Any]] = {}
        for event in events:
            message = event.message
            try:
                is_request = message.topic == REQUESTS.name
                envelope = decode(
                    message.value,
                    message.headers,
                    key=message.key,
                    expect=REQUESTS.events if is_request else OUTCOMES.events,
                    # Request events must be signed by a known publisher; checked before the
                    # body is even parsed.
                    verify=self.verifier if is_request else None,
                )
            except EnvelopeError as exc:
                pending.append(self._dead_letter(event, exc.stage, str(exc), exc.ce_type))
                continue
            body = envelope.body
            request_id: str = body.request_id  # type: ignore[attr-defined]
            if message.partition != partition_for(request_id, self.partitions):
                # Produced with another partitioner (or no key): move it to the partition that
                # holds this request's state, so one worker sees all of a request's events.
                pending.append(self._reroute(event, request_id))
                continue
            by_request.setdefault(request_id, []).append((event, body))

        finished: list[tuple[RequestState, Effects]] = []
        all_effects: list[Effects] = []
        for request_id, items in by_request.items():
            try:
                state = self._load(request_id)
            except SealingError as exc:
                log.error("state of request %s cannot be opened: %s", request_id, exc)
                reason = f"the state of request {request_id!r} cannot be opened: {exc}"
                pending += [self._dead_letter(event, "process", reason) for event, _ in items]
                continue
            merged = Effects()
            extended = False
            for event, body in items:
                try:
                    state, effects = self._decide(state, body, self._context())
                except Exception as exc:  # a bug must not stop the worker: keep the event
                    log.exception("processing failed for request %s", request_id)
                    reason = f"processing failed: {type(exc).__name__}"
                    pending.append(self._dead_letter(event, "process", reason))
                    continue
                if effects.dead_letter:
                    pending.append(self._dead_letter(event, "process", effects.dead_letter))
                extended = extended or (isinstance(body, DeadlineExtended) and effects.changed)
                merged.absorb(effects)
            if state is None or not merged.changed:
                continue
            # One status event and one table write per request per batch.
            merged.statuses = lifecycle.coalesce(state, merged.statuses)
            if extended and merged.statuses and not merged.finished:
                # The subject must be told (Art. 12(3)): the notice goes with the status event.
                notice = self._write_document("extension", state)
                merged.statuses[-1] = merged.statuses[-1].model_copy(
                    update={"artifact": str(notice)}
                )
            self._store(request_id, state)
            all_effects.append(merged)
            if merged.finished:
                finished.append((state, merged))

        await self._carry_out(all_effects, finished, pending)
        if all_effects:
            # Faust commits a batch's offsets once the agent moves on, but writes the table's
            # changelog through a buffer: a worker killed in between would lose the state of
            # requests whose events count as done, and they would never finish. Flush first.
            await self.app.producer.flush()

    def _store(self, request_id: str, state: RequestState) -> None:
        self.table[request_id] = encode_state(state, self.data_keys)
        self._watch_state(request_id, state)

    def _watch_state(self, request_id: str, state: RequestState) -> None:
        """Remember when the deadline timer must next look at this request (and if it is open)."""
        if state.request is not None and not state.is_final and state.status is not None:
            if self._open.get(request_id) != state.status:
                self._open[request_id] = str(state.status)
                self._open_dirty = True
        elif self._open.pop(request_id, None) is not None:
            self._open_dirty = True
        when = lifecycle.next_check(state, self.policy)
        if when is None:
            self._watch.pop(request_id, None)
        else:
            self._watch[request_id] = when

    def _decide(self, state: RequestState | None, body: Any, ctx: Context) -> tuple[Any, Effects]:
        if isinstance(body, RequestSubmitted):
            return lifecycle.submit(state, body, ctx)
        if isinstance(body, IdentityVerified):
            return lifecycle.verify(state, body, ctx)
        if isinstance(body, DeadlineExtended):
            return lifecycle.extend(state, body, ctx)
        if isinstance(body, TaskOutcome):
            return lifecycle.record_outcome(state, body, ctx)
        raise TypeError(type(body).__name__)

    async def _carry_out(
        self,
        all_effects: list[Effects],
        finished: list[tuple[RequestState, Effects]],
        pending: list[Awaitable[Any]],
    ) -> None:
        # Small files, written inline: handing them to a thread costs more in GIL switches
        # (Faust runs its consumer in a thread of its own) than the writes themselves.
        for effects in all_effects:
            for outcome in effects.stored_outcomes:
                self.artifacts.save_outcome(outcome)
        # Results are on disk before the status event announcing them is sent.
        for state, effects in finished:
            kind = state.request.type if state.request is not None else None
            export_error: str | None = None
            if kind == RequestType.ERASURE:
                self._certificate_issuer().issue(state, self.artifacts.root / "certificates")
            elif kind in (RequestType.ACCESS, RequestType.PORTABILITY):
                # Exports can be gigabytes: stream them in a thread, off the event loop.
                portability = kind == RequestType.PORTABILITY
                try:
                    await asyncio.to_thread(self._write_export, state, portability=portability)
                except (RecordStoreError, SealingError, OSError) as exc:
                    # Kept as the request's problem, not the worker's: the batch goes on.
                    log.error("export of request %s failed: %s", state.request_id, exc)
                    export_error = f"the export could not be assembled: {exc}"
            letters: dict[str, str] = {
                kind: str(self._write_document(kind, state))
                for kind in documents.documents_for(state)
            }
            path = self.artifacts.write_result(state, export_error=export_error, documents=letters)
            if kind in (RequestType.ACCESS, RequestType.PORTABILITY) and export_error is None:
                # The export holds them now. Removed a little later, not at once: if this
                # worker dies before the final state reaches the table's changelog, the last
                # outcome is processed again and the export written again from the same files.
                self._discard_at[state.request_id] = (
                    time.monotonic() + self.settings.record_grace_seconds
                )
            effects.statuses[-1] = effects.statuses[-1].model_copy(update={"artifact": str(path)})
            log.info("request %s finished: %s", state.request_id, state.status)
        for effects in all_effects:
            for task in effects.tasks:
                # The subject travels sealed; only the connector workers can open it.
                message = encode(
                    seal_task(task, self.data_keys.get(task.request_id)),
                    source=self.settings.source,
                    event_id=f"{task.task_id}#{task.attempt}",
                )
                pending.append(self.output.send(TASKS.name, message))
            for status in effects.statuses:
                event_id = f"{status.request_id}#{status.sequence}"
                message = encode(status, source=self.settings.source, event_id=event_id)
                pending.append(self.output.send(STATUS.name, message))
        if pending:
            # Wait for the broker to take every output before the batch is acknowledged.
            futures = await asyncio.gather(*pending)
            await asyncio.gather(*(f for f in futures if f is not None))

    async def _reroute(self, event: EventT, request_id: str) -> Awaitable[Any]:
        message = event.message
        raw = message.headers or []
        headers = list(raw.items()) if isinstance(raw, Mapping) else list(raw)
        moved = KafkaMessage(request_id.encode(), message.value or b"", headers)
        return await self.output.send(
            message.topic, moved, partition=partition_for(request_id, self.partitions)
        )

    async def _dead_letter(
        self, event: EventT, stage: str, reason: str, ce_type: str | None = None
    ) -> Awaitable[Any]:
        message = event.message
        log.warning(
            "dead-lettered %s[%s]@%s (%s): %s",
            message.topic,
            message.partition,
            message.offset,
            stage,
            reason,
        )
        letter = dead_letter_for(
            message,
            stage=stage,  # type: ignore[arg-type]
            reason=reason,
            ce_type=ce_type,
        )
        return await self.output.send(
            DEAD_LETTER.name, encode(letter, source=self.settings.source, key=letter.key)
        )

    # -- deadlines --------------------------------------------------------------------------

    def _owned_partitions(self) -> set[int]:
        return {
            tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == REQUESTS.name
        }

    async def _tick(self) -> None:
        """Let the deadline rules look at every open request whose time has come."""
        owned = self._owned_partitions()
        if owned != self._watched_partitions:
            self._rebuild_watch(owned)
        now = datetime.now(UTC)
        all_effects: list[Effects] = []
        finished: list[tuple[RequestState, Effects]] = []
        for request_id in [r for r, when in self._watch.items() if when <= now]:
            try:
                state = self._load(request_id)
            except SealingError as exc:
                log.error("state of request %s cannot be opened: %s", request_id, exc)
                state = None
            if state is None:
                self._watch.pop(request_id, None)
                continue
            state, effects = lifecycle.tick(state, self._context())
            if effects.shred:
                self._shred(request_id, effects)
                self._store(request_id, state)  # the stub: nothing personal is left
                all_effects.append(effects)
                continue
            if not effects.changed:
                self._watch_state(request_id, state)  # nothing to write back
                continue
            self._store(request_id, state)
            all_effects.append(effects)
            if effects.finished:
                finished.append((state, effects))
        if all_effects:
            await self._carry_out(all_effects, finished, [])
        if self._resend:
            await self._resend_finished()
        if self._open_dirty:
            self._write_open_index()
        self._discard_records()

    def _shred(self, request_id: str, effects: Effects) -> None:
        """Destroy a request's data key, and with it every copy of its personal data: in the
        tasks and the table's changelog (sealed with it), and the files sealed with it."""
        self.data_keys.destroy(request_id)
        self.records.discard(request_id)
        self._discard_at.pop(request_id, None)
        self.artifacts.export_path(request_id).unlink(missing_ok=True)
        result = self.artifacts.result_path(request_id)
        if effects.statuses and result.exists():
            effects.statuses[-1] = effects.statuses[-1].model_copy(update={"artifact": str(result)})
        log.info("request %s shredded: its data key was destroyed", request_id)

    def _discard_records(self) -> None:
        """Remove the record files of exported requests once their grace period is over."""
        moment = time.monotonic()
        for request_id in [r for r, when in self._discard_at.items() if when <= moment]:
            del self._discard_at[request_id]
            self.records.discard(request_id)

    def _write_open_index(self) -> None:
        """The open requests per owned partition on disk (see `orchestrator.lifecycle.recovery`)."""
        by_partition: dict[int, dict[str, str]] = {p: {} for p in self._watched_partitions or ()}
        for request_id, status in self._open.items():
            by_partition.setdefault(partition_for(request_id, self.partitions), {})[request_id] = (
                status
            )
        for partition, requests in by_partition.items():
            recovery.write_open(self.settings.data_dir, partition, requests)
        self._open_dirty = False

    def _rebuild_watch(self, owned: set[int]) -> None:
        self._watch.clear()
        self._open.clear()
        self._open_dirty = True
        recent = datetime.now(UTC) - _RESEND_WINDOW
        for request_id, raw in list(self.table.items()):
            if raw and partition_for(request_id, self.partitions) in owned:
                try:
                    view = watch_view(raw, self.data_keys)
                    self._watch_state(request_id, view)
                except SealingError as exc:
                    log.error("state of request %s cannot be opened: %s", request_id, exc)
                    continue
                if view.is_final and view.finished_at is not None and view.finished_at > recent:
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
                state = self._load(request_id)
            except SealingError:
                continue
            event = lifecycle.resend_final(state, ctx) if state is not None else None
            if state is None or event is None:
                continue
            result = self.artifacts.result_path(request_id)
            effects = Effects(statuses=[event], finished=True)
            if result.exists():
                effects.statuses = [event.model_copy(update={"artifact": str(result)})]
            else:
                unwritten.append((state, effects))
            resent.append(effects)
        self._resend.clear()
        if resent:
            await self._carry_out(resent, unwritten, [])
            log.info("sent the final status of %d recently finished requests again", len(resent))


__all__ = ["Orchestrator", "partition_for"]
