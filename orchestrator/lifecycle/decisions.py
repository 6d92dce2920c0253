"""Officers' decisions on a request (`DecisionRecorded`): the legal rules, as pure functions.

The reducer (`orchestrator.lifecycle.reducer.record_decision`) asks `judge` what a decision
does to a request and carries it out; before it fans a request out it asks `waiting_status`
whether the request must wait for an officer (approval) or the subject (a fee). No I/O here.

- `refuse`: the request is refused at once, with the reason code (Art. 12(4) GDPR: the reasons
  and the remedies, without delay), not at the deadline.
- `refuse_system`: one system's part is refused; its task is not dispatched (or its outcome no
  longer awaited) and the answer is partial, naming the system and the reason.
- `legal_hold` (erasure only): one system's data is kept "for the establishment, exercise or
  defence of legal claims" (Art. 17(3)(e) GDPR) and reported as held, with the reason and the
  review date. Only before that system's erasure task is sent: a hold after it could not stop
  the deletion.
- `fee` (Art. 12(5)(a) GDPR: a reasonable fee for manifestly unfounded or excessive requests):
  the request waits in `awaiting_fee` until `fee_paid`; only before it is carried out.
- `approve`: where the policy requires approval for a right, the request waits in
  `awaiting_approval` until approved.

Status events carry the decision, its code and who decided (`status_reason`); never the
officer's free-text explanation, which is for the subject's letter only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from schemas.events import (
    DecisionKind,
    DecisionRecorded,
    HoldReason,
    OutcomeStatus,
    RefusalReason,
    RequestStatus,
    RequestType,
    RetainedItem,
    SystemProgress,
)

#: The article behind each refusal reason (named in status events, worded in the letters).
REFUSAL_ARTICLES: dict[RefusalReason, str] = {
    RefusalReason.MANIFESTLY_UNFOUNDED: "Art. 12(5)(b) GDPR",
    RefusalReason.EXCESSIVE: "Art. 12(5)(b) GDPR",
    RefusalReason.IDENTITY_NOT_ESTABLISHED: "Art. 12(6) and 11(2) GDPR",
    RefusalReason.STATUTORY_EXEMPTION: "Art. 23 GDPR, Art. 41 UAVG",
    RefusalReason.OTHER: "Art. 12(4) GDPR",
}
LEGAL_HOLD_BASIS = "Art. 17(3)(e) GDPR (establishment, exercise or defence of legal claims)"
#: What a legal hold keeps: everything the system holds on the subject.
HELD_COLLECTION = "*"
#: Statuses in which nothing has been dispatched yet: a fee can still be charged.
_NOT_STARTED = frozenset(
    {
        RequestStatus.AWAITING_VERIFICATION,
        RequestStatus.AWAITING_APPROVAL,
        RequestStatus.AWAITING_FEE,
    }
)
_FINAL_SYSTEM = frozenset(
    {OutcomeStatus.COMPLETED, OutcomeStatus.NOT_FOUND, OutcomeStatus.RETAINED, OutcomeStatus.FAILED}
)

Action = Literal["refuse", "system", "approve", "fee", "fee_paid", "none"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a decision does: refused (dead-lettered) with `dead_letter`, or an `action`."""

    action: Action = "none"
    dead_letter: str | None = None
    #: The status event's reason: the decision, its code and who decided; no free text.
    reason: str | None = None
    #: `system`: the system and its new progress (refused, or held).
    system: str | None = None
    progress: SystemProgress | None = None


def status_reason(event: DecisionRecorded) -> str:
    """The timeline entry of a decision: what, which code, which system, who. No free text."""
    parts = [str(event.decision)]
    if event.system is not None:
        parts.append(f"for system {event.system}")
    if event.reason_code is not None:
        parts.append(f"({event.reason_code}, {REFUSAL_ARTICLES[event.reason_code]})")
    if event.hold_reason is not None:
        assert event.review_date is not None
        parts.append(f"({event.hold_reason}, Art. 17(3)(e) GDPR; review {event.review_date})")
    if event.fee_eur is not None:
        parts.append(f"(EUR {event.fee_eur}, Art. 12(5)(a) GDPR)")
    return " ".join(parts) + f" by {event.decided_by}"


def approved(decisions: Sequence[DecisionRecorded]) -> bool:
    """True once an officer approved the request."""
    return any(d.decision == DecisionKind.APPROVE for d in decisions)


def fee_pending(decisions: Sequence[DecisionRecorded]) -> bool:
    """True while a fee was charged and its payment not yet confirmed."""
    pending = False
    for d in decisions:
        if d.decision == DecisionKind.FEE:
            pending = True
        elif d.decision == DecisionKind.FEE_PAID:
            pending = False
    return pending


def refusal(decisions: Sequence[DecisionRecorded]) -> DecisionRecorded | None:
    """The decision that refused the whole request, if any."""
    return next((d for d in decisions if d.decision == DecisionKind.REFUSE), None)


def waiting_status(
    request_type: RequestType,
    decisions: Sequence[DecisionRecorded],
    approval_required: Collection[RequestType],
) -> RequestStatus | None:
    """Where a verified request waits before it is carried out; None: fan it out now."""
    if fee_pending(decisions):
        return RequestStatus.AWAITING_FEE
    if request_type in approval_required and not approved(decisions):
        return RequestStatus.AWAITING_APPROVAL
    return None


def to_dispatch(systems: dict[str, SystemProgress]) -> list[str]:
    """The systems a fan-out sends a task to: all but those an officer decided on."""
    return [name for name, progress in systems.items() if progress.decision is None]


def judge(
    event: DecisionRecorded,
    *,
    status: RequestStatus | None,
    request_type: RequestType | None,
    systems: dict[str, SystemProgress],
    decisions: Sequence[DecisionRecorded],
    now: datetime,
) -> Verdict:
    """What one decision does to a request in `status` (None: no such request)."""
    rid = event.request_id
    if event in decisions:
        return Verdict()  # a re-delivery
    if status is None or request_type is None:
        return Verdict(dead_letter=f"decision on request {rid!r} refused: no such request")
    if status.is_final:
        return Verdict(
            dead_letter=f"decision on request {rid!r} refused: the request is already final "
            f"({status})"
        )
    reason = status_reason(event)
    kind = event.decision
    if kind == DecisionKind.REFUSE:
        return Verdict("refuse", reason=reason)
    if kind in (DecisionKind.REFUSE_SYSTEM, DecisionKind.LEGAL_HOLD):
        return _judge_system(event, request_type, systems, now, reason)
    if kind == DecisionKind.APPROVE:
        if approved(decisions):
            return Verdict(dead_letter=f"request {rid!r} is already approved")
        return Verdict("approve", reason=reason)
    if kind == DecisionKind.FEE:
        if status not in _NOT_STARTED or fee_pending(decisions):
            return Verdict(
                dead_letter=f"fee on request {rid!r} refused: a fee is charged before the "
                "request is carried out (Art. 12(5)(a) GDPR), and once"
            )
        return Verdict("fee", reason=reason)
    if not fee_pending(decisions):
        return Verdict(dead_letter=f"fee_paid on request {rid!r} refused: no fee is pending")
    return Verdict("fee_paid", reason=reason)


def _judge_system(
    event: DecisionRecorded,
    request_type: RequestType,
    systems: dict[str, SystemProgress],
    now: datetime,
    reason: str,
) -> Verdict:
    rid, name = event.request_id, event.system
    assert name is not None
    progress = systems.get(name)
    if progress is None:
        return Verdict(
            dead_letter=f"{event.decision} on request {rid!r} refused: system {name!r} is not "
            f"in its scope; in scope: {', '.join(sorted(systems)) or 'none'}"
        )
    if progress.decision is not None or progress.status in _FINAL_SYSTEM:
        return Verdict(
            dead_letter=f"{event.decision} on request {rid!r} refused: system {name!r} has "
            f"already answered ({progress.decision or progress.status})"
        )
    if event.decision == DecisionKind.REFUSE_SYSTEM:
        assert event.reason_code is not None
        refused = SystemProgress(
            status=OutcomeStatus.FAILED,
            attempt=progress.attempt,
            reason=f"refused: {event.reason_code} ({REFUSAL_ARTICLES[event.reason_code]})",
            decision="refuse_system",
            updated_at=now,
        )
        return Verdict("system", reason=reason, system=name, progress=refused)
    return _judge_hold(event, request_type, progress, now, reason)


def _judge_hold(
    event: DecisionRecorded,
    request_type: RequestType,
    progress: SystemProgress,
    now: datetime,
    reason: str,
) -> Verdict:
    rid, name = event.request_id, event.system
    assert name is not None and event.hold_reason is not None and event.review_date is not None
    if request_type != RequestType.ERASURE:
        return Verdict(
            dead_letter=f"legal_hold on request {rid!r} refused: a legal hold (Art. 17(3)(e) "
            f"GDPR) applies to erasure requests, not to {request_type}"
        )
    if progress.status == "dispatched":
        return Verdict(
            dead_letter=f"legal_hold on request {rid!r} refused: the erasure task for system "
            f"{name!r} was already sent; a hold must come before it (require approval for "
            "erasure to decide holds first)"
        )
    if event.review_date <= now.date():
        return Verdict(
            dead_letter=f"legal_hold on request {rid!r} refused: the review date "
            f"{event.review_date} is not in the future"
        )
    held = SystemProgress(
        status=OutcomeStatus.RETAINED,
        retained=[
            RetainedItem(
                collection=HELD_COLLECTION,
                count=0,
                legal_basis=LEGAL_HOLD_BASIS,
                reason=f"legal hold: {event.hold_reason}",
                until=event.review_date,
            )
        ],
        reason=f"legal hold: {event.hold_reason} (Art. 17(3)(e) GDPR); review {event.review_date}",
        decision="legal_hold",
        updated_at=now,
    )
    return Verdict("system", reason=reason, system=name, progress=held)


def held_systems(
    systems: dict[str, SystemProgress], decisions: Sequence[DecisionRecorded]
) -> dict[str, DecisionRecorded]:
    """The legal holds in force, by system."""
    return {
        d.system: d
        for d in decisions
        if d.decision == DecisionKind.LEGAL_HOLD
        and d.system is not None
        and systems.get(d.system, SystemProgress(status="pending")).decision == "legal_hold"
    }


def system_decision(name: str, decisions: Sequence[DecisionRecorded]) -> DecisionRecorded | None:
    """The refuse_system or legal_hold decision on one system, if any."""
    kinds = (DecisionKind.REFUSE_SYSTEM, DecisionKind.LEGAL_HOLD)
    return next((d for d in decisions if d.system == name and d.decision in kinds), None)


__all__ = [
    "HELD_COLLECTION",
    "LEGAL_HOLD_BASIS",
    "REFUSAL_ARTICLES",
    "HoldReason",
    "Verdict",
    "approved",
    "fee_pending",
    "held_systems",
    "judge",
    "refusal",
    "status_reason",
    "system_decision",
    "to_dispatch",
    "waiting_status",
]
