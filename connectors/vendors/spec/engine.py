"""Carrying out a spec: find the subject, read what hangs off it, erase, act, sweep.

`SpecRunner` does for one loaded spec what a vendor's Python class would: it owns no HTTP
(that is `connectors.http.HttpClient`: auth, limits, retries, paging, job polling) and no
vendor rule (those are the spec and its hooks).

Template values. The searches see the subject's identifiers (`{email}`: the first of each
type, or each in turn where a search uses it), `{settings.x}`, `{credentials.x}`, the
fan-out parent (`{list.id}`) and computed values. Everything about one found record sees
also `{id}` and `{record.x}`; a related listing below another related record sees that
record as `{item.x}` and under its collection's name (`{tickets.id}`); a step `over` a
collection sees each of its records as `{item.x}`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from connectors.base import ConnectorError, Result, SweepResult
from connectors.http import HttpClient, json_body, lookup, render, render_path, render_value
from connectors.vendors.base import Erasure, exact_matches
from connectors.vendors.spec.expressions import evaluate
from connectors.vendors.spec.hooks import FoundRecord, HookContext, Hooks
from connectors.vendors.spec.model import (
    ActionSpec,
    Condition,
    ConnectorSpec,
    Listing,
    RelatedSpec,
    Step,
    SweepSpec,
)
from connectors.vendors.sweep import Sweepable, delete_each, expired_before, sweep_collections
from schemas.events import (
    Counts,
    Evidence,
    FieldChange,
    OutcomeStatus,
    Record,
    RequestType,
    Subject,
)
from schemas.sweeps import SweepCount, SweepRule

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Related:
    """One related record with the values its own templates and steps see."""

    collection: str
    record: dict[str, Any]
    values: dict[str, Any]
    parent: _Related | None = None

    def below(self, ancestor: dict[str, Any]) -> bool:
        """Whether `ancestor` (a record) is above this one in the related tree."""
        node = self.parent
        while node is not None:
            if node.record is ancestor:
                return True
            node = node.parent
        return False


@dataclass(slots=True)
class _Changes:
    """What the steps of one task changed: record keys per (count, collection); job ids."""

    keys: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    evidence: list[Evidence] = field(default_factory=list)

    def add(self, count_as: str, collection: str, key: str) -> None:
        """Count a record once per collection, however many steps changed it."""
        if count_as != "none":
            self.keys[(count_as, collection)].add(key)

    def total(self, count_as: str) -> int:
        """Records changed, counted as `count_as`, all collections together."""
        return sum(len(k) for (kind, _), k in self.keys.items() if kind == count_as)

    def per_collection(self, count_as: str) -> dict[str, int]:
        """Records changed per collection."""
        return {c: len(k) for (kind, c), k in self.keys.items() if kind == count_as}


def holds(condition: Condition, values: Mapping[str, Any], hooks: Hooks) -> bool:
    """Whether every test of `condition` holds for `values` (see `model.Condition`).

    Values compare as text where their types differ: vendors write ids as numbers in one
    place and as strings in another."""
    for path, test in condition.items():
        if path == "hook":
            if not hooks.condition(str(test))(dict(values)):
                return False
            continue
        actual = lookup(values, path)
        if isinstance(test, dict) and len(test) == 1 and next(iter(test)) in _OPERATORS:
            operator, argument = next(iter(test.items()))
            if not _OPERATORS[operator](actual, render_value(argument, values)):
                return False
        elif not _same(actual, render_value(test, values)):
            return False
    return True


def _same(actual: Any, expected: Any) -> bool:
    if actual == expected:
        return True
    return actual is not None and expected is not None and str(actual) == str(expected)


_OPERATORS = {
    "in": lambda actual, options: any(_same(actual, o) for o in options or []),
    "not": lambda actual, value: not _same(actual, value),
    "present": lambda actual, wanted: (actual not in (None, "", [], {})) == bool(wanted),
}


class SpecRunner:
    """One spec carried out for one system with one HTTP client."""

    def __init__(
        self,
        system: str,
        spec: ConnectorSpec,
        client: HttpClient | None,
        hooks: Hooks,
        settings: Mapping[str, Any],
        credentials: Mapping[str, Any] | None = None,
        source: str = "",
    ) -> None:
        self.system = system
        self.spec = spec
        self._client = client
        self.hooks = hooks
        self.settings = dict(settings)
        self.credentials = dict(credentials or {})
        self.source = source or spec.name
        self._expressions = spec.expressions()

    @property
    def client(self) -> HttpClient:
        """The HTTP client; a spec without base_url has none (manual only)."""
        if self._client is None:
            raise ConnectorError(f"{self.system}: the spec has no base_url to call")
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()

    # ------------------------------------------------------------------------ values

    def _computed(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` with every computed value whose inputs are there."""
        for name, expression in self._expressions.items():
            result = evaluate(expression, values)
            if result is not None:
                values[name] = result
        return values

    def _base(self, subject: Subject | None) -> dict[str, Any]:
        values: dict[str, Any] = {"settings": self.settings, "credentials": self.credentials}
        for identifier in subject.identifiers if subject is not None else []:
            values.setdefault(identifier.type, identifier.value)
        return self._computed(values)

    def _context(self, subject: Subject | None, values: dict[str, Any]) -> HookContext:
        return HookContext(self.system, self._client, subject, values, self.settings)

    # ---------------------------------------------------------------------- finding

    async def find(self, subject: Subject) -> list[FoundRecord] | Result:
        """The subject's main records (once each), or a manual task when the subject has no
        identifier any search uses."""
        spec = self.spec
        assert spec.find is not None  # the model requires it for rights and actions
        base = self._base(subject)
        await self.hooks.call("prepare_context", self._context(subject, base))
        parents: list[dict[str, Any] | None] = [None]
        if spec.find.each is not None:
            parents = [_as_dict(p) async for p in spec.find.each.records(self.client, base)]
        # One search per parent, side by side (every Mailchimp audience at once): the HTTP
        # layer's limiter keeps the vendor's rate and connection cap; results keep their order.
        under = await asyncio.gather(*(self._find_under(p, base, subject) for p in parents))
        if not any(searched for searched, _ in under):
            return self._cannot_search()
        found: dict[tuple[str, str], FoundRecord] = {}
        for _, records in under:
            for key, record in records.items():
                found.setdefault(key, record)
        return list(found.values())

    async def _find_under(
        self, parent: dict[str, Any] | None, base: dict[str, Any], subject: Subject
    ) -> tuple[bool, dict[tuple[str, str], FoundRecord]]:
        """Whether any search could run under one fan-out parent (or none), and what it found."""
        spec = self.spec
        assert spec.find is not None
        scope = dict(base)
        if parent is not None and spec.find.each is not None:
            scope[spec.find.each.name] = parent
        found: dict[tuple[str, str], FoundRecord] = {}
        searched = False
        for search in spec.find.searches():
            types = sorted(spec.types_in(search.templates()))
            choices = [subject.values(t) for t in types]
            if not all(choices):
                continue  # the subject has no such identifier: another search may
            searched = True
            for combination in itertools.product(*choices):
                values = self._computed({**scope, **dict(zip(types, combination, strict=True))})
                await self._search(search, values, subject, scope, parent, found)
        return searched, found

    async def _search(
        self,
        search: Listing,
        values: dict[str, Any],
        subject: Subject,
        scope: dict[str, Any],
        parent: dict[str, Any] | None,
        found: dict[tuple[str, str], FoundRecord],
    ) -> None:
        spec = self.spec
        assert spec.find is not None
        fields = spec.find.match_fields(spec.types_in(spec.find.all_templates()))
        listed = [_as_dict(data) async for data in search.records(self.client, values)]
        for record in await self._subjects(listed, fields, subject):
            record_id = lookup(record, spec.find.id_field)
            if record_id in (None, ""):
                raise ConnectorError(
                    f"{self.system}: {search.method} {search.path}: a record has no "
                    f"{spec.find.id_field!r}; check find.id_field in {self.source}"
                )
            parent_key = f"{lookup(parent, 'id')}/" if parent is not None else ""
            own = self._computed({**scope, "id": record_id, "record": record})
            key = f"{parent_key}{record_id}"
            found.setdefault((parent_key, str(record_id)), FoundRecord(record, own, key))

    async def _subjects(
        self, records: list[dict[str, Any]], fields: dict[str, str] | None, subject: Subject
    ) -> list[dict[str, Any]]:
        """The search results that are the subject's: the `match` hook's word where it gives
        one, else an exact match on `fields`. A result without any of those fields means the
        spec names the wrong ones: an error, not a miss."""
        undecided: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        context = self._context(subject, {})
        for record in records:
            decided = await self.hooks.call("match", record, subject, context=context)
            if decided is None:
                undecided.append(record)
            elif decided:
                kept.append(record)
        if fields is None:
            return kept + undecided
        for record in undecided:
            if all(lookup(record, path) in (None, "", []) for path in fields):
                raise ConnectorError(
                    f"{self.system}: a search result has none of the fields "
                    f"{', '.join(fields)} to match the subject's identifiers on; set "
                    f"find.match in {self.source} to the fields that hold them, e.g. "
                    "{email_address: email}"
                )
        return kept + exact_matches(self.system, undecided, fields, subject)

    def _cannot_search(self) -> Result:
        types = " or ".join(self.spec.identifier_types())
        return Result.manual(
            f"System {self.system!r} can only be searched by {types}, and the request has no "
            f"such identifier. Search it by hand with the identifiers the request has.",
            reason=f"no {types} identifier to search {self.system!r} with",
        )

    # ---------------------------------------------------------------------- related

    async def related(self, found: FoundRecord, only: set[str] | None = None) -> list[_Related]:
        """The related records of one found record, depth first, in the spec's order: every
        collection, or `only` those (and the listings above them)."""
        out: list[_Related] = []
        for listing in self.spec.related:
            out += await self._listing(listing, found.values, only, None)
        return out

    async def _listing(
        self,
        listing: RelatedSpec,
        values: dict[str, Any],
        only: set[str] | None,
        parent: _Related | None,
    ) -> list[_Related]:
        if only is not None and not any(r.collection in only for r in listing.walk()):
            return []
        out: list[_Related] = []
        seen: set[str] = set()
        async for data in listing.records(self.client, values):
            record = _as_dict(data)
            own = {**values, "item": record, listing.collection: record}
            if listing.where and not holds(listing.where, own, self.hooks):
                continue
            if listing.id_field is not None:
                key = str(lookup(record, listing.id_field))
                if key in seen:
                    continue
                seen.add(key)
            extra = await self.hooks.call("child_context", listing.collection, record, own)
            own.update(extra or {})
            node = _Related(listing.collection, record, own, parent)
            out.append(node)
            for child in listing.related:
                out += await self._listing(child, own, only, node)
        return out

    # ------------------------------------------------------------------------ access

    async def access(self, subject: Subject, right: RequestType = RequestType.ACCESS) -> Result:
        """Every record of the subject: the found records and everything related; the
        spec's manual task where it does not declare the right (`access` or `portability`)."""
        if right not in self.spec.rights:
            return self.manual(right)
        found = await self.find(subject)
        if isinstance(found, Result):
            return found
        assert self.spec.find is not None
        context = self._context(subject, self._base(subject))
        context.found = found
        records: list[Record] = []
        main = self.spec.find.collection
        for item in found:
            context.related = await self.related(item)
            pending = [(main, item.record)]
            pending += [(r.collection, r.record) for r in context.related]
            for collection, data in pending:
                record = await self._exported(collection, data, context)
                if record is not None:
                    records.append(record)
        log.info("%s: access found %d records", self.system, len(records))
        return Result.found(records)

    async def _exported(
        self, collection: str, data: dict[str, Any], context: HookContext
    ) -> Record | None:
        if self.hooks.get("post_process") is None:
            return Record(collection=collection, data=data)
        shaped = await self.hooks.call("post_process", collection, data, context)
        if shaped is None or isinstance(shaped, Record):
            return shaped
        return Record(collection=collection, data=_as_dict(shaped))

    # ------------------------------------------------------------------------- steps

    async def _targets(
        self, step: Step, item: FoundRecord, related: list[_Related] | None
    ) -> list[tuple[str, str, dict[str, Any], list[_Related]]]:
        """(collection, key, values, what goes with it) the step runs for: the found record,
        or each record of the collection it runs `over`, where its conditions hold."""
        assert self.spec.find is not None
        related = related or []
        if step.over is None:
            gone = [r for r in related if r.collection in step.removes]
            targets = [(self.spec.find.collection, item.key, item.values, gone)]
        else:
            targets = [
                (
                    r.collection,
                    str(lookup(r.record, "id")),
                    r.values,
                    [c for c in related if c.collection in step.removes and c.below(r.record)],
                )
                for r in related
                if r.collection == step.over
            ]
        return [
            t
            for t in targets
            if (not step.when or holds(step.when, t[2], self.hooks))
            and not (step.unless and holds(step.unless, t[2], self.hooks))
        ]

    async def _call(self, step: Step, values: dict[str, Any], changes: _Changes) -> bool:
        """Make one step's call; False when the record was gone already. Polls its job."""
        client = self.client
        response = await client.request(
            step.method,
            step.path,
            path_params=values,
            params=step.params,
            json=step.body,
            expected=(*step.expect, *step.already_gone),
        )
        if response.status_code in step.already_gone:
            return False
        if step.evidence is not None:
            said = render(step.evidence.value, {**values, "status": response.status_code})
            changes.evidence.append(Evidence(kind=step.evidence.kind, value=said))
        if step.job is not None:
            body = json_body(response)
            job_id = lookup(body, step.job.id_path)
            if job_id in (None, ""):
                raise ConnectorError(
                    f"{self.system}: {step.method} {step.path}: no job id at "
                    f"{step.job.id_path!r} in the response; check the spec's job.id_path"
                )
            started = (
                lookup(body, step.job.started_status_path or "")
                if step.job.started_status_path
                else None
            )
            await client.wait_for_job(
                step.job,
                {**values, "job_id": job_id},
                what=f"{step.method} {step.path}",
                status=started,
            )
            changes.evidence.append(Evidence(kind="vendor_job_id", value=str(job_id)))
        return True

    async def _run_steps(
        self,
        steps: Sequence[Step],
        item: FoundRecord,
        count_as: str,
        changes: _Changes,
        related: list[_Related] | None = None,
    ) -> None:
        """Run `steps` for one found record, counting what they changed; `related`: its
        related records when listed already."""
        wanted = {name for s in steps for name in [s.over, *s.removes] if name}
        if related is None and wanted:
            related = await self.related(item, wanted)
        for step in steps:
            for collection, key, values, gone in await self._targets(step, item, related):
                render_path(step.path, values, where=f"{self.system}: {step.method}")
                if not await self._call(step, values, changes):
                    continue
                counted = step.count_as or count_as
                changes.add(counted, collection, key)
                for r in gone:
                    changes.add(counted, r.collection, str(lookup(r.record, "id")))

    # ------------------------------------------------------------------------- erase

    async def erase(self, subject: Subject) -> Result:
        """Run the erase steps (or the `erase_record` hook) for every found record; the spec's
        manual task where it does not declare erasure."""
        if RequestType.ERASURE not in self.spec.rights:
            return self.manual(RequestType.ERASURE)
        found = await self.find(subject)
        if isinstance(found, Result):
            return found
        if not found:
            return Result.not_found()
        for item in found:  # a '.' or '..' id is refused before anything is erased
            for step in self.spec.erase:
                if step.over is None:
                    render_path(step.path, item.values, where=f"{self.system}: {step.method}")
        changes = _Changes()
        context = self._context(subject, self._base(subject))
        context.found = found
        for item in found:
            related = None
            if self.hooks.get("erase_record") is not None:
                context.values = dict(item.values)
                context.related = related = await self.related(item)
                if await self.hooks.call("erase_record", item, context):
                    continue
            await self._run_steps(self.spec.erase, item, "deleted", changes, related)
            if self.hooks.get("after_erase") is not None:
                context.values = dict(item.values)
                await self.hooks.call("after_erase", item, context)
        return self._erased(found, changes, context.erasure, context.evidence)

    def _erased(
        self,
        found: list[FoundRecord],
        changes: _Changes,
        erasure: Erasure,
        stated: Sequence[Evidence] = (),
    ) -> Result:
        """The erasure's result: counts, job ids, what hooks `stated`, the spec's caveats; per
        collection when more than one was erased, as the certificate must state each (Art.
        5(2) GDPR)."""
        erasure.erased.update(changes.per_collection("deleted"))
        erasure.redacted.update(changes.per_collection("anonymised"))
        evidence = [
            *changes.evidence,
            *stated,
            *(Evidence(kind=c.kind, value=c.value) for c in self.spec.caveats),
        ]
        touched = {*erasure.erased, *erasure.redacted, *erasure.unlinked}
        if len(touched) > 1 or erasure.manual:
            result = erasure.result(evidence)
            # Each record erased was found: `found` counts them, as `erased()` does.
            done = result.counts.deleted + result.counts.anonymised
            result.counts = result.counts.model_copy(update={"found": done})
            return result
        done = erasure.deleted + sum(erasure.redacted.values())
        if not done:
            return Result.not_found()  # gone between our search and our delete
        log.info("%s: erased %d records of %d found", self.system, done, len(found))
        anonymised = sum(erasure.redacted.values())
        counts = Counts(found=len(found), deleted=erasure.deleted, anonymised=anonymised)
        return Result.completed(counts, evidence=evidence)

    # ----------------------------------------------------------------------- actions

    async def act(
        self, right: RequestType, subject: Subject, changes: Sequence[FieldChange] = ()
    ) -> Result:
        """Objection, consent withdrawal, restriction or rectification by the spec's steps."""
        action = self.spec.action(right)
        if action is None:
            return self.manual(right, changes)
        found = await self.find(subject)
        if isinstance(found, Result):
            return found
        if not found:
            return Result.not_found(f"no record of the subject in {self.system!r}")
        unknown = sorted({c.field for c in changes} - set(action.fields))
        mapped = {action.fields[c.field]: c.value for c in changes if c.field in action.fields}
        if right == RequestType.RECTIFICATION and not mapped:
            return self.manual(right, changes)
        done = _Changes()
        for item in found:
            item.values["changes"] = mapped
            await self._run_steps(action.steps, item, action.count_as, done)
        return self._acted(action, found, done, unknown)

    def _acted(
        self, action: ActionSpec, found: list[FoundRecord], done: _Changes, unknown: list[str]
    ) -> Result:
        changed = done.total(action.count_as)
        counts = {"found": len(found)}
        if action.count_as != "none":
            counts[action.count_as] = changed
        evidence = [Evidence(kind=action.evidence, value=str(changed))] if action.evidence else []
        result = Result.completed(Counts(**counts), evidence=evidence + done.evidence)
        if unknown:
            result.status = OutcomeStatus.MANUAL_ACTION_REQUIRED
            result.instructions = (
                f"In {self.spec.title or self.system}, correct by hand: {', '.join(unknown)} "
                "(the connector does not know these fields)."
            )
        return result

    # ------------------------------------------------------------------------ manual

    def manual(self, right: RequestType, changes: Sequence[FieldChange] = ()) -> Result:
        """The manual task the spec describes for `right` (never the subject's values)."""
        spec = self.spec.manual
        if spec is None or right not in spec.rights:
            raise NotImplementedError  # the runtime's generic manual task
        fields = ", ".join(sorted({c.field for c in changes})) or "the requested fields"
        values = {"settings": self.settings, "fields": fields}
        lines = [
            render(line.text, values)
            for line in [*spec.before, *spec.rights[right]]
            if (not line.when or holds(line.when, values, self.hooks))
            and not (line.unless and holds(line.unless, values, self.hooks))
        ]
        numbered = [f"{n}. {text}" for n, text in enumerate(lines, start=1)]
        return Result.manual(" ".join(numbered), reason=spec.reason)

    # ------------------------------------------------------------------------ sweeps

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """Sweep each collection a `sweeps` entry covers; a manual step for the others."""

        def sweeper(entry: SweepSpec) -> Any:
            async def run(rule: SweepRule, dry: bool) -> SweepCount:
                return await self._sweep(entry, rule, dry)

            return run

        sweepable = {s.collection: Sweepable(s.date_fields, sweeper(s)) for s in self.spec.sweeps}
        stated = [*self.spec.caveats, *(c for s in self.spec.sweeps for c in s.caveats)]
        caveats = [Evidence(kind=c.kind, value=c.value) for c in stated]
        return await sweep_collections(
            self.spec.title or self.spec.name, rules, sweepable, dry_run=dry_run, evidence=caveats
        )

    async def _sweep(self, entry: SweepSpec, rule: SweepRule, dry_run: bool) -> SweepCount:
        """Records dated before the cutoff (the vendor's filter, then each one's own date);
        all are listed before the first is deleted: deleting while paging would skip some.

        A search that lists only the first N (`total_path`, `again`): a dry run counts the
        vendor's total, and a sweep lists again after deleting until nothing new comes back
        (an index that lags may list a deleted record once more: it is not counted twice)."""
        expired, unlisted = await self._expired(entry, rule)
        counted = len(expired) + unlisted
        if dry_run:
            return SweepCount(collection=entry.collection, expired=counted)
        known = dict(expired)

        async def delete(key: str) -> bool:
            changes = _Changes()
            item = FoundRecord(known[key]["record"], known[key], key)
            await self._run_steps(entry.delete, item, "deleted", changes)
            return changes.total("deleted") > 0

        seen: set[str] = set()
        deleted = 0
        while fresh := [key for key in expired if key not in seen]:
            seen.update(fresh)
            done = await delete_each(entry.collection, fresh, delete, dry_run=False)
            deleted += done.deleted
            if not entry.again:
                break
            expired, _ = await self._expired(entry, rule)
            known.update(expired)
        return SweepCount(
            collection=entry.collection, expired=max(counted, len(seen)), deleted=deleted
        )

    async def _expired(
        self, entry: SweepSpec, rule: SweepRule
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """The listed records dated before the cutoff, by id, with the values their delete
        steps see; and how many more the vendor says match than it listed (`total_path`)."""
        values = self._base(None) | {
            "cutoff": rule.cutoff.isoformat(),
            # For a filter that includes the day it names ("on or before").
            "day_before_cutoff": (rule.cutoff - timedelta(days=1)).isoformat(),
        }
        expired: dict[str, dict[str, Any]] = {}
        listed = total = 0
        async for page in self.client.paginate(
            entry.method,
            entry.path,
            paging=entry.paging,
            records_path=entry.records_path,
            path_params=values,
            params={**entry.params, **entry.date_fields[rule.date_field]},
            json=entry.body,
            absent=entry.absent,
        ):
            said = lookup(page.body, entry.total_path) if entry.total_path else None
            total = max(total, said if isinstance(said, int) else 0)
            listed += len(page.records)
            for data in page.records:
                record = _as_dict(data)
                own = {**values, "record": record, "id": lookup(record, entry.id_field)}
                if entry.where and not holds(entry.where, own, self.hooks):
                    continue
                if expired_before(record.get(rule.date_field), rule.cutoff):
                    expired.setdefault(str(own["id"]), own)
        return expired, max(0, total - listed)


def _as_dict(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {"value": data}


__all__ = ["SpecRunner", "holds"]
