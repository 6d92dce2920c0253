"""One valid sample body per event type, shared by the schema tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from schemas import events as ev
from schemas import gateway as gw
from schemas import sweeps as sw
from schemas.envelope import dead_letter_for

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
REQUEST_ID = "web-2026-000123"
SUBJECT = ev.Subject(
    identifiers=[
        ev.Identifier(type="email", value="jan@example.nl"),
        ev.Identifier(type="phone", value="+31612345678"),
    ]
)


def request_submitted(**changes: object) -> ev.RequestSubmitted:
    """A valid access request; keyword arguments override fields."""
    data: dict[str, object] = {
        "request_id": REQUEST_ID,
        "type": ev.RequestType.ACCESS,
        "subject": SUBJECT,
        "received_at": NOW,
        "verification": ev.IdentityVerification(
            verified=True, method=ev.VerificationMethod.ID_DOCUMENT, verified_at=NOW
        ),
        "requested_by": "web-form",
    }
    data.update(changes)
    return ev.RequestSubmitted.model_validate(data)


def all_samples() -> dict[str, BaseModel]:
    """One valid body per CloudEvents type, with optional parts filled in."""
    return {
        **_gateway_samples(),
        "dsr.request.submitted.v1": request_submitted(
            type=ev.RequestType.RECTIFICATION,
            changes=[ev.FieldChange(field="phone", value="+31687654321", system="crm")],
            scope=["crm", "mailing"],
        ),
        "dsr.request.identity_verified.v1": ev.IdentityVerified(
            request_id=REQUEST_ID,
            method=ev.VerificationMethod.EMAIL_CONFIRMATION,
            verified_at=NOW,
            verified_by="desk-7",
        ),
        "dsr.request.decision_recorded.v1": ev.DecisionRecorded(
            request_id=REQUEST_ID,
            decision=ev.DecisionKind.LEGAL_HOLD,
            system="crm",
            hold_reason=ev.HoldReason.DISPUTE,
            review_date=(NOW + timedelta(days=90)).date(),
            decided_by="officer-7",
            decided_at=NOW,
        ),
        "dsr.request.delivery_recorded.v1": ev.DeliveryRecorded(
            request_id=REQUEST_ID,
            channel=ev.DeliveryChannel.ZIVVER,
            delivered_by="officer-7",
            delivered_at=NOW,
        ),
        "dsr.request.deadline_extended.v1": ev.DeadlineExtended(
            request_id=REQUEST_ID,
            months=2,
            reason="the request covers many systems and years of tickets",
            extended_at=NOW,
            extended_by="officer-7",
        ),
        "dsr.task.dispatched.v1": ev.TaskDispatched(
            request_id=REQUEST_ID,
            task_id=f"{REQUEST_ID}:crm",
            system="crm",
            action=ev.RequestType.ERASURE,
            subject=SUBJECT,
            deadline=NOW + timedelta(days=30),
            dispatched_at=NOW,
        ),
        "dsr.task.outcome.v1": ev.TaskOutcome(
            request_id=REQUEST_ID,
            task_id=f"{REQUEST_ID}:crm",
            system="crm",
            action=ev.RequestType.ERASURE,
            status=ev.OutcomeStatus.RETAINED,
            counts=ev.Counts(found=3, deleted=2, retained=1),
            records=[ev.Record(collection="contacts", data={"id": 7, "tags": ["a"], "x": None})],
            retained=[
                ev.RetainedItem(
                    collection="invoices",
                    count=1,
                    legal_basis="Art. 52 AWR (fiscal retention)",
                    until=NOW.date(),
                )
            ],
            evidence=[ev.Evidence(kind="vendor_job_id", value="job-42")],
            reason="invoices are kept for 7 years",
            completed_at=NOW,
        ),
        "dsr.request.status_changed.v1": ev.RequestStatusChanged(
            request_id=REQUEST_ID,
            request_type=ev.RequestType.ERASURE,
            sequence=3,
            status=ev.RequestStatus.IN_PROGRESS,
            previous_status=ev.RequestStatus.AWAITING_VERIFICATION,
            trigger=ev.StatusTrigger.OUTCOME,
            systems_total=2,
            systems_done=1,
            systems={
                "crm": ev.SystemProgress(
                    status=ev.OutcomeStatus.COMPLETED, attempt=1, updated_at=NOW
                ),
                "mailing": ev.SystemProgress(status="dispatched", attempt=1),
            },
            received_at=NOW,
            verified_at=NOW,
            deadline=NOW + timedelta(days=30),
            days_left=30,
            occurred_at=NOW,
        ),
        "dsr.deadletter.v1": dead_letter_for(
            SimpleNamespace(  # type: ignore[arg-type]
                topic="dsr.requests.v1",
                partition=0,
                offset=12,
                key=REQUEST_ID.encode(),
                value=b"{not json",
                headers=[("ce_type", b"dsr.request.submitted.v1")],
            ),
            stage="envelope",
            reason="structured CloudEvent is not valid JSON",
        ),
        **_sweep_samples(),
    }


def _sweep_samples() -> dict[str, BaseModel]:
    """One valid body per sweep event type (no identifiers: sweeps work on dates)."""
    rule = sw.SweepRule(
        collection="tickets",
        date_field="updated_at",
        cutoff=(NOW - timedelta(days=365)).date(),
        period="12 months",
        counted_from=sw.CountedFrom.LAST_ACTIVITY,
    )
    counts = [sw.SweepCount(collection="tickets", expired=3, deleted=3)]
    return {
        "dsr.sweep.requested.v1": sw.SweepRequested(
            sweep_id="sweep-support-1", system="support", requested_by="officer-7",
            requested_at=NOW,
        ),
        "dsr.sweep.approved.v1": sw.SweepApproved(
            sweep_id="sweep-support-1", approved_by="officer-7", approved_at=NOW
        ),
        "dsr.sweep.dispatched.v1": sw.SweepDispatched(
            sweep_id="sweep-support-1", task_id="sweep-support-1/support#dry", system="support",
            dry_run=True, rules=[rule], dispatched_at=NOW,
        ),
        "dsr.sweep.outcome.v1": sw.SweepOutcome(
            sweep_id="sweep-support-1", task_id="sweep-support-1/support#dry", system="support",
            dry_run=True, status=ev.OutcomeStatus.COMPLETED, counts=counts, completed_at=NOW,
        ),
        "dsr.sweep.status_changed.v1": sw.SweepStatusChanged(
            sweep_id="sweep-support-1", system="support", sequence=2,
            status=sw.SweepStatus.AWAITING_APPROVAL, previous_status=sw.SweepStatus.COUNTING,
            trigger=sw.SweepTrigger.SCHEDULE, dry_run_counts=counts, rules=[rule],
            requested_at=NOW, changed_at=NOW,
        ),
    }  # fmt: skip


def _gateway_samples() -> dict[str, BaseModel]:
    inbound = gw.OpenDsrInbound(
        controller_id="controller.example",
        subject_request_id=REQUEST_ID,
        subject_request_type="erasure",
        status_callback_urls=["https://c.example/cb"],
        submitted_time=NOW,
        received_time=NOW,
        expected_completion_time=NOW,
        processor_signature="c2ln",
    )
    return {
        "dsr.intake.recorded.v1": gw.IntakeRecorded(
            request_id=REQUEST_ID, channel="opendsr", publisher="opendsr:controller.example",
            body_sha256="0" * 64, accepted_at=NOW, opendsr=inbound,
        ),
        "dsr.opendsr.callback_received.v1": gw.OpenDsrCallbackReceived(
            system="crm", subject_request_id=REQUEST_ID, request_status="completed",
            results_url="https://p.example/results/1", results_count=3, received_at=NOW,
        ),
    }  # fmt: skip


@pytest.fixture
def samples() -> dict[str, BaseModel]:
    """One valid body per CloudEvents type."""
    return all_samples()
