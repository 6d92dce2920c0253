"""An officer's steps on the dashboard: what to do next (a pure function of the status), and the
API routes that publish decisions, verifications and extensions as the CLI does.

In-process, without a broker: the publisher is replaced by one that records what it was given.
The Chromium tests on a running system are in test_live_officer.py.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from orchestrator.dashboard import server
from orchestrator.dashboard.model import next_step
from orchestrator.intake.client import PublishError
from schemas.events import (
    DeadlineExtended,
    DecisionRecorded,
    DeliveryRecorded,
    IdentityVerified,
    RequestStatusChanged,
    RequestType,
)
from tests.dashboard.conftest import TOKEN, status_event
from tests.dashboard.test_server import BEARER, make, run, show

NOW = datetime.now(UTC)
PENDING = {"crm": {"status": "pending"}, "newsletter": {"status": "pending"}}


def waiting(request_id: str, status: str, **extra: Any) -> RequestStatusChanged:
    """A fresh, open request in `status`, its systems not yet sent anything."""
    fields: dict[str, Any] = {"received_days_ago": 2, "systems": PENDING, "systems_done": 0}
    return status_event(request_id, status=status, **{**fields, **extra})


# -- what to do next ----------------------------------------------------------------------------


def test_awaiting_verification_asks_to_verify_or_refuse() -> None:
    step = next_step(waiting("v-1", "awaiting_verification"), now=NOW)
    assert step.code == "verify"
    assert step.text == "Waiting for identity verification: verify or refuse"
    assert step.actions == ["verify", "refuse", "fee", "extend"]


def test_awaiting_approval_asks_to_approve_and_offers_holds_before_dispatch() -> None:
    step = next_step(waiting("a-1", "awaiting_approval"), now=NOW)
    assert step.code == "approve" and step.text.startswith("Waiting for approval")
    assert step.actions == ["approve", "refuse", "refuse_system", "legal_hold", "fee", "extend"]
    assert step.refusable_systems == step.holdable_systems == ["crm", "newsletter"]


def test_awaiting_fee_asks_to_mark_it_paid() -> None:
    step = next_step(waiting("f-1", "awaiting_fee"), now=NOW)
    assert step.code == "fee" and step.text.startswith("Waiting for fee payment")
    assert step.actions[0] == "fee_paid" and "fee" not in step.actions


def test_manual_tasks_and_systems_at_work() -> None:
    manual = status_event(
        "m-1",
        status="action_required",
        received_days_ago=2,
        systems={
            "archive": {"status": "manual_action_required", "attempt": 1},
            "crm": {"status": "completed", "attempt": 1},
        },
    )
    step = next_step(manual, now=NOW)
    assert step.code == "manual_tasks"
    assert step.refusable_systems == ["archive"]  # crm has answered
    working = next_step(status_event("w-1", received_days_ago=2), now=NOW)
    assert working.code == "wait"
    assert working.holdable_systems == []  # dispatched or done: too late for a hold
    assert "legal_hold" not in working.actions


def test_art_17_3_e_legal_hold_offered_only_on_erasure() -> None:
    access = waiting("a-2", "awaiting_approval", kind=RequestType.ACCESS)
    step = next_step(access, now=NOW)
    assert "legal_hold" not in step.actions and step.holdable_systems == []


def test_art_12_3_extension_offered_once_and_only_before_the_deadline() -> None:
    assert "extend" in next_step(waiting("e-1", "in_progress"), now=NOW).actions
    extended = waiting("e-2", "in_progress", deadline_extended=True)
    assert "extend" not in next_step(extended, now=NOW).actions
    late = status_event("e-3", received_days_ago=45)
    step = next_step(late, now=NOW)
    assert step.code == "overdue"
    assert step.text.startswith(f"Overdue since {late.deadline.date()}.")
    assert "extend" not in step.actions
    # Not yet flagged overdue by the orchestrator, but past the deadline by the clock.
    just_passed = waiting("e-4", "in_progress")
    after = next_step(just_passed, now=just_passed.deadline + timedelta(seconds=1))
    assert after.code == "overdue" and "extend" not in after.actions


def test_delivered_and_failed_requests_need_nothing() -> None:
    delivered = status_event(
        "d-1",
        status="delivered",
        received_days_ago=2,
        delivered_at=NOW,
        delivery_channel="post",
    )
    done = next_step(delivered, now=NOW)
    assert (done.code, done.actions) == ("none", [])
    failed = next_step(status_event("d-2", status="failed", received_days_ago=2), now=NOW)
    assert (failed.code, failed.actions) == ("none", [])


def test_art_12_3_an_undelivered_answer_asks_to_deliver_it() -> None:
    """Art. 12(3) GDPR: a completed or refused request is answered only once the requester
    has it, so the page asks to deliver it (and says so when the deadline has passed)."""
    for status in ("completed", "partially_completed", "refused"):
        step = next_step(status_event("u-1", status=status, received_days_ago=2), now=NOW)
        assert (step.code, step.actions) == ("deliver", ["deliver"])
    late = next_step(status_event("u-2", status="completed", received_days_ago=40), now=NOW)
    assert late.code == "overdue" and late.text.startswith("Overdue since")


def test_art_12_3_delivery_is_recorded_as_the_cli_does(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path)
    show(dashboard, status_event("u-3", status="completed", received_days_ago=2))
    show(dashboard, waiting("u-4", "awaiting_verification"))

    async def scenario(client: TestClient) -> None:
        status, answer = await post(client, "/api/requests/u-3/deliveries", {"channel": "post"})
        assert status == 202, answer
        assert answer["event"] == "dsr.request.delivery_recorded.v1"
        status, answer = await post(client, "/api/requests/u-4/deliveries", {"channel": "post"})
        assert status == 409, answer  # nothing to deliver yet
        status, _ = await post(client, "/api/requests/u-3/deliveries", {"channel": "pigeon"})
        assert status == 400

    run(dashboard, scenario)
    [event] = published
    assert isinstance(event, DeliveryRecorded)
    assert (event.request_id, event.channel, event.delivered_by) == ("u-3", "post", "officer")


# -- the API ------------------------------------------------------------------------------------


class Recorder:
    """Stands in for RequestPublisher: keeps what would have been published."""

    published: list[Any] = []
    fail: str | None = None

    def __init__(self, kafka: Any, source: str, *, signer: Any = None) -> None:
        assert source == "dsr-dashboard"

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _keep(self, event: Any) -> None:
        if Recorder.fail:
            raise PublishError(Recorder.fail)
        Recorder.published.append(event)

    publish_decision = verify_identity = extend_deadline = record_delivery = _keep


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    Recorder.published, Recorder.fail = [], None
    monkeypatch.setattr(server, "RequestPublisher", Recorder)
    return Recorder.published


async def post(client: TestClient, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        path, data=json.dumps(body), headers={**BEARER, "Content-Type": "application/json"}
    )
    return response.status, await response.json()


def test_detail_shows_the_next_step_and_the_accepted_methods(tmp_path: Path) -> None:
    dashboard = make(tmp_path, verification_policy="erasure=id_document,in_person")
    show(dashboard, waiting("v-1", "awaiting_verification"))

    async def scenario(client: TestClient) -> None:
        found = await (await client.get("/api/requests/v-1", headers=BEARER)).json()
        assert found["next_step"]["code"] == "verify"
        assert found["verification_methods"] == ["id_document", "in_person"]

    run(dashboard, scenario)


def test_art_12_5_refusal_is_published_as_the_cli_does(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path)
    show(dashboard, waiting("r-1", "awaiting_verification"))

    async def scenario(client: TestClient) -> None:
        body = {"decision": "refuse", "reason_code": "manifestly_unfounded"}
        status, answer = await post(client, "/api/requests/r-1/decisions", body)
        assert status == 202, answer
        assert answer["event"] == "dsr.request.decision_recorded.v1"

    run(dashboard, scenario)
    [event] = published
    assert isinstance(event, DecisionRecorded)
    assert (event.request_id, event.decision, event.reason_code) == (
        "r-1",
        "refuse",
        "manifestly_unfounded",
    )
    assert event.decided_by == "officer"  # the shared token's user


def test_art_12_4_refusal_with_reason_other_needs_an_explanation(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path)
    show(dashboard, waiting("r-1", "awaiting_verification"))

    async def scenario(client: TestClient) -> None:
        url = "/api/requests/r-1/decisions"
        status, answer = await post(client, url, {"decision": "refuse", "reason_code": "other"})
        assert status == 400 and "needs an 'explanation'" in answer["error"]
        status, answer = await post(client, url, {"decision": "refuse"})
        assert status == 400 and "needs 'reason_code'" in answer["error"]
        status, _ = await post(
            client,
            url,
            {"decision": "refuse", "reason_code": "other", "explanation": "Not our customer."},
        )
        assert status == 202

    run(dashboard, scenario)
    assert [e.explanation for e in published] == ["Not our customer."]


def test_decisions_that_do_not_fit_the_state_are_refused_before_publishing(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path)
    show(
        dashboard,
        waiting("v-1", "awaiting_verification"),
        waiting("a-1", "awaiting_approval", kind=RequestType.ACCESS),
        status_event("done-1", status="completed", received_days_ago=2),
    )

    async def scenario(client: TestClient) -> None:
        status, answer = await post(client, "/api/requests/v-1/decisions", {"decision": "approve"})
        assert status == 409
        assert "approve is not possible now; possible: verify, refuse, fee" in answer["error"]
        status, answer = await post(
            client, "/api/requests/done-1/decisions", {"decision": "fee_paid"}
        )
        assert status == 409 and "already final" in answer["error"]
        hold = {
            "decision": "legal_hold",
            "system": "crm",
            "hold_reason": "dispute",
            "review_date": str(date.today() + timedelta(days=90)),
        }
        status, answer = await post(client, "/api/requests/a-1/decisions", hold)
        assert status == 409  # Art. 17(3)(e): erasure only
        refuse_one = {"decision": "refuse_system", "system": "nope", "reason_code": "excessive"}
        status, answer = await post(client, "/api/requests/a-1/decisions", refuse_one)
        assert status == 404 and "no system 'nope'" in answer["error"]
        status, _ = await post(client, "/api/requests/missing/decisions", {"decision": "approve"})
        assert status == 404
        status, _ = await post(client, "/api/requests/a-1/decisions", {"decision": "x"})
        assert status == 400
        status, _ = await post(
            client, "/api/requests/a-1/decisions", {"decision": "approve", "by": "x"}
        )
        assert status == 400  # unknown fields are refused, e.g. a forged decided_by
        status, _ = await post(client, "/api/requests/a-1/decisions", {"decision": "approve"})
        assert status == 202

    run(dashboard, scenario)
    assert [e.decision for e in published] == ["approve"]


def test_art_17_3_e_legal_hold_and_fee_on_an_erasure_awaiting_approval(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path)
    show(dashboard, waiting("a-1", "awaiting_approval"))
    review = date.today() + timedelta(days=90)

    async def scenario(client: TestClient) -> None:
        url = "/api/requests/a-1/decisions"
        hold = {"decision": "legal_hold", "system": "crm", "hold_reason": "debt_collection"}
        status, answer = await post(client, url, {**hold, "review_date": str(review)})
        assert status == 202, answer
        status, answer = await post(client, url, {"decision": "fee", "fee_eur": 25})
        assert status == 202, answer

    run(dashboard, scenario)
    hold_event, fee_event = published
    assert (hold_event.system, hold_event.review_date) == ("crm", review)
    assert fee_event.fee_eur == 25


def test_art_12_6_verification_counts_only_by_a_method_the_policy_accepts(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path)
    show(
        dashboard, waiting("v-1", "awaiting_verification"), status_event("w-1", received_days_ago=2)
    )

    async def scenario(client: TestClient) -> None:
        url = "/api/requests/v-1/verifications"
        status, answer = await post(client, url, {"method": "email_confirmation"})
        assert status == 400 and "does not count for a request for erasure" in answer["error"]
        ahead = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        status, answer = await post(
            client, url, {"method": "id_document", "copy_destroyed_at": ahead}
        )
        assert status == 400 and "in the future" in answer["error"]
        status, answer = await post(
            client, "/api/requests/w-1/verifications", {"method": "id_document"}
        )
        assert status == 409  # not waiting for a verification
        destroyed = datetime.now(UTC).isoformat()
        status, answer = await post(
            client, url, {"method": "id_document", "copy_destroyed_at": destroyed}
        )
        assert status == 202, answer

    run(dashboard, scenario)
    [event] = published
    assert isinstance(event, IdentityVerified)
    assert (event.method, event.verified_by) == ("id_document", "officer")
    assert event.copy_destroyed_at is not None  # evidence of destruction, never the copy


def test_art_12_3_extension_refused_after_the_deadline(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path)
    show(
        dashboard,
        status_event("late-1", received_days_ago=45),
        waiting("ext-1", "in_progress", deadline_extended=True),
        waiting("ok-1", "in_progress"),
    )
    reason = {"months": 2, "reason": "many systems, a complex request"}

    async def scenario(client: TestClient) -> None:
        status, answer = await post(client, "/api/requests/late-1/extensions", reason)
        assert status == 409
        assert "has passed; an extension is possible only before it (Art. 12(3)" in answer["error"]
        status, answer = await post(client, "/api/requests/ext-1/extensions", reason)
        assert status == 409 and "already extended once" in answer["error"]
        status, answer = await post(
            client, "/api/requests/ok-1/extensions", {**reason, "months": 3}
        )
        assert status == 400
        pii = {"months": 1, "reason": "waiting for anna@example.nl to answer"}
        status, answer = await post(client, "/api/requests/ok-1/extensions", pii)
        assert status == 400 and "personal data (email address)" in answer["error"]
        assert "anna@example.nl" not in answer["error"]
        status, answer = await post(client, "/api/requests/ok-1/extensions", reason)
        assert status == 202, answer

    run(dashboard, scenario)
    [event] = published
    assert isinstance(event, DeadlineExtended)
    assert (event.months, event.extended_by) == (2, "officer")


def test_officer_steps_need_the_token_and_the_same_origin(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path)
    show(dashboard, waiting("r-1", "awaiting_verification"))
    body = {"decision": "refuse", "reason_code": "excessive"}

    async def scenario(client: TestClient) -> None:
        anonymous = await client.post("/api/requests/r-1/decisions", json=body)
        assert anonymous.status == 401
        signed = await client.get(f"/?token={TOKEN}")
        assert signed.status == 200
        cross = await client.post(
            "/api/requests/r-1/decisions",
            json=body,
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status == 401
        same = await client.post(
            "/api/requests/r-1/decisions", json=body, headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert same.status == 202

    run(dashboard, scenario)
    assert len(published) == 1


def test_a_publish_failure_answers_503_and_logs_no_personal_data(
    tmp_path: Path, published: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    dashboard = make(tmp_path)
    show(dashboard, waiting("r-1", "awaiting_verification"))
    Recorder.fail = "not acknowledged by Kafka within 30s"

    async def scenario(client: TestClient) -> None:
        body = {"decision": "refuse", "reason_code": "other", "explanation": "Mr. Jansen lied"}
        status, answer = await post(client, "/api/requests/r-1/decisions", body)
        assert status == 503 and "not recorded" in answer["error"]

    run(dashboard, scenario)
    assert published == []
    assert "Jansen" not in caplog.text
