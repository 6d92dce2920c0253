"""Retention sweeps on the bus: storage limitation enforced (Art. 5(1)(e) GDPR).

A sweep is a job like a request. The orchestrator starts one on a system's schedule (the
register's `System.sweep`) or on `dsr sweep SYSTEM` (`SweepRequested` on the requests topic),
dispatches one task to the system's connector (`SweepDispatched` on the tasks topic) with each
collection's rule and cutoff computed, and collects what the connector did (`SweepOutcome` on
the outcomes topic). By default the first run is a dry run: the connector counts what has
expired per collection and deletes nothing; the sweep then waits for an officer's approval
(`SweepApproved`, an officer's decision like `DecisionRecorded`: only publishers allowed to
decide may send it) before a second task deletes. A system whose sweep is trusted is swept
without approval (`SweepPolicy.approval: not_required`). Every change of a sweep's state is a
`SweepStatusChanged` on the status topic; a completed sweep gets a signed sweep certificate.

Nothing here carries identifiers: sweeps work on dates, and report counts per collection.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.events import (
    REQUEST_ID_PATTERN,
    Evidence,
    OutcomeStatus,
    RetainedItem,
    SystemName,
)

SweepId = Annotated[
    str,
    Field(
        pattern=REQUEST_ID_PATTERN,
        examples=["sweep-freshdesk-20261130"],
        description="Unique per sweep; the Kafka key of its events.",
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepTrigger(StrEnum):
    """What started a sweep."""

    SCHEDULE = "schedule"  # the orchestrator's timer, from the register's schedule
    MANUAL = "manual"  # `dsr sweep SYSTEM`, the dashboard, or any publisher


class CountedFrom(StrEnum):
    """What a retention period counts from (the register's `CollectionRetention`)."""

    CREATED = "created"  # the record was created
    LAST_ACTIVITY = "last_activity"  # the last activity on it (last contact, last update)
    RELATIONSHIP_END = "relationship_end"  # the end of the customer relationship
    BOOK_YEAR_END = "book_year_end"  # the end of the book year the record falls in


class SweepRule(_Model):
    """One collection's retention as a sweep task carries it: the cutoff already computed.

    A record whose `date_field` is before `cutoff` has expired. Records under a retention duty
    (the register's `retention_rules`, e.g. invoices for 7 years) are kept whatever the cutoff.
    """

    collection: Annotated[str, Field(min_length=1, max_length=128)]
    date_field: Annotated[str, Field(min_length=1, max_length=128)]
    cutoff: date = Field(description="Records dated before this day have expired.")
    period: Annotated[str, Field(examples=["180 days"], description="The rule, in words.")]
    counted_from: CountedFrom
    action: Literal["delete", "anonymise"] = "delete"
    fields: list[str] = Field(
        default_factory=list, description="With action 'anonymise': the fields to clear."
    )

    def describe(self) -> str:
        """The rule in words (English, for staff): "2 years after creation (ordered_at)"."""
        return describe_rule(self.period, self.counted_from, self.date_field)


def describe_rule(period: str, counted_from: str, date_field: str) -> str:
    """A retention rule in words (English, for staff and the rule column of certificates)."""
    start = {
        CountedFrom.CREATED: "creation",
        CountedFrom.LAST_ACTIVITY: "the last activity",
        CountedFrom.RELATIONSHIP_END: "the end of the customer relationship",
        CountedFrom.BOOK_YEAR_END: "the end of the book year",
    }[CountedFrom(counted_from)]
    return f"{period} after {start} ({date_field})"


class SweepRequested(_Model):
    """Start a sweep of one system (dry run unless `dry_run` is false and approval is not
    required for it)."""

    sweep_id: SweepId
    system: SystemName
    dry_run: bool = Field(
        default=True,
        description="Count only. A sweep that deletes needs an approval unless the register "
        "says the system may be swept without one.",
    )
    trigger: SweepTrigger = SweepTrigger.MANUAL
    requested_by: Annotated[str | None, Field(max_length=128)] = None
    requested_at: AwareDatetime


class SweepApproved(_Model):
    """An officer approves deleting what a sweep's dry run counted (an officer's decision)."""

    sweep_id: SweepId
    approved_by: Annotated[str, Field(min_length=1, max_length=128)]
    approved_at: AwareDatetime


class SweepDispatched(_Model):
    """One sweep's work for its system's connector."""

    sweep_id: SweepId
    task_id: Annotated[str, Field(min_length=1, max_length=256)]
    system: SystemName
    dry_run: bool
    rules: Annotated[list[SweepRule], Field(min_length=1)]
    attempt: Annotated[int, Field(ge=1)] = 1
    dispatched_at: AwareDatetime


class SweepCount(_Model):
    """What a sweep found and did in one collection; counts only."""

    collection: str
    expired: Annotated[int, Field(ge=0, description="Records past the cutoff.")] = 0
    deleted: Annotated[int, Field(ge=0)] = 0
    anonymised: Annotated[int, Field(ge=0)] = 0
    kept: Annotated[
        int, Field(ge=0, description="Expired, but kept under a retention duty (see retained).")
    ] = 0


class SweepOutcome(_Model):
    """What a connector reports for one sweep task."""

    sweep_id: SweepId
    task_id: Annotated[str, Field(min_length=1, max_length=256)]
    system: SystemName
    dry_run: bool
    attempt: Annotated[int, Field(ge=1)] = 1
    status: OutcomeStatus
    counts: list[SweepCount] = Field(default_factory=list)
    retained: list[RetainedItem] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    reason: Annotated[str | None, Field(max_length=2000)] = None
    instructions: Annotated[str | None, Field(max_length=4000)] = Field(
        default=None, description="A connector that cannot sweep: what a person must do."
    )
    retryable: bool = False
    completed_at: AwareDatetime

    @model_validator(mode="after")
    def _reason_when_needed(self) -> SweepOutcome:
        if self.status == OutcomeStatus.FAILED and not self.reason:
            raise ValueError("a failed sweep outcome needs a reason")
        if self.status == OutcomeStatus.MANUAL_ACTION_REQUIRED and not self.instructions:
            raise ValueError("a manual_action_required sweep outcome needs instructions")
        return self


class SweepStatus(StrEnum):
    """Where a sweep is."""

    COUNTING = "counting"  # the dry-run task is out
    AWAITING_APPROVAL = "awaiting_approval"  # counted; waits for an officer
    SWEEPING = "sweeping"  # the deleting task is out
    COMPLETED = "completed"  # swept; certificate issued
    NOTHING_EXPIRED = "nothing_expired"  # the dry run found nothing to delete
    MANUAL_ACTION_REQUIRED = "manual_action_required"  # the connector cannot sweep
    FAILED = "failed"


class SweepStatusChanged(_Model):
    """A sweep's state changed; the dashboard's sweep pages are built from these."""

    sweep_id: SweepId
    system: SystemName
    sequence: Annotated[int, Field(ge=1)]
    status: SweepStatus
    previous_status: SweepStatus | None = None
    trigger: SweepTrigger
    dry_run_counts: list[SweepCount] = Field(
        default_factory=list, description="What the dry run counted, per collection."
    )
    counts: list[SweepCount] = Field(
        default_factory=list, description="What the sweep deleted, per collection."
    )
    rules: list[SweepRule] = Field(default_factory=list)
    retained: list[RetainedItem] = Field(default_factory=list)
    reason: Annotated[str | None, Field(max_length=2000)] = None
    instructions: Annotated[str | None, Field(max_length=4000)] = None
    requested_by: Annotated[str | None, Field(max_length=128)] = None
    requested_at: AwareDatetime
    approved_by: Annotated[str | None, Field(max_length=128)] = None
    approved_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    certificate: Annotated[str | None, Field(max_length=1024)] = Field(
        default=None, description="Path of the signed sweep certificate, once issued."
    )
    changed_at: AwareDatetime


__all__ = [
    "CountedFrom",
    "SweepApproved",
    "SweepCount",
    "SweepDispatched",
    "SweepId",
    "SweepOutcome",
    "SweepRequested",
    "SweepRule",
    "SweepStatus",
    "SweepStatusChanged",
    "SweepTrigger",
    "describe_rule",
]
