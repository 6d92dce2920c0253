"""The retention-sweep lifecycle as pure functions: state + event -> new state + effects.

A sweep enforces storage limitation (Art. 5(1)(e) GDPR: personal data "kept in a form which
permits identification of data subjects for no longer than is necessary") on one system, by
the retention per collection its register entry states (`System.sweep`). Like the request
lifecycle (`orchestrator.lifecycle.reducer`) nothing here does I/O: the shell
(`orchestrator.fanout.sweeps`) stores the state, sends the tasks and status events, and issues
the sweep certificate when `SweepEffects.certificate` asks for it.

The path of one sweep::

    requested --> counting --(dry run counted)--> awaiting_approval --(approved)--> sweeping
        |            |                    \\--(nothing expired)--> nothing_expired
        |            \\--(failed / manual)--> failed / manual_action_required
        \\--(dry_run false, approval not required)--> sweeping --> completed (certificate)

A deleting sweep waits for an officer unless the register trusts the system
(`SweepPolicy.approval: not_required`); the officer's approval is accountable like any
decision (Art. 5(2), 24(1) GDPR: the controller must be able to show who decided to delete).
Every function is idempotent: events arrive at least once, and a replayed event changes
nothing. Nothing here carries identifiers: rules, cutoffs and counts per collection only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.lifecycle.deadlines import DEFAULT_ZONE
from schemas.events import OutcomeStatus, RetainedItem
from schemas.register import System, parse_period
from schemas.sweeps import (
    CountedFrom,
    SweepApproved,
    SweepCount,
    SweepDispatched,
    SweepOutcome,
    SweepRequested,
    SweepRule,
    SweepStatus,
    SweepStatusChanged,
    SweepTrigger,
)

#: Statuses after which a sweep needs nothing more.
FINAL_STATUSES = frozenset(
    {
        SweepStatus.COMPLETED,
        SweepStatus.NOTHING_EXPIRED,
        SweepStatus.MANUAL_ACTION_REQUIRED,
        SweepStatus.FAILED,
    }
)
#: Statuses in which a task is out and an outcome is awaited.
_TASK_OUT = frozenset({SweepStatus.COUNTING, SweepStatus.SWEEPING})
#: Outcomes that report what the connector did (not_found / retained: nothing to remove).
_DONE = frozenset({OutcomeStatus.COMPLETED, OutcomeStatus.NOT_FOUND, OutcomeStatus.RETAINED})

#: A sweep's events on the input topics.
SweepEvent = SweepRequested | SweepApproved | SweepOutcome


@dataclass(frozen=True, slots=True)
class SweepContext:
    """What a sweep decision may look at besides its state: the register, the policy, the clock."""

    #: The register's systems by name, as they are now.
    systems: Mapping[str, System]
    now: datetime
    #: Cutoffs are counted in this zone's calendar days (DSR_DEADLINE_TIMEZONE).
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_ZONE))
    max_attempts: int = 3
    retry_delay: timedelta = timedelta(seconds=5)
    #: A sweep task without an outcome after this long is dispatched again (a worker may have
    #: died with it); after `max_attempts` dispatches the sweep fails with the reason.
    task_timeout: timedelta = timedelta(hours=1)


class SweepState(BaseModel):
    """Everything the orchestrator keeps about one sweep (nothing personal: stored in the clear)."""

    model_config = ConfigDict(extra="forbid")

    sweep_id: str
    system: str
    trigger: SweepTrigger
    #: What was asked: a dry run only (the officer may still approve), or a deleting sweep.
    dry_run: bool = True
    #: The SweepRequested as it came, to tell a re-delivery from a conflicting re-use of the id.
    fingerprint: str
    status: SweepStatus | None = None
    sequence: int = 0
    rules: list[SweepRule] = Field(default_factory=list)
    dry_run_counts: list[SweepCount] = Field(default_factory=list)
    counts: list[SweepCount] = Field(default_factory=list)
    retained: list[RetainedItem] = Field(default_factory=list)
    reason: str | None = None
    instructions: str | None = None
    requested_by: str | None = None
    requested_at: datetime
    approved_by: str | None = None
    approved_at: datetime | None = None
    finished_at: datetime | None = None
    certificate: str | None = None
    #: The task out (or to be sent again): its id, attempt, whether it deletes, when it went.
    task_id: str | None = None
    attempt: int = 0
    task_dry_run: bool = True
    dispatched_at: datetime | None = None
    #: A retryable failure is dispatched again at this time (`tick`); None: nothing waits.
    retry_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        """True once the sweep needs nothing more."""
        return self.status in FINAL_STATUSES


@dataclass(slots=True)
class SweepEffects:
    """What the shell must do after a sweep decision."""

    tasks: list[SweepDispatched] = field(default_factory=list)
    statuses: list[SweepStatusChanged] = field(default_factory=list)
    #: The event is refused: dead-letter it with this reason (no personal data).
    dead_letter: str | None = None
    #: The sweep completed: issue its certificate, then name it in the last status event.
    certificate: bool = False
    save: bool = False

    @property
    def changed(self) -> bool:
        """True when the state must be written back."""
        return bool(self.save or self.tasks or self.statuses)


def sweep_id(system: str, started: datetime) -> str:
    """The id of a scheduled sweep: `sweep-<system>-<UTC yyyymmddHHMM>`."""
    return f"sweep-{system}-{started.astimezone(ZoneInfo('UTC')):%Y%m%d%H%M}"


def task_id(state: SweepState, *, dry_run: bool) -> str:
    """The id of a sweep's counting or deleting task; stable across retries."""
    return f"{state.sweep_id}/{'count' if dry_run else 'delete'}"


def rules_for(system: System, now: datetime, zone: ZoneInfo) -> list[SweepRule]:
    """Each collection's rule with its cutoff as of today (in `zone`'s calendar)."""
    assert system.sweep is not None
    today = now.astimezone(zone).date()
    return [
        SweepRule(
            collection=rule.collection,
            date_field=rule.date_field,
            cutoff=rule.cutoff(today),
            period=rule.period,
            counted_from=CountedFrom(rule.counted_from),
            action=rule.action,
            fields=list(rule.fields),
        )
        for rule in system.sweep.collections
    ]


# ---------------------------------------------------------------------------------------------
# Decisions


def apply(
    state: SweepState | None, event: SweepEvent, ctx: SweepContext
) -> tuple[SweepState | None, SweepEffects]:
    """Decide one sweep event with the function for its kind."""
    if isinstance(event, SweepRequested):
        return request(state, event, ctx)
    if isinstance(event, SweepApproved):
        return approve(state, event, ctx)
    return record_outcome(state, event, ctx)


def request(
    state: SweepState | None, event: SweepRequested, ctx: SweepContext
) -> tuple[SweepState | None, SweepEffects]:
    """A sweep is asked for: check the system, then count first, or delete at once when the
    requester asked to and the register trusts the system (`approval: not_required`)."""
    effects = SweepEffects()
    digest = event.model_dump_json()
    if state is not None:
        if state.fingerprint != digest:
            effects.dead_letter = (
                f"sweep_id {event.sweep_id!r} was already used for a different sweep; "
                "choose a new sweep_id"
            )
        return state, effects  # a re-delivery: one sweep, one result
    problem = _unsweepable(event.system, ctx)
    if problem is not None:
        # As a request naming a system outside the register: refused, kept as a dead letter.
        effects.dead_letter = problem
        return state, effects
    system = ctx.systems[event.system]
    assert system.sweep is not None
    state = SweepState(
        sweep_id=event.sweep_id,
        system=event.system,
        trigger=event.trigger,
        dry_run=event.dry_run,
        fingerprint=digest,
        requested_by=event.requested_by,
        requested_at=event.requested_at,
    )
    if not event.dry_run and system.sweep.approval == "not_required":
        _dispatch(state, ctx, effects, dry_run=False, attempt=1)
        _transition(state, SweepStatus.SWEEPING, ctx, effects, reason=_TRUSTED)
    else:
        _dispatch(state, ctx, effects, dry_run=True, attempt=1)
        reason = None if event.dry_run else "approval required: counting first (dry run)"
        _transition(state, SweepStatus.COUNTING, ctx, effects, reason=reason)
    return state, effects


_TRUSTED = "swept without approval: the register trusts this system (approval: not_required)"


def approve(
    state: SweepState | None, event: SweepApproved, ctx: SweepContext
) -> tuple[SweepState | None, SweepEffects]:
    """An officer approves deleting what the dry run counted; any other time it is ignored."""
    effects = SweepEffects()
    if state is None:
        effects.dead_letter = (
            f"approval for unknown sweep {event.sweep_id!r}; start it first (dsr sweep SYSTEM)"
        )
        return state, effects
    if state.approved_by == event.approved_by and state.approved_at == event.approved_at:
        return state, effects  # a re-delivery of the approval that counted
    if state.status != SweepStatus.AWAITING_APPROVAL:
        status = state.status.value if state.status else "not started"
        reason = f"approval by {event.approved_by} ignored: the sweep is {status}, "
        reason += "not awaiting approval"
        _transition(state, state.status, ctx, effects, reason=reason)
        return state, effects
    state.approved_by, state.approved_at = event.approved_by, event.approved_at
    if not _dispatch(state, ctx, effects, dry_run=False, attempt=1):
        return state, effects
    _transition(
        state, SweepStatus.SWEEPING, ctx, effects, reason=f"approved by {event.approved_by}"
    )
    return state, effects


def record_outcome(
    state: SweepState | None, outcome: SweepOutcome, ctx: SweepContext
) -> tuple[SweepState | None, SweepEffects]:
    """A connector reports on a sweep task: record it, retry a retryable failure, go on."""
    effects = SweepEffects()
    if state is None or outcome.system != state.system:
        effects.dead_letter = (
            f"sweep outcome for unknown sweep or system (task {outcome.task_id!r}); "
            "it does not match any dispatched sweep task"
        )
        return state, effects
    if (
        state.is_final
        or state.status not in _TASK_OUT
        or outcome.task_id != state.task_id
        or outcome.attempt != state.attempt
        or outcome.dry_run != state.task_dry_run
    ):
        return state, effects  # a duplicate, or an older attempt's: a newer one is under way
    if outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED:
        state.instructions = outcome.instructions
        _finish(state, SweepStatus.MANUAL_ACTION_REQUIRED, ctx, effects, reason=outcome.reason)
        return state, effects
    if outcome.status == OutcomeStatus.FAILED:
        _failed(state, outcome, ctx, effects)
        return state, effects
    state.retained = list(outcome.retained)
    if outcome.dry_run:
        _counted(state, list(outcome.counts), ctx, effects)
        return state, effects
    state.counts = list(outcome.counts)
    _finish(state, SweepStatus.COMPLETED, ctx, effects, reason=_summary(state.counts))
    effects.certificate = True
    return state, effects


def _counted(
    state: SweepState, counts: list[SweepCount], ctx: SweepContext, effects: SweepEffects
) -> None:
    """The dry run is back: nothing to do, or wait for an officer's approval."""
    state.dry_run_counts = counts
    if sum(c.expired for c in counts) == 0:
        _finish(state, SweepStatus.NOTHING_EXPIRED, ctx, effects, reason="nothing has expired")
        return
    state.task_id = None
    _transition(
        state,
        SweepStatus.AWAITING_APPROVAL,
        ctx,
        effects,
        reason=f"dry run: {_summary(counts, expired=True)}; waiting for an officer's approval",
    )


def _failed(
    state: SweepState, outcome: SweepOutcome, ctx: SweepContext, effects: SweepEffects
) -> None:
    """Retry a retryable failure with backoff (as request tasks are), or fail the sweep."""
    if outcome.retryable and outcome.attempt < ctx.max_attempts:
        state.retry_at = ctx.now + ctx.retry_delay * (2 ** (outcome.attempt - 1))
        state.attempt = outcome.attempt + 1
        assert state.status is not None
        reason = f"attempt {outcome.attempt} failed: {outcome.reason}; trying again "
        reason += f"(attempt {state.attempt} of {ctx.max_attempts})"
        _transition(state, state.status, ctx, effects, reason=reason)
        return
    reason = f"the connector failed after {outcome.attempt} attempt(s): {outcome.reason}"
    _finish(state, SweepStatus.FAILED, ctx, effects, reason=reason)


def tick(state: SweepState, ctx: SweepContext) -> tuple[SweepState, SweepEffects]:
    """The clock moved: dispatch a retry whose backoff is over; dispatch again a task that had
    no outcome in time, or fail the sweep once its attempts run out."""
    effects = SweepEffects()
    if state.is_final or state.status not in _TASK_OUT:
        return state, effects
    if state.retry_at is not None:
        if ctx.now >= state.retry_at:
            state.retry_at = None
            _dispatch(state, ctx, effects, dry_run=state.task_dry_run, attempt=state.attempt)
        return state, effects
    assert state.dispatched_at is not None
    if ctx.now < state.dispatched_at + ctx.task_timeout:
        return state, effects
    timeout = f"{ctx.task_timeout.total_seconds():g} s"
    if state.attempt >= ctx.max_attempts:
        reason = f"no outcome after {state.attempt} attempts of {timeout} each; check that the "
        reason += "connector worker serving this system is running"
        _finish(state, SweepStatus.FAILED, ctx, effects, reason=reason)
        return state, effects
    attempt = state.attempt + 1
    if not _dispatch(state, ctx, effects, dry_run=state.task_dry_run, attempt=attempt):
        return state, effects
    reason = f"no outcome within {timeout}; dispatched again (attempt {attempt} of "
    reason += f"{ctx.max_attempts})"
    assert state.status is not None
    _transition(state, state.status, ctx, effects, reason=reason)
    return state, effects


def next_check(state: SweepState, ctx: SweepContext) -> datetime | None:
    """When `tick` can next change this sweep; None: never (final, or waiting on an officer)."""
    if state.is_final or state.status not in _TASK_OUT:
        return None
    if state.retry_at is not None:
        return state.retry_at
    return state.dispatched_at + ctx.task_timeout if state.dispatched_at else None


def certificate_issued(
    state: SweepState, effects: SweepEffects, path: str | None, problem: str | None = None
) -> None:
    """The shell issued the certificate (or could not): the last status event says which."""
    if not effects.statuses:
        return
    last = effects.statuses[-1]
    if path is not None:
        state.certificate = path
        effects.statuses[-1] = last.model_copy(update={"certificate": path})
        return
    reason = f"{last.reason}; " if last.reason else ""
    reason += f"the sweep certificate could not be issued ({problem}); see the orchestrator log"
    effects.statuses[-1] = last.model_copy(update={"reason": reason})
    state.reason = reason


def status_event(state: SweepState, ctx: SweepContext) -> SweepStatusChanged:
    """The sweep's current state as a status event (the certificate issuer reads it)."""
    assert state.status is not None
    return SweepStatusChanged(
        sweep_id=state.sweep_id,
        system=state.system,
        sequence=max(state.sequence, 1),
        status=state.status,
        trigger=state.trigger,
        dry_run_counts=state.dry_run_counts,
        counts=state.counts,
        rules=state.rules,
        retained=state.retained,
        reason=state.reason,
        instructions=state.instructions,
        requested_by=state.requested_by,
        requested_at=state.requested_at,
        approved_by=state.approved_by,
        approved_at=state.approved_at,
        finished_at=state.finished_at,
        certificate=state.certificate,
        changed_at=ctx.now,
    )


# ---------------------------------------------------------------------------------------------
# Schedules


def schedule_due(system: System, last_started: datetime | None, now: datetime) -> bool:
    """True when the system's sweep schedule has elapsed since its last scheduled start.

    A schedule missed while the orchestrator was down is due once, at start-up: the next one
    counts from then, so a long outage never runs a backlog of sweeps.
    """
    if system.sweep is None:
        return False
    if last_started is None:
        return True
    return now >= last_started + parse_period(system.sweep.schedule)


def scheduled_request(system: System, now: datetime) -> SweepRequested:
    """The sweep the timer starts: deleting at once for a trusted system, else a dry run."""
    assert system.sweep is not None
    return SweepRequested(
        sweep_id=sweep_id(system.name, now),
        system=system.name,
        dry_run=system.sweep.approval != "not_required",
        trigger=SweepTrigger.SCHEDULE,
        requested_by="schedule",
        requested_at=now,
    )


# ---------------------------------------------------------------------------------------------
# Helpers


def _unsweepable(name: str, ctx: SweepContext) -> str | None:
    """Why this system cannot be swept (no personal data), or None."""
    system = ctx.systems.get(name)
    if system is None:
        known = ", ".join(sorted(ctx.systems)) or "none"
        return f"sweep of system {name!r}: not in the register; known: {known}"
    if system.sweep is None:
        return (
            f"sweep of system {name!r}: the register gives it no retention per collection; "
            "add a 'sweep' entry (schedule, approval, collections) to it in the register"
        )
    return None


def _dispatch(
    state: SweepState, ctx: SweepContext, effects: SweepEffects, *, dry_run: bool, attempt: int
) -> bool:
    """Send a counting or deleting task with the rules as the register states them today;
    False when the register no longer allows it (the sweep has failed, saying why)."""
    system = ctx.systems.get(state.system)
    if system is None or system.sweep is None:
        problem = _unsweepable(state.system, ctx)
        _finish(state, SweepStatus.FAILED, ctx, effects, reason=problem)
        return False
    state.rules = rules_for(system, ctx.now, ctx.timezone)
    state.task_id = task_id(state, dry_run=dry_run)
    state.task_dry_run = dry_run
    state.attempt = attempt
    state.dispatched_at = ctx.now
    state.retry_at = None
    effects.tasks.append(
        SweepDispatched(
            sweep_id=state.sweep_id,
            task_id=state.task_id,
            system=state.system,
            dry_run=dry_run,
            rules=state.rules,
            attempt=attempt,
            dispatched_at=ctx.now,
        )
    )
    return True


def _finish(
    state: SweepState,
    status: SweepStatus,
    ctx: SweepContext,
    effects: SweepEffects,
    *,
    reason: str | None = None,
) -> None:
    state.finished_at = ctx.now
    state.retry_at = None
    _transition(state, status, ctx, effects, reason=reason)


def _transition(
    state: SweepState,
    status: SweepStatus | None,
    ctx: SweepContext,
    effects: SweepEffects,
    *,
    reason: str | None = None,
) -> None:
    """Move to `status` (possibly the same one, with a new reason) and emit the status event."""
    assert status is not None
    previous = state.status
    state.status = status
    state.reason = reason
    state.sequence += 1
    event = status_event(state, ctx)
    effects.statuses.append(event.model_copy(update={"previous_status": previous}))
    effects.save = True


def _summary(counts: list[SweepCount], *, expired: bool = False) -> str:
    """Counts per collection in words, e.g. 'tickets 12, contacts 3'."""
    if expired:
        parts = [f"{c.collection} {c.expired} expired" for c in counts]
    else:
        parts = [f"{c.collection} {c.deleted + c.anonymised} removed" for c in counts]
    kept = sum(c.kept for c in counts)
    text = ", ".join(parts) or "no collections"
    return f"{text}; {kept} kept under a retention duty" if kept else text


__all__ = [
    "FINAL_STATUSES",
    "SweepContext",
    "SweepEffects",
    "SweepEvent",
    "SweepState",
    "apply",
    "approve",
    "certificate_issued",
    "next_check",
    "record_outcome",
    "request",
    "rules_for",
    "schedule_due",
    "scheduled_request",
    "status_event",
    "sweep_id",
    "task_id",
    "tick",
]
