"""The conformance suite's view of a connector against a vendor fake, for every fake at once.

Every fake has the same fault knobs (`connectors.fakes.server.Faults`), so one adapter gives the
suite its fault controls, and one target class serves every vendor: a vendor test names how to
build its connector, how to seed its fake and which setting makes the credentials wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors.base import Connector
from connectors.conformance import ConnectorConformance, Faults, Seeded, Target, run_task
from connectors.fakes.server import FakeServer, LoggedRequest
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject, TaskOutcome

#: A client rate that leaves the fake's own limits to decide.
UNLIMITED: dict[str, Any] = {"requests": 5000, "per_seconds": 1.0, "concurrency": 16}
#: Retries fast enough for tests; a server's Retry-After is capped at 1 s.
FAST_RETRY: dict[str, Any] = {
    "attempts": 4,
    "backoff_seconds": 0.05,
    "max_backoff_seconds": 0.5,
    "max_wait_seconds": 1.0,
}


@dataclass
class SeededIds(Seeded):
    """What was seeded, with the ids the fake gave the records, e.g. {"tickets": [...]}."""

    ids: dict[str, Any] = field(default_factory=dict)


def ids(outcome: TaskOutcome, collection: str) -> set[int]:
    """The ids of an outcome's records of one collection."""
    return {int(r.data["id"]) for r in outcome.records if r.collection == collection}


def erased_counts(outcome: TaskOutcome) -> dict[str, int]:
    """The records an erasure reports deleted, per collection (its `*_deleted` evidence)."""
    suffix = "_deleted"
    return {
        e.kind.removesuffix(suffix): int(e.value)
        for e in outcome.evidence
        if e.kind.endswith(suffix)
    }


def conformance_suite(
    name: str,
    build: Callable[..., Connector],
    seeded: Seeded | Callable[[Any], Seeded],
    wrong_credentials: dict[str, Any],
    rate: tuple[int, float],
) -> type[ConnectorConformance]:
    """The conformance suite against the test module's fake (its `fake` fixture); assign it to
    a `Test...` name in the module. The arguments are those of `FakeTarget`."""

    class Suite(ConnectorConformance):
        @pytest.fixture
        def target(self, fake: FakeServer) -> Target:
            return FakeTarget(name, fake, build, seeded, wrong_credentials, rate)

    return Suite


class FakeFaults(Faults):
    """The suite's fault controls, turned on the fake's shared knobs."""

    def __init__(self, fake: FakeServer, rate: tuple[int, float]) -> None:
        self.fake = fake
        self.rate = rate

    @contextmanager
    def rate_limit(self, every: int, retry_after: int) -> Iterator[None]:
        self.fake.faults.rate_limit_every = every
        self.fake.faults.retry_after = retry_after
        self.fake.clear_log()  # measure this access only, not the previous checks
        try:
            yield
        finally:
            self.fake.faults.rate_limit_every = None

    @contextmanager
    def server_errors(self) -> Iterator[None]:
        self.fake.faults.fail_5xx = 10**9
        try:
            yield
        finally:
            self.fake.faults.fail_5xx = 0

    def max_rate_seen(self, window_seconds: float) -> int:
        return self.fake.max_in_window(window_seconds)

    @property
    def configured_rate(self) -> tuple[int, float]:
        return self.rate


@dataclass
class FakeTarget(Target):
    """A connector against its vendor's fake."""

    name: str = field()  # no default: Target's is for subclasses that set a class attribute
    fake: FakeServer
    #: `build(fake, **settings)`: a connector for the fake; `settings` override defaults.
    build: Callable[..., Connector]
    #: What the fake's `reset()` seeds; or a function that seeds the fake and says what.
    seeded: Seeded | Callable[[Any], Seeded]
    #: Settings that make the credentials wrong, e.g. {"token": "not-the-token"}.
    wrong_credentials: dict[str, Any]
    #: The connector's configured rate: (requests, per seconds).
    rate: tuple[int, float]

    def connector(self) -> Connector:
        return self.build(self.fake)

    def bad_credentials(self) -> Connector:
        return self.build(self.fake, **self.wrong_credentials)

    def faults(self) -> Faults:
        return FakeFaults(self.fake, self.rate)

    def seed(self) -> Seeded:
        if isinstance(self.seeded, Seeded):
            self.fake.reset()  # type: ignore[attr-defined]  # every seeded vendor fake has one
            return self.seeded
        return self.seeded(self.fake)


def subject(email: str, phone: str | None = None) -> Subject:
    """A subject known by an email address (and a phone number)."""
    identifiers = [Identifier(type="email", value=email)]
    if phone is not None:
        identifiers.append(Identifier(type="phone", value=phone))
    return Subject(identifiers=identifiers)


def completed(
    fake: FakeServer,
    connector: Connector,
    subject: Subject,
    action: RequestType = RequestType.ACCESS,
) -> TaskOutcome:
    """Run a task as a worker would, the fake's log cleared first; it must complete."""
    fake.clear_log()
    outcome = run_task(connector, connector.system, action, subject)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    return outcome


def builder(
    cls: type[Connector], system: str, account: Callable[[Any], dict[str, Any]], **defaults: Any
) -> Callable[..., Connector]:
    """`build(fake, system=system, **settings)`: a `cls` connector for the fake with fast
    retries, the fake's `account(fake)` settings and `defaults`; `settings` override them."""

    def build(fake: Any, system: str = system, **settings: Any) -> Connector:
        return cls(system, {"retry": FAST_RETRY, **account(fake), **defaults, **settings})

    return build


def per_second(requests: int, concurrency: int | None = None) -> dict[str, Any]:
    """A client rate limit: `requests` per second, and `concurrency` at once."""
    return {"requests": requests, "per_seconds": 1.0, "concurrency": concurrency}


def unlimited_access(fake: FakeServer, build: Callable[..., Connector], subject: Subject) -> Any:
    """An access by a client only the fake's own limits hold back; it must complete."""
    # A system name of its own: other tests' limiters must not slow this one down.
    return completed(fake, build(fake, "unlimited", rate_limit=UNLIMITED), subject)


def vendor_limit_kept_or_waited_out(
    fake: FakeServer,
    build: Callable[..., Connector],
    seeded: Seeded,
    limit: int,
    requests: int,
) -> None:
    """An access by a client allowed `requests` per second, the vendor `limit`: it completes
    either way, and the vendor pushes back (429) only when the client is the faster."""
    connector = build(fake, f"limited-{requests}", rate_limit=per_second(requests, 4))
    refused = access_under_vendor_limit(fake, connector, seeded, (limit, 1.0))
    assert bool(refused) == (requests > limit)


def access_under_vendor_limit(
    fake: FakeServer, connector: Connector, seeded: Seeded, limit: tuple[int, float]
) -> list[LoggedRequest]:
    """Run an access while the fake enforces the vendor's `limit`; it must find every seeded
    record. Returns the requests the vendor refused with 429."""
    fake.faults.max_rate = limit
    outcome = completed(fake, connector, seeded.subject)
    assert dict(Counter(r.collection for r in outcome.records)) == seeded.expected
    return [r for r in fake.requests if r.status == 429]
