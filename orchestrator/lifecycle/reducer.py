"""The request lifecycle as pure functions: state + event -> new state + effects.

No I/O here. The Faust agent (`orchestrator.fanout.app`) feeds events in (`decide`), stores the
state in a table, and has the effects carried out (send tasks and status events, write
artifacts). Every function is idempotent: events arrive at least once, and a replayed event
changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.lifecycle import decisions, delivery
from orchestrator.lifecycle.deadlines import (
    ART_12_3,
    DeadlinePolicy,
    Period,
    days_left,
    is_overdue,
    statutory_deadline,
)
from orchestrator.lifecycle.reminders import reminder_due_at, waits_on_subject, warning_from
from orchestrator.lifecycle.verification import VerificationPolicy
from schemas.events import (
    DeadlineExtended,
    DecisionRecorded,
    DeliveryRecorded,
    IdentityVerified,
    OutcomeStatus,
    Requester,
    RequestStatus,
    RequestStatusChanged,
    RequestSubmitted,
    RequestType,
    StatusTrigger,
    SystemProgress,
    TaskDispatched,
    TaskOutcome,
)

#: Outcomes after which a system needs nothing more.
FINAL_OUTCOMES = frozenset(
    {OutcomeStatus.COMPLETED, OutcomeStatus.NOT_FOUND, OutcomeStatus.RETAINED, OutcomeStatus.FAILED}
)
_SUCCESS = frozenset({OutcomeStatus.COMPLETED, OutcomeStatus.NOT_FOUND, OutcomeStatus.RETAINED})
#: What a system's progress keeps of its final outcome (besides when it came).
_KEPT_OF_OUTCOME = (
    "status",
    "attempt",
    "counts",
    "retained",
    "evidence",
    "reason",
    "instructions",
    "retryable",
)
#: What a task carries of its request to the connector (the subject sealed, on the way out).
_CARRIED_TO_TASKS = ("subject", "changes", "language")

#: The events a request's lifecycle is decided on (the requests and outcomes topics).
InputEvent = (
    RequestSubmitted
    | IdentityVerified
    | DeadlineExtended
    | DecisionRecorded
    | DeliveryRecorded
    | TaskOutcome
)
#: Whatever the shell keeps beside an event to refer to it again (its Kafka record).
_Item = TypeVar("_Item")


@dataclass(frozen=True, slots=True)
class Policy:
    """The orchestrator's rules, from configuration."""

    deadline: DeadlinePolicy = field(default_factory=DeadlinePolicy)
    due_soon_days: int = 7
    max_attempts: int = 3
    retry_delay: timedelta = timedelta(seconds=5)
    #: A dispatched task without an outcome after this long is dispatched again (a worker may
    #: have died with it); after `max_attempts` dispatches the system fails with the reason.
    task_timeout: timedelta = timedelta(minutes=15)
    #: How long after a request is final its personal data is kept; then its data key is
    #: destroyed (crypto-shredding). None: never.
    shred_after: Period | None = None
    #: Rights whose requests wait for an officer's `approve` before they are carried out.
    approval_required: frozenset[RequestType] = frozenset()
    #: Which identity check each right needs (`orchestrator.lifecycle.verification`).
    verification: VerificationPolicy = field(default_factory=VerificationPolicy)
    #: After this long without the verification the ID-request letter asked for, the subject
    #: gets one reminder letter (`orchestrator.lifecycle.reminders`). None: no reminder.
    reminder_after: timedelta | None = timedelta(days=14)
    #: A request waiting on the subject is flagged this many days before its deadline.
    waiting_warning_days: int = 14


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision may look at besides the state: the register, the policy, the clock."""

    systems: tuple[str, ...]
    policy: Policy
    now: datetime


class RequestState(BaseModel):
    """Everything the orchestrator keeps about one request (stored in a Faust table)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    request: RequestSubmitted | None = None
    fingerprint: str | None = None
    early_verification: IdentityVerified | None = None
    status: RequestStatus | None = None
    sequence: int = 0
    deadline: datetime | None = None
    verified_at: datetime | None = None
    systems: dict[str, SystemProgress] = Field(default_factory=dict)
    original_deadline: datetime | None = None
    extension: DeadlineExtended | None = None
    #: An extension refused because it came after the deadline (shown once, on the request).
    late_extension: DeadlineExtended | None = None
    due_soon_sent: bool = False
    overdue_sent: bool = False
    finished_at: datetime | None = None
    reason: str | None = None
    #: Set when the personal data was destroyed: what is left is a stub (see `shredded`).
    shredded_at: datetime | None = None
    request_type: RequestType | None = Field(default=None, description="Kept in the stub.")
    #: Officers' decisions, in order (`orchestrator.lifecycle.decisions`): who decided what.
    decisions: list[DecisionRecorded] = Field(default_factory=list)
    #: The evidence of the identity check that counted: method, who checked, when, when the
    #: copy was destroyed. Never the copy itself.
    verification: IdentityVerified | None = None
    #: The last verification the policy did not accept for this right (shown once).
    rejected_verification: IdentityVerified | None = None
    #: When the subject was asked to verify their identity (the `id_request` letter).
    id_requested_at: datetime | None = None
    #: When the subject was reminded of it (the `reminder` letter; once).
    reminded_at: datetime | None = None
    #: The early warning for a request waiting on the subject went out (per deadline).
    waiting_warning_sent: bool = False
    #: When the extension letter was produced: the proof that the subject was told within the
    #: first month (Art. 12(3) GDPR), as extensions after the deadline are refused.
    extension_notified_at: datetime | None = None
    #: How and when the answer reached the subject (`orchestrator.lifecycle.delivery`).
    delivery: DeliveryRecorded | None = None
    #: The final status the request was delivered with (completed, partially_completed, refused).
    answered_as: RequestStatus | None = None

    @property
    def is_final(self) -> bool:
        """True once the request has a final status."""
        return self.status is not None and self.status.is_final

    @property
    def systems_done(self) -> int:
        """Systems with a final outcome."""
        return sum(1 for p in self.systems.values() if p.status in FINAL_OUTCOMES)


@dataclass(slots=True)
class Effects:
    """What the shell must do after a decision."""

    tasks: list[TaskDispatched] = field(default_factory=list)
    statuses: list[RequestStatusChanged] = field(default_factory=list)
    dead_letter: str | None = None
    stored_outcomes: list[TaskOutcome] = field(default_factory=list)
    finished: bool = False
    save: bool = False
    #: Destroy the request's data key and files, keep only the stub (see `shredded`).
    shred: bool = False
    #: Letters to write at once, before the status events go (`orchestrator.artifacts.letters`
    #: kinds, e.g. `id_request`); the last status event points at the last one written.
    notices: list[str] = field(default_factory=list)

    def absorb(self, other: Effects) -> None:
        """Add another decision's effects (for the same request) to these."""
        self.tasks += other.tasks
        self.statuses += other.statuses
        self.stored_outcomes += other.stored_outcomes
        self.finished = self.finished or other.finished
        self.save = self.save or other.changed
        self.shred = self.shred or other.shred
        self.notices += other.notices

    @property
    def changed(self) -> bool:
        """True when the state must be written back."""
        return bool(
            self.save or self.tasks or self.statuses or self.stored_outcomes or self.finished
        )


def task_id(request_id: str, system: str) -> str:
    """The id of a request's task for one system; stable across retries."""
    return f"{request_id}/{system}"


def fingerprint(request: RequestSubmitted) -> str:
    """A digest of the request body, to tell a harmless re-send from a conflicting one.

    A request by the subject themself leaves `requester` out, so that requests stored before it
    existed keep their digest.
    """
    exclude = {"requester"} if request.requester == Requester() else None
    return hashlib.sha256(request.model_dump_json(exclude=exclude).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Decisions


def apply(
    state: RequestState | None, event: InputEvent, ctx: Context
) -> tuple[RequestState | None, Effects]:
    """Decide one input event with the function for its kind (`_DECIDERS`)."""
    decide_event = _DECIDERS.get(type(event))
    if decide_event is None:
        raise TypeError(type(event).__name__)
    return decide_event(state, event, ctx)


@dataclass(slots=True)
class Decision(Generic[_Item]):
    """Several events of one request decided together: one state, one set of effects."""

    state: RequestState | None
    effects: Effects
    #: Events to dead-letter, in order: (item, why, the error when deciding raised).
    refused: list[tuple[_Item, str, Exception | None]]
    #: The deadline was extended and the request goes on: the subject must be told (Art. 12(3)).
    extended: bool


def decide(
    state: RequestState | None,
    items: Iterable[tuple[_Item, InputEvent]],
    context: Callable[[], Context],
    *,
    reload: Callable[[], RequestState | None] | None = None,
) -> Decision[_Item]:
    """Decide a request's events of one batch in order; their status events become one.

    An event whose decision raises is refused, and the result is as if it had never come: a bug
    must not stop the worker, and the event is kept in a dead letter. A decision changes the
    state in place, so one that raises may have changed it part-way: the other events are then
    decided again from the state as it was, from `reload` (the state as stored, read again), or
    from a copy taken first when there is none.
    """
    items = list(items)
    if reload is None:
        pristine = state.model_copy(deep=True) if state is not None else None

        def reload() -> RequestState | None:
            return pristine.model_copy(deep=True) if pristine is not None else None

    broken: dict[int, tuple[_Item, str, Exception | None]] = {}
    while True:
        run = _decide_in_order(state, items, broken, context)
        if isinstance(run, _Broke):
            item, error = items[run.index][0], run.error
            broken[run.index] = (item, f"processing failed: {type(error).__name__}", error)
            state = reload()
            continue
        state, merged, refused_at, extended = run
        break
    in_order = sorted([*refused_at, *broken.items()], key=lambda entry: entry[0])
    refused = [entry for _, entry in in_order]
    if state is None or state.status != RequestStatus.AWAITING_VERIFICATION:
        # Verified within the same batch: asking for an ID now would only confuse.
        merged.notices = [n for n in merged.notices if n != "id_request"]
    decision = Decision(state, merged, refused, False)
    if state is not None and merged.changed:
        merged.statuses = coalesce(state, merged.statuses)
        decision.extended = extended and bool(merged.statuses) and not merged.finished
        if decision.extended:  # the shell writes the extension letter now (Art. 12(3))
            state.extension_notified_at = context().now
    return decision


@dataclass(frozen=True, slots=True)
class _Broke:
    """A decision raised: at which of the items, with what."""

    index: int
    error: Exception


def _decide_in_order(
    state: RequestState | None,
    items: list[tuple[_Item, InputEvent]],
    skip: Mapping[int, object],
    context: Callable[[], Context],
) -> (
    tuple[RequestState | None, Effects, list[tuple[int, tuple[_Item, str, Exception | None]]], bool]
    | _Broke
):
    """`decide`'s pass over the items (leaving out `skip`): the state, the merged effects, the
    events refused by their decision and whether the deadline was extended; or where it broke."""
    merged = Effects()
    refused: list[tuple[int, tuple[_Item, str, Exception | None]]] = []
    extended = False
    for index, (item, event) in enumerate(items):
        if index in skip:
            continue
        try:
            state, effects = apply(state, event, context())
        except Exception as exc:
            return _Broke(index, exc)
        if effects.dead_letter:
            refused.append((index, (item, effects.dead_letter, None)))
        extended = extended or (
            isinstance(event, DeadlineExtended) and effects.changed and not effects.dead_letter
        )
        merged.absorb(effects)
    return state, merged, refused, extended


def submit(
    state: RequestState | None, request: RequestSubmitted, ctx: Context
) -> tuple[RequestState | None, Effects]:
    """A request arrives: validate its scope, set its deadline, fan out if verified."""
    effects = Effects()
    if state is not None and state.shredded_at is not None:
        effects.dead_letter = (
            f"request_id {request.request_id!r} belongs to a request that is finished and whose "
            f"personal data was destroyed (crypto-shredded) on {state.shredded_at:%Y-%m-%d}; "
            "it cannot be carried out again: choose a new request_id"
        )
        return state, effects
    digest = fingerprint(request)
    if state is not None and state.request is not None:
        if state.fingerprint != digest:
            effects.dead_letter = (
                f"request_id {request.request_id!r} was already used for a different request; "
                "choose a new request_id"
            )
        return state, effects  # a re-delivery or a re-send: one request, one result

    unknown = [s for s in request.scope or [] if s not in ctx.systems]
    if unknown:
        effects.dead_letter = (
            f"scope names systems not in the register: {', '.join(unknown)}; "
            f"known: {', '.join(ctx.systems)}"
        )
        return state, effects

    early = state.early_verification if state else None
    scope = [s for s in ctx.systems if request.scope is None or s in request.scope]
    new = RequestState(
        request_id=request.request_id,
        request=request,
        fingerprint=digest,
        deadline=ctx.policy.deadline.deadline(request.received_at),
        systems={name: SystemProgress(status="pending") for name in scope},
    )
    rejected = _verify_on_arrival(new, early, ctx)
    if new.verification is None and ctx.policy.verification.needs_verification(request.type):
        _await_verification(new, ctx, effects, rejected)
    else:
        _fan_out(new, ctx, effects)
    _check_deadline(new, ctx, effects)
    return new, effects


def verify(
    state: RequestState | None, event: IdentityVerified, ctx: Context
) -> tuple[RequestState, Effects]:
    """The identity is verified: fan out a waiting request (or remember it for later)."""
    effects = Effects()
    if state is not None and state.shredded_at is not None:
        return state, effects  # long finished: nothing to verify
    if state is None or state.request is None:
        # Verification overtook its request; keep it until the request arrives.
        base = state or RequestState(request_id=event.request_id)
        if base.early_verification is None:
            base.early_verification = event
            effects.save = True
        return base, effects
    if state.status != RequestStatus.AWAITING_VERIFICATION:
        return state, effects  # already verified, or final: nothing to do
    why = ctx.policy.verification.refusal(state.request.type, event.method)
    if why is not None:
        # It does not count: the request keeps waiting, and its status says why (once).
        if state.rejected_verification != event:
            state.rejected_verification = event
            _emit(state, StatusTrigger.VERIFICATION_REJECTED, ctx, effects, reason=why)
        return state, effects
    state.verification = event
    state.verified_at = event.verified_at
    _fan_out(state, ctx, effects, trigger=StatusTrigger.VERIFIED)
    return state, effects


def _verify_on_arrival(
    state: RequestState, early: IdentityVerified | None, ctx: Context
) -> str | None:
    """Record the verification a new request came with (or that overtook it) if the policy
    accepts its method for the right; otherwise say why it does not count."""
    request = state.request
    assert request is not None
    given = request.verification
    candidates = [early] if early is not None else []
    if given.verified and given.method is not None:
        carried = given.model_dump(exclude={"verified"})
        carried["verified_at"] = given.verified_at or ctx.now
        candidates.insert(0, IdentityVerified(request_id=request.request_id, **carried))
    why = None
    for candidate in candidates:
        why = ctx.policy.verification.refusal(request.type, candidate.method)
        if why is None:
            state.verification = candidate
            state.verified_at = candidate.verified_at
            return None
        state.rejected_verification = candidate
    return why


def _await_verification(
    state: RequestState, ctx: Context, effects: Effects, rejected: str | None
) -> None:
    """The right needs a verification the request has not got: wait, and ask the subject at
    once (the `id_request` letter, written by the shell before the status event goes)."""
    request = state.request
    assert request is not None
    accepted = ", ".join(ctx.policy.verification.accepted(request.type))
    reason = rejected or (
        f"waiting for the identity verification a request for {request.type.value} needs "
        f"(accepted: {accepted}); the subject is asked for it by letter"
    )
    state.id_requested_at = ctx.now
    effects.notices.append("id_request")
    _transition(
        state, RequestStatus.AWAITING_VERIFICATION, StatusTrigger.SUBMITTED, ctx, effects, reason
    )


def extend(
    state: RequestState | None, event: DeadlineExtended, ctx: Context
) -> tuple[RequestState | None, Effects]:
    """Extend the deadline once, before it passes, by one or two further months (Art. 12(3)).

    Art. 12(3) GDPR: the one-month period "may be extended by two further months where
    necessary, taking into account the complexity and number of the requests", and the subject
    is told of the extension, with the reasons, "within one month of receipt of the request".
    So an extension decided or received after the deadline is refused (dead-lettered, and shown
    on the request as an overdue status event): the request stays overdue, the breach stays
    visible. The new deadline is counted from receipt (`statutory_deadline`): at most three
    months in all.
    """
    effects = Effects()
    if state is not None and state.is_final:
        effects.dead_letter = f"cannot extend request {event.request_id!r}: it is already final"
        return state, effects
    if state is None or state.request is None or state.deadline is None:
        effects.dead_letter = f"cannot extend request {event.request_id!r}: no such request"
        return state, effects
    if state.extension is not None:
        if state.extension == event:
            return state, effects  # a re-delivery
        effects.dead_letter = (
            f"request {event.request_id!r} was already extended; Art. 12(3) allows one "
            "extension of at most two months"
        )
        return state, effects
    # The subject cannot have been told before the extension reached us, nor before it was made.
    if is_overdue(state.deadline, max(event.extended_at, ctx.now)):
        _refuse_late_extension(state, event, ctx, effects)
        return state, effects
    state.original_deadline = state.deadline
    state.deadline = statutory_deadline(
        state.request.received_at, ctx.policy.deadline.zone, event.months
    )
    state.extension = event
    # The new deadline gets its own warnings.
    state.due_soon_sent = False
    state.overdue_sent = False
    state.waiting_warning_sent = False
    _emit(
        state,
        StatusTrigger.EXTENDED,
        ctx,
        effects,
        reason=f"deadline extended by {event.months} month(s): {event.reason}; "
        "tell the subject, with this reason",
    )
    _check_deadline(state, ctx, effects)
    return state, effects


def _refuse_late_extension(
    state: RequestState, event: DeadlineExtended, ctx: Context, effects: Effects
) -> None:
    """Dead-letter an extension that came after the deadline, and show it on the request."""
    assert state.deadline is not None
    passed = state.deadline.strftime("%Y-%m-%d %H:%M %Z")
    why = (
        f"the deadline passed on {passed}; {ART_12_3}, extendable only within that month, "
        "with the subject told the reasons before it ends"
    )
    effects.dead_letter = f"extension of request {event.request_id!r} refused: {why}"
    if state.late_extension == event:
        return  # a re-delivery: dead-lettered again, shown on the request once
    state.late_extension = event
    state.due_soon_sent = state.overdue_sent = True
    _emit(
        state,
        StatusTrigger.OVERDUE,
        ctx,
        effects,
        reason=f"deadline extension refused: {why}; the request stays overdue: answer it now",
    )


def record_decision(
    state: RequestState | None, event: DecisionRecorded, ctx: Context
) -> tuple[RequestState | None, Effects]:
    """An officer decided (`orchestrator.lifecycle.decisions` says what it does)."""
    effects = Effects()
    live = state is not None and state.request is not None and state.shredded_at is None
    verdict = decisions.judge(
        event,
        status=state.status if state is not None and (live or state.is_final) else None,
        request_type=state.request.type if live and state and state.request else None,
        systems=state.systems if state is not None else {},
        decisions=state.decisions if state is not None else [],
        now=ctx.now,
    )
    if verdict.dead_letter is not None or verdict.action == "none":
        effects.dead_letter = verdict.dead_letter
        return state, effects
    assert state is not None
    state.decisions.append(event)
    if verdict.action == "fee":  # Art. 12(5)(a): the subject is told the amount at once
        effects.notices.append("fee")
    if verdict.action == "refuse":
        _finish(state, RequestStatus.REFUSED, verdict.reason, ctx, effects)
    elif verdict.action == "system":
        assert verdict.system is not None and verdict.progress is not None
        state.systems[verdict.system] = verdict.progress
        _after_system_decision(state, verdict.reason, ctx, effects)
    elif verdict.action == "fee" and state.status != RequestStatus.AWAITING_VERIFICATION:
        _transition(
            state, RequestStatus.AWAITING_FEE, StatusTrigger.DECIDED, ctx, effects, verdict.reason
        )
    elif state.status in (RequestStatus.AWAITING_FEE, RequestStatus.AWAITING_APPROVAL):
        _fan_out(state, ctx, effects, trigger=StatusTrigger.DECIDED, reason=verdict.reason)
    else:  # before verification (the fan-out waits for it), or while carried out: recorded
        _emit(state, StatusTrigger.DECIDED, ctx, effects, reason=verdict.reason)
    return state, effects


def deliver(
    state: RequestState | None, event: DeliveryRecorded, ctx: Context
) -> tuple[RequestState | None, Effects]:
    """The answer reached the subject: the request is `delivered`, its deadline met (Art. 12(3);
    `orchestrator.lifecycle.delivery` says when a delivery counts)."""
    effects = Effects()
    live = state is not None and state.request is not None and state.shredded_at is None
    verdict = delivery.judge(
        event,
        status=state.status if live and state is not None else None,
        delivery=state.delivery if state is not None else None,
    )
    if not verdict.deliver:
        effects.dead_letter = verdict.dead_letter
        return state, effects
    assert state is not None
    state.delivery = event
    state.answered_as = state.status
    _transition(
        state,
        RequestStatus.DELIVERED,
        StatusTrigger.DELIVERED,
        ctx,
        effects,
        reason=delivery.status_reason(event),
    )
    return state, effects


def delivery_failed(state: RequestState, error: str, ctx: Context) -> Effects:
    """Sending the answer by e-mail failed: say so on the request; it stays undelivered."""
    effects = Effects()
    _emit(state, StatusTrigger.DELIVERY_FAILED, ctx, effects, reason=delivery.failure_reason(error))
    return effects


def _clock_stopped(state: RequestState) -> bool:
    """True once the deadline no longer runs: final and delivered, or final without an answer
    to deliver (failed). A completed but undelivered request still runs (Art. 12(3))."""
    return state.is_final and not delivery.awaits_delivery(state.status, state.delivery)


def _after_system_decision(
    state: RequestState, reason: str | None, ctx: Context, effects: Effects
) -> None:
    """A system was refused or held: finish if nothing else is awaited, else say so."""
    started = state.status not in (
        RequestStatus.AWAITING_VERIFICATION,
        RequestStatus.AWAITING_APPROVAL,
        RequestStatus.AWAITING_FEE,
    )
    if started and all(p.status in FINAL_OUTCOMES for p in state.systems.values()):
        status, final_reason = final_status(state.systems)
        _finish(state, status, "; ".join(r for r in (reason, final_reason) if r), ctx, effects)
        return
    _emit(state, StatusTrigger.DECIDED, ctx, effects, reason=reason)


def record_outcome(
    state: RequestState | None, outcome: TaskOutcome, ctx: Context
) -> tuple[RequestState | None, Effects]:
    """A connector reports: record it, retry a retryable failure, finish when all are final."""
    effects = Effects()
    if state is not None and state.shredded_at is not None:
        return state, effects  # a late re-delivery: the request is long finished
    if state is None or state.request is None or outcome.system not in state.systems:
        effects.dead_letter = (
            f"outcome for unknown request or system (task {outcome.task_id!r}); "
            "it does not match any dispatched task"
        )
        return state, effects
    progress = state.systems[outcome.system]
    if state.is_final or progress.status in FINAL_OUTCOMES:
        return state, effects  # duplicate delivery
    stale = outcome.attempt < progress.attempt
    if stale and outcome.status not in _SUCCESS:
        return state, effects  # an older attempt's failure; a newer attempt is under way

    request = state.request
    if (
        outcome.status == OutcomeStatus.FAILED
        and outcome.retryable
        and outcome.attempt < ctx.policy.max_attempts
    ):
        attempt = outcome.attempt + 1
        delay = ctx.policy.retry_delay * (2 ** (outcome.attempt - 1))
        state.systems[outcome.system] = SystemProgress(
            status="dispatched",
            attempt=attempt,
            reason=outcome.reason,
            retryable=True,
            updated_at=ctx.now,
        )
        effects.tasks.append(_task(state, outcome.system, attempt, ctx, not_before=ctx.now + delay))
        _emit(
            state, StatusTrigger.RETRY, ctx, effects, reason=f"{outcome.system}: {outcome.reason}"
        )
        return state, effects

    kept = {name: getattr(outcome, name) for name in _KEPT_OF_OUTCOME}
    state.systems[outcome.system] = SystemProgress(**kept, updated_at=outcome.completed_at)
    effects.stored_outcomes.append(outcome)
    assert request is not None
    if all(p.status in FINAL_OUTCOMES for p in state.systems.values()):
        status, reason = final_status(state.systems)
        _finish(state, status, reason, ctx, effects)
    else:
        _transition(state, _open_status(state), StatusTrigger.OUTCOME, ctx, effects)
    return state, effects


def _open_status(state: RequestState) -> RequestStatus:
    """The status of a request that is not finished, from its systems."""
    systems = state.systems.values()
    if any(p.stalled and p.status == "dispatched" for p in systems):
        return RequestStatus.STALLED
    if any(p.status == OutcomeStatus.MANUAL_ACTION_REQUIRED for p in systems):
        return RequestStatus.ACTION_REQUIRED
    return RequestStatus.IN_PROGRESS


def _timed_out(state: RequestState, policy: Policy, now: datetime) -> list[str]:
    """Systems whose dispatched task has had no outcome for longer than the task timeout."""
    return [
        name
        for name, p in state.systems.items()
        if p.status == "dispatched"
        and p.updated_at is not None
        and now >= p.updated_at + policy.task_timeout
    ]


def _redispatch_timed_out(
    state: RequestState, names: list[str], ctx: Context, effects: Effects
) -> None:
    """Dispatch again (a worker may have died with the task), or fail once attempts run out.

    A late outcome of an earlier attempt still counts if it is a success; only one outcome per
    system is ever recorded.
    """
    timeout = _describe_timeout(ctx.policy.task_timeout)
    notes = []
    for name in names:
        progress = state.systems[name]
        if progress.attempt < ctx.policy.max_attempts:
            attempt = progress.attempt + 1
            reason = (
                f"no outcome within {timeout} (attempt {progress.attempt}); dispatched again "
                f"(attempt {attempt} of {ctx.policy.max_attempts})"
            )
            state.systems[name] = SystemProgress(
                status="dispatched",
                attempt=attempt,
                reason=reason,
                retryable=True,
                stalled=True,
                updated_at=ctx.now,
            )
            effects.tasks.append(_task(state, name, attempt, ctx))
        else:
            reason = (
                f"no outcome after {progress.attempt} attempts of {timeout} each; check that "
                "the connector worker serving this system is running"
            )
            state.systems[name] = SystemProgress(
                status=OutcomeStatus.FAILED,
                attempt=progress.attempt,
                reason=reason,
                retryable=True,
                stalled=True,
                updated_at=ctx.now,
            )
        notes.append(f"{name}: {reason}")
    if all(p.status in FINAL_OUTCOMES for p in state.systems.values()):
        status, final_reason = final_status(state.systems)
        _finish(state, status, final_reason, ctx, effects)
        return
    _transition(
        state, _open_status(state), StatusTrigger.TIMEOUT, ctx, effects, reason="; ".join(notes)
    )


def _describe_timeout(timeout: timedelta) -> str:
    seconds = int(timeout.total_seconds())
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{timeout.total_seconds():g} s"


def tick(state: RequestState, ctx: Context) -> tuple[RequestState, Effects]:
    """The clock moved: flag due-soon and overdue, refuse unverified requests past the deadline,
    shred final requests whose retention window has passed."""
    effects = Effects()
    if state.is_final:
        if state.request is not None and not _clock_stopped(state):
            _check_deadline(state, ctx, effects)  # answered but not delivered: the clock runs
        due = shred_at(state, ctx.policy)
        if due is not None and ctx.now >= due:
            _emit(
                state,
                StatusTrigger.SHREDDED,
                ctx,
                effects,
                reason=f"personal data destroyed (crypto-shredded) {ctx.policy.shred_after} "
                f"after the request was {'delivered' if state.delivery else 'final'}",
            )
            effects.shred = True
            return shredded(state, ctx.now), effects
        return state, effects
    if state.request is None:
        return state, effects
    assert state.deadline is not None
    if state.status == RequestStatus.AWAITING_VERIFICATION and is_overdue(state.deadline, ctx.now):
        _finish(
            state,
            RequestStatus.REFUSED,
            "the identity of the requester was not verified before the deadline",
            ctx,
            effects,
        )
        return state, effects
    _remind(state, ctx, effects)
    timed_out = _timed_out(state, ctx.policy, ctx.now)
    if timed_out:
        _redispatch_timed_out(state, timed_out, ctx, effects)
        if state.is_final:
            return state, effects
    _check_deadline(state, ctx, effects)
    return state, effects


def next_check(state: RequestState, policy: Policy) -> datetime | None:
    """When `tick` can next change this request (due soon, overdue, refusal, a task's timeout,
    shredding); None: never."""
    if state.is_final and (state.request is None or _clock_stopped(state)):
        return shred_at(state, policy)
    if state.request is None or state.deadline is None:
        return None
    deadline = state.deadline
    # No shredding here: a request still open, or answered but not delivered, is never due.
    times = [
        p.updated_at + policy.task_timeout
        for p in state.systems.values()
        if p.status == "dispatched" and p.updated_at is not None
    ]
    reminder = reminder_due_at(
        state.status, state.id_requested_at, state.reminded_at, policy.reminder_after
    )
    if reminder is not None:
        times.append(reminder)
    if waits_on_subject(state.status) and not state.waiting_warning_sent:
        times.append(warning_from(deadline, policy.waiting_warning_days))
    if not state.due_soon_sent:
        first_day = deadline.date() - timedelta(days=policy.due_soon_days)
        times.append(datetime.combine(first_day, time.min, tzinfo=deadline.tzinfo))
    elif not state.overdue_sent or state.status == RequestStatus.AWAITING_VERIFICATION:
        times.append(deadline + timedelta(microseconds=1))
    return min(times) if times else None


def shred_at(state: RequestState, policy: Policy) -> datetime | None:
    """When a final request's personal data is due for destruction; None: never (again), or not
    while its answer awaits delivery.

    The retention period counts from delivery for requests with an answer to deliver: until the
    subject has it the request is not answered (Art. 12(3) GDPR), and shredding earlier would
    destroy the export the delivery links to. A request that failed (nothing to deliver) counts
    from when it finished. Never before either moment: a delivery recorded as earlier (an
    officer's date of posting) does not shorten the period.

    The timer's view of a final state (`lifecycle.state.watch_view`: no request body, no
    delivery) gets the time from finishing: only when to look, never later than the real time;
    `tick` decides on the whole state.
    """
    if (
        not state.is_final
        or state.shredded_at is not None
        or state.finished_at is None
        or policy.shred_after is None
        or (state.request is not None and delivery.awaits_delivery(state.status, state.delivery))
    ):
        return None
    start = state.finished_at
    if state.delivery is not None:
        start = max(start, state.delivery.delivered_at)
    return policy.shred_after.after(start)


def shredded(state: RequestState, now: datetime) -> RequestState:
    """What is kept of a request once its personal data is destroyed: no request body.

    Not even the request's fingerprint: a hash of the body, which holds the subject's
    identifiers, would let anyone with a list of candidates test which one it was.
    """
    return RequestState(
        request_id=state.request_id,
        request_type=state.request.type if state.request else state.request_type,
        status=state.status,
        sequence=state.sequence,
        finished_at=state.finished_at,
        shredded_at=now,
    )


def final_status(systems: dict[str, SystemProgress]) -> tuple[RequestStatus, str | None]:
    """The request's final status from its systems' final outcomes, with the reason."""
    failed = {
        name: p
        for name, p in systems.items()
        if p.status == OutcomeStatus.FAILED and p.decision is None
    }
    refused = {name: p for name, p in systems.items() if p.decision == "refuse_system"}
    if not systems:
        return RequestStatus.COMPLETED, "no system in scope holds data for this request type"
    if refused and len(refused) == len(systems):
        return RequestStatus.REFUSED, _listed("refused for ", refused)
    if refused:
        # An officer refused part of the request: the answer is partial (Art. 12(4)).
        parts = [_listed("refused for ", refused)]
        if failed:
            parts.append(_listed("failed in ", failed))
        return RequestStatus.PARTIALLY_COMPLETED, "; ".join(parts)
    if not failed:
        return RequestStatus.COMPLETED, None
    reason = _listed("failed in ", failed)
    if len(failed) == len(systems):
        return RequestStatus.FAILED, reason
    return RequestStatus.PARTIALLY_COMPLETED, reason


def _listed(prefix: str, systems: dict[str, SystemProgress]) -> str:
    return prefix + "; ".join(f"{name}: {p.reason}" for name, p in sorted(systems.items()))


def resend_final(state: RequestState, ctx: Context) -> RequestStatusChanged | None:
    """The final status event of a finished request again, with the sequence it had.

    After a worker restart the orchestrator cannot know whether a finished request's last
    status event left before the crash; sending it again is harmless (consumers keep one
    event per sequence) and makes sure it did. None for requests that are not finished.
    """
    if state.request is None or not state.is_final or state.deadline is None:
        return None
    copy = state.model_copy(deep=True)
    copy.sequence -= 1
    effects = Effects()
    _emit(copy, StatusTrigger.FINISHED, ctx, effects, reason=copy.reason, previous=None)
    return effects.statuses[0]


def coalesce(
    state: RequestState, statuses: list[RequestStatusChanged]
) -> list[RequestStatusChanged]:
    """One status event for several changes of one request decided together (one batch).

    The last event carries the resulting state; it takes the first event's sequence number and
    previous status, so sequences still increase by one and no transition is misreported.
    """
    if len(statuses) <= 1:
        return statuses
    first, last = statuses[0], statuses[-1]
    reason = next((s.reason for s in reversed(statuses) if s.reason), None)
    state.sequence = first.sequence
    merged = last.model_copy(
        update={
            "sequence": first.sequence,
            "previous_status": first.previous_status,
            "reason": reason,
        }
    )
    return [merged]


# ---------------------------------------------------------------------------------------------
# Helpers


def _fan_out(
    state: RequestState,
    ctx: Context,
    effects: Effects,
    trigger: StatusTrigger = StatusTrigger.DISPATCHED,
    reason: str | None = None,
) -> None:
    assert state.request is not None
    waiting = decisions.waiting_status(
        state.request.type, state.decisions, ctx.policy.approval_required
    )
    if waiting is not None:  # an officer's approval or the subject's fee comes first
        _transition(state, waiting, trigger, ctx, effects, reason=reason)
        return
    names = decisions.to_dispatch(state.systems)  # not the systems an officer decided on
    for name in names:
        state.systems[name] = SystemProgress(status="dispatched", attempt=1, updated_at=ctx.now)
        effects.tasks.append(_task(state, name, 1, ctx))
    if not names:
        status, final_reason = final_status(state.systems)
        _finish(state, status, "; ".join(r for r in (reason, final_reason) if r), ctx, effects)
        return
    _transition(state, RequestStatus.IN_PROGRESS, trigger, ctx, effects, reason=reason)


def _task(
    state: RequestState, system: str, attempt: int, ctx: Context, not_before: datetime | None = None
) -> TaskDispatched:
    request = state.request
    assert request is not None and state.deadline is not None
    carried = {name: getattr(request, name) for name in _CARRIED_TO_TASKS}
    return TaskDispatched(
        request_id=request.request_id,
        task_id=task_id(request.request_id, system),
        system=system,
        action=request.type,
        attempt=attempt,
        **carried,
        deadline=state.deadline,
        dispatched_at=ctx.now,
        not_before=not_before,
    )


def _check_deadline(state: RequestState, ctx: Context, effects: Effects) -> None:
    if _clock_stopped(state) or state.deadline is None:
        return
    if not state.overdue_sent and is_overdue(state.deadline, ctx.now):
        state.overdue_sent = True
        state.due_soon_sent = True
        _emit(state, StatusTrigger.OVERDUE, ctx, effects, reason="the deadline has passed")
    elif _waiting_warning_due(state, ctx):
        _warn_waiting(state, ctx, effects)
    elif not state.due_soon_sent and days_left(state.deadline, ctx.now) <= ctx.policy.due_soon_days:
        state.due_soon_sent = True
        _emit(state, StatusTrigger.DUE_SOON, ctx, effects)


def _waiting_warning_due(state: RequestState, ctx: Context) -> bool:
    assert state.deadline is not None
    return (
        not state.waiting_warning_sent
        and waits_on_subject(state.status)
        and days_left(state.deadline, ctx.now) <= ctx.policy.waiting_warning_days
    )


def _warn_waiting(state: RequestState, ctx: Context, effects: Effects) -> None:
    """The early warning: the request waits on the subject and the deadline comes near.

    Earlier than due soon (`Policy.waiting_warning_days`), so an officer can still chase the
    subject; the status event carries `waiting_on_subject` (no personal data in the reason).
    """
    assert state.deadline is not None and state.status is not None
    state.waiting_warning_sent = True
    # It also says due soon when that is true: one warning, not two in a row.
    state.due_soon_sent = days_left(state.deadline, ctx.now) <= ctx.policy.due_soon_days
    waiting_for = (
        "the identity verification asked for"
        if state.status == RequestStatus.AWAITING_VERIFICATION
        else "the payment of the fee"
    )
    _emit(
        state,
        StatusTrigger.WAITING_ON_SUBJECT,
        ctx,
        effects,
        reason=f"waiting on the subject for {waiting_for}; "
        f"{days_left(state.deadline, ctx.now)} day(s) left before the deadline",
    )


def _remind(state: RequestState, ctx: Context, effects: Effects) -> None:
    """Once the reminder is due, the subject gets the `reminder` letter (once): the identity
    verification the ID-request letter asked for has not arrived."""
    due = reminder_due_at(
        state.status, state.id_requested_at, state.reminded_at, ctx.policy.reminder_after
    )
    if due is None or ctx.now < due:
        return
    assert state.id_requested_at is not None
    state.reminded_at = ctx.now
    effects.notices.append("reminder")
    _emit(
        state,
        StatusTrigger.REMINDED,
        ctx,
        effects,
        reason="the subject was reminded of the identity verification asked for on "
        f"{state.id_requested_at:%Y-%m-%d}",
    )


def _finish(
    state: RequestState, status: RequestStatus, reason: str | None, ctx: Context, effects: Effects
) -> None:
    state.finished_at = ctx.now
    state.reason = reason
    effects.finished = True
    _transition(state, status, StatusTrigger.FINISHED, ctx, effects, reason=reason)


def _transition(
    state: RequestState,
    status: RequestStatus,
    trigger: StatusTrigger,
    ctx: Context,
    effects: Effects,
    reason: str | None = None,
) -> None:
    previous = state.status
    state.status = status
    _emit(state, trigger, ctx, effects, reason=reason, previous=previous)


def _emit(
    state: RequestState,
    trigger: StatusTrigger,
    ctx: Context,
    effects: Effects,
    reason: str | None = None,
    previous: RequestStatus | bool | None = True,
) -> None:
    """Append a status event; `previous` defaults to the current status (a progress event)."""
    if previous is True:
        previous = state.status
    assert previous is None or isinstance(previous, RequestStatus)
    request = state.request
    assert request is not None and state.deadline is not None and state.status is not None
    state.sequence += 1
    effects.save = True
    running = not _clock_stopped(state)
    overdue = running and is_overdue(state.deadline, ctx.now)
    left = days_left(state.deadline, ctx.now)
    effects.statuses.append(
        RequestStatusChanged(
            request_id=state.request_id,
            request_type=request.type,
            sequence=state.sequence,
            status=state.status,
            previous_status=previous,
            trigger=trigger,
            reason=reason,
            systems_total=len(state.systems),
            systems_done=state.systems_done,
            systems=dict(state.systems),
            received_at=request.received_at,
            verified_at=state.verified_at,
            deadline=state.deadline,
            deadline_extended=state.extension is not None,
            days_left=left,
            due_soon=running and not overdue and left <= ctx.policy.due_soon_days,
            overdue=overdue,
            finished_at=state.finished_at,
            delivered_at=state.delivery.delivered_at if state.delivery else None,
            delivery_channel=state.delivery.channel if state.delivery else None,
            occurred_at=ctx.now,
            requester_kind=request.requester.kind,
            waiting_on_subject=not state.is_final
            and not overdue
            and waits_on_subject(state.status)
            and left <= ctx.policy.waiting_warning_days,
        )
    )


#: The function that decides each kind of input event.
_Decider = Callable[[RequestState | None, Any, Context], tuple[RequestState | None, Effects]]
_DECIDERS: dict[type, _Decider] = {
    RequestSubmitted: submit,
    IdentityVerified: verify,
    DeadlineExtended: extend,
    TaskOutcome: record_outcome,
    DecisionRecorded: record_decision,
    DeliveryRecorded: deliver,
}

__all__ = [
    "FINAL_OUTCOMES",
    "Context",
    "Decision",
    "Effects",
    "InputEvent",
    "Policy",
    "RequestState",
    "apply",
    "coalesce",
    "decide",
    "deliver",
    "delivery_failed",
    "extend",
    "final_status",
    "next_check",
    "record_decision",
    "record_outcome",
    "resend_final",
    "shred_at",
    "shredded",
    "submit",
    "task_id",
    "tick",
    "verify",
]
