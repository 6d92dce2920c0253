"""Requests waiting on the subject: the reminder letter, the early warning, and the record of
when the extension letter was produced (Art. 12(3), 12(6) GDPR), without Kafka."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.artifacts import letters
from orchestrator.artifacts.render import day
from orchestrator.lifecycle.reducer import RequestState, decide, next_check, submit, tick
from orchestrator.lifecycle.reminders import warning_from
from schemas.events import RequestStatus, StatusTrigger
from tests.orchestrator.test_documents import REGISTER, _text
from tests.orchestrator.test_lifecycle import EMAIL, LONG, NOW, ctx, extension, request

DAY = timedelta(days=1)


def _waiting(**overrides: object) -> RequestState:
    """An unverified erasure: it waits for the identity check the ID-request letter asked for."""
    state, effects = submit(None, request(False, **overrides), ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_VERIFICATION
    assert effects.notices == ["id_request"] and state.id_requested_at == NOW
    return state


# ---------------------------------------------------------------------------------------------
# The reminder


def test_art_12_6_reminder_once_after_14_days_without_the_verification() -> None:
    """Art. 12(6) GDPR: the controller may ask for what confirms the identity; nothing came, so
    the subject is reminded (once) well before the request is refused at the deadline."""
    state = _waiting()
    due = NOW + 14 * DAY
    assert next_check(state, ctx().policy) == due
    _, before = tick(state.model_copy(deep=True), ctx(due - timedelta(seconds=1)))
    assert before.notices == [] and not before.statuses
    state, effects = tick(state, ctx(due))
    assert effects.notices == ["reminder"] and state.reminded_at == due
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.REMINDED
    assert status.status == RequestStatus.AWAITING_VERIFICATION
    assert status.reason and NOW.strftime("%Y-%m-%d") in status.reason
    assert EMAIL not in status.model_dump_json()
    # Once only: later ticks send no second reminder.
    state, again = tick(state, ctx(due + 2 * DAY))
    assert "reminder" not in again.notices


def test_reminder_after_is_configurable_and_can_be_switched_off() -> None:
    state = _waiting()
    _, effects = tick(state.model_copy(deep=True), ctx(NOW + 3 * DAY, reminder_after=3 * DAY))
    assert effects.notices == ["reminder"]
    _, effects = tick(state, ctx(NOW + 20 * DAY, reminder_after=None))
    assert effects.notices == []


def test_no_reminder_once_verified_or_for_rights_on_the_channel() -> None:
    """Art. 7(3), 21 GDPR: an objection needs no ID step, so there is nothing to remind of."""
    state, _ = submit(None, request(False, type="objection"), ctx(task_timeout=LONG))
    assert state is not None
    _, effects = tick(state, ctx(NOW + 20 * DAY, task_timeout=LONG))
    assert "reminder" not in effects.notices
    state, _ = submit(None, request(True), ctx(task_timeout=LONG))
    assert state is not None
    _, effects = tick(state, ctx(NOW + 20 * DAY, task_timeout=LONG))
    assert "reminder" not in effects.notices


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_12_6_reminder_letter_says_when_it_was_asked_and_how_to_verify(language: str) -> None:
    state, _ = tick(_waiting(language=language), ctx(NOW + 14 * DAY))
    page = letters.render("reminder", state, REGISTER, now=NOW + 14 * DAY)
    text = _text(page)
    assert 'data-document="reminder"' in page and "data-reminder" in page
    assert day(NOW, language) in text  # the date of the first letter, written out
    assert 'data-method="id_document"' in page and "KopieID" in text and "BSN" in text
    assert EMAIL not in page
    if language == "nl":
        assert "Herinnering" in text and "nog niets ontvangen" in text
    else:
        assert "Reminder" in text and "not received anything yet" in text


def test_reminder_letter_is_written_beside_the_id_request(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state, _ = tick(_waiting(language="en"), ctx(NOW + 14 * DAY))
    kind = letters.document_kind("reminder")
    path = letters.write(kind, state, REGISTER, tmp_path, now=NOW + 14 * DAY)
    assert path == tmp_path / "req-1" / "reminder.en.html"


# ---------------------------------------------------------------------------------------------
# The early warning


def test_art_12_3_waiting_on_subject_is_warned_earlier_than_due_soon() -> None:
    """Art. 12(3) GDPR: the month runs while the request waits on the subject; the officers are
    warned 14 days before the deadline (due soon comes at 7)."""
    state = _waiting()
    state, _ = tick(state, ctx(NOW + 14 * DAY))  # the reminder
    assert state.deadline is not None
    start = warning_from(state.deadline, 14)
    assert next_check(state, ctx().policy) == start
    state, effects = tick(state, ctx(start))
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.WAITING_ON_SUBJECT
    assert status.waiting_on_subject and not status.due_soon
    assert status.reason and "identity verification" in status.reason
    assert state.waiting_warning_sent and not state.due_soon_sent
    # Due soon still comes at its own time, and still says the request waits on the subject.
    due_soon = warning_from(state.deadline, 7)
    _, nothing = tick(state.model_copy(deep=True), ctx(due_soon - timedelta(seconds=1)))
    assert not nothing.statuses
    state, effects = tick(state, ctx(due_soon))
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.DUE_SOON
    assert status.due_soon and status.waiting_on_subject


def test_waiting_warning_days_is_configurable() -> None:
    state = _waiting()
    assert state.deadline is not None
    start = warning_from(state.deadline, 21)
    _, effects = tick(state, ctx(start, waiting_warning_days=21, reminder_after=None))
    assert [s.trigger for s in effects.statuses] == [StatusTrigger.WAITING_ON_SUBJECT]


def test_art_12_5_a_request_waiting_for_the_fee_is_warned_early_too() -> None:
    state = _waiting()
    state.status = RequestStatus.AWAITING_FEE  # Art. 12(5)(a): waits for the subject's payment
    assert state.deadline is not None
    _, effects = tick(state, ctx(warning_from(state.deadline, 14)))
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.WAITING_ON_SUBJECT
    assert status.reason and "fee" in status.reason


def test_a_request_in_progress_gets_no_waiting_warning() -> None:
    state, _ = submit(None, request(True), ctx(task_timeout=LONG))
    assert state is not None and state.deadline is not None
    _, effects = tick(state, ctx(warning_from(state.deadline, 14), task_timeout=LONG))
    assert not effects.statuses
    assert next_check(state, ctx(task_timeout=LONG).policy) == warning_from(state.deadline, 7)


def test_a_late_waiting_request_gets_one_warning_that_is_also_due_soon() -> None:
    state = _waiting()
    assert state.deadline is not None
    _, effects = tick(state, ctx(state.deadline - 3 * DAY, reminder_after=None))
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.WAITING_ON_SUBJECT
    assert status.due_soon and status.waiting_on_subject


# ---------------------------------------------------------------------------------------------
# The extension letter


def test_art_12_3_extension_letter_production_is_recorded_within_the_first_month() -> None:
    """Art. 12(3) GDPR: the subject is told of the extension, with the reasons, within one month
    of receipt. The state records when the extension letter was produced, so the officer can
    show it; an extension after the deadline is refused, so this is always within the month."""
    state = _waiting()
    when = NOW + 5 * DAY
    decision = decide(state, [(1, extension(1, extended_at=when))], lambda: ctx(when))
    assert decision.extended and decision.state is not None
    assert decision.state.extension_notified_at == when
    assert decision.state.original_deadline is not None
    assert decision.state.extension_notified_at <= decision.state.original_deadline
    # The new deadline gets its own early warning.
    assert not decision.state.waiting_warning_sent


def test_no_extension_letter_recorded_when_the_extension_is_refused() -> None:
    state = _waiting()
    assert state.deadline is not None
    late = state.deadline + DAY
    decision = decide(state, [(1, extension(1, extended_at=late))], lambda: ctx(late))
    assert not decision.extended and decision.refused
    assert decision.state is not None and decision.state.extension_notified_at is None
