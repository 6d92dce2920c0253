"""The conformance suite against a REST processor declared in YAML only (no Python).

The connector is built the way a worker builds it: from a register entry naming the `rest`
connector and the spec file `examples/connectors/acme.yaml`. It talks to the local fake of
the vendor, which enforces auth, paging limits and rate limits like a real one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from connectors import registry
from connectors.base import Connector
from connectors.conformance import ConnectorConformance, Faults, Seeded, Target
from connectors.declarative import load_spec
from connectors.fakes import acme
from schemas.events import Identifier, Subject
from schemas.register import System

SPEC = Path(__file__).parents[2] / "examples" / "connectors" / "acme.yaml"


class AcmeFaults(Faults):
    """Fault controls on the Acme fake."""

    def __init__(self, fake: acme.AcmeCRM) -> None:
        self.fake = fake

    @contextmanager
    def rate_limit(self, every: int, retry_after: int) -> Iterator[None]:
        self.fake.rate_limit_every = every
        try:
            yield
        finally:
            self.fake.rate_limit_every = None

    @contextmanager
    def server_errors(self) -> Iterator[None]:
        self.fake.fail_5xx_times = 10**9
        try:
            yield
        finally:
            self.fake.fail_5xx_times = 0
            self.fake._served_5xx = 0

    def max_rate_seen(self, window_seconds: float) -> int:
        return self.fake.max_in_window(window_seconds)

    @property
    def configured_rate(self) -> tuple[int, float]:
        limit = load_spec(SPEC).rate_limit
        assert limit is not None
        return limit.requests, limit.per_seconds


class AcmeTarget(Target):
    """Acme CRM via the declarative spec, against its fake, seeded with six people."""

    name = "acme"

    def __init__(self, fake: acme.AcmeCRM) -> None:
        self.fake = fake

    def _build(self, token: str) -> Connector:
        system = System(
            name=self.name,
            kind="crm",
            connector="rest",
            settings={
                "spec": str(SPEC),
                "base_url": f"{self.fake.url}/api",
                "credentials": {"token": token},
            },
            data_categories=["contact details"],
            purposes=["sales"],
            legal_basis=["contract"],
            retention="2 years",
        )
        return registry.build(system)

    def connector(self) -> Connector:
        return self._build(acme.TOKEN)

    def bad_credentials(self) -> Connector:
        return self._build("not-the-token")

    def faults(self) -> Faults:
        return AcmeFaults(self.fake)

    def seed(self) -> Seeded:
        self.fake.data = acme._seed()
        subject = Subject(
            identifiers=[
                Identifier(type="email", value=acme.SUBJECT_EMAIL),
                Identifier(type="phone", value=acme.SUBJECT_PHONE),
            ]
        )
        return Seeded(
            subject,
            expected={"contacts": 2, "notes": 6, "tickets": 3, "activities": 3},
            erased=2,
            personal_values=["de Vries"],
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[acme.AcmeCRM]:
    with acme.AcmeCRM() as server:
        yield server


class TestDeclarativeAcmeConformance(ConnectorConformance):
    @pytest.fixture
    def target(self, fake: acme.AcmeCRM) -> Target:
        return AcmeTarget(fake)


def test_spec_in_the_connector_directory_is_named_directly_and_listed(
    fake: acme.AcmeCRM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme.yaml").write_text(SPEC.read_text())
    (tmp_path / "broken.yaml").write_text("name: broken\n")
    monkeypatch.setenv("DSR_CONNECTOR_DIR", str(tmp_path))
    listed = {e.name: e for e in registry.catalogue()}
    assert listed["acme"].kind == "declarative" and listed["acme"].rights == ("access", "erasure")
    assert "broken.yaml" in listed["broken"].description  # the error names the file
    assert listed["sql"].kind == "built-in"
    system = System(
        name="crm",
        kind="crm",
        connector="acme",
        settings={"base_url": f"{fake.url}/api", "credentials": {"token": acme.TOKEN}},
        data_categories=["contact details"],
        purposes=["sales"],
        legal_basis=["contract"],
        retention="2 years",
    )
    fake.data = acme._seed()
    target = AcmeTarget(fake)
    seeded = target.seed()
    from connectors.conformance import run_task
    from schemas.events import OutcomeStatus, RequestType

    outcome = run_task(registry.build(system), "crm", RequestType.ACCESS, seeded.subject)
    assert outcome.status == OutcomeStatus.COMPLETED and outcome.counts.found == 14
