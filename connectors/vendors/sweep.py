"""What every vendor connector's retention sweep shares (storage limitation, Art. 5(1)(e) GDPR).

A vendor connector names the collections its API can sweep (`Sweepable`: the date fields the
vendor's own filter knows, and the coroutine that counts, and unless it is a dry run deletes,
one rule's expired records). `sweep_collections` runs them rule by rule. A collection the API
cannot sweep (not named, another date field, or `action: anonymise`) becomes a manual step with
the rule in words: a person deletes in the vendor's interface what the rule says has expired.

A sweep is about age, not about a person: a record shared by several people is swept when the
rule says it has expired. Nothing here carries an identifier: the result holds counts per
collection, the rule and cutoff, and the vendor's own evidence (job counts, caveats).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from connectors.base import SweepResult
from schemas.events import Evidence, OutcomeStatus
from schemas.sweeps import SweepCount, SweepRule

#: Count one rule's expired records and, unless `dry_run`, delete them.
CollectionSweep = Callable[[SweepRule, bool], Awaitable[SweepCount]]


@dataclass(frozen=True, slots=True)
class Sweepable:
    """A collection the vendor's API can sweep: by which date fields, and how."""

    date_fields: Collection[str]
    sweep: CollectionSweep


def midnight(day: date) -> datetime:
    """The start of `day` in UTC: a record dated before it has expired."""
    return datetime.combine(day, time(), UTC)


def expired_before(value: Any, cutoff: date) -> bool:
    """Whether a vendor's timestamp (ISO 8601 text or epoch seconds) lies before `cutoff`.

    A record without a readable date is not expired: a sweep never deletes on a guess.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value < midnight(cutoff).timestamp()
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment < midnight(cutoff)


async def delete_each(
    collection: str,
    ids: Iterable[Any],
    delete: Callable[[Any], Awaitable[bool]],
    *,
    dry_run: bool,
) -> SweepCount:
    """Count the expired `ids` and, unless `dry_run`, delete each (`delete` answers False when
    the record had gone meanwhile, which is not counted)."""
    found = list(dict.fromkeys(ids))  # once each, in the vendor's order
    if dry_run:
        return SweepCount(collection=collection, expired=len(found))
    # The HTTP layer's limiter keeps the vendor's rate; gather only keeps its slots busy.
    done = await asyncio.gather(*(delete(i) for i in found))
    return SweepCount(collection=collection, expired=len(found), deleted=sum(done))


def manual_step(vendor: str, rule: SweepRule) -> str:
    """What a person does for a collection the API cannot sweep: the rule, in words."""
    what = "delete" if rule.action == "delete" else f"clear {', '.join(rule.fields)} of"
    return (
        f"{vendor}, collection {rule.collection!r}: the connector cannot sweep it through the "
        f"API. In {vendor}, {what} every record whose {rule.date_field} is before "
        f"{rule.cutoff.isoformat()} (kept {rule.period}, counted from "
        f"{rule.counted_from.value.replace('_', ' ')}); then note how many records you changed."
    )


async def sweep_collections(
    vendor: str,
    rules: Sequence[SweepRule],
    sweepable: Mapping[str, Sweepable],
    *,
    dry_run: bool,
    evidence: Sequence[Evidence] = (),
) -> SweepResult:
    """Sweep every rule's collection the API can; a manual step for each other one.

    A dry run reports the manual steps too, so the officer approving sees them. A sweep that
    deletes with steps left is `manual_action_required`, its counts kept.
    """
    counts: list[SweepCount] = []
    manual: list[str] = []
    for rule in rules:
        known = sweepable.get(rule.collection)
        if known is None or rule.action != "delete" or rule.date_field not in known.date_fields:
            manual.append(manual_step(vendor, rule))
            continue
        counts.append(await known.sweep(rule, dry_run))
    instructions = "\n".join(manual) or None
    proof = list(evidence) if counts and not dry_run else []
    if manual and not dry_run:
        return SweepResult(
            OutcomeStatus.MANUAL_ACTION_REQUIRED,
            counts,
            evidence=proof,
            instructions=instructions,
        )
    return SweepResult.done(counts, evidence=proof, instructions=instructions)


__all__ = [
    "CollectionSweep",
    "Sweepable",
    "delete_each",
    "expired_before",
    "manual_step",
    "midnight",
    "sweep_collections",
]
