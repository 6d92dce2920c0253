"""The connector conformance suite, shipped as a pytest plugin.

Any connector author proves a connector correct with one test file: describe the target (the
connector plus the system it talks to, seeded with a subject) and inherit the suite.

    # tests/test_my_connector.py
    from connectors.conformance import ConnectorConformance, Seeded, Target

    class MyTarget(Target):
        name = "mycrm"
        def connector(self): return MyCRM("mycrm", {"url": ..., "token": ...})
        def seed(self): ...; return Seeded(subject, expected={"contacts": 1, "notes": 3})

    class TestMyCRM(ConnectorConformance):
        @pytest.fixture
        def target(self): return MyTarget()

Then `pytest tests/test_my_connector.py`. The suite checks what every connector must do:
access finds every seeded record with system and collection provenance; erasure removes them
and reports counts; access after erasure finds nothing; a second erasure is safe and says
not found; rate limits (429 with Retry-After) are waited out within the configured rate; 5xx
answers are retried, then reported as retryable; bad credentials give a fatal outcome with a
clear reason; nothing personal is logged. A check that does not apply to a target (no HTTP,
no credentials) is skipped with the reason.

A connector that declares `sweeps` proves its retention sweeps too, when the target seeds
records of known ages (`Target.seed_sweep`): a dry run counts exactly the expired records per
collection and changes nothing; a sweep removes exactly those (read back from the system); a
second sweep finds nothing; no identifier reaches the outcome or a log line. `SweepConformance`
holds only these checks, for a target already proven by the rest of the suite.

Installed as the pytest plugin `dsr_conformance` (entry point group `pytest11`), which adds
the `conformance` marker to every inherited test.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Connector
from connectors.execute import perform, perform_sweep
from schemas.events import OutcomeStatus, RequestType, Subject, TaskDispatched, TaskOutcome
from schemas.sweeps import SweepCount, SweepDispatched, SweepOutcome, SweepRule


@dataclass
class Seeded:
    """The subject seeded into the target, and how many records each collection holds."""

    subject: Subject
    expected: dict[str, int]
    #: How many records erasure must report (deleted + anonymised); None: at least one.
    erased: int | None = None
    #: Values that identify the subject besides its identifiers (e.g. a name), for the log check.
    personal_values: list[str] = field(default_factory=list)


@dataclass
class SeededSweep:
    """Records of known ages seeded for a sweep: the rules, what must go, and how to count
    what is left in the system itself (not through the connector under test)."""

    rules: list[SweepRule]
    #: Per collection, how many seeded records are past their rule's cutoff (none under a duty).
    expired: dict[str, int]
    #: How many records each collection of `expired` holds now, read from the system.
    remaining: Callable[[], dict[str, int]]
    #: Values in the seeded records (e-mail addresses, names) for the identifier check.
    personal_values: list[str] = field(default_factory=list)


class Faults(ABC):
    """Controls on a fake vendor for the HTTP checks."""

    @abstractmethod
    def rate_limit(self, every: int, retry_after: int) -> AbstractContextManager[None]:
        """While active, every `every`-th call answers 429 with `Retry-After: retry_after`."""

    @abstractmethod
    def server_errors(self) -> AbstractContextManager[None]:
        """While active, every call answers 5xx."""

    @abstractmethod
    def max_rate_seen(self, window_seconds: float) -> int:
        """The most requests the fake saw in any window of this length."""

    @property
    @abstractmethod
    def configured_rate(self) -> tuple[int, float]:
        """The connector's configured limit: (requests, per seconds)."""


class Target(ABC):
    """A connector under test plus the system it talks to."""

    #: The system name used in tasks.
    name: str = "system"

    @abstractmethod
    def connector(self) -> Connector:
        """A new connector for the seeded system (each is closed after one task)."""

    @abstractmethod
    def seed(self) -> Seeded:
        """Put the subject (and other people) into the system; called before each check."""

    def bad_credentials(self) -> Connector | None:
        """A connector with wrong credentials; None when credentials do not apply."""
        return None

    def faults(self) -> Faults | None:
        """Fault controls of the fake vendor; None when the target has no HTTP."""
        return None

    def seed_sweep(self) -> SeededSweep | None:
        """Seed records of known ages for the sweep checks; None skips them."""
        return None


def dispatched(system: str, action: RequestType, subject: Subject, **fields: Any) -> TaskDispatched:
    """A task for `subject` as the orchestrator dispatches it, due in 30 days; `fields` add to
    it or replace its defaults (e.g. `changes`, `attempt`)."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "request_id": "conformance-1",
        "task_id": f"conformance-1/{system}",
        "deadline": now + timedelta(days=30),
        "dispatched_at": now,
    }
    values.update(fields)
    return TaskDispatched(system=system, action=action, subject=subject, **values)


def run_task(
    connector: Connector, system: str, action: RequestType, subject: Subject
) -> TaskOutcome:
    """Carry out one task exactly as a connector worker would, then close the connector."""
    return asyncio.run(_perform(connector, dispatched(system, action, subject)))


async def _perform(connector: Connector, task: TaskDispatched) -> TaskOutcome:
    try:
        return await perform(connector, task)
    finally:
        await connector.aclose()


def run_sweep(
    connector: Connector, system: str, rules: Sequence[SweepRule], *, dry_run: bool
) -> SweepOutcome:
    """Carry out one sweep exactly as a connector worker would, then close the connector."""
    task = SweepDispatched(
        sweep_id="conformance-sweep-1",
        task_id=f"conformance-sweep-1/{system}",
        system=system,
        dry_run=dry_run,
        rules=list(rules),
        dispatched_at=datetime.now(UTC),
    )

    async def sweep() -> SweepOutcome:
        try:
            return await perform_sweep(connector, task)
        finally:
            await connector.aclose()

    return asyncio.run(sweep())


class _Capture(logging.Handler):
    """Keeps every log record of every logger, formatted, with tracebacks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += "".join(traceback.format_exception(record.exc_info[1]))
        self.texts.append(text)


@contextmanager
def capture_all_logs() -> Iterator[_Capture]:
    """Capture everything logged, at DEBUG, from every logger."""
    root = logging.getLogger()
    handler = _Capture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _values(seeded: Seeded) -> list[str]:
    return [i.value for i in seeded.subject.identifiers] + seeded.personal_values


class SweepConformance:
    """The sweep checks alone: inherit in a `Test*` class with a `target` fixture."""

    @pytest.fixture
    def target(self) -> Target:
        """Override: the target under test."""
        raise NotImplementedError(
            "define a `target` fixture returning a connectors.conformance.Target"
        )

    def test_sweep_dry_run_counts_the_expired_records_and_changes_nothing(
        self, target: Target
    ) -> None:
        seeded = _seeded_sweep(target)
        before = seeded.remaining()
        outcome = _sweep(target, seeded, dry_run=True)
        assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
        assert _per_collection(outcome, seeded, lambda c: c.expired - c.kept) == seeded.expired
        assert all(c.deleted == 0 and c.anonymised == 0 for c in outcome.counts)
        assert seeded.remaining() == before

    def test_sweep_removes_exactly_the_expired_records(self, target: Target) -> None:
        seeded = _seeded_sweep(target)
        before = seeded.remaining()
        outcome = _sweep(target, seeded, dry_run=False)
        assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
        done = _per_collection(outcome, seeded, lambda c: c.deleted + c.anonymised)
        assert done == seeded.expired
        after = seeded.remaining()
        deleted = _per_collection(outcome, seeded, lambda c: c.deleted)
        assert {name: before[name] - after[name] for name in before} == deleted

    def test_a_second_sweep_finds_nothing(self, target: Target) -> None:
        seeded = _seeded_sweep(target)
        _sweep(target, seeded, dry_run=False)
        again = _sweep(target, seeded, dry_run=False)
        assert again.status == OutcomeStatus.COMPLETED, again.reason
        assert all(c.deleted == 0 and c.anonymised == 0 for c in again.counts), again.counts

    def test_a_sweep_reports_and_logs_no_identifier(self, target: Target) -> None:
        seeded = _seeded_sweep(target)
        with capture_all_logs() as logs:
            outcomes = [_sweep(target, seeded, dry_run=d) for d in (True, False)]
        texts = logs.texts + [o.model_dump_json() for o in outcomes]
        for value in seeded.personal_values:
            leaks = [t for t in texts if value.lower() in t.lower()]
            assert not leaks, (
                f"a seeded value appears in a sweep's outcome or logs: {leaks[0][:200]}"
            )


class ConnectorConformance(SweepConformance):
    """Inherit in a `Test*` class and provide a `target` fixture returning a `Target`."""

    @pytest.fixture
    def seeded(self, target: Target) -> Seeded:
        """The target, freshly seeded."""
        return target.seed()

    def test_access_finds_every_seeded_record_with_provenance(
        self, target: Target, seeded: Seeded
    ) -> None:
        outcome = _run(target, RequestType.ACCESS, seeded)
        assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
        assert outcome.system == target.name
        found = Counter(r.collection for r in outcome.records)
        assert dict(found) == seeded.expected
        assert outcome.counts.found == sum(seeded.expected.values())

    def test_erasure_removes_records_and_reports_counts(
        self, target: Target, seeded: Seeded
    ) -> None:
        outcome = _run(target, RequestType.ERASURE, seeded)
        assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
        erased = outcome.counts.deleted + outcome.counts.anonymised
        if seeded.erased is None:
            assert erased >= 1
        else:
            assert erased == seeded.erased

    def test_access_after_erasure_finds_nothing(self, target: Target, seeded: Seeded) -> None:
        _run(target, RequestType.ERASURE, seeded)
        outcome = _run(target, RequestType.ACCESS, seeded)
        assert outcome.status == OutcomeStatus.NOT_FOUND, outcome.records[:3]
        assert outcome.records == []

    def test_second_erasure_is_safe_and_says_not_found(
        self, target: Target, seeded: Seeded
    ) -> None:
        first = _run(target, RequestType.ERASURE, seeded)
        assert first.status == OutcomeStatus.COMPLETED, first.reason
        second = _run(target, RequestType.ERASURE, seeded)
        assert second.status == OutcomeStatus.NOT_FOUND, second.reason

    def test_rate_limit_is_waited_out_within_the_configured_rate(
        self, target: Target, seeded: Seeded
    ) -> None:
        faults = _http_faults(target)
        with faults.rate_limit(every=3, retry_after=1):
            outcome = _run(target, RequestType.ACCESS, seeded)
        assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
        assert dict(Counter(r.collection for r in outcome.records)) == seeded.expected
        requests, per_seconds = faults.configured_rate
        assert faults.max_rate_seen(per_seconds) <= requests

    def test_server_errors_are_retried_then_reported_retryable(
        self, target: Target, seeded: Seeded
    ) -> None:
        with _http_faults(target).server_errors():
            outcome = _run(target, RequestType.ACCESS, seeded)
        assert outcome.status == OutcomeStatus.FAILED
        assert outcome.retryable, outcome.reason
        assert outcome.reason and target.name in outcome.reason

    def test_bad_credentials_give_a_fatal_outcome_with_a_clear_reason(
        self, target: Target, seeded: Seeded
    ) -> None:
        connector = target.bad_credentials()
        if connector is None:
            pytest.skip("not applicable: the target takes no credentials")
        outcome = _run(target, RequestType.ACCESS, seeded, connector)
        assert outcome.status == OutcomeStatus.FAILED
        assert not outcome.retryable
        assert outcome.reason and "credentials" in outcome.reason.lower()

    def test_nothing_personal_is_logged(self, target: Target, seeded: Seeded) -> None:
        with capture_all_logs() as logs:
            outcomes = [
                _run(target, action, seeded)
                for action in (RequestType.ACCESS, RequestType.ERASURE, RequestType.ERASURE)
            ]
            bad = target.bad_credentials()
            if bad is not None:
                outcomes.append(_run(target, RequestType.ACCESS, seeded, bad))
            faults = target.faults()
            if faults is not None:
                with faults.server_errors():
                    outcomes.append(_run(target, RequestType.ACCESS, seeded))
        texts = logs.texts + [o.reason or "" for o in outcomes]
        texts += [o.instructions or "" for o in outcomes]
        for value in _values(seeded):
            leaks = [t for t in texts if value.lower() in t.lower()]
            assert not leaks, f"a subject identifier appears in logs or reasons: {leaks[0][:200]}"


def _run(
    target: Target, action: RequestType, seeded: Seeded, connector: Connector | None = None
) -> TaskOutcome:
    """One task for the seeded subject, with a new connector of the target unless given one."""
    return run_task(connector or target.connector(), target.name, action, seeded.subject)


def _seeded_sweep(target: Target) -> SeededSweep:
    """The target's records for the sweep checks; skipped where they do not apply."""
    if not type(target.connector()).sweeps:
        pytest.skip("not applicable: the connector does not sweep (sweeps become manual tasks)")
    seeded = target.seed_sweep()
    if seeded is None:
        pytest.skip("not applicable: the target seeds no records of known ages (seed_sweep)")
    return seeded


def _sweep(target: Target, seeded: SeededSweep, *, dry_run: bool) -> SweepOutcome:
    return run_sweep(target.connector(), target.name, seeded.rules, dry_run=dry_run)


def _per_collection(
    outcome: SweepOutcome, seeded: SeededSweep, figure: Callable[[SweepCount], int]
) -> dict[str, int]:
    """One figure of the outcome's counts, for the collections the target seeded."""
    return {c.collection: figure(c) for c in outcome.counts if c.collection in seeded.expired}


def _http_faults(target: Target) -> Faults:
    """The target's fault controls; a target without HTTP skips the check."""
    faults = target.faults()
    if faults is None:
        pytest.skip("not applicable: the target has no HTTP API")
    return faults


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker the suite's tests carry."""
    config.addinivalue_line("markers", "conformance: a check of the connector conformance suite")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test inherited from the suite."""
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is not None and issubclass(cls, SweepConformance):
            item.add_marker(pytest.mark.conformance)


__all__ = [
    "ConnectorConformance",
    "Faults",
    "Seeded",
    "SeededSweep",
    "SweepConformance",
    "Target",
    "capture_all_logs",
    "dispatched",
    "run_sweep",
    "run_task",
]
