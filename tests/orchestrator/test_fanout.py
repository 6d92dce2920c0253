"""The Faust agent's collaborators, without a broker: intake, decisions per batch, the table,
the sender, the finisher and the timers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.fanout import table as table_module
from orchestrator.fanout import timers as timers_module
from orchestrator.fanout.exporter import ExportJob
from orchestrator.fanout.finish import Finisher
from orchestrator.fanout.output import Sender
from orchestrator.fanout.table import RequestTable
from orchestrator.fanout.timers import Timers
from orchestrator.intake.decode import Misrouted, Refused, partition_for, sort_batch
from orchestrator.lifecycle import recovery
from orchestrator.lifecycle.deadlines import Period
from orchestrator.lifecycle.reducer import (
    Context,
    Effects,
    Policy,
    RequestState,
    decide,
    record_outcome,
    submit,
    task_id,
)
from orchestrator.lifecycle.watch import Watchlist
from orchestrator.runtime import demo
from orchestrator.runtime.config import load_settings
from schemas.envelope import EnvelopeError, RawEvent, decode, encode
from schemas.events import (
    DeadLetter,
    DeadlineExtended,
    Record,
    RequestStatus,
    StatusTrigger,
    TaskDispatched,
    TaskOutcome,
)
from schemas.primitives.sealing import DataKeys, open_task
from schemas.register import load_register
from schemas.topics import DEAD_LETTER, OUTCOMES, REQUESTS, STATUS, TASKS
from tests.orchestrator import test_lifecycle as lifecycle_tests
from tests.orchestrator.test_lifecycle import EMAIL, LONG, NOW, SYSTEMS, outcome, request

PARTITIONS = 4
POLICY = Policy(task_timeout=LONG, shred_after=Period.parse("30 days"))


@dataclass
class FakeRecord:
    """What the agent reads: a Kafka record as Faust's message has it."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Any
    offset: int = 7


def record(body: Any, topic: str = REQUESTS.name, partition: int | None = None) -> FakeRecord:
    message = encode(body, source="tests")
    if partition is None:
        partition = partition_for(body.request_id, PARTITIONS)
    return FakeRecord(topic, partition, message.key, message.value, message.headers)


def accept(event: RawEvent) -> None:
    """A signature check every event passes."""


def refuse(event: RawEvent) -> None:
    raise EnvelopeError("signature", "not signed by a known publisher")


def ctx(now: datetime = NOW) -> Context:
    return Context(systems=SYSTEMS, policy=POLICY, now=now)


def finished(kind: str = "erasure") -> tuple[RequestState, Effects]:
    """A request that just finished, and the effects of its last decision."""
    state, effects = submit(None, request(type=kind), ctx())
    for system in SYSTEMS:
        records = [Record(collection="contacts", data={"email": EMAIL})]
        done = outcome(system, action=kind, records=records)
        state, effects = record_outcome(state, done, ctx())
    assert state is not None and effects.finished
    state.delivery = lifecycle_tests.delivered_by_post()  # answered (Art. 12(3))
    return state, effects


# -- intake --------------------------------------------------------------------------------------


def test_a_batch_is_sorted_per_request_and_bad_input_is_turned_away() -> None:
    good, crm = record(request()), record(outcome("crm"), topic=OUTCOMES.name)
    other = request(request_id="req-2")
    misplaced = record(other, partition=(partition_for("req-2", PARTITIONS) + 1) % PARTITIONS)
    garbage = FakeRecord(REQUESTS.name, 0, None, b"not an event", [])
    astray = record(outcome("chat"))  # an outcome on the requests topic
    intake = sort_batch([good, garbage, crm, misplaced, astray], accept, PARTITIONS)
    assert intake.by_request == {"req-1": [(good, request()), (crm, outcome("crm"))]}
    first, moved, second = intake.turned_away
    assert isinstance(first, Refused) and first.record is garbage and first.stage == "envelope"
    assert moved == Misrouted(misplaced, "req-2")
    assert isinstance(second, Refused) and second.record is astray
    assert "does not belong on this topic" in second.reason and second.ce_type is not None


def test_request_events_and_outcomes_both_need_a_signature() -> None:
    """An outcome decides what a certificate says: it is checked like a request event
    (issue 16: a forged `completed` must never reach the lifecycle)."""
    good, crm = record(request()), record(outcome("crm"), topic=OUTCOMES.name)
    intake = sort_batch([good, crm], refuse, PARTITIONS)
    assert intake.by_request == {}
    assert [r.record for r in intake.turned_away] == [good, crm]
    assert all(
        r == Refused(r.record, "signature", "not signed by a known publisher", None)
        for r in intake.turned_away
    )


# -- decisions per batch -------------------------------------------------------------------------


def test_a_request_s_events_of_one_batch_give_one_status_event() -> None:
    items = [("a", request()), ("b", request(scope=["crm"])), ("c", outcome("crm"))]
    decision = decide(None, items, ctx)
    assert decision.state is not None and not decision.extended
    [(item, reason, error)] = decision.refused
    assert item == "b" and "already used for a different request" in reason and error is None
    assert len(decision.effects.tasks) == len(SYSTEMS)
    [status] = decision.effects.statuses
    assert status.sequence == decision.state.sequence == 1 and status.systems_done == 1


def test_an_event_that_breaks_a_decision_is_refused_and_the_rest_goes_on() -> None:
    _, effects = submit(None, request(), ctx())
    task = effects.tasks[0]  # not an input event: no decision takes it
    decision = decide(None, [("a", request()), ("x", task), ("c", outcome("crm"))], ctx)
    [(item, reason, error)] = decision.refused
    assert item == "x" and reason == "processing failed: TypeError"
    assert isinstance(error, TypeError)
    assert decision.state is not None and decision.state.systems_done == 1


@pytest.mark.parametrize("stored", [True, False], ids=["reloaded", "copied"])
def test_an_event_that_breaks_a_decision_part_way_leaves_no_trace_in_the_state(
    stored: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision changes the state in place; one that raises after changing some of it must
    not leave those changes behind for the batch's other events to be stored with: the state
    and status events are those of the other events alone, whether the state is read again
    from the table (`reload`, as the agent does) or copied first."""
    from orchestrator.lifecycle import reducer

    started, _ = submit(None, request(), ctx())
    assert started is not None
    decide_outcome = reducer._DECIDERS[TaskOutcome]

    def breaks_half_way(state: Any, event: Any, context: Context) -> Any:
        if event.system == "chat":
            state.reason = "half-done"
            state.sequence += 5  # would shift every later status event
            state.systems["crm"] = state.systems["crm"].model_copy(update={"attempt": 9})
            raise RuntimeError("a bug")
        return decide_outcome(state, event, context)

    items = [("a", outcome("crm")), ("x", outcome("chat")), ("c", outcome("support"))]
    expected = decide(started.model_copy(deep=True), [items[0], items[2]], ctx)
    monkeypatch.setitem(reducer._DECIDERS, TaskOutcome, breaks_half_way)
    reload = (lambda: started.model_copy(deep=True)) if stored else None
    decision = decide(started.model_copy(deep=True), items, ctx, reload=reload)

    [(item, reason, error)] = decision.refused
    assert (item, reason) == ("x", "processing failed: RuntimeError")
    assert isinstance(error, RuntimeError)
    assert decision.state is not None and expected.state is not None
    assert decision.state.reason is None and decision.state.systems["crm"].attempt == 1
    assert decision.state == expected.state
    assert decision.effects.statuses == expected.effects.statuses
    assert [s.sequence for s in decision.effects.statuses] == [started.sequence + 1]


def test_an_extension_is_flagged_so_the_subject_is_told() -> None:
    started, _ = submit(None, request(), ctx())
    extension = DeadlineExtended(
        request_id="req-1", months=1, reason="many systems", extended_at=NOW
    )
    decision = decide(started, [("e", extension)], ctx)
    assert decision.extended and decision.effects.statuses[-1].deadline_extended
    assert not decide(decision.state, [("e", extension)], ctx).extended  # a re-delivery


# -- the table and its watchlist ----------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> DataKeys:
    return DataKeys(tmp_path / "dek", os.urandom(32))


@pytest.fixture
def table(keys: DataKeys) -> RequestTable:
    return RequestTable({}, keys, Watchlist(POLICY), PARTITIONS)


def test_a_state_is_stored_sealed_and_watched(table: RequestTable) -> None:
    state, _ = submit(None, request(), ctx())
    assert state is not None
    table.store("req-1", state)
    assert EMAIL not in table.table["req-1"]
    assert table.load("req-1") == state and table.load("req-none") is None
    assert table.watchlist.open == {"req-1": "in_progress"} and table.watchlist.dirty
    assert table.watchlist.due(NOW) == [] and table.watchlist.due(NOW + LONG) == ["req-1"]
    owned = {partition_for("req-1", PARTITIONS)}
    assert list(table.owned(owned)) == ["req-1"] and table.view("req-1") is not None
    assert list(table.owned(set(range(PARTITIONS)) - owned)) == []
    done, _ = finished()
    table.store("req-1", done)
    assert table.watchlist.open == {}  # final: no longer open, watched until shredding


def test_a_shredded_request_without_its_entry_loads_as_a_stub(table: RequestTable) -> None:
    state, _ = finished()
    table.store("req-1", state)
    table.keys.destroy("req-1")
    del table.table["req-1"]  # e.g. a new changelog
    stub = table.load("req-1")
    assert stub is not None and stub.shredded_at is not None and stub.request is None


# -- the sender -----------------------------------------------------------------------------------


class FakeOutput:
    """Takes every send at once, as the broker would."""

    partitions = PARTITIONS

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, int | None]] = []

    async def send(self, topic: str, message: Any, partition: int | None = None) -> None:
        self.sent.append((topic, message, partition))


def test_tasks_leave_sealed_and_statuses_follow(keys: DataKeys) -> None:
    output = FakeOutput()
    sender = Sender(output, keys, "tests")  # type: ignore[arg-type]
    keys.create("req-1")  # as when its state is first stored
    _, effects = submit(None, request(), ctx())
    pending: list[Awaitable[Any]] = []
    sender.effects([effects], pending)
    asyncio.run(sender.wait(pending))
    topics = [topic for topic, _, _ in output.sent]
    assert topics == [TASKS.name] * len(SYSTEMS) + [STATUS.name]
    for _, message, _ in output.sent:
        assert EMAIL.encode() not in message.value
    task = decode(output.sent[0][1].value, output.sent[0][1].headers).body
    assert isinstance(task, TaskDispatched)
    assert open_task(task, keys.get("req-1")).subject == request().subject


class SlowOutput(FakeOutput):
    """Takes a send only after a pause (a full batch draining), counting sends waiting at once."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self.most_waiting = 0

    async def send(self, topic: str, message: Any, partition: int | None = None) -> None:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        await asyncio.sleep(0)
        self.waiting -= 1
        await super().send(topic, message, partition)


def test_outputs_are_queued_one_after_another_in_the_order_decided(keys: DataKeys) -> None:
    """Queued all at once, a batch's sends woke together at every drain of a full producer batch
    and all but a few went back to waiting: quadratic work on the event loop (issue 19)."""
    output = SlowOutput()
    sender = Sender(output, keys, "tests")  # type: ignore[arg-type]
    all_effects = []
    for n in range(20):
        keys.create(f"req-{n}")
        all_effects.append(submit(None, request(request_id=f"req-{n}"), ctx())[1])
    pending: list[Awaitable[Any]] = []
    sender.effects(all_effects, pending)
    asyncio.run(sender.wait(pending))
    assert output.most_waiting == 1
    statuses = [decode(m.value, m.headers).body for t, m, _ in output.sent if t == STATUS.name]
    assert [s.request_id for s in statuses] == [f"req-{n}" for n in range(20)]
    assert len(output.sent) == 20 * (len(SYSTEMS) + 1)


def test_refused_input_is_dead_lettered_and_misrouted_input_moved(keys: DataKeys) -> None:
    output = FakeOutput()
    sender = Sender(output, keys, "tests")  # type: ignore[arg-type]
    garbage = FakeRecord(REQUESTS.name, 0, None, b"not an event", [("h", b"v")])
    misplaced = record(request(request_id="req-2"), partition=0)
    refused = Refused(garbage, "envelope", "not a CloudEvent")
    asyncio.run(sender.wait(sender.turned_away([refused, Misrouted(misplaced, "req-2")])))
    (topic, letter, _), (moved_to, moved, partition) = output.sent
    body = decode(letter.value, letter.headers).body
    assert topic == DEAD_LETTER.name and isinstance(body, DeadLetter)
    assert body.stage == "envelope" and body.offset == 7 and body.reason == "not a CloudEvent"
    assert (moved_to, partition) == (REQUESTS.name, partition_for("req-2", PARTITIONS))
    assert moved.key == b"req-2" and moved.value == misplaced.value


# -- the finisher ---------------------------------------------------------------------------------


@pytest.fixture
def finisher(tmp_path: Path, keys: DataKeys) -> Finisher:
    settings = load_settings(data_dir=tmp_path / "data", record_grace_seconds=60)
    register = load_register(demo.sql_register_path(), env={"DSR_DEMO_DIR": str(tmp_path)})
    return Finisher(settings, register, keys)


def test_a_finished_access_request_gets_export_letters_and_result(finisher: Finisher) -> None:
    state, effects = finished("access")
    finisher.keys.create("req-1")
    finisher.save_outcomes([effects])
    asyncio.run(finisher.finish(state, effects))
    result = finisher.artifacts.result_path("req-1")
    assert effects.statuses[-1].artifact == str(result)
    written = json.loads(result.read_text())
    assert written["export"] == str(finisher.artifacts.export_path("req-1"))
    assert written["export_error"] is None
    assert list(finisher.exported) == ["req-1"]  # its records go after the grace period
    finisher.discard_records()
    assert list(finisher.exported) == ["req-1"]
    finisher.discard_records(everything=True)
    assert finisher.exported == {}
    finisher.shred("req-1", effects)
    assert not finisher.artifacts.export_path("req-1").exists() and result.exists()


def test_a_finished_erasure_request_gets_a_certificate(finisher: Finisher) -> None:
    state, effects = finished("erasure")
    asyncio.run(finisher.finish(state, effects))
    assert finisher.artifacts.certificate_path("req-1").exists()
    assert finisher.exported == {}


def _finished_as(request_id: str, kind: str) -> tuple[RequestState, Effects]:
    """`finished(kind)` for another request id."""
    state, effects = submit(None, request(type=kind, request_id=request_id), ctx())
    for system in SYSTEMS:
        records = [Record(collection="contacts", data={"email": EMAIL})]
        done = outcome(
            system,
            action=kind,
            records=records,
            request_id=request_id,
            task_id=task_id(request_id, system),
        )
        state, effects = record_outcome(state, done, ctx())
    assert state is not None and effects.finished
    state.delivery = lifecycle_tests.delivered_by_post()
    return state, effects


def test_a_batchs_finished_requests_are_answered_in_one_hand_over_each(
    finisher: Finisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four requests finished in one batch: two exports, an erasure and a refusal. The
    exports go to the export process in one call, the files are written in two threads in
    all (certificates and the exports' inputs, then letters and results), not per request;
    each request still gets its own answer, and an export that fails is its request's
    problem alone (its result says so)."""
    batch = [_finished_as(r, k) for r, k in (("a-1", "access"), ("a-2", "access"))]
    batch += [_finished_as("e-1", "erasure"), _finished_as("r-1", "access")]
    batch[3][0].status = RequestStatus.REFUSED
    batch[3][0].reason = "identity not established"
    for request_id in ("a-1", "a-2", "e-1", "r-1"):
        finisher.keys.create(request_id)
    finisher.save_outcomes([effects for _, effects in batch])
    # a-2's export cannot be written (in the export process): where it goes is taken.
    blocked = finisher.artifacts.export_path("a-2")
    blocked.with_name(blocked.name + ".part").mkdir(parents=True)
    threads: list[str] = []
    exported: list[list[str]] = []
    real_to_thread, real_write_all = asyncio.to_thread, finisher.exporter.write_all

    async def to_thread(work: Any, /, *args: Any, **kwargs: Any) -> Any:
        threads.append(work.__name__)
        return await real_to_thread(work, *args, **kwargs)

    async def write_all(jobs: list[ExportJob]) -> list[str | None]:
        exported.append([job.state.request_id for job in jobs])
        return await real_write_all(jobs)

    monkeypatch.setattr(asyncio, "to_thread", to_thread)
    monkeypatch.setattr(finisher.exporter, "write_all", write_all)
    try:
        asyncio.run(finisher.finish_all(batch))
    finally:
        finisher.close()
    assert threads == ["_before_exports", "_write_all_documents"]
    assert exported == [["a-1", "a-2"]]
    results = {
        r: json.loads(finisher.artifacts.result_path(r).read_text())
        for r in ("a-1", "a-2", "e-1", "r-1")
    }
    for (_, effects), request_id in zip(batch, results, strict=True):
        assert effects.statuses[-1].artifact == str(finisher.artifacts.result_path(request_id))
    assert results["a-1"]["export"] and results["a-1"]["export_error"] is None
    assert "could not be assembled" in results["a-2"]["export_error"]
    assert not finisher.artifacts.export_path("a-2").exists()
    assert finisher.artifacts.certificate_path("e-1").exists()
    assert not finisher.artifacts.export_path("r-1").exists()
    assert "refusal" in results["r-1"]["documents"]
    assert list(finisher.exported) == ["a-1"]  # only an export that was written holds records


@pytest.mark.parametrize("kind", ["access", "erasure"])
def test_art_12_4_a_refused_request_gets_no_export_and_no_certificate(
    finisher: Finisher, kind: str
) -> None:
    """A refusal hands out no data (no export) and certifies no deletion (no certificate): the
    refusal letter, with the reason and the remedies (Art. 12(4) GDPR), is the answer."""
    state, effects = submit(None, request(type=kind), ctx())
    assert state is not None
    state.status = RequestStatus.REFUSED
    state.reason = "identity not established"
    asyncio.run(finisher.finish(state, effects))
    assert not finisher.artifacts.export_path("req-1").exists()
    assert not finisher.artifacts.certificate_path("req-1").exists()
    written = json.loads(finisher.artifacts.result_path("req-1").read_text())
    assert "refusal" in written["documents"] and written.get("export") is None


def test_an_extension_notice_is_written_and_announced(finisher: Finisher) -> None:
    started, _ = submit(None, request(), ctx())
    extension = DeadlineExtended(
        request_id="req-1", months=1, reason="many systems", extended_at=NOW
    )
    decision = decide(started, [("e", extension)], ctx)
    assert decision.state is not None
    finisher.extension_notice(decision.state, decision.effects)
    notice = Path(decision.effects.statuses[-1].artifact or "")
    assert notice.name == "extension.nl.html" and notice.exists()


# -- the timers -----------------------------------------------------------------------------------


class Clock:
    """The timers' context, at a moment the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.carried_out: list[tuple[list[Effects], list[tuple[RequestState, Effects]]]] = []

    def context(self) -> Context:
        return ctx(self.now)

    async def carry_out(
        self, effects: list[Effects], finished: list[tuple[RequestState, Effects]]
    ) -> None:
        self.carried_out.append((effects, finished))


def timers(table: RequestTable, finisher: Finisher, clock: Clock) -> Timers:
    return Timers(
        table,
        finisher,
        context=clock.context,
        carry_out=clock.carry_out,
        owned_partitions=lambda: set(range(PARTITIONS)),
        data_dir=finisher.settings.data_dir,
    )


def tick_once(table: RequestTable, finisher: Finisher, state: RequestState, now: datetime) -> Clock:
    """Store `state`, then let new timers (as after a restart) tick once at `now`."""
    table.store(state.request_id, state)
    clock = Clock(now)
    asyncio.run(timers(table, finisher, clock).tick())
    return clock


def test_a_tick_flags_due_requests_and_writes_the_open_index(
    table: RequestTable, finisher: Finisher
) -> None:
    state, _ = submit(None, request(), ctx())
    assert state is not None
    table.store("req-1", state)
    clock = Clock(NOW + timedelta(days=1))
    ticking = timers(table, finisher, clock)
    asyncio.run(ticking.tick())
    assert clock.carried_out == []  # nothing due yet
    assert recovery.open_requests(finisher.settings.data_dir) == {"req-1": "in_progress"}
    clock.now = NOW + timedelta(days=25)
    asyncio.run(ticking.tick())
    [([effects], [])] = clock.carried_out
    assert [s.trigger for s in effects.statuses] == [StatusTrigger.DUE_SOON]
    stored = table.load("req-1")
    assert stored is not None and stored.due_soon_sent


def test_a_tick_shreds_a_request_past_its_retention(
    table: RequestTable, finisher: Finisher
) -> None:
    clock = tick_once(table, finisher, finished()[0], NOW + timedelta(days=31))
    [([effects], [])] = clock.carried_out
    assert [s.trigger for s in effects.statuses] == [StatusTrigger.SHREDDED]
    assert table.keys.destroyed("req-1")
    assert json.loads(table.table["req-1"])["shredded"] is True
    assert table.watchlist.due(clock.now + timedelta(days=365)) == []


def test_after_a_restart_recent_final_statuses_are_sent_again(
    table: RequestTable, finisher: Finisher
) -> None:
    state, _ = finished()
    clock = tick_once(table, finisher, state, NOW + timedelta(minutes=5))
    [([effects], [(unwritten, again)])] = clock.carried_out
    assert again is effects and unwritten == state  # no result file: documents first
    [status] = effects.statuses
    assert status.status == RequestStatus.COMPLETED and status.sequence == state.sequence
    later = tick_once(table, finisher, state, NOW + timedelta(hours=2))
    assert later.carried_out == []  # finished too long ago


def test_requests_this_worker_finished_since_it_took_the_partition_are_not_sent_again(
    table: RequestTable, finisher: Finisher
) -> None:
    """After a start under load the first tick found thousands of requests this worker had
    finished itself, and sent each final status again, holding up the requests in flight."""
    state, _ = finished()
    clock = Clock(NOW + timedelta(minutes=5))
    early = timers(table, finisher, clock)
    early.note_partitions(set(range(PARTITIONS)))  # took its partitions now, before finishing
    table.store(state.request_id, state.model_copy(update={"finished_at": datetime.now(UTC)}))
    asyncio.run(early.tick())
    assert clock.carried_out == []
    late = timers(table, finisher, clock)  # a previous owner finished it, then this one took over
    table.store(state.request_id, state)
    late.note_partitions(set(range(PARTITIONS)))
    asyncio.run(late.tick())
    assert len(clock.carried_out) == 1


def test_the_watchlist_is_rebuilt_in_slices_letting_the_agent_run_between_them(
    table: RequestTable, finisher: Finisher
) -> None:
    """Opening every stored state at once (the first tick after a start, or a rebalance) held
    up every request in flight for a quarter of a second with 2,000 states; a restarted worker
    can hold a hundred thousand. The rebuild lets the event loop run between slices, and what
    the agent stores meanwhile is what the watchlist keeps."""
    before = RequestTable(table.table, table.keys, Watchlist(POLICY), PARTITIONS)  # a restart
    for n in range(250):
        state, _ = submit(None, request(request_id=f"req-{n}"), ctx())
        assert state is not None
        before.store(f"req-{n}", state)
    seen: list[int] = []
    clock = Clock(NOW)
    timer = timers(table, finisher, clock)

    async def agent_meanwhile() -> None:
        await asyncio.sleep(0)
        seen.append(len(table.watchlist.open))

    async def both() -> None:
        await asyncio.gather(timer.tick(), agent_meanwhile())

    asyncio.run(both())
    assert seen and 0 < seen[0] < 250  # the agent ran while the rebuild was half-way
    assert len(table.watchlist.open) == 250


def test_the_rebuild_opens_only_the_states_this_worker_did_not_write(
    table: RequestTable, finisher: Finisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first tick after a start under load opened every state the agent had just written
    (2,000 of them, ~200 ms of the event loop) and held up the requests in flight; what this
    worker wrote since it took the partition is in the watchlist already."""
    before = RequestTable(table.table, table.keys, Watchlist(POLICY), PARTITIONS)
    timer = timers(table, finisher, Clock(NOW))
    timer.note_partitions(set(range(PARTITIONS)))
    for n in range(15):
        state, _ = submit(None, request(request_id=f"req-{n}"), ctx())
        assert state is not None
        (before if n < 5 else table).store(f"req-{n}", state)  # 5 by a previous owner
    opened: list[str] = []
    real = table_module.watch_view

    def counted(raw: str, keys: DataKeys) -> RequestState:
        opened.append(raw)
        return real(raw, keys)

    monkeypatch.setattr(table_module, "watch_view", counted)
    asyncio.run(timer.tick())
    assert len(opened) == 5
    assert set(table.watchlist.open) == {f"req-{n}" for n in range(15)}


def test_a_final_state_stored_again_for_a_redelivered_event_gets_its_final_status_again(
    table: RequestTable, finisher: Finisher
) -> None:
    """A previous owner finished the request and died before sending its final status; this
    worker, given the same event again, stores the (final) state again. That write must not
    count as this worker having sent the final status: the rebuild still sends it."""
    state, _ = finished()
    RequestTable(table.table, table.keys, Watchlist(POLICY), PARTITIONS).store("req-1", state)
    clock = Clock(NOW + timedelta(minutes=5))
    timer = timers(table, finisher, clock)
    timer.note_partitions(set(range(PARTITIONS)))
    loaded = table.load("req-1")
    assert loaded is not None and loaded.is_final
    table.store("req-1", loaded, inherited_final=True)  # what the agent does for a redelivery
    asyncio.run(timer.tick())
    [([effects], _)] = clock.carried_out
    assert [s.status for s in effects.statuses] == [RequestStatus.COMPLETED]


def test_after_a_rebalance_the_next_tick_reopens_the_revoked_partitions_requests(
    table: RequestTable, finisher: Finisher
) -> None:
    """Faust revokes a worker's partitions at a rebalance, and may give them straight back:
    meanwhile another worker may have finished a request and died before sending its final
    status. Even with the same partitions as before, the next tick rebuilds and resends it."""
    clock = Clock(NOW + timedelta(minutes=5))
    timer = timers(table, finisher, clock)
    timer.note_partitions(set(range(PARTITIONS)))
    state, _ = submit(None, request(), ctx())
    assert state is not None
    table.store("req-1", state)  # open, written here
    asyncio.run(timer.tick())
    assert clock.carried_out == []
    timer.partitions_revoked(set(range(PARTITIONS)))
    done, _ = finished()
    RequestTable(table.table, table.keys, Watchlist(POLICY), PARTITIONS).store("req-1", done)
    timer.note_partitions(set(range(PARTITIONS)))  # back again
    asyncio.run(timer.tick())
    [([effects], _)] = clock.carried_out
    assert [s.status for s in effects.statuses] == [RequestStatus.COMPLETED]
    assert table.watchlist.open == {}  # no longer open: the other worker finished it


def test_a_rebuild_over_many_known_requests_still_lets_the_agent_run(
    table: RequestTable, finisher: Finisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known requests are not opened, but a worker may know a hundred thousand: looking them
    up (a partition hash each) also lets the event loop run every `_REBUILD_KEYS` of them."""
    monkeypatch.setattr(timers_module, "_REBUILD_KEYS", 10)
    timer = timers(table, finisher, Clock(NOW))
    timer.note_partitions(set(range(PARTITIONS)))
    for n in range(50):
        state, _ = submit(None, request(request_id=f"req-{n}"), ctx())
        assert state is not None
        table.store(f"req-{n}", state)
    rebuilt_when_agent_ran: list[bool] = []

    async def agent_meanwhile() -> None:
        await asyncio.sleep(0)
        rebuilt_when_agent_ran.append(timer._watched_partitions is not None)

    async def both() -> None:
        await asyncio.gather(timer.tick(), agent_meanwhile())

    asyncio.run(both())
    assert rebuilt_when_agent_ran == [False]
    assert len(table.watchlist.open) == 50
