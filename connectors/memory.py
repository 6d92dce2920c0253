"""An in-memory connector: records seeded from settings, for the benchmark, tests and trials.

Settings:
    records: list of {collection, data}; a record belongs to the subject when any of
             `data`'s values equals one of the subject's identifier values, or, for a hashed
             identifier (`format` sha256, md5, sha1), hashes to it once normalised as an
             identifier of its type (an e-mail address trimmed and lower-cased).
    generate: {per_subject: N}: instead of `records`, answer every access with N synthetic
              records (benchmarks); erasure then reports N deleted once per subject.
    fail: null | "retryable" | "fatal": every task fails this way (failure tests).
    delay_seconds: every task takes this long (crash and soak tests: a worker killed "mid-task").
    fault_rate: this share of tasks fails as a vendor outage would (HTTP 503, retryable).

Retention sweeps compare each record's `data[date_field]` (an ISO date or timestamp) with the
rule's cutoff; a record without a readable date has not expired.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from connectors.base import Connector, ConnectorError, Result, SweepResult
from schemas.events import Counts, FieldChange, Identifier, Record, RequestType, Subject
from schemas.sweeps import SweepCount, SweepRule


class _Generate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_subject: int = Field(default=1, ge=0)


class MemorySettings(BaseModel):
    """Settings of the memory connector."""

    model_config = ConfigDict(extra="forbid")
    records: list[Record] = Field(default_factory=list)
    generate: _Generate | None = None
    fail: Literal["retryable", "fatal"] | None = None
    delay_seconds: float = Field(default=0.0, ge=0, le=60)
    fault_rate: float = Field(default=0.0, ge=0, le=1)


class MemoryConnector(Connector[MemorySettings]):
    """Holds records in memory; supports every right."""

    capabilities: ClassVar[frozenset[RequestType]] = frozenset(RequestType)
    sweeps = True
    identifier_formats: ClassVar[frozenset[str]] = frozenset({"raw", "sha256", "md5", "sha1"})
    description = "In-memory records from settings (tests, benchmarks)."

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self.records: list[Record] = list(self.settings.records)
        self.erased: set[str] = set()

    async def _check(self) -> None:
        if self.settings.delay_seconds:
            await asyncio.sleep(self.settings.delay_seconds)
        if self.settings.fault_rate and random.random() < self.settings.fault_rate:  # noqa: S311
            raise ConnectorError(
                f"{self.system}: the vendor API answered 503 Service Unavailable (injected fault)",
                retryable=True,
            )
        if self.settings.fail:
            raise ConnectorError(
                f"{self.system}: injected {self.settings.fail} failure",
                retryable=self.settings.fail == "retryable",
            )

    def _matches(self, subject: Subject) -> list[int]:
        values = {i.value for i in subject.identifiers if i.format == "raw"}
        hashed = [i for i in subject.identifiers if i.format != "raw"]
        return [
            n
            for n, r in enumerate(self.records)
            if any(
                isinstance(v, str) and (v.lower() in values or _hash_matches(v, hashed))
                for v in r.data.values()
            )
        ]

    @staticmethod
    def _key(subject: Subject) -> str:
        return "|".join(sorted(i.value for i in subject.identifiers))

    async def access(self, subject: Subject) -> Result:
        """Records about the subject."""
        await self._check()
        if self.settings.generate is not None:
            if self._key(subject) in self.erased:
                return Result.not_found()
            return Result.found(
                [
                    Record(collection="items", data={"n": n, "system": self.system})
                    for n in range(self.settings.generate.per_subject)
                ]
            )
        return Result.found([self.records[n] for n in self._matches(subject)])

    async def erase(self, subject: Subject) -> Result:
        """Drop the subject's records."""
        await self._check()
        if self.settings.generate is not None:
            key = self._key(subject)
            if key in self.erased:
                return Result.not_found()
            self.erased.add(key)
            return Result.completed(Counts(deleted=self.settings.generate.per_subject))
        found = set(self._matches(subject))
        if not found:
            return Result.not_found()
        self.records = [r for n, r in enumerate(self.records) if n not in found]
        return Result.completed(Counts(found=len(found), deleted=len(found)))

    async def rectify(self, subject: Subject, changes: Sequence[FieldChange]) -> Result:
        """Set the changed fields on the subject's records that have them."""
        await self._check()
        updated = 0
        for n in self._matches(subject):
            data = dict(self.records[n].data)
            hit = False
            for change in changes:
                if change.field in data:
                    data[change.field] = change.value
                    hit = True
            if hit:
                self.records[n] = Record(collection=self.records[n].collection, data=data)
                updated += 1
        return Result.completed(Counts(updated=updated)) if updated else Result.not_found()

    async def _suppress(self, subject: Subject) -> Result:
        await self._check()
        found = len(self._matches(subject))
        return Result.completed(Counts(suppressed=found)) if found else Result.not_found()

    async def restrict(self, subject: Subject) -> Result:
        """Count the records that would be marked restricted."""
        return await self._suppress(subject)

    async def object(self, subject: Subject) -> Result:
        """Count the records whose processing stops."""
        return await self._suppress(subject)

    async def withdraw_consent(self, subject: Subject) -> Result:
        """Count the records whose consent-based processing stops."""
        return await self._suppress(subject)

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """Drop (or clear the rule's fields of) the records dated before each rule's cutoff."""
        await self._check()
        counts = []
        for rule in rules:
            expired = [
                n
                for n, r in enumerate(self.records)
                if r.collection == rule.collection
                and _before(r.data.get(rule.date_field), rule.cutoff)
                and (rule.action == "delete" or any(r.data.get(f) is not None for f in rule.fields))
            ]
            count = SweepCount(collection=rule.collection, expired=len(expired))
            if not dry_run and rule.action == "delete":
                gone = set(expired)
                self.records = [r for n, r in enumerate(self.records) if n not in gone]
                count = count.model_copy(update={"deleted": len(expired)})
            elif not dry_run:
                for n in expired:
                    record = self.records[n]
                    data = record.data | dict.fromkeys(rule.fields)
                    self.records[n] = Record(collection=record.collection, data=data)
                count = count.model_copy(update={"anonymised": len(expired)})
            counts.append(count)
        return SweepResult.done(counts)


def _hash_matches(stored: str, hashed: Sequence[Identifier]) -> bool:
    """Whether a stored value, normalised as an identifier of each hashed one's type, hashes to
    that identifier's value (an OpenDSR controller may send only digests)."""
    for identifier in hashed:
        try:
            normalised = Identifier.normalise(identifier.type, stored)
        except ValueError:
            continue  # not a value of that type (e.g. not an e-mail address)
        if Identifier.digest(identifier.format, normalised) == identifier.value:
            return True
    return False


def _before(value: JsonValue, cutoff: date) -> bool:
    """Whether a stored ISO date (or timestamp) lies before the cutoff day."""
    if not isinstance(value, str):
        return False
    try:
        return date.fromisoformat(value[:10]) < cutoff
    except ValueError:
        return False


__all__ = ["MemoryConnector", "MemorySettings"]
