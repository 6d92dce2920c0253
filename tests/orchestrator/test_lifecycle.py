"""The request lifecycle's decisions, exhaustively, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from orchestrator.lifecycle.reducer import (
    Context,
    Policy,
    RequestState,
    coalesce,
    decide,
    extend,
    final_status,
    next_check,
    record_outcome,
    submit,
    task_id,
    tick,
    verify,
)
from schemas.events import (
    Counts,
    DeadlineExtended,
    DeliveryRecorded,
    Identifier,
    IdentityVerification,
    IdentityVerified,
    OutcomeStatus,
    RequestStatus,
    RequestSubmitted,
    StatusTrigger,
    Subject,
    SystemProgress,
    TaskOutcome,
    VerificationMethod,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
EMAIL = "p@example.nl"
SYSTEMS = ("crm", "mailing", "chat", "support")
AMS = ZoneInfo("Europe/Amsterdam")
#: Deadline tests look months ahead; their tasks must not time out meanwhile.
LONG = timedelta(days=365)


def ctx(now: datetime = NOW, **policy: object) -> Context:
    return Context(systems=SYSTEMS, policy=Policy(**policy), now=now)  # type: ignore[arg-type]


def request(
    verified: bool = True, *, now: datetime = NOW, email: str = EMAIL, **overrides: object
) -> RequestSubmitted:
    """A request received `now` for the subject `email` (the e2e tests build theirs with it)."""
    fields: dict[str, object] = {
        "request_id": "req-1",
        "type": "erasure",
        "subject": Subject(identifiers=[Identifier(type="email", value=email)]),
        "received_at": now,
        "requested_by": "test",
        "verification": IdentityVerification(
            verified=True, method=VerificationMethod.ID_DOCUMENT, verified_at=now
        )
        if verified
        else IdentityVerification(),
    }
    fields.update(overrides)
    return RequestSubmitted.model_validate(fields)


def outcome(
    system: str, status: OutcomeStatus = OutcomeStatus.COMPLETED, attempt: int = 1, **extra: object
) -> TaskOutcome:
    return TaskOutcome.model_validate(
        {
            "request_id": "req-1",
            "task_id": task_id("req-1", system),
            "system": system,
            "action": "erasure",
            "attempt": attempt,
            "status": status,
            "completed_at": NOW,
            **extra,
        }
    )


def end_of(y: int, m: int, d: int) -> datetime:
    """The last moment of a day in Amsterdam: where a deadline ends (Reg. 1182/71 Art. 3(2))."""
    return datetime.combine(datetime(y, m, d).date(), time.max, tzinfo=AMS)


def started(**kw: object) -> RequestState:
    state, _ = submit(None, request(**kw), ctx())
    assert state is not None
    return state


def test_verified_request_fans_out_one_task_per_system() -> None:
    state, effects = submit(None, request(), ctx())
    assert state is not None and state.status == RequestStatus.IN_PROGRESS
    assert [t.system for t in effects.tasks] == list(SYSTEMS)
    assert {t.task_id for t in effects.tasks} == {f"req-1/{s}" for s in SYSTEMS}
    assert all(t.attempt == 1 and t.action == "erasure" for t in effects.tasks)
    [status] = effects.statuses
    assert status.status == RequestStatus.IN_PROGRESS and status.previous_status is None
    assert status.systems_total == 4 and status.systems_done == 0 and status.sequence == 1


def test_unverified_request_waits_and_fans_out_on_verification() -> None:
    state, effects = submit(None, request(verified=False), ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_VERIFICATION
    assert effects.tasks == []
    state, effects = verify(
        state, IdentityVerified(request_id="req-1", method="id_document", verified_at=NOW), ctx()
    )
    assert len(effects.tasks) == 4
    assert effects.statuses[0].trigger == StatusTrigger.VERIFIED
    assert effects.statuses[0].previous_status == RequestStatus.AWAITING_VERIFICATION
    # a second verification changes nothing
    _, again = verify(
        state, IdentityVerified(request_id="req-1", method="id_document", verified_at=NOW), ctx()
    )
    assert not again.changed


def test_verification_before_request_is_remembered() -> None:
    early = IdentityVerified(request_id="req-1", method="in_person", verified_at=NOW)
    state, effects = verify(None, early, ctx())
    assert effects.save and not effects.tasks and state.request is None
    state2, effects = submit(state, request(verified=False), ctx())
    assert state2 is not None and state2.status == RequestStatus.IN_PROGRESS
    assert len(effects.tasks) == 4


def test_duplicate_request_is_ignored_and_conflicting_one_dead_lettered() -> None:
    state = started()
    _, effects = submit(state, request(), ctx())
    assert not effects.changed and effects.dead_letter is None
    _, effects = submit(state, request(type="access"), ctx())
    assert effects.dead_letter and "already used" in effects.dead_letter
    assert EMAIL not in effects.dead_letter


def test_scope_limits_systems_and_unknown_scope_is_dead_lettered() -> None:
    state, effects = submit(None, request(scope=["crm", "chat"]), ctx())
    assert state is not None and set(state.systems) == {"crm", "chat"}
    assert len(effects.tasks) == 2
    state, effects = submit(None, request(scope=["crm", "ledger"]), ctx())
    assert state is None and effects.dead_letter and "ledger" in effects.dead_letter


def test_all_outcomes_complete_the_request_once() -> None:
    state = started()
    for system in SYSTEMS[:-1]:
        state, effects = record_outcome(state, outcome(system), ctx())
        assert state.status == RequestStatus.IN_PROGRESS and not effects.finished
    state, effects = record_outcome(state, outcome("support", OutcomeStatus.NOT_FOUND), ctx())
    assert effects.finished and state.status == RequestStatus.COMPLETED
    assert effects.statuses[-1].trigger == StatusTrigger.FINISHED
    assert effects.statuses[-1].systems_done == 4
    # re-delivery of an outcome after completion changes nothing
    _, again = record_outcome(state, outcome("crm"), ctx())
    assert not again.changed


def test_duplicate_outcome_counted_once() -> None:
    state = started()
    state, first = record_outcome(state, outcome("crm", counts=Counts(deleted=3)), ctx())
    state, second = record_outcome(state, outcome("crm", counts=Counts(deleted=3)), ctx())
    assert first.stored_outcomes and not second.changed
    assert state.systems_done == 1


def test_retryable_failure_is_redispatched_with_backoff_then_fails() -> None:
    state = started()
    failed = {"reason": "vendor answered 503", "retryable": True}
    state, effects = record_outcome(state, outcome("crm", OutcomeStatus.FAILED, 1, **failed), ctx())
    [retry] = effects.tasks
    assert retry.attempt == 2 and retry.not_before == NOW + timedelta(seconds=5)
    assert effects.statuses[0].trigger == StatusTrigger.RETRY
    state, effects = record_outcome(state, outcome("crm", OutcomeStatus.FAILED, 2, **failed), ctx())
    assert effects.tasks[0].attempt == 3 and effects.tasks[0].not_before == NOW + timedelta(
        seconds=10
    )
    state, effects = record_outcome(state, outcome("crm", OutcomeStatus.FAILED, 3, **failed), ctx())
    assert effects.tasks == [] and state.systems["crm"].status == OutcomeStatus.FAILED


def test_stale_failure_of_an_earlier_attempt_is_ignored() -> None:
    state = started()
    failed = {"reason": "timeout", "retryable": True}
    state, _ = record_outcome(state, outcome("crm", OutcomeStatus.FAILED, 1, **failed), ctx())
    _, effects = record_outcome(state, outcome("crm", OutcomeStatus.FAILED, 1, **failed), ctx())
    assert not effects.changed


def test_fatal_failure_in_one_system_gives_partially_completed_with_reason() -> None:
    state = started()
    for system in SYSTEMS[:-1]:
        state, _ = record_outcome(state, outcome(system), ctx())
    state, effects = record_outcome(
        state, outcome("support", OutcomeStatus.FAILED, reason="credentials rejected (401)"), ctx()
    )
    assert state.status == RequestStatus.PARTIALLY_COMPLETED
    assert effects.statuses[-1].reason == "failed in support: credentials rejected (401)"


def test_failure_everywhere_gives_failed() -> None:
    state = started()
    for system in SYSTEMS:
        state, _ = record_outcome(
            state, outcome(system, OutcomeStatus.FAILED, reason="down"), ctx()
        )
    assert state.status == RequestStatus.FAILED


def test_manual_action_keeps_request_open_until_completed() -> None:
    state = started()
    for system in SYSTEMS[:-1]:
        state, _ = record_outcome(state, outcome(system), ctx())
    state, effects = record_outcome(
        state,
        outcome("support", OutcomeStatus.MANUAL_ACTION_REQUIRED, instructions="delete by hand"),
        ctx(),
    )
    assert state.status == RequestStatus.ACTION_REQUIRED and not effects.finished
    state, effects = record_outcome(
        state,
        outcome("support", evidence=[{"kind": "manual_confirmation", "value": "done"}]),
        ctx(),
    )
    assert effects.finished and state.status == RequestStatus.COMPLETED


def test_outcome_for_unknown_request_is_dead_lettered() -> None:
    _, effects = record_outcome(None, outcome("crm"), ctx())
    assert effects.dead_letter


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], RequestStatus.COMPLETED),
        (["completed", "not_found", "retained"], RequestStatus.COMPLETED),
        (["completed", "failed"], RequestStatus.PARTIALLY_COMPLETED),
        (["failed", "failed"], RequestStatus.FAILED),
    ],
)
def test_final_status(statuses: list[str], expected: RequestStatus) -> None:
    systems = {
        f"s{n}": SystemProgress(status=OutcomeStatus(s), reason="x" if s == "failed" else None)
        for n, s in enumerate(statuses)
    }
    assert final_status(systems)[0] == expected


def test_deadline_is_one_calendar_month_by_default_and_policy_configurable() -> None:
    """Art. 12(3) counted by Regulation 1182/71 Art. 3(2)(c): the end of the month's last day."""
    jan31 = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
    state = started(received_at=jan31)
    assert state.deadline == end_of(2026, 2, 28)
    from orchestrator.lifecycle.deadlines import DeadlinePolicy

    state, _ = submit(
        None, request(received_at=jan31), ctx(deadline=DeadlinePolicy.parse("4 weeks"))
    )
    assert state is not None and state.deadline == end_of(2026, 2, 28)  # 31 Jan + 28 days
    state, _ = submit(
        None, request(received_at=jan31), ctx(deadline=DeadlinePolicy.parse("30 days"))
    )
    assert state is not None and state.deadline == end_of(2026, 2, 28)  # capped at the month


def test_tick_flags_due_soon_then_overdue_once_each() -> None:
    state = started()
    deadline = state.deadline
    assert deadline is not None
    _, effects = tick(state, ctx(task_timeout=LONG, now=deadline - timedelta(days=20)))
    assert not effects.changed
    state, effects = tick(state, ctx(task_timeout=LONG, now=deadline - timedelta(days=3)))
    assert [s.trigger for s in effects.statuses] == [StatusTrigger.DUE_SOON]
    assert effects.statuses[0].due_soon and effects.statuses[0].days_left == 3
    _, effects = tick(state, ctx(task_timeout=LONG, now=deadline - timedelta(days=2)))
    assert not effects.changed
    state, effects = tick(state, ctx(task_timeout=LONG, now=deadline + timedelta(hours=1)))
    assert [s.trigger for s in effects.statuses] == [StatusTrigger.OVERDUE]
    assert effects.statuses[0].overdue
    _, effects = tick(state, ctx(task_timeout=LONG, now=deadline + timedelta(days=2)))
    assert not effects.changed


def test_request_received_long_ago_is_overdue_on_arrival() -> None:
    state, effects = submit(None, request(received_at=NOW - timedelta(days=40)), ctx())
    assert state is not None and state.overdue_sent
    assert effects.statuses[-1].trigger == StatusTrigger.OVERDUE


def test_unverified_request_is_refused_after_the_deadline() -> None:
    state, _ = submit(None, request(verified=False), ctx())
    assert state is not None and state.deadline is not None
    state, effects = tick(state, ctx(now=state.deadline + timedelta(minutes=1)))
    assert state.status == RequestStatus.REFUSED and effects.finished
    assert "not verified" in (effects.statuses[-1].reason or "")


def test_status_sequence_increases_by_one() -> None:
    state = started()
    sequences = [1]
    for system in SYSTEMS:
        state, effects = record_outcome(state, outcome(system), ctx())
        sequences += [s.sequence for s in effects.statuses]
    assert sequences == list(range(1, len(sequences) + 1))


def test_state_round_trips_through_json() -> None:
    state = started()
    state, _ = record_outcome(state, outcome("crm", counts=Counts(deleted=2)), ctx())
    assert RequestState.model_validate_json(state.model_dump_json()) == state


def test_coalesce_merges_one_batch_of_changes_into_one_event() -> None:
    state = started()  # sequence 1: in_progress
    statuses = []
    for system in SYSTEMS:
        state, effects = record_outcome(state, outcome(system), ctx())
        statuses += effects.statuses
    assert [s.sequence for s in statuses] == [2, 3, 4, 5]
    [merged] = coalesce(state, statuses)
    assert merged.sequence == 2 and state.sequence == 2
    assert merged.previous_status == RequestStatus.IN_PROGRESS
    assert merged.status == RequestStatus.COMPLETED and merged.systems_done == 4
    assert merged.trigger == StatusTrigger.FINISHED
    # the next change continues the sequence without a gap
    state, effects = tick(state, ctx())
    assert not effects.statuses  # final: nothing more


def test_coalesce_keeps_the_latest_reason_and_single_events_untouched() -> None:
    state = started()
    failed = {"reason": "vendor answered 503", "retryable": True}
    state, a = record_outcome(state, outcome("crm", OutcomeStatus.FAILED, 1, **failed), ctx())
    state, b = record_outcome(state, outcome("chat"), ctx())
    [merged] = coalesce(state, a.statuses + b.statuses)
    assert merged.reason == "crm: vendor answered 503"
    assert coalesce(state, b.statuses) == b.statuses


def test_next_check_follows_the_deadline_rules() -> None:
    policy = Policy(task_timeout=LONG)
    state = started()
    deadline = state.deadline
    assert deadline is not None
    first = next_check(state, policy)
    assert first is not None and first.date() == deadline.date() - timedelta(days=7)
    # nothing changes before that moment, and something does at it
    assert not tick(
        state.model_copy(deep=True), ctx(task_timeout=LONG, now=first - timedelta(seconds=1))
    )[1].changed
    state, effects = tick(state, ctx(task_timeout=LONG, now=first))
    assert effects.statuses[0].trigger == StatusTrigger.DUE_SOON
    second = next_check(state, policy)
    assert second is not None and second > deadline
    assert not tick(state.model_copy(deep=True), ctx(task_timeout=LONG, now=deadline))[1].changed
    state, effects = tick(state, ctx(task_timeout=LONG, now=second))
    assert effects.statuses[0].trigger == StatusTrigger.OVERDUE
    # Only the tasks' timeout is left to watch.
    assert next_check(state, policy) == NOW + LONG


def test_next_check_is_none_for_final_requests_and_keeps_unverified_ones() -> None:
    state = started()
    for system in SYSTEMS:
        state, _ = record_outcome(state, outcome(system), ctx())
    # Completed but not delivered, its deadline is still watched (Art. 12(3)); once delivered
    # nothing is left to check.
    assert next_check(state, Policy()) is not None
    state.delivery = delivered_by_post()
    assert next_check(state, Policy()) is None
    waiting, _ = submit(None, request(verified=False, received_at=NOW - timedelta(days=40)), ctx())
    assert waiting is not None and waiting.overdue_sent
    when = next_check(waiting, Policy())
    assert when is not None and when <= NOW  # refusal is due now


def delivered_by_post(at: datetime = NOW) -> DeliveryRecorded:
    """An officer's record that the answer went by post (the deadline is met by delivery)."""
    return DeliveryRecorded(
        request_id="req-1", channel="post", delivered_by="officer-7", delivered_at=at
    )


def extension(
    months: int = 2,
    reason: str = "complex request across many systems",
    extended_at: datetime = NOW,
) -> DeadlineExtended:
    return DeadlineExtended(
        request_id="req-1", months=months, reason=reason, extended_at=extended_at
    )


def test_art_12_3_extension_before_the_deadline_by_two_further_months_once() -> None:
    jan31 = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
    feb10 = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
    state = started(received_at=jan31)
    assert state.deadline == end_of(2026, 2, 28)
    state, effects = extend(state, extension(2, extended_at=feb10), ctx(now=feb10))
    assert state is not None
    # one month from 31 January plus two further months, counted from receipt: 30 April
    assert state.deadline == end_of(2026, 4, 30)
    assert state.original_deadline == end_of(2026, 2, 28)
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.EXTENDED and status.deadline_extended
    assert (
        status.reason and "tell the subject" in status.reason and "complex request" in status.reason
    )
    # a re-delivery changes nothing; a second extension is refused with the reason
    _, again = extend(state, extension(2, extended_at=feb10), ctx(now=feb10))
    assert not again.changed and again.dead_letter is None
    later = extension(1, "another reason, asked later", extended_at=feb10)
    _, second = extend(state, later, ctx(now=feb10))
    assert second.dead_letter and "one extension" in second.dead_letter


def test_art_12_3_extension_by_one_month_counts_from_receipt() -> None:
    state = started()  # received 10 March: deadline the end of 10 April
    state, _ = extend(state, extension(1), ctx())
    assert state is not None and state.deadline == end_of(2026, 5, 10)


def test_extension_gives_the_new_deadline_its_own_warnings() -> None:
    state = started()
    assert state.deadline is not None
    soon = state.deadline - timedelta(days=3)
    state, _ = tick(state, ctx(task_timeout=LONG, now=soon))  # due soon
    assert state.due_soon_sent
    state, effects = extend(state, extension(1, extended_at=soon), ctx(now=soon))
    assert state is not None and not state.due_soon_sent and not state.overdue_sent
    assert not effects.statuses[-1].due_soon and not effects.statuses[-1].overdue


def test_art_12_3_extension_after_deadline_refused() -> None:
    """Art. 12(3): the subject is told of an extension within one month of receipt; an
    extension after the deadline would hide a breach. It is refused, the request stays overdue,
    and the refusal shows on the request."""
    state = started()
    assert state.deadline is not None
    late = state.deadline + timedelta(hours=1)
    state, _ = tick(state, ctx(task_timeout=LONG, now=late))  # overdue
    assert state.overdue_sent
    deadline = state.deadline
    state, effects = extend(state, extension(1, extended_at=late), ctx(now=late))
    assert state is not None
    assert effects.dead_letter and "refused" in effects.dead_letter
    assert "the deadline passed on 2026-04-10" in effects.dead_letter
    assert "Art. 12(3) GDPR" in effects.dead_letter
    assert state.deadline == deadline and state.extension is None and state.overdue_sent
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.OVERDUE and status.overdue
    assert not status.deadline_extended
    assert status.reason and status.reason.startswith("deadline extension refused")
    assert "complex request" not in status.reason  # the officer's text is not repeated
    # a re-delivery is dead-lettered again, but shown on the request only once
    _, again = extend(state, extension(1, extended_at=late), ctx(now=late))
    assert again.dead_letter and not again.statuses
    # still overdue: nothing cleared the flag
    _, effects = tick(state, ctx(task_timeout=LONG, now=late + timedelta(days=1)))
    assert not effects.statuses


def test_art_12_3_extension_backdated_but_received_after_deadline_refused() -> None:
    """The subject cannot have been told before the extension reached the orchestrator."""
    state = started()
    assert state.deadline is not None
    late = state.deadline + timedelta(minutes=5)
    state, effects = extend(state, extension(1, extended_at=NOW), ctx(now=late))
    assert effects.dead_letter and "refused" in effects.dead_letter
    assert state is not None and state.extension is None


def test_art_12_3_extension_dated_after_deadline_refused() -> None:
    state = started()
    assert state.deadline is not None
    late = state.deadline + timedelta(days=2)
    _, effects = extend(state, extension(1, extended_at=late), ctx())
    assert effects.dead_letter and "refused" in effects.dead_letter


def test_a_refused_extension_sends_no_extension_notice() -> None:
    state = started()
    assert state.deadline is not None
    late = state.deadline + timedelta(hours=1)
    decision = decide(state, [("e", extension(1, extended_at=late))], lambda: ctx(now=late))
    assert not decision.extended
    [(item, reason, error)] = decision.refused
    assert item == "e" and "refused" in reason and error is None
    assert decision.effects.statuses[-1].trigger == StatusTrigger.OVERDUE


def test_final_or_unknown_requests_cannot_be_extended() -> None:
    _, effects = extend(None, extension(), ctx())
    assert effects.dead_letter and "no such request" in effects.dead_letter
    state = started()
    for system in SYSTEMS:
        state, _ = record_outcome(state, outcome(system), ctx())
    _, effects = extend(state, extension(), ctx())
    assert effects.dead_letter and "already final" in effects.dead_letter


# -- tasks without an outcome (a worker died with them) -------------------------------------


def test_a_task_without_outcome_is_dispatched_again_and_the_request_is_stalled() -> None:
    state = started()
    for system in ("crm", "mailing", "chat"):
        state, _ = record_outcome(state, outcome(system), ctx())
    timeout = timedelta(minutes=10)
    assert next_check(state, Policy(task_timeout=timeout)) == NOW + timeout
    # Not yet: nothing happens a second before the timeout.
    early = ctx(NOW + timeout - timedelta(seconds=1), task_timeout=timeout)
    state, effects = tick(state, early)
    assert not effects.tasks and state.status == RequestStatus.IN_PROGRESS

    later = ctx(NOW + timeout, task_timeout=timeout)
    state, effects = tick(state, later)
    [task] = effects.tasks
    assert (task.system, task.attempt, task.task_id) == ("support", 2, "req-1/support")
    assert state.status == RequestStatus.STALLED
    [event] = effects.statuses
    assert event.trigger == StatusTrigger.TIMEOUT and event.status == RequestStatus.STALLED
    assert event.reason and "support: no outcome within 10 min (attempt 1)" in event.reason
    assert event.systems["support"].stalled and event.systems["support"].attempt == 2

    # The first attempt's success arrives late after all: it counts, once.
    state, effects = record_outcome(state, outcome("support", attempt=1), later)
    assert state.status == RequestStatus.COMPLETED and effects.finished
    state, effects = record_outcome(state, outcome("support", attempt=2), later)
    assert not effects.changed  # the second attempt's outcome is a duplicate


def test_a_task_that_never_answers_fails_after_max_attempts_with_the_reason() -> None:
    timeout = timedelta(seconds=30)
    state = started(scope=["crm", "mailing"])
    state, _ = record_outcome(state, outcome("crm"), ctx())
    now = NOW
    for attempt in (2, 3):
        now += timeout
        state, effects = tick(state, ctx(now, task_timeout=timeout, max_attempts=3))
        assert [t.attempt for t in effects.tasks] == [attempt]
        assert state.status == RequestStatus.STALLED
    now += timeout
    state, effects = tick(state, ctx(now, task_timeout=timeout, max_attempts=3))
    assert not effects.tasks and effects.finished
    assert state.status == RequestStatus.PARTIALLY_COMPLETED
    assert state.reason and "mailing: no outcome after 3 attempts of 30 s each" in state.reason
    assert "connector worker" in state.reason
    state.delivery = delivered_by_post()  # the answer delivered: the deadline is met
    assert next_check(state, Policy(task_timeout=timeout)) is None  # final: never again


def test_a_stalled_request_goes_back_to_in_progress_when_the_outcome_arrives() -> None:
    timeout = timedelta(minutes=1)
    state = started(scope=["crm", "mailing"])
    state, _ = tick(state, ctx(NOW + timeout, task_timeout=timeout))
    assert state.status == RequestStatus.STALLED
    state, _ = record_outcome(state, outcome("crm", attempt=2), ctx(NOW + timeout))
    assert state.status == RequestStatus.STALLED  # mailing is still overdue for an answer
    state, _ = record_outcome(state, outcome("mailing", attempt=2), ctx(NOW + timeout))
    assert state.status == RequestStatus.COMPLETED


def test_manual_tasks_do_not_time_out() -> None:
    timeout = timedelta(minutes=1)
    state = started(scope=["crm"])
    manual = outcome(
        "crm", OutcomeStatus.MANUAL_ACTION_REQUIRED, instructions="shred the paper file"
    )
    state, _ = record_outcome(state, manual, ctx())
    state, effects = tick(state, ctx(NOW + timeout * 10, task_timeout=timeout))
    assert not effects.tasks and state.status == RequestStatus.ACTION_REQUIRED
