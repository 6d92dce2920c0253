"""The retention-sweep lifecycle (`orchestrator.lifecycle.sweeps`) and its shell
(`orchestrator.fanout.sweeps`), without a broker.

Storage limitation, Art. 5(1)(e) GDPR: personal data is "kept in a form which permits
identification of data subjects for no longer than is necessary for the purposes for which
the personal data are processed". Recital 39: "time limits should be established by the
controller for erasure or for a periodic review". Accountability, Art. 5(2): the controller
"shall be responsible for, and be able to demonstrate compliance with, paragraph 1".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from orchestrator.artifacts.casefiles import CaseFileSweep
from orchestrator.fanout import sweeps as shell
from orchestrator.fanout.output import Sender
from orchestrator.fanout.sweeps import SweepRunner, SweepTable
from orchestrator.intake.decode import Misrouted, partition_for, sort_batch
from orchestrator.lifecycle import sweeps as lifecycle
from orchestrator.lifecycle.sweeps import SweepContext, SweepState
from orchestrator.runtime.config import Settings
from schemas.envelope import decode, encode
from schemas.events import DeadLetter, OutcomeStatus, RetainedItem
from schemas.primitives.sealing import DataKeys
from schemas.register import Register, System
from schemas.sweeps import (
    SweepApproved,
    SweepCount,
    SweepDispatched,
    SweepOutcome,
    SweepRequested,
    SweepStatus,
    SweepStatusChanged,
    SweepTrigger,
)
from schemas.topics import DEAD_LETTER, OUTCOMES, REQUESTS, STATUS, TASKS
from tests.orchestrator.test_fanout import PARTITIONS, FakeOutput, FakeRecord, accept

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
OFFICER = "officer-42"


#: A support desk's tickets: gone 180 days after the last activity.
TICKETS = {
    "collection": "tickets",
    "period": "180 days",
    "counted_from": "last_activity",
    "date_field": "updated_at",
}
INVOICES = {
    "collection": "invoices",
    "period": "7 years",
    "counted_from": "book_year_end",
    "date_field": "invoice_date",
}


def sweepable(
    name: str, approval: str, collections: list[dict[str, Any]], **settings: Any
) -> dict[str, Any]:
    """A memory system's register entry with a sweep policy (`settings`: the connector's)."""
    return {
        "name": name,
        "kind": "support_desk",
        "connector": "memory",
        "settings": settings,
        "data_categories": ["support tickets"],
        "purposes": ["customer support"],
        "legal_basis": ["contract"],
        "profiling": "none",
        "retention": "180 days after the last activity",
        "sweep": {"schedule": "1 day", "approval": approval, "collections": collections},
    }


def _system(name: str, approval: str = "required") -> System:
    return System.model_validate(sweepable(name, approval, [TICKETS, INVOICES]))


GUARDED = _system("helpdesk")
TRUSTED = _system("archive", approval="not_required")
PLAIN = System.model_validate(
    {**GUARDED.model_dump(exclude={"sweep"}), "name": "crm"}  # no sweep in the register
)
SYSTEMS = {s.name: s for s in (GUARDED, TRUSTED, PLAIN)}


def ctx(now: datetime = NOW, systems: dict[str, System] | None = None) -> SweepContext:
    return SweepContext(
        systems=SYSTEMS if systems is None else systems,
        now=now,
        timezone=AMSTERDAM,
        max_attempts=3,
        retry_delay=timedelta(seconds=10),
        task_timeout=timedelta(hours=1),
    )


def requested(
    system: str = "helpdesk", *, dry_run: bool = True, sweep_id: str = "sweep-helpdesk-1"
) -> SweepRequested:
    return SweepRequested(
        sweep_id=sweep_id, system=system, dry_run=dry_run, requested_by=OFFICER, requested_at=NOW
    )


def approved(sweep_id: str = "sweep-helpdesk-1", at: datetime = NOW) -> SweepApproved:
    return SweepApproved(sweep_id=sweep_id, approved_by=OFFICER, approved_at=at)


def counts(expired: int = 12, deleted: int = 0, kept: int = 0) -> list[SweepCount]:
    return [
        SweepCount(collection="tickets", expired=expired, deleted=deleted),
        SweepCount(collection="invoices", expired=kept, kept=kept),
    ]


def outcome_for(state: SweepState, status: OutcomeStatus = OutcomeStatus.COMPLETED, **kw: Any):
    fields: dict[str, Any] = {
        "sweep_id": state.sweep_id,
        "task_id": state.task_id,
        "system": state.system,
        "dry_run": state.task_dry_run,
        "attempt": state.attempt,
        "status": status,
        "completed_at": NOW,
    }
    if status == OutcomeStatus.COMPLETED:
        fields["counts"] = counts(deleted=0 if state.task_dry_run else 12)
    return SweepOutcome(**{**fields, **kw})


def started(system: str = "helpdesk", **kw: Any) -> SweepState:
    state, effects = lifecycle.request(None, requested(system, **kw), ctx())
    assert state is not None and not effects.dead_letter
    return state


def awaiting() -> SweepState:
    state = started()
    state, _ = lifecycle.record_outcome(state, outcome_for(state), ctx())
    assert state is not None and state.status == SweepStatus.AWAITING_APPROVAL
    return state


def sweeping() -> SweepState:
    state, _ = lifecycle.approve(awaiting(), approved(), ctx())
    assert state is not None and state.status == SweepStatus.SWEEPING
    return state


# -- starting ------------------------------------------------------------------------------------


def test_art_5_1_e_a_sweep_counts_first_with_each_collections_cutoff() -> None:
    """A requested sweep sends a dry run (nothing is deleted yet) with every collection's rule
    from the register and the cutoff computed for today."""
    state, effects = lifecycle.request(None, requested(), ctx())
    assert state is not None and state.status == SweepStatus.COUNTING
    [task] = effects.tasks
    assert task.dry_run and task.attempt == 1 and task.sweep_id == "sweep-helpdesk-1"
    assert task.task_id == "sweep-helpdesk-1/count"
    tickets, invoices = task.rules
    assert tickets.collection == "tickets" and tickets.date_field == "updated_at"
    assert tickets.cutoff == date(2026, 11, 30) - timedelta(days=180)
    assert tickets.period == "180 days" and tickets.counted_from == "last_activity"
    # Seven years after the end of the book year: records of 2018 and before have expired.
    assert invoices.cutoff == date(2019, 1, 1)
    [status] = effects.statuses
    assert status.status == SweepStatus.COUNTING and status.previous_status is None
    assert status.sequence == 1 and status.rules == task.rules
    assert status.requested_by == OFFICER and status.trigger == SweepTrigger.MANUAL


def test_cutoffs_count_calendar_days_in_the_deadline_time_zone() -> None:
    """23:30 UTC on 31 December is already 1 January in Amsterdam: the cutoff moves with it."""
    late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    rules = lifecycle.rules_for(GUARDED, late, AMSTERDAM)
    assert rules[0].cutoff == date(2027, 1, 1) - timedelta(days=180)
    assert rules[1].cutoff == date(2020, 1, 1)
    assert lifecycle.rules_for(GUARDED, late, ZoneInfo("UTC"))[1].cutoff == date(2019, 1, 1)


def test_art_5_2_a_deleting_sweep_on_a_guarded_system_still_counts_first() -> None:
    """`dry_run: false` on a system whose sweeps need approval: counted first, an officer
    decides (the controller can show who decided to delete)."""
    state, effects = lifecycle.request(None, requested(dry_run=False), ctx())
    assert state is not None and state.status == SweepStatus.COUNTING
    assert [t.dry_run for t in effects.tasks] == [True]
    assert effects.statuses[-1].reason and "approval required" in effects.statuses[-1].reason


def test_a_trusted_system_is_swept_at_once_without_approval() -> None:
    state, effects = lifecycle.request(None, requested("archive", dry_run=False), ctx())
    assert state is not None and state.status == SweepStatus.SWEEPING
    [task] = effects.tasks
    assert not task.dry_run and task.task_id.endswith("/delete")
    assert "not_required" in (effects.statuses[-1].reason or "")


def test_a_dry_run_on_a_trusted_system_only_counts_and_waits() -> None:
    """`dry_run: true` means count only, whatever the register trusts."""
    state = started("archive")
    state, effects = lifecycle.record_outcome(state, outcome_for(state), ctx())
    assert state is not None and state.status == SweepStatus.AWAITING_APPROVAL
    assert effects.tasks == []


@pytest.mark.parametrize(
    ("system", "words"),
    [("nowhere", "not in the register"), ("crm", "no retention per collection")],
)
def test_a_system_outside_the_register_or_without_sweep_rules_is_refused(
    system: str, words: str
) -> None:
    """As a request naming an unknown system: dead-lettered with the reason, nothing sent."""
    state, effects = lifecycle.request(None, requested(system), ctx())
    assert state is None and effects.tasks == [] and effects.statuses == []
    assert effects.dead_letter and words in effects.dead_letter and system in effects.dead_letter


def test_a_redelivered_request_changes_nothing_and_a_conflicting_one_is_refused() -> None:
    state = started()
    same, effects = lifecycle.request(state, requested(), ctx())
    assert same is state and not effects.changed and not effects.dead_letter
    _, effects = lifecycle.request(state, requested("archive"), ctx())
    assert effects.dead_letter and "already used" in effects.dead_letter


# -- counting ------------------------------------------------------------------------------------


def test_after_the_dry_run_the_sweep_waits_for_an_officer_with_the_counts() -> None:
    state = started()
    retained = [RetainedItem(collection="invoices", count=2, legal_basis="Art. 52 AWR")]
    state, effects = lifecycle.record_outcome(
        state, outcome_for(state, retained=retained, counts=counts(kept=2)), ctx()
    )
    assert state is not None and state.status == SweepStatus.AWAITING_APPROVAL
    assert effects.tasks == []
    [status] = effects.statuses
    assert status.previous_status == SweepStatus.COUNTING
    assert [c.expired for c in status.dry_run_counts] == [12, 2]
    assert status.retained == retained
    assert status.reason and "tickets 12 expired" in status.reason
    assert "2 kept under a retention duty" in status.reason


def test_nothing_expired_ends_the_sweep() -> None:
    state = started()
    state, effects = lifecycle.record_outcome(
        state, outcome_for(state, counts=counts(expired=0)), ctx()
    )
    assert state is not None and state.status == SweepStatus.NOTHING_EXPIRED and state.is_final
    assert state.finished_at == NOW and effects.tasks == [] and not effects.certificate


# -- approval ------------------------------------------------------------------------------------


def test_art_5_2_approval_sends_the_deleting_task_and_records_who_approved() -> None:
    state, effects = lifecycle.approve(awaiting(), approved(), ctx())
    assert state is not None and state.status == SweepStatus.SWEEPING
    [task] = effects.tasks
    assert not task.dry_run and task.attempt == 1 and task.task_id == "sweep-helpdesk-1/delete"
    [status] = effects.statuses
    assert status.approved_by == OFFICER and status.approved_at == NOW
    assert status.previous_status == SweepStatus.AWAITING_APPROVAL
    assert [c.expired for c in status.dry_run_counts] == [12, 0]


def test_approval_takes_the_rules_from_the_register_as_it_is_then() -> None:
    later = NOW + timedelta(days=3)
    _, effects = lifecycle.approve(awaiting(), approved(at=later), ctx(later))
    assert effects.tasks[0].rules[0].cutoff == date(2026, 12, 3) - timedelta(days=180)


def test_approval_when_not_awaiting_is_ignored_with_a_reason() -> None:
    state, effects = lifecycle.approve(started(), approved(), ctx())
    assert state is not None and state.status == SweepStatus.COUNTING
    assert effects.tasks == [] and state.approved_by is None
    [status] = effects.statuses
    assert status.status == status.previous_status == SweepStatus.COUNTING
    assert status.reason and "ignored" in status.reason and "counting" in status.reason


def test_a_redelivered_approval_changes_nothing() -> None:
    state = sweeping()
    same, effects = lifecycle.approve(state, approved(), ctx())
    assert same is state and not effects.changed


def test_approval_of_an_unknown_sweep_is_dead_lettered() -> None:
    state, effects = lifecycle.approve(None, approved("sweep-nope"), ctx())
    assert state is None and effects.dead_letter and "unknown sweep" in effects.dead_letter


def test_approval_after_the_system_left_the_register_fails_the_sweep() -> None:
    systems = {"archive": TRUSTED}
    state, effects = lifecycle.approve(awaiting(), approved(), ctx(systems=systems))
    assert state is not None and state.status == SweepStatus.FAILED and effects.tasks == []
    assert "not in the register" in (effects.statuses[-1].reason or "")


# -- sweeping ------------------------------------------------------------------------------------


def test_art_5_1_e_a_completed_sweep_gets_its_counts_and_a_certificate() -> None:
    state = sweeping()
    state, effects = lifecycle.record_outcome(state, outcome_for(state), ctx())
    assert state is not None and state.status == SweepStatus.COMPLETED and state.is_final
    assert effects.certificate
    [status] = effects.statuses
    assert [c.deleted for c in status.counts] == [12, 0] and status.finished_at == NOW
    assert status.reason and "tickets 12 removed" in status.reason


def test_a_retryable_failure_is_tried_again_with_backoff() -> None:
    state = sweeping()
    failed = outcome_for(state, OutcomeStatus.FAILED, reason="timeout", retryable=True)
    state, effects = lifecycle.record_outcome(state, failed, ctx())
    assert state is not None and state.status == SweepStatus.SWEEPING
    assert effects.tasks == [] and state.retry_at == NOW + timedelta(seconds=10)
    assert "attempt 2 of 3" in (effects.statuses[-1].reason or "")
    assert lifecycle.next_check(state, ctx()) == state.retry_at
    # The first attempt's outcome, delivered again: ignored.
    _, effects = lifecycle.record_outcome(state, failed, ctx())
    assert not effects.changed
    _, effects = lifecycle.tick(state, ctx(NOW + timedelta(seconds=5)))
    assert not effects.changed
    state, effects = lifecycle.tick(state, ctx(NOW + timedelta(seconds=10)))
    [task] = effects.tasks
    assert task.attempt == 2 and not task.dry_run and state.retry_at is None
    # The second failure waits twice as long.
    failed = outcome_for(state, OutcomeStatus.FAILED, reason="timeout", retryable=True)
    state, _ = lifecycle.record_outcome(state, failed, ctx())
    assert state is not None and state.retry_at == NOW + timedelta(seconds=20)


def test_failures_past_the_attempts_or_not_retryable_fail_the_sweep() -> None:
    state = sweeping()
    failed = outcome_for(state, OutcomeStatus.FAILED, reason="permission denied")
    state, effects = lifecycle.record_outcome(state, failed, ctx())
    assert state is not None and state.status == SweepStatus.FAILED and state.is_final
    assert "permission denied" in (effects.statuses[-1].reason or "")
    state = sweeping()
    state.attempt = 3
    failed = outcome_for(state, OutcomeStatus.FAILED, reason="timeout", retryable=True)
    state, _ = lifecycle.record_outcome(state, failed, ctx())
    assert state is not None and state.status == SweepStatus.FAILED


def test_a_connector_that_cannot_sweep_hands_over_its_instructions() -> None:
    state = started()
    manual = outcome_for(
        state, OutcomeStatus.MANUAL_ACTION_REQUIRED, instructions="Delete in the vendor UI."
    )
    state, effects = lifecycle.record_outcome(state, manual, ctx())
    assert state is not None and state.status == SweepStatus.MANUAL_ACTION_REQUIRED
    assert effects.statuses[-1].instructions == "Delete in the vendor UI."


def test_stale_and_foreign_outcomes_are_ignored_and_unknown_ones_dead_lettered() -> None:
    state = sweeping()
    dry = outcome_for(state, dry_run=True, task_id="sweep-helpdesk-1/count")  # late dry run
    _, effects = lifecycle.record_outcome(state, dry, ctx())
    assert not effects.changed and not effects.dead_letter
    old = outcome_for(state, attempt=2)
    _, effects = lifecycle.record_outcome(state, old, ctx())
    assert not effects.changed
    _, effects = lifecycle.record_outcome(None, old, ctx())
    assert effects.dead_letter and "unknown sweep" in effects.dead_letter
    state, _ = lifecycle.record_outcome(state, outcome_for(state), ctx())
    assert state is not None
    _, effects = lifecycle.record_outcome(state, outcome_for(state), ctx())  # done already
    assert not effects.changed


def test_a_task_without_an_outcome_is_sent_again_then_fails() -> None:
    state = started()
    hour = timedelta(hours=1)
    assert lifecycle.next_check(state, ctx()) == NOW + hour
    _, effects = lifecycle.tick(state, ctx(NOW + hour / 2))
    assert not effects.changed
    for attempt in (2, 3):
        now = NOW + hour * (attempt - 1)
        state, effects = lifecycle.tick(state, ctx(now))
        assert [t.attempt for t in effects.tasks] == [attempt]
        assert "dispatched again" in (effects.statuses[-1].reason or "")
    state, effects = lifecycle.tick(state, ctx(NOW + hour * 3))
    assert state.status == SweepStatus.FAILED and effects.tasks == []
    assert "connector worker" in (effects.statuses[-1].reason or "")
    assert lifecycle.next_check(state, ctx()) is None


def test_waiting_for_approval_is_not_timed_out() -> None:
    state = awaiting()
    assert lifecycle.next_check(state, ctx()) is None
    _, effects = lifecycle.tick(state, ctx(NOW + timedelta(days=30)))
    assert not effects.changed


def test_status_events_carry_rules_and_counts_never_records() -> None:
    state = sweeping()
    _, effects = lifecycle.record_outcome(state, outcome_for(state), ctx())
    body = effects.statuses[-1].model_dump(mode="json")
    assert set(body["counts"][0]) == {"collection", "expired", "deleted", "anonymised", "kept"}


# -- schedules -----------------------------------------------------------------------------------


def test_recital_39_a_schedule_is_due_once_its_period_has_passed() -> None:
    """Recital 39 GDPR: time limits for erasure or periodic review; the register's schedule."""
    assert lifecycle.schedule_due(GUARDED, None, NOW)  # never ran: at once
    assert not lifecycle.schedule_due(GUARDED, NOW - timedelta(hours=23), NOW)
    assert lifecycle.schedule_due(GUARDED, NOW - timedelta(days=1), NOW)
    # Down for a week: one sweep now, the next a day after it (no backlog).
    assert lifecycle.schedule_due(GUARDED, NOW - timedelta(days=7), NOW)
    assert not lifecycle.schedule_due(PLAIN, None, NOW)


def test_a_scheduled_sweep_is_named_by_system_and_minute_and_counts_unless_trusted() -> None:
    event = lifecycle.scheduled_request(
        GUARDED, datetime(2026, 11, 30, 10, 5, 59, tzinfo=AMSTERDAM)
    )
    assert event.sweep_id == "sweep-helpdesk-202611300905"  # UTC
    assert event.trigger == SweepTrigger.SCHEDULE and event.dry_run
    assert not lifecycle.scheduled_request(TRUSTED, NOW).dry_run


# -- the shell -----------------------------------------------------------------------------------


class Bench:
    """A sweep runner on a dict table, a fake output and a clock the test moves."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.register = Register.model_validate(
            {"systems": [s.model_dump() for s in SYSTEMS.values()]}
        )
        self.output = FakeOutput()
        self.table: dict[str, str] = {}
        self.keys = DataKeys(tmp_path / "dek", os.urandom(32))
        self.now = NOW
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(SweepRunner, "context", lambda runner, now=None: self._context())

    def _context(self) -> SweepContext:
        return ctx(self.now, {s.name: s for s in self.register.systems})

    def runner(self, **settings: Any) -> SweepRunner:
        """A runner (a new one is a restarted orchestrator: same table)."""
        config = Settings(data_dir=self.tmp_path, keys_dir=self.tmp_path / "keys", **settings)
        return SweepRunner(
            config,
            SweepTable(self.table, PARTITIONS),
            Sender(self.output, self.keys, "tests"),  # type: ignore[arg-type]
            register=lambda: self.register,
            data_keys=self.keys,
            owned_partitions=lambda: set(range(PARTITIONS)),
        )

    def sent(self, topic: str) -> list[Any]:
        """The bodies sent to `topic`, then forgotten."""
        found = [decode(m.value, m.headers).body for t, m, _ in self.output.sent if t == topic]
        self.output.sent = [s for s in self.output.sent if s[0] != topic]
        return found

    def certificates(self, issue: Any) -> None:
        """Issue sweep certificates with `issue(issuer, status, directory)`."""
        self.monkeypatch.setattr(shell.SweepCertificateIssuer, "issue", issue)

    def case_files(self, sweep: Any) -> None:
        """Sweep the case files with `sweep(data_dir, policy, keys, *, now, pause)`."""
        self.monkeypatch.setattr(shell, "sweep_case_files", sweep)


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bench:
    return Bench(tmp_path, monkeypatch)


def sweep_record(body: Any, partition: int | None = None) -> FakeRecord:
    topic = OUTCOMES.name if isinstance(body, SweepOutcome) else REQUESTS.name
    message = encode(body, source="tests")
    if partition is None:
        partition = partition_for(body.sweep_id, PARTITIONS)
    return FakeRecord(topic, partition, message.key, message.value, message.headers)


async def _nothing() -> None:
    return None


def run(sweeps: SweepRunner, *bodies: Any) -> bool:
    """One batch of sweep events through intake and the runner."""
    intake = sort_batch([sweep_record(b) for b in bodies], accept, PARTITIONS)
    pending: list[Awaitable[Any]] = []
    changed = sweeps.handle(intake.sweeps, pending)
    asyncio.run(Sender.wait(pending))
    return changed


def tick(sweeps: SweepRunner) -> None:
    asyncio.run(sweeps.tick(_nothing))


def test_intake_moves_a_sweep_event_to_its_sweep_ids_partition() -> None:
    event = requested()
    home = partition_for(event.sweep_id, PARTITIONS)
    wrong = (home + 1) % PARTITIONS
    intake = sort_batch([sweep_record(event, partition=wrong)], accept, PARTITIONS)
    assert intake.sweeps == [] and isinstance(intake.turned_away[0], Misrouted)
    assert intake.turned_away[0].request_id == event.sweep_id
    intake = sort_batch([sweep_record(event)], accept, PARTITIONS)
    assert [body for _, body in intake.sweeps] == [event]


def test_the_shell_sends_tasks_keyed_by_system_and_statuses_by_sweep_id(bench: Bench) -> None:
    """Tasks by system (one connector worker owns a system's rate budget, issue 19), the
    status by sweep id (the sweep's own order)."""
    assert run(bench.runner(), requested())
    keys = {type(decode(m.value, m.headers).body): m.key for _, m, _ in bench.output.sent}
    assert keys == {SweepDispatched: b"helpdesk", SweepStatusChanged: b"sweep-helpdesk-1"}
    [task] = bench.sent(TASKS.name)
    assert isinstance(task, SweepDispatched) and task.dry_run
    [status] = bench.sent(STATUS.name)
    assert isinstance(status, SweepStatusChanged) and status.status == SweepStatus.COUNTING
    assert json.loads(bench.table["sweep-helpdesk-1"])["status"] == "counting"


def test_the_shell_dead_letters_a_sweep_of_an_unknown_system_with_its_reason(
    bench: Bench,
) -> None:
    assert not run(bench.runner(), requested("nowhere", sweep_id="sweep-nowhere-1"))
    [letter] = bench.sent(DEAD_LETTER.name)
    assert isinstance(letter, DeadLetter) and letter.stage == "process"
    assert "not in the register" in letter.reason and bench.table == {}


def test_a_broken_state_is_dead_lettered_and_the_worker_goes_on(bench: Bench) -> None:
    bench.table["sweep-helpdesk-1"] = "{not json"
    assert run(bench.runner(), approved(), requested("archive", sweep_id="sweep-archive-1"))
    [letter] = bench.sent(DEAD_LETTER.name)
    assert letter.reason == "processing failed: ValidationError"
    assert "sweep-archive-1" in bench.table


def test_art_5_2_a_completed_sweep_names_its_signed_certificate(bench: Bench) -> None:
    """Accountability (Art. 5(2) GDPR): the completed sweep's status names its certificate."""
    issued: list[tuple[SweepStatusChanged, Path]] = []

    def issue(issuer: Any, status: SweepStatusChanged, directory: Path) -> Path:
        issued.append((status, directory))
        return directory / f"{status.sweep_id}.json"

    bench.certificates(issue)
    sweeps = bench.runner()
    state = sweeping()
    sweeps.table.store(state)
    assert run(sweeps, outcome_for(state))
    [(status, directory)] = issued
    assert status.status == SweepStatus.COMPLETED and directory == bench.tmp_path / "sweeps"
    [final] = bench.sent(STATUS.name)
    assert final.certificate == str(bench.tmp_path / "sweeps" / "sweep-helpdesk-1.json")
    assert json.loads(bench.table["sweep-helpdesk-1"])["certificate"] == final.certificate


def test_a_certificate_that_cannot_be_issued_never_stops_the_worker(bench: Bench) -> None:
    def issue(issuer: Any, status: SweepStatusChanged, directory: Path) -> Path:
        raise OSError("disk full")

    bench.certificates(issue)
    sweeps = bench.runner()
    state = sweeping()
    sweeps.table.store(state)
    assert run(sweeps, outcome_for(state))
    [final] = bench.sent(STATUS.name)
    assert final.status == SweepStatus.COMPLETED and final.certificate is None
    assert final.reason and "certificate could not be issued (OSError)" in final.reason


def test_recital_39_scheduled_sweeps_start_once_per_schedule_and_survive_a_restart(
    bench: Bench,
) -> None:
    tick(bench.runner())
    started = {t.sweep_id: t for t in bench.sent(TASKS.name)}
    assert set(started) == {"sweep-helpdesk-202611300900", "sweep-archive-202611300900"}
    assert started["sweep-helpdesk-202611300900"].dry_run  # needs approval: counts
    assert not started["sweep-archive-202611300900"].dry_run  # trusted: deletes
    assert {s.trigger for s in bench.sent(STATUS.name)} == {SweepTrigger.SCHEDULE}

    # A restart half an hour later (a new runner on the same table): nothing runs again.
    bench.now = NOW + timedelta(minutes=30)
    again = bench.runner()
    tick(again)
    assert bench.sent(TASKS.name) == []

    # A day later: the trusted system's last sweep finished, so it runs again; the guarded
    # one still waits for its counts and gets no second sweep beside it.
    archive = again.table.load("sweep-archive-202611300900")
    assert archive is not None
    archive, _ = lifecycle.record_outcome(archive, outcome_for(archive), ctx())
    assert archive is not None
    again.table.store(archive)
    bench.now = NOW + timedelta(days=1)
    tick(again)
    new = [t.sweep_id for t in bench.sent(TASKS.name) if t.attempt == 1]
    assert new == ["sweep-archive-202612010900"]


def test_schedules_can_be_switched_off(bench: Bench) -> None:
    tick(bench.runner(sweep_schedules=False))
    assert bench.sent(TASKS.name) == []


def retrying(bench: Bench) -> SweepRunner:
    """A runner whose deleting sweep failed once (retryable) and waits for its backoff."""
    sweeps = bench.runner(sweep_schedules=False)
    state = sweeping()
    sweeps.table.store(state)
    failed = outcome_for(state, OutcomeStatus.FAILED, reason="timeout", retryable=True)
    assert run(sweeps, failed)
    bench.sent(TASKS.name)
    return sweeps


def test_the_timer_dispatches_a_retry_when_its_backoff_is_over(bench: Bench) -> None:
    sweeps = retrying(bench)
    tick(sweeps)
    assert bench.sent(TASKS.name) == []
    bench.now = NOW + timedelta(seconds=10)
    tick(sweeps)
    [task] = bench.sent(TASKS.name)
    assert task.attempt == 2 and not task.dry_run


def test_the_case_file_sweep_not_there_yet_is_logged_once(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    bench.case_files(missing)
    sweeps = bench.runner(sweep_schedules=False)
    with caplog.at_level(logging.WARNING, "dsr.orchestrator"):
        tick(sweeps)
        tick(sweeps)
    assert sum("case files are not swept" in r.message for r in caplog.records) == 1


def test_art_5_1_e_our_own_case_files_are_swept_on_their_schedule(bench: Bench) -> None:
    calls: list[datetime] = []

    def sweep(
        data_dir: Path, policy: Any, data_keys: DataKeys, *, now: datetime, pause: Any
    ) -> Any:
        calls.append(now)
        return CaseFileSweep(removed={"results": 2}, keys_destroyed=1)

    bench.case_files(sweep)
    sweeps = bench.runner(sweep_schedules=False)
    tick(sweeps)
    tick(sweeps)
    assert calls == [NOW]  # the register's default: once a day
    bench.now = NOW + timedelta(days=1)
    tick(bench.runner(sweep_schedules=False))  # restarted: the last run is remembered
    assert calls == [NOW, NOW + timedelta(days=1)]


def test_the_case_file_sweep_runs_off_the_event_loop(bench: Bench) -> None:
    """It reads the folder entries of every request's case files and removes files: on the
    event loop, the first tick after a start under load held up the requests in flight."""
    threads: list[int] = []

    def sweep(
        data_dir: Path, policy: Any, data_keys: DataKeys, *, now: datetime, pause: Any
    ) -> Any:
        threads.append(threading.get_ident())
        return CaseFileSweep(removed={}, keys_destroyed=0)

    bench.case_files(sweep)
    tick(bench.runner(sweep_schedules=False))
    assert threads and threads != [threading.get_ident()]


def test_a_broken_sweep_state_does_not_hold_up_the_timer(bench: Bench) -> None:
    sweeps = retrying(bench)
    bench.table["sweep-broken-1"] = "{not json"
    sweeps._due["sweep-broken-1"] = None
    bench.now = NOW + timedelta(seconds=10)
    tick(sweeps)
    [task] = bench.sent(TASKS.name)
    assert task.sweep_id == "sweep-helpdesk-1" and task.attempt == 2
    assert "sweep-broken-1" not in sweeps._due
