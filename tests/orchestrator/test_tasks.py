"""Manual tasks, decided without a broker: which are open, and what completing one records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.status.masking import identifier_kinds, mask_identifiers
from orchestrator.status.tasks import (
    TaskError,
    TaskNotWaiting,
    UnknownTask,
    manual_outcome,
    open_tasks,
    parse_task_id,
    waiting_task,
)
from orchestrator.status.view import StatusView
from schemas.events import OutcomeStatus, RequestStatusChanged

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MANUAL = {"status": "manual_action_required", "attempt": 2, "instructions": "Shred box 12"}


def status(
    request_id: str, deadline_days: int, status_: str = "action_required", **systems: dict
) -> RequestStatusChanged:
    return RequestStatusChanged.model_validate(
        {
            "request_id": request_id,
            "request_type": "erasure",
            "sequence": 3,
            "status": status_,
            "trigger": "outcome",
            "systems_total": len(systems),
            "systems_done": 0,
            "systems": systems,
            "received_at": NOW,
            "deadline": NOW + timedelta(days=deadline_days),
            "days_left": deadline_days,
            "occurred_at": NOW,
        }
    )


def test_open_tasks_are_the_waiting_systems_of_open_requests_most_urgent_first() -> None:
    view = StatusView()
    view.apply(status("later", 20, archive=MANUAL, crm={"status": "completed"}))
    view.apply(status("sooner", 3, archive=MANUAL, chat=MANUAL))
    view.apply(status("done", 1, "completed", crm={"status": "completed"}))
    assert [t.task_id for t in open_tasks(view)] == [
        "sooner/archive",
        "sooner/chat",
        "later/archive",
    ]


def test_completing_records_the_evidence_and_who_did_it() -> None:
    task = waiting_task(status("r-1", 10, archive=MANUAL), "archive", "r-1/archive")
    outcome = manual_outcome(
        task, "  box 12 shredded ", completed_by="officer-7", outcome="not_found", now=NOW
    )
    assert outcome.task_id == "r-1/archive" and outcome.system == "archive"
    assert outcome.status == OutcomeStatus.NOT_FOUND and outcome.attempt == 2
    assert [(e.kind, e.value) for e in outcome.evidence] == [
        ("manual_confirmation", "box 12 shredded"),
        ("completed_by", "officer-7"),
    ]


def test_only_a_waiting_task_can_be_completed() -> None:
    current = status("r-1", 10, archive=MANUAL, crm={"status": "completed"})
    with pytest.raises(UnknownTask, match="no task 'r-1/nope': unknown request or system"):
        waiting_task(current, "nope", "r-1/nope")
    with pytest.raises(UnknownTask):
        waiting_task(None, "archive", "r-2/archive")
    with pytest.raises(TaskNotWaiting, match=r"not waiting for a person .* completed"):
        waiting_task(current, "crm", "r-1/crm")


@pytest.mark.parametrize(
    ("evidence", "by", "message"),
    [
        ("   ", None, "give evidence"),
        ("x" * 2001, None, "longer than 2000"),
        ("sent the file to anna.devries@example.nl", None, "personal data \\(email address\\)"),
        ("called her on 06-12345678", None, "personal data \\(phone number\\)"),
        ("shredded", "anna@example.nl", "'by' seems to contain personal data"),
    ],
)
def test_evidence_must_not_carry_personal_data(evidence: str, by: str | None, message: str) -> None:
    task = waiting_task(status("r-1", 10, archive=MANUAL), "archive", "r-1/archive")
    with pytest.raises(TaskError, match=message):
        manual_outcome(task, evidence, completed_by=by)


def test_task_ids() -> None:
    assert parse_task_id("web-1/archive") == ("web-1", "archive")
    with pytest.raises(TaskError, match="REQUEST_ID/SYSTEM"):
        parse_task_id("web-1")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mail anna.devries@example.nl now", "mail a***@***.nl now"),
        ("call +31 6 1234 5678", "call +***78"),
        ("call 0612345678", "call ***78"),
        ("job 2026-11-22 id 123456789, ticket #00012345678", None),
    ],
)
def test_masking_hides_identifiers_and_leaves_dates_and_job_ids(
    text: str, masked: str | None
) -> None:
    assert mask_identifiers(text) == (masked or text)
    assert bool(identifier_kinds(text)) == (masked is not None)
