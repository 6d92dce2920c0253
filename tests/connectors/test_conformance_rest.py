"""The conformance suite against a REST processor declared in YAML only (no Python).

The connector is built the way a worker builds it: from a register entry naming the `rest`
connector and the spec file `examples/connectors/acme.yaml`. It talks to the local fake of
the vendor, which enforces auth, paging limits and rate limits like a real one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import registry
from connectors.base import Connector
from connectors.conformance import Seeded, run_task
from connectors.declarative import load_spec
from connectors.fakes import acme
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject
from schemas.register import System
from tests.connectors.targets import conformance_suite

FAKE = acme.AcmeCRM
SPEC = Path(__file__).parents[2] / "examples" / "connectors" / "acme.yaml"


def system(fake: acme.AcmeCRM, connector: str, **settings: str) -> System:
    """A register entry for Acme CRM on the fake."""
    return System(
        name="acme",
        kind="crm",
        connector=connector,
        settings={
            "base_url": f"{fake.url}/api",
            "credentials": {"token": settings.pop("token", acme.TOKEN)},
            **settings,
        },
        data_categories=["contact details"],
        purposes=["sales"],
        legal_basis=["contract"],
        profiling="none",
        retention="2 years",
    )


def build(fake: acme.AcmeCRM, **settings: str) -> Connector:
    """The connector a worker builds for the register entry naming the spec file."""
    return registry.build(system(fake, "rest", spec=str(SPEC), **settings))


def seed(fake: acme.AcmeCRM) -> Seeded:
    """Six people; the subject has two contact records."""
    fake.reset()
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


#: The rate the example spec configures.
LIMIT = load_spec(SPEC).rate_limit
TestDeclarativeAcmeConformance = conformance_suite(
    "acme", build, seed, {"token": "not-the-token"}, (LIMIT.requests or 0, LIMIT.per_seconds)
)


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
    seeded = seed(fake)
    connector = registry.build(system(fake, "acme"))  # the spec named directly
    outcome = run_task(connector, "acme", RequestType.ACCESS, seeded.subject)
    assert outcome.status == OutcomeStatus.COMPLETED and outcome.counts.found == 14
