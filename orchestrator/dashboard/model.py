"""What the dashboard shows, as data: request summaries and details computed from the status view.

Pure functions of the view and the clock. The JSON API, the page (through the API), `dsr watch`
and `/metrics` all use them, so every view agrees. The models are the API's contract: the
OpenAPI document is generated from them.

Status events carry no identifiers; free text in them (reasons, instructions, evidence) comes
from connectors and people, so it is masked on the way out all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from orchestrator.lifecycle.deadlines import days_left, is_overdue
from orchestrator.lifecycle.delivery import DELIVERABLE
from orchestrator.lifecycle.reducer import FINAL_OUTCOMES, task_id
from orchestrator.lifecycle.verification import VerificationPolicy
from orchestrator.status.masking import mask_identifiers
from orchestrator.status.tasks import EVIDENCE_MAX_LENGTH, ManualOutcome
from orchestrator.status.view import StatusView
from schemas.events import (
    Counts,
    DecisionKind,
    DeliveryChannel,
    Evidence,
    HoldReason,
    OutcomeStatus,
    RefusalReason,
    RequestStatus,
    RequestStatusChanged,
    RequestType,
    RetainedItem,
    StatusTrigger,
    SystemProgress,
    VerificationMethod,
)

#: Status filter values besides the statuses themselves.
STATUS_GROUPS = {
    "open": frozenset(s for s in RequestStatus if not s.is_final),
    "finished": frozenset(s for s in RequestStatus if s.is_final),
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RequestSummary(_Model):
    """One row of the request list."""

    request_id: str
    type: RequestType
    status: RequestStatus
    open: bool = Field(description="Not finished yet.")
    received_at: AwareDatetime
    deadline: AwareDatetime
    deadline_extended: bool
    days_left: int = Field(description="Calendar days until the deadline, as of now.")
    overdue: bool = Field(description="Open and past its deadline.")
    due_soon: bool = Field(description="Open, not overdue, and within the due-soon days.")
    finished_late: bool = Field(description="Finished after its deadline.")
    systems_done: int
    systems_total: int
    manual_tasks: int = Field(description="Systems waiting for a person.")
    failed_systems: int
    finished_at: AwareDatetime | None = None
    updated_at: AwareDatetime = Field(description="When the latest status event occurred.")
    sequence: int = Field(description="Sequence number of the latest status event.")
    reason: str | None = None
    href: str = Field(description="The request's detail page.")


class SystemOutcome(_Model):
    """One system's part of a request."""

    system: str
    status: str = Field(description="pending, dispatched, or the outcome status.")
    final: bool
    attempt: int
    counts: Counts
    retained: list[RetainedItem]
    evidence: list[Evidence]
    reason: str | None = None
    instructions: str | None = None
    retryable: bool
    updated_at: AwareDatetime | None = None
    latency_seconds: float | None = Field(
        None, description="From the first dispatch to the final outcome, retries included."
    )
    task_id: str | None = Field(
        None, description="Set while a person must act: complete it with this id."
    )


class TimelineEntry(_Model):
    """One status event of a request."""

    sequence: int
    occurred_at: AwareDatetime
    trigger: StatusTrigger
    status: RequestStatus
    previous_status: RequestStatus | None = None
    reason: str | None = None
    systems_done: int
    systems_total: int
    deadline: AwareDatetime
    overdue: bool


class ResultFile(_Model):
    """A document of a finished request: the export, the certificate or a letter."""

    name: str
    title: str
    filename: str
    size: int
    href: str


#: What an officer can do on a request's page: a decision kind, `verify`, `extend`, `deliver`.
Action = Literal[
    "verify",
    "approve",
    "refuse",
    "refuse_system",
    "legal_hold",
    "fee",
    "fee_paid",
    "extend",
    "deliver",
]
StepCode = Literal["verify", "approve", "fee", "manual_tasks", "deliver", "overdue", "wait", "none"]


class NextStep(_Model):
    """What the officer must do next on a request, and what the page offers to do it."""

    code: StepCode = Field(description="The kind of step; 'overdue' whatever else is waiting.")
    text: str = Field(description="The step in words, e.g. 'Waiting for approval: ...'.")
    actions: list[Action] = Field(description="What can be done now, as the API accepts it.")
    refusable_systems: list[str] = Field(
        default_factory=list, description="Systems whose part can still be refused."
    )
    holdable_systems: list[str] = Field(
        default_factory=list,
        description="Erasure: systems that can still be put on legal hold (task not yet sent).",
    )


class RequestDetail(RequestSummary):
    """A request with every system's outcome, its timeline and its documents."""

    verified_at: AwareDatetime | None = None
    next_step: NextStep
    verification_methods: list[VerificationMethod] = Field(
        description="The methods the verification policy accepts for this right (empty: the "
        "channel is enough)."
    )
    systems: list[SystemOutcome]
    timeline: list[TimelineEntry]
    files: list[ResultFile]


class Totals(_Model):
    """Counts over every request the view holds (not only the filtered ones)."""

    requests: int
    open: int
    overdue: int
    due_soon: int
    action_required: int
    finished: int


class RequestPage(_Model):
    """The request list: the filtered requests, most urgent first."""

    matched: int = Field(description="Requests matching the filter.")
    requests: list[RequestSummary] = Field(description="At most `limit` of them.")
    totals: Totals


class TaskCompletion(_Model):
    """A person reports that they carried out a manual task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    evidence: str = Field(
        min_length=1,
        max_length=EVIDENCE_MAX_LENGTH,
        description="What was done, e.g. 'archive box 12 shredded'. No personal data.",
    )
    by: str | None = Field(None, max_length=128, description="Staff id.")
    outcome: ManualOutcome = "completed"


class TaskRecorded(_Model):
    """A manual task's outcome was published; the status follows once it is processed."""

    task_id: str
    outcome: ManualOutcome
    message: str


class _Body(_Model):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DecisionBody(_Body):
    """An officer's decision, as the page or a script posts it; published as `DecisionRecorded`
    with the dashboard's officer as `decided_by` (the same event as `dsr decide`)."""

    decision: DecisionKind
    reason_code: RefusalReason | None = Field(None, description="refuse, refuse_system.")
    hold_reason: HoldReason | None = Field(None, description="legal_hold.")
    system: str | None = Field(None, description="refuse_system, legal_hold.")
    review_date: date | None = Field(None, description="legal_hold: a future date.")
    fee_eur: int | None = Field(None, description="fee: whole euros, 1 to 10000.")
    explanation: str | None = Field(
        None,
        max_length=2000,
        description="For the subject's letter, never in status events; required with reason "
        "'other' and hold reason 'other_legal_claim'.",
    )


class VerificationBody(_Body):
    """The officer checked the requester's identity; published as `IdentityVerified`."""

    method: VerificationMethod = Field(description="One the policy accepts for the right.")
    copy_destroyed_at: AwareDatetime | None = Field(
        None, description="When the copy of an ID document was destroyed (none is kept)."
    )


class ExtensionBody(_Body):
    """Extend the deadline once (Art. 12(3) GDPR); published as `DeadlineExtended`."""

    months: Literal[1, 2]
    reason: str = Field(
        min_length=10, max_length=1000, description="As the subject will be told; no personal data."
    )


class DeliveryBody(_Body):
    """Record that the answer reached the subject (Art. 12(3) GDPR); published as
    `DeliveryRecorded`."""

    channel: DeliveryChannel = Field(description="How: post, zivver, in_person or email.")


class EventPublished(_Model):
    """An officer's step was published; the status follows once the orchestrator processed it."""

    request_id: str
    event: str = Field(description="The CloudEvents type published.")
    message: str


class Problem(_Model):
    """An error: what is wrong and what to do."""

    error: str


@dataclass(frozen=True)
class RequestFilter:
    """Which requests the list shows."""

    statuses: frozenset[RequestStatus] = frozenset()
    types: frozenset[RequestType] = frozenset()
    overdue: bool | None = None
    search: str = ""

    @classmethod
    def parse(
        cls,
        statuses: Iterable[str] = (),
        types: Iterable[str] = (),
        overdue: str | None = None,
        search: str | None = None,
    ) -> RequestFilter:
        """From query parameters (repeated or comma-separated); ValueError names the bad one."""
        wanted: set[RequestStatus] = set()
        for value in _values(statuses):
            if value in STATUS_GROUPS:
                wanted |= STATUS_GROUPS[value]
            elif value in RequestStatus._value2member_map_:
                wanted.add(RequestStatus(value))
            else:
                choices = [*STATUS_GROUPS, *(s.value for s in RequestStatus)]
                raise ValueError(f"status={value!r} is not one of {', '.join(choices)}")
        kinds: set[RequestType] = set()
        for value in _values(types):
            if value not in RequestType._value2member_map_:
                choices = [t.value for t in RequestType]
                raise ValueError(f"type={value!r} is not one of {', '.join(choices)}")
            kinds.add(RequestType(value))
        flag: bool | None = None
        if overdue not in (None, ""):
            if overdue.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"overdue={overdue!r} must be true or false")
            flag = overdue.lower() in ("true", "1")
        return cls(frozenset(wanted), frozenset(kinds), flag, (search or "").strip())

    def matches(self, summary: RequestSummary) -> bool:
        """True when the request belongs in the filtered list."""
        return (
            (not self.statuses or summary.status in self.statuses)
            and (not self.types or summary.type in self.types)
            and (self.overdue is None or summary.overdue == self.overdue)
            and (not self.search or self.search.lower() in summary.request_id.lower())
        )


def _values(raw: Iterable[str]) -> list[str]:
    return [v.strip() for item in raw for v in item.split(",") if v.strip()]


def _mask(text: str | None) -> str | None:
    return None if text is None else mask_identifiers(text)


#: What a summary shows as the status event has it.
_AS_IN_STATUS = (
    "request_id",
    "status",
    "received_at",
    "deadline",
    "deadline_extended",
    "systems_done",
    "systems_total",
    "finished_at",
    "sequence",
)


def summarise(status: RequestStatusChanged, *, now: datetime, due_soon_days: int) -> RequestSummary:
    """The list row of a request's latest status, with deadline flags as of `now`."""
    is_open = not status.status.is_final
    # Art. 12(3): the clock runs until the subject has the answer, not until the systems are done.
    clock_running = is_open or (status.status in DELIVERABLE and status.delivered_at is None)
    left = days_left(status.deadline, now)
    overdue = clock_running and (status.overdue or is_overdue(status.deadline, now))
    systems = status.systems.values()
    return RequestSummary(
        **{name: getattr(status, name) for name in _AS_IN_STATUS},
        type=status.request_type,
        open=is_open,
        days_left=left,
        overdue=overdue,
        due_soon=clock_running and not overdue and left <= due_soon_days,
        finished_late=status.finished_at is not None and status.finished_at > status.deadline,
        manual_tasks=sum(p.status == OutcomeStatus.MANUAL_ACTION_REQUIRED for p in systems)
        if is_open
        else 0,
        failed_systems=sum(p.status == OutcomeStatus.FAILED for p in systems),
        updated_at=status.occurred_at,
        reason=_mask(status.reason),
        href=f"/requests/{status.request_id}",
    )


def urgency(summary: RequestSummary) -> tuple[int, float]:
    """Sort key: overdue, then other open requests by deadline, then finished, newest first."""
    if summary.open:
        return (0 if summary.overdue else 1, summary.deadline.timestamp())
    finished = summary.finished_at or summary.updated_at
    return (2, -finished.timestamp())


def list_requests(
    view: StatusView,
    flt: RequestFilter,
    *,
    now: datetime,
    due_soon_days: int,
    limit: int = 1000,
) -> RequestPage:
    """The filtered request list, most urgent first, with totals over all requests."""
    rows = [summarise(s, now=now, due_soon_days=due_soon_days) for s in view.requests.values()]
    matched = sorted((r for r in rows if flt.matches(r)), key=urgency)
    return RequestPage(matched=len(matched), requests=matched[:limit], totals=totals(rows))


def totals(rows: Sequence[RequestSummary]) -> Totals:
    """Counts for the header of the list."""
    return Totals(
        requests=len(rows),
        open=sum(r.open for r in rows),
        overdue=sum(r.overdue for r in rows),
        due_soon=sum(r.due_soon for r in rows),
        action_required=sum(r.status == RequestStatus.ACTION_REQUIRED for r in rows),
        finished=sum(not r.open for r in rows),
    )


def latencies(history: Sequence[RequestStatusChanged]) -> dict[str, float]:
    """Seconds from each system's first dispatch to its final outcome, from a request's events.

    Systems without a final outcome yet, or whose dispatch was never seen on its own, have none.
    """
    dispatched: dict[str, datetime] = {}
    done: dict[str, float] = {}
    for event in history:
        for name, progress in event.systems.items():
            if progress.updated_at is None or name in done:
                continue
            if progress.status == "dispatched":
                dispatched.setdefault(name, progress.updated_at)
            elif progress.status in FINAL_OUTCOMES and name in dispatched:
                seconds = (progress.updated_at - dispatched[name]).total_seconds()
                done[name] = max(0.0, seconds)
    return done


#: Per waiting status: the step, in words, and the decisions that fit it. Statuses not named
#: here wait for the systems (in progress, stalled): the officer may still refuse.
_STEPS: dict[RequestStatus, tuple[StepCode, str, tuple[Action, ...]]] = {
    RequestStatus.AWAITING_VERIFICATION: (
        "verify",
        "Waiting for identity verification: verify or refuse",
        ("verify", "refuse", "fee"),
    ),
    RequestStatus.AWAITING_APPROVAL: (
        "approve",
        "Waiting for approval: approve or refuse",
        ("approve", "refuse", "refuse_system", "legal_hold", "fee"),
    ),
    RequestStatus.AWAITING_FEE: (
        "fee",
        "Waiting for fee payment: mark it paid once received, or refuse",
        ("fee_paid", "refuse", "refuse_system", "legal_hold"),
    ),
    RequestStatus.ACTION_REQUIRED: (
        "manual_tasks",
        "Waiting for a person: carry out the manual tasks below and mark them done",
        ("refuse", "refuse_system"),
    ),
}
_WAITING_FOR_SYSTEMS: tuple[StepCode, str, tuple[Action, ...]] = (
    "wait",
    "In progress: the systems are answering; nothing to do unless a part must be refused",
    ("refuse", "refuse_system", "legal_hold"),
)


def _refusable(progress: SystemProgress) -> bool:
    return progress.decision is None and progress.status not in FINAL_OUTCOMES


def _holdable(request_type: RequestType, progress: SystemProgress) -> bool:
    # Art. 17(3)(e): a hold must come before the erasure task is sent (decisions._judge_hold).
    return (
        request_type == RequestType.ERASURE
        and progress.decision is None
        and progress.status == "pending"
    )


def next_step(status: RequestStatusChanged, *, now: datetime) -> NextStep:
    """What the officer must do next on a request, and the actions that fit its state.

    Offers only what the orchestrator would accept (`orchestrator.lifecycle.decisions.judge`):
    a legal hold on an erasure before that system's task is sent (Art. 17(3)(e) GDPR), a fee
    before anything is carried out (Art. 12(5)(a)), and an extension only once and before the
    deadline: Art. 12(3) GDPR lets the controller extend "by two further months" but must tell
    the subject "within one month of receipt of the request", so once the deadline has passed
    an extension could only hide the breach.
    """
    if status.status in DELIVERABLE and status.delivered_at is None:
        # Art. 12(3): answered only when the subject has it; the clock runs until then.
        overdue = status.overdue or is_overdue(status.deadline, now)
        text = "Answer ready: deliver it to the requester and record how"
        if overdue:
            text = f"Overdue since {status.deadline.date()}. {text}"
        return NextStep(code="overdue" if overdue else "deliver", text=text, actions=["deliver"])
    if status.status.is_final:
        done = "Refused" if status.status == RequestStatus.REFUSED else "Finished"
        return NextStep(code="none", text=f"{done}: nothing left to do", actions=[])
    code, text, offered = _STEPS.get(status.status, _WAITING_FOR_SYSTEMS)
    systems = sorted(status.systems.items())
    refusable = [name for name, progress in systems if _refusable(progress)]
    holdable = [name for name, progress in systems if _holdable(status.request_type, progress)]
    actions = [
        a
        for a in offered
        if (a != "refuse_system" or refusable) and (a != "legal_hold" or holdable)
    ]
    overdue = status.overdue or is_overdue(status.deadline, now)
    if overdue:
        code, text = "overdue", f"Overdue since {status.deadline.date()}. {text}"
    elif not status.deadline_extended:
        actions.append("extend")
    return NextStep(
        code=code,
        text=text,
        actions=actions,
        refusable_systems=refusable if "refuse_system" in actions else [],
        holdable_systems=holdable if "legal_hold" in actions else [],
    )


def detail(
    view: StatusView,
    request_id: str,
    *,
    now: datetime,
    due_soon_days: int,
    files: Sequence[ResultFile] = (),
    verification: VerificationPolicy | None = None,
) -> RequestDetail | None:
    """Everything about one request, or None when the status topic never mentioned it."""
    status = view.get(request_id)
    if status is None:
        return None
    history = view.history.get(request_id, [])
    took = latencies(history)
    is_open = not status.status.is_final
    systems = [
        SystemOutcome(
            system=name,
            status=str(progress.status),
            final=progress.status in FINAL_OUTCOMES,
            attempt=progress.attempt,
            counts=progress.counts,
            retained=[
                item.model_copy(update={"reason": _mask(item.reason)}) for item in progress.retained
            ],
            evidence=[
                item.model_copy(update={"value": mask_identifiers(item.value)})
                for item in progress.evidence
            ],
            reason=_mask(progress.reason),
            instructions=_mask(progress.instructions),
            retryable=progress.retryable,
            updated_at=progress.updated_at,
            latency_seconds=took.get(name),
            task_id=task_id(request_id, name)
            if is_open and progress.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
            else None,
        )
        for name, progress in sorted(status.systems.items())
    ]
    timeline = [
        TimelineEntry(
            sequence=e.sequence,
            occurred_at=e.occurred_at,
            trigger=e.trigger,
            status=e.status,
            previous_status=e.previous_status,
            reason=_mask(e.reason),
            systems_done=e.systems_done,
            systems_total=e.systems_total,
            deadline=e.deadline,
            overdue=e.overdue,
        )
        for e in history
    ]
    summary = summarise(status, now=now, due_soon_days=due_soon_days)
    return RequestDetail(
        **summary.model_dump(),
        verified_at=status.verified_at,
        next_step=next_step(status, now=now),
        verification_methods=list(
            (verification or VerificationPolicy()).accepted(status.request_type)
        ),
        systems=systems,
        timeline=timeline,
        files=list(files),
    )


def failed_attempts(status: RequestStatusChanged) -> dict[str, int]:
    """Failed attempts per system of one request: the retries it took, plus a final failure."""
    found = {}
    for name, progress in status.systems.items():
        failures = max(0, progress.attempt - 1) + (progress.status == OutcomeStatus.FAILED)
        if failures:
            found[name] = failures
    return found


__all__ = [
    "STATUS_GROUPS",
    "Action",
    "DecisionBody",
    "EventPublished",
    "ExtensionBody",
    "NextStep",
    "Problem",
    "RequestDetail",
    "RequestFilter",
    "RequestPage",
    "RequestSummary",
    "ResultFile",
    "SystemOutcome",
    "TaskCompletion",
    "TaskRecorded",
    "TimelineEntry",
    "Totals",
    "VerificationBody",
    "detail",
    "failed_attempts",
    "latencies",
    "list_requests",
    "next_step",
    "summarise",
    "totals",
    "urgency",
]
