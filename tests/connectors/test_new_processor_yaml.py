"""A new processor added from one YAML file only: nested related collections, a job-polled
erase and an objection step, proven by the conformance suite against a strict fake.

`examples/connectors/deskly.yaml` is the whole connector; the register entry names the `rest`
connector and the file, exactly as a user adds a processor.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from connectors import registry
from connectors.base import Connector
from connectors.conformance import Seeded, run_task
from connectors.declarative import load_spec
from connectors.fakes import specfake
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject
from schemas.register import System
from tests.connectors.targets import conformance_suite

FAKE = specfake.Deskly
SPEC = Path(__file__).parents[2] / "examples" / "connectors" / "deskly.yaml"
SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value=specfake.SUBJECT_EMAIL),
        Identifier(type="phone", value=specfake.SUBJECT_PHONE),
    ]
)
#: Users 1 (active), 2 (soft-deleted), 3 (by mobile); tickets she requested; their messages.
EXPECTED = {"users": 3, "tickets": 3, "conversations": 6}


def build(fake: specfake.Deskly, **settings: str) -> Connector:
    """The connector a worker builds for a register entry naming the YAML file."""
    system = System(
        name="deskly",
        kind="support_desk",
        connector="rest",
        settings={
            "spec": str(SPEC),
            "base_url": f"{fake.url}/api",
            "credentials": {"token": settings.pop("token", specfake.TOKEN)},
            **settings,
        },
        data_categories=["contact details", "support questions"],
        purposes=["customer service"],
        legal_basis=["contract"],
        profiling="none",
        retention="12 months",
    )
    return registry.build(system)


def seed(fake: specfake.Deskly) -> Seeded:
    """The seeded subject; erasure removes 3 users, 2 own tickets and their 4 messages (the
    ticket shared with Jan stays)."""
    fake.reset()
    return Seeded(SUBJECT, expected=EXPECTED, erased=9, personal_values=["de Vries"])


LIMIT = load_spec(SPEC).rate_limit
TestNewProcessorFromOneYamlFile = conformance_suite(
    "deskly", build, seed, {"token": "wrong"}, (LIMIT.requests or 0, LIMIT.per_seconds)
)


def test_job_polled_erasure_keeps_the_shared_ticket_and_its_job_ids(
    fresh: specfake.Deskly,
) -> None:
    outcome = run_task(build(fresh), "deskly", RequestType.ERASURE, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    evidence = {(e.kind, e.value) for e in outcome.evidence}
    assert {
        ("users_deleted", "3"),
        ("tickets_deleted", "2"),
        ("conversations_deleted", "4"),
    } <= evidence
    assert sorted(v for k, v in evidence if k == "vendor_job_id") == ["job-1", "job-2"]
    assert len(fresh.calls("GET", "/api/jobs/")) == 4  # each job polled until completed
    assert sorted(t["id"] for t in fresh.data["tickets"]) == [12, 20, 21]
    assert {("DELETE", "/api/tickets/{id}"), ("DELETE", "/api/users/{id}")} == {
        e for e in fresh.endpoints if e[0] == "DELETE"
    }


def test_art_21_objection_unsubscribes_and_deletes_nothing(fresh: specfake.Deskly) -> None:
    """Art. 21(2)/(3) GDPR: direct marketing stops; a repeat changes nothing."""
    outcome = run_task(build(fresh), "deskly", RequestType.OBJECTION, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert outcome.counts.suppressed == 1 and fresh.unsubscribed == [1]
    assert ("users_unsubscribed", "1") in {(e.kind, e.value) for e in outcome.evidence}
    assert fresh.calls("DELETE") == []
    again = run_task(build(fresh), "deskly", RequestType.CONSENT_WITHDRAWAL, SUBJECT)
    assert again.status == OutcomeStatus.COMPLETED and again.counts.suppressed == 0


def test_nested_collections_are_read_per_ticket(fresh: specfake.Deskly) -> None:
    outcome = run_task(build(fresh), "deskly", RequestType.ACCESS, SUBJECT)
    assert dict(Counter(r.collection for r in outcome.records)) == EXPECTED
    talks = {r.data["ticket_id"] for r in outcome.records if r.collection == "conversations"}
    assert talks == {10, 11, 12}  # not Jan's ticket 20, on which she is only CC'd
