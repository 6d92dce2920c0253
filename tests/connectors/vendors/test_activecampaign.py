"""The ActiveCampaign connector against its strict local fake: conformance plus vendor specifics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from connectors.base import ConnectorConfigError
from connectors.conformance import Seeded, run_task
from connectors.fakes import activecampaign as ac
from connectors.fakes.server import Faults
from connectors.vendors.activecampaign import ActiveCampaignConnector
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject
from tests.connectors.targets import builder, completed, conformance_suite, per_second, subject

#: Faster than the vendor's 5/s so the suite stays quick; the vendor rate is tested below.
SUITE_RATE = (20, 1.0)
EXPECTED = {
    "contacts": 1,
    "contactLists": 3,
    "fieldValues": 1,
    "notes": 5,
    "deals": 2,
    "contactDeals": 3,
    "trackingLogs": 3,
    "geoIps": 1,
    "scoreValues": 1,
    "activities": 2,
}
SUBJECT = subject(ac.SUBJECT_EMAIL)


build = builder(
    ActiveCampaignConnector,
    "activecampaign",
    lambda fake: {"api_url": f"{fake.url}/api/3", "api_key": ac.API_KEY},
    rate_limit=per_second(SUITE_RATE[0]),
)


#: Four contacts; erasure deletes the subject's contact, its 2 own deals and 5 notes.
SEEDED = Seeded(
    SUBJECT,
    expected=EXPECTED,
    erased=8,
    personal_values=["de Vries", "+31612345678", "192.0.2.10"],
)


@dataclass(eq=False)
class SuiteActiveCampaign(ac.ActiveCampaign):
    """The fake with its own limit raised to the suite's rate."""

    default_faults = Faults(max_rate=SUITE_RATE)


FAKE = SuiteActiveCampaign


TestActiveCampaignConformance = conformance_suite(
    "activecampaign", build, SEEDED, {"api_key": "wrong"}, SUITE_RATE
)


def test_paging_reads_every_page(fresh: ac.ActiveCampaign) -> None:
    outcome = completed(fresh, build(fresh, page_size=2), SUBJECT)
    assert dict(Counter(r.collection for r in outcome.records)) == EXPECTED
    note_pages = fresh.calls("GET", "/api/3/contacts/11/notes")
    assert [c.query for c in note_pages] == [
        "limit=2&offset=0",
        "limit=2&offset=2",
        "limit=2&offset=4",
    ]


def test_page_size_above_the_vendor_maximum_is_refused(fresh: ac.ActiveCampaign) -> None:
    with pytest.raises(ConnectorConfigError, match="page_size"):
        build(fresh, page_size=101)
    with pytest.raises(ConnectorConfigError, match="unknown"):
        build(fresh, unknown=1)


@pytest.mark.parametrize("limited_status", [429, 503])
def test_vendor_rate_is_kept_and_its_limit_answers_are_waited_out(
    fresh: ac.ActiveCampaign, limited_status: int
) -> None:
    fresh.faults.max_rate = (5, 1.0)  # the vendor's own limit, enforced by the fake
    fresh.limited_status = limited_status
    fresh.faults.rate_limit_every = 7
    connector = build(fresh, rate_limit=per_second(5))
    try:
        outcome = run_task(connector, "activecampaign", RequestType.ACCESS, SUBJECT)
    finally:
        fresh.limited_status = 429
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert dict(Counter(r.collection for r in outcome.records)) == EXPECTED
    assert any(r.status == limited_status for r in fresh.requests)
    assert fresh.max_in_window(1.0) <= 5


def test_default_rate_is_the_vendors(fresh: ac.ActiveCampaign) -> None:
    connector = ActiveCampaignConnector("ac", {"api_url": fresh.url, "api_key": "k"})
    assert connector.settings.rate_limit.requests == 5
    assert connector.settings.rate_limit.per_seconds == 1.0


def test_erasure_deletes_own_deals_notes_and_the_contact_only(fresh: ac.ActiveCampaign) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT, RequestType.ERASURE)
    deletes = {c.path for c in fresh.calls("DELETE")}
    notes = {f"/api/3/notes/{300 + n}" for n in range(5)}
    assert deletes == {"/api/3/contacts/11", "/api/3/deals/701", "/api/3/deals/702"} | notes
    assert "UNCONFIRMED" in " ".join(e.value for e in outcome.evidence)
    # Other people's data survives, including the deal the subject was only linked to.
    assert [d["id"] for d in fresh.data["deals"]] == ["703"]
    assert [n["id"] for n in fresh.data["notes"]] == ["399"]
    assert {c["id"] for c in fresh.data["contacts"]} == {"12", "13", "14"}


@pytest.mark.parametrize("action", [RequestType.OBJECTION, RequestType.CONSENT_WITHDRAWAL])
def test_objection_and_withdrawal_unsubscribe_everywhere_and_delete_nothing(
    fresh: ac.ActiveCampaign, action: RequestType
) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT, action)
    assert outcome.counts.suppressed == 3 and outcome.counts.deleted == 0
    assert fresh.subscription_changes == [
        {"contact": "11", "list": lst, "status": "2"} for lst in ("1", "2", "3")
    ]
    assert fresh.calls("DELETE") == []
    assert all(c.method in ("GET", "POST") for c in fresh.requests)
    # All data is still there; only the subject's subscriptions changed.
    assert len(fresh.data["contacts"]) == 4 and len(fresh.data["notes"]) == 6
    statuses = {(s["contact"], s["list"]): s["status"] for s in fresh.data["contactLists"]}
    assert statuses == {("11", "1"): "2", ("11", "2"): "2", ("11", "3"): "2", ("12", "1"): "1"}
    again = run_task(build(fresh), "activecampaign", action, SUBJECT)
    assert again.status == OutcomeStatus.COMPLETED and again.counts.suppressed == 0


def test_objection_for_an_unknown_subject_is_not_found(fresh: ac.ActiveCampaign) -> None:
    nobody = Subject(identifiers=[Identifier(type="email", value="nobody@example.com")])
    outcome = run_task(build(fresh), "activecampaign", RequestType.OBJECTION, nobody)
    assert outcome.status == OutcomeStatus.NOT_FOUND
