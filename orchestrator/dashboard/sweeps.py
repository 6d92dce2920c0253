"""What the dashboard shows of retention sweeps, as data: per system with a sweep policy its last
sweep, when the next one is due and whether it is overdue; per sweep its rules, counts per
collection, what retention duties kept, and who approved it.

Pure functions of the status view, the register and the clock, as `model` is for requests; the
JSON API, the page (through the API) and `/metrics` all use them. Sweeps carry no identifiers
(counts per collection, cutoffs and rules only); free text from connectors and people (reasons,
instructions) is masked on the way out all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from orchestrator.dashboard.model import ResultFile
from orchestrator.status.masking import mask_identifiers
from orchestrator.status.view import StatusView
from schemas.events import SYSTEM_NAME_PATTERN, RetainedItem
from schemas.register import Register, SweepPolicy, parse_period
from schemas.sweeps import (
    CountedFrom,
    SweepCount,
    SweepRule,
    SweepStatus,
    SweepStatusChanged,
    SweepTrigger,
)

#: A sweep is overdue once its schedule plus this much has passed without one starting: the
#: orchestrator's timer looks every few seconds, but a restart or a long batch may delay it.
SWEEP_GRACE = timedelta(hours=1)
#: A sweep in these states is still under way: its system is not offered another one.
OPEN_SWEEP = frozenset({SweepStatus.COUNTING, SweepStatus.AWAITING_APPROVAL, SweepStatus.SWEEPING})
#: What an officer can do on a sweep's page.
SweepAction = Literal["approve"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class SweepSummary(_Model):
    """One sweep as a row: its state and its totals over every collection."""

    sweep_id: str
    system: str
    status: SweepStatus
    open: bool = Field(description="Counting, awaiting approval or sweeping.")
    trigger: SweepTrigger
    dry_run_only: bool = Field(description="Nothing was deleted (yet): only counted.")
    requested_by: str | None = None
    requested_at: AwareDatetime
    approved_by: str | None = None
    approved_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    expired: int = Field(description="Records the dry run found past their cutoff.")
    deleted: int
    anonymised: int
    kept: int = Field(description="Expired, but kept under a retention duty.")
    updated_at: AwareDatetime = Field(description="When the latest status event occurred.")
    sequence: int
    reason: str | None = None
    href: str = Field(description="The sweep's detail page.")


class SystemSweeps(_Model):
    """One system with a sweep policy: its schedule, last sweep, next run and whether overdue."""

    system: str
    title: str | None = None
    schedule: str = Field(description="How often a sweep runs, e.g. '1 day'.")
    approval: Literal["required", "not_required"]
    collections: list[str] = Field(description="The collections its policy sweeps.")
    last_sweep: SweepSummary | None = Field(None, description="The latest sweep started.")
    next_due: AwareDatetime | None = Field(
        None, description="The last start plus the schedule (None: never swept)."
    )
    overdue: bool = Field(
        description="No sweep started within the schedule (plus an hour's grace), or never."
    )
    awaiting_approval: int = Field(description="Its sweeps waiting for an officer.")
    can_start: bool = Field(description="No sweep of it is under way: a dry run can start.")


class SweepTotals(_Model):
    """Counts for the header of the sweep list."""

    systems: int = Field(description="Systems with a sweep policy.")
    overdue: int
    awaiting_approval: int
    running: int = Field(description="Sweeps counting or sweeping.")
    records_swept: int = Field(description="Records deleted or anonymised by every sweep.")


class SweepPage(_Model):
    """The sweep list: systems (awaiting approval first, then overdue) and recent sweeps."""

    systems: list[SystemSweeps]
    sweeps: list[SweepSummary] = Field(description="Awaiting approval first, then newest first.")
    matched: int = Field(description="Sweeps on the status topic.")
    totals: SweepTotals
    register_problem: str | None = Field(
        None, description="Why schedules cannot be shown (the register could not be read)."
    )


class SweepCollection(_Model):
    """One collection of a sweep: its rule and cutoff, what the dry run counted, what was done."""

    collection: str
    rule: str | None = Field(None, description="The rule in words, e.g. '180 days after ...'.")
    date_field: str | None = None
    counted_from: CountedFrom | None = None
    cutoff: date | None = Field(None, description="Records dated before this day had expired.")
    action: Literal["delete", "anonymise"] | None = None
    expired: int | None = Field(None, description="From the dry run; None: not counted.")
    deleted: int | None = Field(None, description="None: nothing was deleted yet.")
    anonymised: int | None = None
    kept: int | None = None


class SweepTimelineEntry(_Model):
    """One status event of a sweep."""

    sequence: int
    changed_at: AwareDatetime
    status: SweepStatus
    previous_status: SweepStatus | None = None
    reason: str | None = None


class SweepDetail(SweepSummary):
    """A sweep with its rules, counts per collection, retained duties, files and timeline."""

    next_step: str = Field(description="What happens next, in words.")
    actions: list[SweepAction] = Field(description="What an officer can do now.")
    collections: list[SweepCollection]
    rules: list[SweepRule]
    dry_run_counts: list[SweepCount]
    counts: list[SweepCount]
    retained: list[RetainedItem] = Field(description="Kept under a retention duty, until when.")
    instructions: str | None = Field(None, description="A manual sweep: what a person must do.")
    files: list[ResultFile] = Field(description="The signed sweep certificate and its HTML.")
    timeline: list[SweepTimelineEntry]


class SweepStartBody(_Model):
    """Start a sweep of one system; published as `SweepRequested` (trigger manual) with the
    dashboard's officer as `requested_by`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str = Field(pattern=SYSTEM_NAME_PATTERN)
    dry_run: bool = Field(
        True,
        description="Count only (the default). false deletes at once only where the register "
        "says the system is swept without approval; elsewhere it still counts first.",
    )


class SweepApprovalBody(_Model):
    """Approve deleting what a sweep's dry run counted; published as `SweepApproved` with the
    dashboard's officer as `approved_by`. The body is empty: `{}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SweepPublished(_Model):
    """A sweep was started or approved; its status follows once the orchestrator processed it."""

    sweep_id: str
    event: str = Field(description="The CloudEvents type published.")
    message: str


def _mask(text: str | None) -> str | None:
    return None if text is None else mask_identifiers(text)


def _total(counts: Iterable[SweepCount], field: str) -> int:
    return sum(getattr(count, field) for count in counts)


def summarise_sweep(status: SweepStatusChanged) -> SweepSummary:
    """The list row of a sweep's latest status."""
    return SweepSummary(
        sweep_id=status.sweep_id,
        system=status.system,
        status=status.status,
        open=status.status in OPEN_SWEEP,
        trigger=status.trigger,
        dry_run_only=not status.counts,
        requested_by=status.requested_by,
        requested_at=status.requested_at,
        approved_by=status.approved_by,
        approved_at=status.approved_at,
        finished_at=status.finished_at,
        expired=_total(status.dry_run_counts, "expired"),
        deleted=_total(status.counts, "deleted"),
        anonymised=_total(status.counts, "anonymised"),
        kept=_total(status.counts or status.dry_run_counts, "kept"),
        updated_at=status.changed_at,
        sequence=status.sequence,
        reason=_mask(status.reason),
        href=f"/sweeps/{status.sweep_id}",
    )


def _sweep_order(summary: SweepSummary) -> tuple[int, float]:
    """Awaiting approval first, then other open sweeps, then the rest; newest first in each."""
    rank = 0 if summary.status == SweepStatus.AWAITING_APPROVAL else 1 if summary.open else 2
    return (rank, -summary.requested_at.timestamp())


def schedule_state(
    policy: SweepPolicy, sweeps: Sequence[SweepStatusChanged], *, now: datetime
) -> tuple[datetime | None, bool]:
    """When the next sweep is due (the last start plus the schedule; None when never swept),
    and whether it is overdue: no sweep started within the schedule plus `SWEEP_GRACE`.

    Storage limitation (Art. 5(1)(e) GDPR) is kept only while sweeps run: a system that was
    never swept, or not within its schedule, is overdue.
    """
    if not sweeps:
        return None, True
    last_start = max(sweep.requested_at for sweep in sweeps)
    due: datetime = last_start + parse_period(policy.schedule)
    return due, now > due + SWEEP_GRACE


def _system_row(
    name: str,
    title: str | None,
    policy: SweepPolicy,
    sweeps: Sequence[SweepStatusChanged],
    *,
    now: datetime,
) -> SystemSweeps:
    due, overdue = schedule_state(policy, sweeps, now=now)
    last = max(sweeps, key=lambda s: (s.requested_at, s.sweep_id), default=None)
    return SystemSweeps(
        system=name,
        title=title,
        schedule=policy.schedule,
        approval=policy.approval,
        collections=[rule.collection for rule in policy.collections],
        last_sweep=summarise_sweep(last) if last is not None else None,
        next_due=due,
        overdue=overdue,
        awaiting_approval=sum(s.status == SweepStatus.AWAITING_APPROVAL for s in sweeps),
        can_start=not any(s.status in OPEN_SWEEP for s in sweeps),
    )


def _system_order(row: SystemSweeps) -> tuple[int, float, str]:
    """Systems with a sweep awaiting approval first, then overdue ones, then by next run."""
    rank = 0 if row.awaiting_approval else 1 if row.overdue else 2
    due = row.next_due.timestamp() if row.next_due is not None else float("-inf")
    return (rank, due, row.system)


def system_sweeps(
    view: StatusView, register: Register | None, *, now: datetime
) -> list[SystemSweeps]:
    """Every system with a sweep policy in the register, most urgent first."""
    if register is None:
        return []
    by_system: dict[str, list[SweepStatusChanged]] = {}
    for status in view.sweeps.values():
        by_system.setdefault(status.system, []).append(status)
    rows = [
        _system_row(
            system.name, system.title, system.sweep, by_system.get(system.name, []), now=now
        )
        for system in register.systems
        if system.sweep is not None
    ]
    return sorted(rows, key=_system_order)


def list_sweeps(
    view: StatusView,
    register: Register | None,
    *,
    now: datetime,
    limit: int = 200,
    register_problem: str | None = None,
) -> SweepPage:
    """The sweep list: systems with a sweep policy, and the sweeps on the status topic."""
    systems = system_sweeps(view, register, now=now)
    summaries = sorted((summarise_sweep(s) for s in view.sweeps.values()), key=_sweep_order)
    totals = SweepTotals(
        systems=len(systems),
        overdue=sum(row.overdue for row in systems),
        awaiting_approval=sum(s.status == SweepStatus.AWAITING_APPROVAL for s in summaries),
        running=sum(s.status in (SweepStatus.COUNTING, SweepStatus.SWEEPING) for s in summaries),
        records_swept=sum(s.deleted + s.anonymised for s in summaries),
    )
    return SweepPage(
        systems=systems,
        sweeps=summaries[:limit],
        matched=len(summaries),
        totals=totals,
        register_problem=register_problem,
    )


def _rule_words(rule: SweepRule) -> str:
    """A sweep rule in English words ("2 years after creation (ordered_at)")."""
    return rule.describe()


def sweep_collections(status: SweepStatusChanged) -> list[SweepCollection]:
    """Per collection, in the rules' order: the rule and cutoff, the dry run's count and what
    the deleting run did (None where that step has not happened)."""
    rules = {rule.collection: rule for rule in status.rules}
    counted = {count.collection: count for count in status.dry_run_counts}
    done = {count.collection: count for count in status.counts}
    names = list(dict.fromkeys([*rules, *counted, *done]))
    found = []
    for name in names:
        rule, dry, swept = rules.get(name), counted.get(name), done.get(name)
        found.append(
            SweepCollection(
                collection=name,
                rule=_rule_words(rule) if rule else None,
                date_field=rule.date_field if rule else None,
                counted_from=rule.counted_from if rule else None,
                cutoff=rule.cutoff if rule else None,
                action=rule.action if rule else None,
                expired=dry.expired if dry else None,
                deleted=swept.deleted if swept else None,
                anonymised=swept.anonymised if swept else None,
                kept=swept.kept if swept else dry.kept if dry else None,
            )
        )
    return found


#: Per status: what happens next, in words.
_NEXT = {
    SweepStatus.COUNTING: "Counting: the system's connector counts what has expired (dry run)",
    SweepStatus.AWAITING_APPROVAL: "Waiting for approval: check the counts, then approve the "
    "deletion",
    SweepStatus.SWEEPING: "Sweeping: the system's connector deletes what has expired",
    SweepStatus.COMPLETED: "Completed: the sweep certificate lists what was deleted and kept",
    SweepStatus.NOTHING_EXPIRED: "Nothing had expired: nothing to delete",
    SweepStatus.MANUAL_ACTION_REQUIRED: "The connector cannot sweep: a person must, as the "
    "instructions say",
    SweepStatus.FAILED: "Failed: see the reason; start a new dry run once it is fixed",
}


def sweep_detail(
    view: StatusView, sweep_id: str, *, files: Sequence[ResultFile] = ()
) -> SweepDetail | None:
    """Everything about one sweep, or None when the status topic never mentioned it."""
    status = view.sweep(sweep_id)
    if status is None:
        return None
    timeline = [
        SweepTimelineEntry(
            sequence=e.sequence,
            changed_at=e.changed_at,
            status=e.status,
            previous_status=e.previous_status,
            reason=_mask(e.reason),
        )
        for e in view.sweep_history.get(sweep_id, [])
    ]
    awaiting = status.status == SweepStatus.AWAITING_APPROVAL
    return SweepDetail(
        **summarise_sweep(status).model_dump(),
        next_step=_NEXT[status.status],
        actions=["approve"] if awaiting else [],
        collections=sweep_collections(status),
        rules=status.rules,
        dry_run_counts=status.dry_run_counts,
        counts=status.counts,
        retained=[
            item.model_copy(update={"reason": _mask(item.reason)}) for item in status.retained
        ],
        instructions=_mask(status.instructions),
        files=list(files),
        timeline=timeline,
    )


def swept_records(view: StatusView) -> dict[tuple[str, str], int]:
    """Records deleted or anonymised by every sweep, per (system, collection)."""
    found: dict[tuple[str, str], int] = {}
    for status in view.sweeps.values():
        for count in status.counts:
            key = (status.system, count.collection)
            found[key] = found.get(key, 0) + count.deleted + count.anonymised
    return found


__all__ = [
    "OPEN_SWEEP",
    "SWEEP_GRACE",
    "SweepAction",
    "SweepApprovalBody",
    "SweepCollection",
    "SweepDetail",
    "SweepPage",
    "SweepPublished",
    "SweepStartBody",
    "SweepSummary",
    "SweepTimelineEntry",
    "SweepTotals",
    "SystemSweeps",
    "list_sweeps",
    "schedule_state",
    "summarise_sweep",
    "sweep_collections",
    "sweep_detail",
    "swept_records",
    "system_sweeps",
]
