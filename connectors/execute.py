"""Carry out one task with one connector and turn the result into an outcome event."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

from connectors.base import Connector, ConnectorError, Result, SweepResult
from schemas.events import (
    OutcomeStatus,
    RecordsRef,
    RequestType,
    Subject,
    TaskDispatched,
    TaskOutcome,
)
from schemas.primitives.records import RecordStore
from schemas.primitives.sealing import SealingError
from schemas.register import RetentionRule
from schemas.sweeps import SweepDispatched, SweepOutcome, SweepRule

log = logging.getLogger(__name__)

_TITLES = {
    RequestType.ACCESS: "access (Art. 15)",
    RequestType.PORTABILITY: "portability (Art. 20)",
    RequestType.ERASURE: "erasure (Art. 17)",
    RequestType.RECTIFICATION: "rectification (Art. 16)",
    RequestType.RESTRICTION: "restriction (Art. 18)",
    RequestType.OBJECTION: "objection (Art. 21)",
    RequestType.CONSENT_WITHDRAWAL: "consent withdrawal (Art. 7(3))",
}


#: What an outcome repeats of its task, and what it reports of the connector's result.
_FROM_TASK = ("request_id", "task_id", "system", "action", "attempt")
_FROM_RESULT = ("status", "counts", "records", "retained", "evidence", "reason")

#: The connector method that carries out each right taking only the subject.
_METHODS = {
    RequestType.ACCESS: "access",
    RequestType.PORTABILITY: "portability",
    RequestType.ERASURE: "erase",
    RequestType.RESTRICTION: "restrict",
    RequestType.OBJECTION: "object",
    RequestType.CONSENT_WITHDRAWAL: "withdraw_consent",
}


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of the given values (case-insensitive) with [redacted]."""
    for value in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = re.sub(re.escape(value), "[redacted]", text, flags=re.IGNORECASE)
    return text


def subject_values(subject: Subject) -> list[str]:
    """Every identifier value, for redaction."""
    return [i.value for i in subject.identifiers]


def manual_instructions(system: str, action: RequestType, task_id: str) -> str:
    """What a person must do when a system cannot carry out a right automatically."""
    return (
        f"System {system!r} cannot carry out {_TITLES[action]} automatically. Carry it out by "
        f"hand for the subject of this request, then record it with: "
        f"dsr tasks complete {task_id} --evidence '<what you did>'"
    )


def _matchable(connector: Connector, subject: Subject) -> Subject | None:
    """The subject with only the identifiers the connector can match (`identifier_formats`);
    None when none is left (a subject known only by hashes the connector cannot compare)."""
    kept = [i for i in subject.identifiers if i.format in connector.identifier_formats]
    if len(kept) == len(subject.identifiers):
        return subject
    return subject.model_copy(update={"identifiers": kept}) if kept else None


def _hashed_instructions(task: TaskDispatched) -> str:
    """What a person does when the subject is known only by hashes this system's connector
    cannot compare (an OpenDSR controller may send only hashed identities)."""
    assert task.subject is not None
    kinds = sorted({f"{i.type} ({i.format})" for i in task.subject.identifiers})
    return (
        f"System {task.system!r}'s connector matches raw identifiers only, and this request "
        f"names the subject only by hashed ones: {', '.join(kinds)}. By hand: hash the values "
        f"{task.system!r} holds the same way (normalised, lower-case hex digest), find the "
        f"matching subject and carry out {_TITLES[task.action]}; or ask the controller for the "
        "raw identifier."
    )


async def _call(
    connector: Connector, task: TaskDispatched, store: RecordStore | None
) -> tuple[Result, RecordsRef | None]:
    subject = task.subject
    assert subject is not None  # `perform` refuses a sealed task
    if store is not None and task.action in (RequestType.ACCESS, RequestType.PORTABILITY):
        portability = task.action == RequestType.PORTABILITY
        # A small result is held in memory and travels sealed in its reference; a large one
        # spills into a file. Creating a file and its final sync run in threads: on a busy
        # disk each can take a millisecond or more, and the worker's other tasks go on.
        writer = store.writer(task.request_id, task.system, task.attempt)
        with writer:
            result = await connector.export_into(subject, writer, portability=portability)
            if result.status != OutcomeStatus.COMPLETED:
                writer.abort()
                return result, None
            ref = writer.commit() if writer.inline else await asyncio.to_thread(writer.commit)
        if ref is None:
            return Result.not_found(reason=result.reason), None
        if result.counts.found != ref.count:
            result.counts = result.counts.model_copy(update={"found": ref.count})
        return result, ref
    return await _call_inline(connector, task), None


async def _call_inline(connector: Connector, task: TaskDispatched) -> Result:
    subject = task.subject
    assert subject is not None  # `perform` refuses a sealed task
    if task.action == RequestType.RECTIFICATION:
        changes = [c for c in task.changes or [] if c.system in (None, task.system)]
        return await connector.rectify(subject, changes)
    method: Callable[[Subject], Awaitable[Result]] = getattr(connector, _METHODS[task.action])
    return await method(subject)


async def perform(
    connector: Connector,
    task: TaskDispatched,
    rights: frozenset[RequestType] | None = None,
    *,
    store: RecordStore | None = None,
) -> TaskOutcome:
    """Run the task and report its outcome; never raises for a connector failure.

    With a record store, access and portability records go into the store and the outcome
    carries a reference; without one (dry runs, tests) they travel inline.
    """
    subject = task.subject
    if subject is None:
        reason = "the task's subject is sealed: open it with the request's data key first"
        return outcome_of(task, Result(OutcomeStatus.FAILED, reason=reason))
    allowed = connector.capabilities if rights is None else rights & connector.capabilities
    if task.action not in allowed:
        result = Result.manual(manual_instructions(task.system, task.action, task.task_id))
        return outcome_of(task, result)
    matchable = _matchable(connector, subject)
    if matchable is None:
        return outcome_of(task, Result.manual(_hashed_instructions(task)))
    if matchable is not subject:
        task = task.model_copy(update={"subject": matchable})
    ref: RecordsRef | None = None
    try:
        result, ref = await _call(connector, task, store)
    except ConnectorError as exc:
        reason = redact(str(exc), subject_values(subject))
        log.warning("task %s on %s failed: %s", task.task_id, task.system, reason)
        return outcome_of(
            task, Result(OutcomeStatus.FAILED, reason=reason), retryable=exc.retryable
        )
    except NotImplementedError:
        result = Result.manual(manual_instructions(task.system, task.action, task.task_id))
    except SealingError as exc:  # the record store has no data key for the request
        log.warning("task %s on %s: %s", task.task_id, task.system, exc)
        return outcome_of(task, Result(OutcomeStatus.FAILED, reason=str(exc)))
    except Exception as exc:
        # The message of an unknown error may quote the subject; redact before it goes anywhere.
        detail = redact(str(exc), subject_values(subject))[:300]
        log.error(
            "task %s on %s raised %s: %s", task.task_id, task.system, type(exc).__name__, detail
        )
        reason = f"unexpected {type(exc).__name__} in connector for {task.system!r}"
        return outcome_of(task, Result(OutcomeStatus.FAILED, reason=reason), retryable=True)
    return outcome_of(task, result, records_ref=ref)


def outcome_of(
    task: TaskDispatched,
    result: Result,
    *,
    retryable: bool = False,
    records_ref: RecordsRef | None = None,
) -> TaskOutcome:
    """The outcome event for a task's result."""
    instructions = result.instructions
    if instructions and "dsr tasks complete" not in instructions:
        # The connector cannot know the task id; the person needs it to record their work.
        instructions += (
            f" Then record it: dsr tasks complete {task.task_id} --evidence '<what you did>'"
        )
    return TaskOutcome(
        **{name: getattr(task, name) for name in _FROM_TASK},
        **{name: getattr(result, name) for name in _FROM_RESULT},
        records_ref=records_ref,
        instructions=instructions,
        retryable=retryable,
        completed_at=datetime.now(UTC),
    )


# -- retention sweeps -----------------------------------------------------------------------

#: The longest `reason` and `instructions` a sweep outcome may carry (see `SweepOutcome`).
_SWEEP_REASON_MAX = 2000
_SWEEP_INSTRUCTIONS_MAX = 4000
#: What a sweep outcome repeats of its task, and what it reports of the connector's result.
_SWEEP_FROM_TASK = ("sweep_id", "task_id", "system", "dry_run", "attempt")
_SWEEP_FROM_RESULT = ("status", "counts", "retained", "evidence")


def manual_sweep_instructions(
    system: str, rules: Sequence[SweepRule], duties: Sequence[RetentionRule], task_id: str
) -> str:
    """What a person deletes by hand when a system's connector cannot sweep: per rule the
    collection, the date field, the cutoff and the action; the duties that keep records.

    Dates and rules only, never an identifier: sweeps do not concern one subject.
    """
    lines = [f"System {system!r} cannot sweep automatically. By hand, in {system!r}:"]
    for rule in rules:
        what = (
            "delete every record"
            if rule.action == "delete"
            else f"clear {', '.join(rule.fields)} of every record"
        )
        lines.append(
            f"- {rule.collection}: {what} whose {rule.date_field} is before "
            f"{rule.cutoff.isoformat()} (retention: {rule.period} from {rule.counted_from})."
        )
    if duties:
        kept = "; ".join(f"{d.collection} ({d.describe()}: {d.legal_basis})" for d in duties)
        lines.append(f"Keep what a retention duty covers: {kept}.")
    lines.append(
        f"Then record the number of records removed per collection for sweep task {task_id}."
    )
    text = "\n".join(lines)
    if len(text) <= _SWEEP_INSTRUCTIONS_MAX:
        return text
    # Too many rules for one outcome: the register's sweep policy holds them all.
    cut = text[: _SWEEP_INSTRUCTIONS_MAX - 120].rsplit("\n", 1)[0]
    return f"{cut}\n... and more: see the sweep policy of {system!r} in the register."


async def perform_sweep(connector: Connector, task: SweepDispatched) -> SweepOutcome:
    """Run a retention sweep with the connector and report its outcome; never raises.

    A connector that cannot sweep (`sweeps = False`) gives a manual task whose instructions
    say what a person deletes. The register's retention duties (Art. 17(3)(b) GDPR) are
    always applied: the connector got them at build time (`use_retention`).
    """
    duties = connector.retention_rules
    manual = SweepResult.manual(
        manual_sweep_instructions(task.system, task.rules, duties, task.task_id)
    )
    if not connector.sweeps:
        return sweep_outcome_of(task, manual)
    try:
        result = await connector.sweep(task.rules, dry_run=task.dry_run)
    except ConnectorError as exc:
        # Sweeps name no subject; a connector's own message is already free of personal data.
        log.warning("sweep task %s on %s failed: %s", task.task_id, task.system, exc)
        failed = SweepResult(OutcomeStatus.FAILED, reason=str(exc))
        return sweep_outcome_of(task, failed, retryable=exc.retryable)
    except NotImplementedError:
        return sweep_outcome_of(task, manual)
    except Exception as exc:
        # The message of an unknown error may quote a row (a database's DETAIL): its type only.
        log.error("sweep task %s on %s raised %s", task.task_id, task.system, type(exc).__name__)
        reason = f"unexpected {type(exc).__name__} in connector for {task.system!r}"
        failed = SweepResult(OutcomeStatus.FAILED, reason=reason)
        return sweep_outcome_of(task, failed, retryable=True)
    return sweep_outcome_of(task, result)


def sweep_outcome_of(
    task: SweepDispatched, result: SweepResult, *, retryable: bool = False
) -> SweepOutcome:
    """The outcome event for a sweep task's result."""
    reason = result.reason[:_SWEEP_REASON_MAX] if result.reason else result.reason
    instructions = result.instructions
    if instructions is not None:
        instructions = instructions[:_SWEEP_INSTRUCTIONS_MAX]
    return SweepOutcome(
        **{name: getattr(task, name) for name in _SWEEP_FROM_TASK},
        **{name: getattr(result, name) for name in _SWEEP_FROM_RESULT},
        reason=reason,
        instructions=instructions,
        retryable=retryable,
        completed_at=datetime.now(UTC),
    )


__all__ = [
    "manual_instructions",
    "manual_sweep_instructions",
    "outcome_of",
    "perform",
    "perform_sweep",
    "redact",
    "sweep_outcome_of",
]
