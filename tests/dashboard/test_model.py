"""What the dashboard shows, decided without a broker: flags, filters, order, latency, masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.dashboard.model import (
    RequestFilter,
    detail,
    failed_attempts,
    latencies,
    list_requests,
    summarise,
)
from orchestrator.status.view import StatusView
from schemas.events import RequestStatus, RequestStatusChanged, RequestType

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def event(
    request_id: str = "r-1",
    *,
    sequence: int = 1,
    status: str = "in_progress",
    received: datetime = NOW - timedelta(days=10),
    deadline_days: int = 30,
    systems: dict | None = None,
    **extra: object,
) -> RequestStatusChanged:
    deadline = received + timedelta(days=deadline_days)
    fields: dict[str, object] = {
        "request_id": request_id,
        "request_type": "access",
        "sequence": sequence,
        "status": status,
        "trigger": "dispatched",
        "systems_total": len(systems or {}),
        "systems_done": 0,
        "systems": systems or {},
        "received_at": received,
        "deadline": deadline,
        "days_left": 0,
        "occurred_at": received,
    }
    fields.update(extra)
    return RequestStatusChanged.model_validate(fields)


def test_deadline_flags_are_computed_as_of_now_not_as_of_the_event() -> None:
    # The event said 20 days left when it was published; the clock moved on since.
    late = summarise(
        event(received=NOW - timedelta(days=31), days_left=20), now=NOW, due_soon_days=7
    )
    assert late.overdue and not late.due_soon and late.days_left == -1
    soon = summarise(event(received=NOW - timedelta(days=25)), now=NOW, due_soon_days=7)
    assert soon.due_soon and not soon.overdue and soon.days_left == 5
    calm = summarise(event(received=NOW - timedelta(days=1)), now=NOW, due_soon_days=7)
    assert not calm.due_soon and not calm.overdue


def test_delivered_requests_are_never_overdue_but_say_when_they_were_late() -> None:
    received = NOW - timedelta(days=40)
    done = summarise(
        event(
            status="delivered",
            received=received,
            finished_at=received + timedelta(days=31),
            delivered_at=received + timedelta(days=31),
            delivery_channel="post",
            overdue=True,
        ),
        now=NOW,
        due_soon_days=7,
    )
    assert not done.open and not done.overdue and not done.due_soon
    assert done.finished_late and done.manual_tasks == 0


def test_art_12_3_completed_but_undelivered_request_shows_overdue() -> None:
    """Art. 12(3) GDPR: the request is answered when the subject has the answer, so the list
    flags a completed request that was never delivered once its deadline has passed."""
    received = NOW - timedelta(days=40)
    waiting = summarise(
        event(status="completed", received=received, finished_at=received + timedelta(days=5)),
        now=NOW,
        due_soon_days=7,
    )
    assert not waiting.open and waiting.overdue


def test_filter_parses_groups_lists_and_flags() -> None:
    flt = RequestFilter.parse(["open", "completed"], ["access,erasure"], "true", " web- ")
    assert RequestStatus.ACTION_REQUIRED in flt.statuses and RequestStatus.COMPLETED in flt.statuses
    assert RequestStatus.FAILED not in flt.statuses
    assert flt.types == {RequestType.ACCESS, RequestType.ERASURE}
    assert flt.overdue is True and flt.search == "web-"
    assert RequestFilter.parse().statuses == frozenset()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"statuses": ["done"]}, "status='done' is not one of open, finished, awaiting_"),
        ({"types": ["delete"]}, "type='delete' is not one of access"),
        ({"overdue": "yes"}, "overdue='yes' must be true or false"),
    ],
)
def test_filter_errors_name_the_parameter_and_the_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RequestFilter.parse(**kwargs)


def test_list_puts_overdue_first_then_by_deadline_then_finished_newest_first() -> None:
    view = StatusView()
    view.apply(event("calm", received=NOW - timedelta(days=1)))
    view.apply(event("late", received=NOW - timedelta(days=35)))
    view.apply(event("soon", received=NOW - timedelta(days=27)))
    view.apply(
        event("old-done", status="completed", finished_at=NOW - timedelta(days=3), sequence=2)
    )
    view.apply(event("new-done", status="failed", finished_at=NOW - timedelta(days=1), sequence=2))
    page = list_requests(view, RequestFilter(), now=NOW, due_soon_days=7, limit=4)
    assert [r.request_id for r in page.requests] == ["late", "soon", "calm", "new-done"]
    assert page.matched == 5
    assert (page.totals.open, page.totals.overdue, page.totals.due_soon) == (3, 1, 1)
    assert page.totals.finished == 2
    overdue = list_requests(
        view, RequestFilter.parse(overdue="true"), now=NOW, due_soon_days=7
    ).requests
    assert [r.request_id for r in overdue] == ["late"]
    searched = RequestFilter.parse(statuses=["finished"], search="NEW")
    assert [
        r.request_id for r in list_requests(view, searched, now=NOW, due_soon_days=7).requests
    ] == ["new-done"]


def _progress(status: str, at: datetime, attempt: int = 1, **extra: object) -> dict:
    return {"status": status, "attempt": attempt, "updated_at": at, **extra}


def test_latency_runs_from_first_dispatch_to_final_outcome_retries_included() -> None:
    t0 = NOW - timedelta(hours=1)
    history = [
        event(
            sequence=1,
            systems={"crm": _progress("dispatched", t0), "chat": _progress("dispatched", t0)},
        ),
        event(
            sequence=2,
            systems={
                "crm": _progress(
                    "dispatched", t0 + timedelta(seconds=5), attempt=2, retryable=True
                ),
                "chat": _progress("manual_action_required", t0 + timedelta(seconds=1)),
            },
        ),
        event(
            sequence=3,
            systems={
                "crm": _progress("completed", t0 + timedelta(seconds=12), attempt=2),
                "chat": _progress("manual_action_required", t0 + timedelta(seconds=1)),
            },
        ),
    ]
    # A manual task is not final: its latency comes when the person completes it.
    assert latencies(history) == {"crm": 12.0}
    assert failed_attempts(history[-1]) == {"crm": 1}


def test_detail_masks_identifiers_in_free_text_and_offers_manual_tasks() -> None:
    view = StatusView()
    view.apply(
        event(
            "r-9",
            status="action_required",
            reason="contact anna.devries@example.nl failed",
            systems={
                "paper": {
                    "status": "manual_action_required",
                    "attempt": 1,
                    "instructions": "Shred the file of +31 6 1234 5678 in box 12",
                },
                "crm": {
                    "status": "retained",
                    "attempt": 1,
                    "reason": "fiscal",
                    "retained": [
                        {"collection": "invoices", "count": 2, "legal_basis": "Art. 52 AWR"}
                    ],
                    "evidence": [{"kind": "vendor_job_id", "value": "job-77 for anna@x.nl"}],
                },
            },
        )
    )
    found = detail(view, "r-9", now=NOW, due_soon_days=7)
    assert found is not None
    text = found.model_dump_json()
    assert "anna.devries@example.nl" not in text and "1234 5678" not in text
    assert "anna@x.nl" not in text and "job-77 for a***@***.nl" in text
    systems = {s.system: s for s in found.systems}
    assert systems["paper"].task_id == "r-9/paper" and not systems["paper"].final
    assert systems["crm"].retained[0].legal_basis == "Art. 52 AWR" and systems["crm"].final
    assert systems["crm"].task_id is None
    assert detail(view, "nope", now=NOW, due_soon_days=7) is None
