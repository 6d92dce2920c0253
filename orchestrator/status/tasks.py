"""Manual tasks: systems where a person must act, and recording that the person did.

`dsr tasks` and the dashboard both go through these functions, so a task completed from
either is recorded the same way: a `TaskOutcome` on the outcomes topic, with the evidence, and
for an access or portability request what the person found (files and records they attached,
stored in the record store: `orchestrator.artifacts.attachments`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from orchestrator.lifecycle.reducer import task_id
from orchestrator.status.masking import identifier_kinds
from orchestrator.status.view import StatusView
from schemas.errors import DsrError
from schemas.events import (
    Attachment,
    Counts,
    Evidence,
    OutcomeStatus,
    RecordsRef,
    RequestStatusChanged,
    RequestType,
    SystemProgress,
    TaskOutcome,
)
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import RequestSigner

#: What a person may report for a manual task.
ManualOutcome = Literal["completed", "not_found"]
MANUAL_OUTCOMES: tuple[ManualOutcome, ...] = ("completed", "not_found")
EVIDENCE_MAX_LENGTH = 2000
#: Rights whose answer is an export, so records a person found can be attached to their tasks.
ATTACHABLE = frozenset({RequestType.ACCESS, RequestType.PORTABILITY})


class TaskError(DsrError, ValueError):
    """A manual task cannot be completed; the message names the task and what to do."""


class UnknownTask(TaskError):
    """No such request or system."""


class TaskNotWaiting(TaskError):
    """The task exists but is not waiting for a person."""


@dataclass(frozen=True, slots=True)
class ManualTask:
    """One system of one open request that waits for a person."""

    status: RequestStatusChanged
    system: str
    progress: SystemProgress

    @property
    def task_id(self) -> str:
        """REQUEST_ID/SYSTEM, as `dsr tasks complete` takes it."""
        return task_id(self.status.request_id, self.system)


def open_tasks(view: StatusView) -> list[ManualTask]:
    """Every open manual task, most urgent (earliest deadline) first."""
    found = [
        ManualTask(status, system, progress)
        for status in view.requests.values()
        if not status.status.is_final
        for system, progress in status.systems.items()
        if progress.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    ]
    return sorted(found, key=lambda task: (task.status.deadline, task.task_id))


def parse_task_id(task: str) -> tuple[str, str]:
    """(request id, system) of a task id REQUEST_ID/SYSTEM."""
    request_id, sep, system = task.rpartition("/")
    if not sep or not request_id or not system:
        raise TaskError(f"{task!r} is not a task id; a task id looks like REQUEST_ID/SYSTEM")
    return request_id, system


def waiting_task(status: RequestStatusChanged | None, system: str, task: str) -> ManualTask:
    """The manual task of `system` in a request's latest status, if it waits for a person."""
    progress = status.systems.get(system) if status else None
    if status is None or progress is None:
        raise UnknownTask(f"no task {task!r}: unknown request or system")
    if progress.status != OutcomeStatus.MANUAL_ACTION_REQUIRED or status.status.is_final:
        raise TaskNotWaiting(
            f"task {task!r} is not waiting for a person (its status is {progress.status})"
        )
    return ManualTask(status, system, progress)


def check_attachable(
    task: ManualTask, outcome: ManualOutcome = "completed", *, files: bool = False
) -> None:
    """Refuse to attach what a person found where the answer is no export, or where the task
    reports nothing found.

    What a person finds by hand is part of the subject's copy (Art. 15(3) GDPR; the EDPB
    Guidelines 01/2022 on the right of access ask for all data in all systems, not a summary).
    Files go to access requests only: a portability export holds the data the subject provided
    (Art. 20(1) GDPR), which records can be filtered for and a file cannot.
    """
    kind = task.status.request_type
    if kind not in ATTACHABLE or (files and kind != RequestType.ACCESS):
        what = "files" if files else "records"
        raise TaskError(
            f"task {task.task_id!r} belongs to a {kind.value} request; {what} can only be "
            f"attached to {'an access' if files else 'an access or portability'} request"
        )
    if outcome == "not_found":
        raise TaskError(
            f"task {task.task_id!r}: attachments say something was found; complete it with "
            "--outcome completed, or attach nothing"
        )


def manual_outcome(
    task: ManualTask,
    evidence: str,
    *,
    completed_by: str | None = None,
    outcome: ManualOutcome = "completed",
    attachments: Sequence[Attachment] = (),
    records_ref: RecordsRef | None = None,
    now: datetime | None = None,
) -> TaskOutcome:
    """The outcome recording that a person carried out `task`, with their evidence and what
    they found: attached files and records, already in the record store. Each attached file
    counts as one item found.

    Evidence lands on the status topic, which carries no personal data: text containing an
    email address or phone number is refused.
    """
    evidence = evidence.strip()
    if not evidence:
        raise TaskError("give evidence: what was done, e.g. 'archive box 12 shredded'")
    if len(evidence) > EVIDENCE_MAX_LENGTH:
        raise TaskError(f"the evidence is longer than {EVIDENCE_MAX_LENGTH} characters")
    for text, what in ((evidence, "the evidence"), (completed_by or "", "'by'")):
        kinds = identifier_kinds(text)
        if kinds:
            raise TaskError(
                f"{what} seems to contain personal data ({', '.join(kinds)}); describe what was "
                "done without identifying the subject (status events carry no personal data)"
            )
    if outcome not in MANUAL_OUTCOMES:
        raise TaskError(f"outcome {outcome!r} is not one of {', '.join(MANUAL_OUTCOMES)}")
    if attachments or records_ref is not None:
        check_attachable(task, outcome, files=bool(attachments))
    found = len(attachments) + (records_ref.count if records_ref is not None else 0)
    proof = [Evidence(kind="manual_confirmation", value=evidence)]
    if completed_by:
        proof.append(Evidence(kind="completed_by", value=completed_by.strip()))
    return TaskOutcome(
        request_id=task.status.request_id,
        task_id=task.task_id,
        system=task.system,
        action=task.status.request_type,
        attempt=max(task.progress.attempt, 1),
        status=OutcomeStatus(outcome),
        counts=Counts(found=found),
        records_ref=records_ref,
        attachments=list(attachments),
        evidence=proof,
        completed_at=now or datetime.now(UTC),
    )


def complete_task(
    kafka: KafkaSettings,
    task: ManualTask,
    evidence: str,
    *,
    completed_by: str | None = None,
    outcome: ManualOutcome = "completed",
    source: str,
    attachments: Sequence[Attachment] = (),
    records_ref: RecordsRef | None = None,
    signer: RequestSigner | None = None,
) -> TaskOutcome:
    """Publish that a person carried out `task`, signed with the person's publisher key
    (`signer`, else DSR_PUBLISHER_*); it then counts as done. Blocks until acked."""
    from orchestrator.intake.client import RequestPublisher

    result = manual_outcome(
        task,
        evidence,
        completed_by=completed_by,
        outcome=outcome,
        attachments=attachments,
        records_ref=records_ref,
    )
    with RequestPublisher(kafka, source=source, signer=signer) as publisher:
        publisher.report_outcome(result)
    return result


__all__ = [
    "ATTACHABLE",
    "EVIDENCE_MAX_LENGTH",
    "MANUAL_OUTCOMES",
    "ManualOutcome",
    "ManualTask",
    "TaskError",
    "TaskNotWaiting",
    "UnknownTask",
    "check_attachable",
    "complete_task",
    "manual_outcome",
    "open_tasks",
    "parse_task_id",
    "waiting_task",
]
