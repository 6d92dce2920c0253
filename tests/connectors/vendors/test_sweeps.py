"""Retention sweeps of the vendor connectors (storage limitation, Art. 5(1)(e) GDPR).

Each fake is seeded with records of known ages around a one-year rule: exactly the expired ones
are deleted, by the erasure's deletion endpoint, a dry run deletes nothing, and a second sweep
finds nothing left. Results carry counts only, never an identifier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from connectors.base import Connector, SweepResult
from connectors.fakes import activecampaign as ac
from connectors.fakes import freshdesk as fd
from connectors.fakes import intercom
from connectors.fakes import zendesk as zd
from connectors.fakes.server import FakeServer
from connectors.vendors.activecampaign import ActiveCampaignConnector
from connectors.vendors.freshdesk import FreshdeskConnector
from connectors.vendors.intercom import IntercomConnector
from connectors.vendors.zendesk import ZendeskConnector
from schemas.events import OutcomeStatus
from schemas.sweeps import CountedFrom, SweepCount, SweepRule
from tests.connectors.targets import UNLIMITED, builder

YEAR = 365
#: Just inside the rule: updated less than a year ago, whatever the time of day.
EDGE = YEAR - 0.1


def rule(collection: str, date_field: str, days: int = YEAR) -> SweepRule:
    """A rule: records of `collection` whose `date_field` is more than `days` old expire."""
    return SweepRule(
        collection=collection,
        date_field=date_field,
        cutoff=date.today() - timedelta(days=days),
        period=f"{days} days",
        counted_from=CountedFrom.LAST_ACTIVITY,
    )


def sweep(connector: Connector, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
    """Run one sweep and close the connector."""

    async def run() -> SweepResult:
        try:
            return await connector.sweep(rules, dry_run=dry_run)
        finally:
            await connector.aclose()

    return asyncio.run(run())


def deleted_ids(fake: FakeServer, prefix: str) -> list[str]:
    """The ids at the end of the successful DELETE calls under `prefix`, in order."""
    return [
        r.path.rsplit("/", 1)[1] for r in fake.calls("DELETE", prefix) if r.status in (200, 204)
    ]


# ------------------------------------------------------------------------------- the seeds


def seed_freshdesk(fake: fd.Freshdesk) -> tuple[set[str], set[str]]:
    fake.reset()
    femke = fake.add_contact(fd.SUBJECT_NAME, fd.SUBJECT_EMAIL, fd.SUBJECT_PHONE)
    jan = fake.add_contact("Jan Jansen", "jan@example.com")
    expired = [
        fake.add_ticket(femke, "Invoice question", age_days=400, conversations=2),
        fake.add_ticket(jan, "Refund", age_days=800),
    ]
    kept = [
        fake.add_ticket(femke, "Parcel late", age_days=10),
        fake.add_ticket(jan, "Almost a year", age_days=EDGE),
    ]
    fake.add_ticket(jan, "In the Trash already", age_days=900, deleted=True)
    return {str(i) for i in expired}, {str(i) for i in kept}


def seed_activecampaign(fake: ac.ActiveCampaign) -> tuple[set[str], set[str]]:
    fake.reset()
    kept = {c["id"] for c in fake.data["contacts"]}  # updated today
    expired = {
        fake.add_contact("old.customer@example.org", age_days=800),
        fake.add_contact("lapsed@example.org", age_days=400),
    }
    # The vendor's filter may list the cutoff day itself: the contact's own date decides.
    kept |= {fake.add_contact("edge@example.org", age_days=EDGE)}
    kept |= {fake.add_contact("recent@example.org", age_days=10)}
    return expired, kept


def seed_intercom(fake: intercom.FakeIntercom) -> tuple[set[str], set[str]]:
    fake.reset()
    kept = set(fake.conversations)  # updated yesterday
    fake.add_conversation("old", [intercom.SUBJECT_ID], age_days=400)
    # Shared with another person, and expired: swept (sweeps are about age, not a person).
    fake.add_conversation("old-shared", [intercom.SUBJECT_ID, intercom.OTHER_ID], age_days=800)
    fake.add_conversation("edge", [intercom.OTHER_ID], age_days=EDGE)
    return {"old", "old-shared"}, kept | {"edge"}


def seed_zendesk(fake: zd.Zendesk) -> tuple[set[str], set[str]]:
    fake.reset()
    femke = fake.add_user(zd.SUBJECT_NAME, zd.SUBJECT_EMAIL)
    expired = [
        fake.add_ticket(femke, "Old, closed", age_days=400, status="closed", comments=2),
        fake.add_ticket(femke, "Older, closed", age_days=800, status="closed"),
    ]
    kept = [
        fake.add_ticket(femke, "Old but still open", age_days=400, status="open"),
        fake.add_ticket(femke, "Recently closed", age_days=10, status="closed"),
        fake.add_ticket(femke, "Closed almost a year ago", age_days=EDGE, status="closed"),
    ]
    return {str(i) for i in expired}, {str(i) for i in kept}


@dataclass(frozen=True)
class Vendor:
    """One vendor's sweep under test: its fake, connector, rule and what the fake records."""

    fake: type[FakeServer]
    build: Callable[..., Connector]
    rule: SweepRule
    seed: Callable[[Any], tuple[set[str], set[str]]]
    #: The ids the fake deleted through the erasure's endpoint, in order.
    deleted: Callable[[Any], list[str]]
    remaining: Callable[[Any], set[str]]
    #: The only routes a sweep may delete through: the erasure's.
    deletes_by: frozenset[tuple[str, str]]


VENDORS = {
    "freshdesk": Vendor(
        fd.Freshdesk,
        builder(
            FreshdeskConnector,
            "sweep-freshdesk",
            lambda fake: {"base_url": f"{fake.url}/api/v2", "api_key": fd.API_KEY},
            rate_limit=UNLIMITED,
        ),
        rule("tickets", "updated_at"),
        seed_freshdesk,
        lambda fake: [str(i) for i in fake.ticket_deletes],
        lambda fake: {str(i) for i, t in fake.tickets.items() if not t["deleted"]},
        frozenset({("DELETE", "/api/v2/tickets/{id}")}),
    ),
    "activecampaign": Vendor(
        ac.ActiveCampaign,
        builder(
            ActiveCampaignConnector,
            "sweep-activecampaign",
            lambda fake: {"api_url": f"{fake.url}/api/3", "api_key": ac.API_KEY},
        ),
        rule("contacts", "udate"),
        seed_activecampaign,
        lambda fake: list(fake.deleted_contacts),
        lambda fake: {c["id"] for c in fake.data["contacts"]},
        frozenset({("DELETE", "/api/3/contacts/{id}")}),
    ),
    "intercom": Vendor(
        intercom.FakeIntercom,
        builder(
            IntercomConnector,
            "sweep-intercom",
            lambda fake: {"token": intercom.TOKEN, "base_url": fake.url},
            rate_limit=UNLIMITED,
        ),
        rule("conversations", "updated_at"),
        seed_intercom,
        lambda fake: deleted_ids(fake, "/conversations/"),
        lambda fake: set(fake.conversations),
        frozenset({("DELETE", "/conversations/{id}")}),
    ),
    "zendesk": Vendor(
        zd.Zendesk,
        builder(
            ZendeskConnector,
            "sweep-zendesk",
            lambda fake: {
                "base_url": f"{fake.url}/api/v2",
                "email": zd.EMAIL,
                "api_token": zd.API_TOKEN,
            },
            rate_limit=UNLIMITED,
            job_poll_seconds=0.01,
        ),
        rule("tickets", "updated_at"),
        seed_zendesk,
        lambda fake: deleted_ids(fake, "/api/v2/deleted_tickets/"),
        lambda fake: {str(i) for i in [*fake.tickets, *fake.deleted_tickets]},
        frozenset({("DELETE", "/api/v2/tickets/{id}"), ("DELETE", "/api/v2/deleted_tickets/{id}")}),
    ),
}


@pytest.fixture(scope="module", params=sorted(VENDORS))
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[Vendor, FakeServer]]:
    """Each vendor with its fake, serving for the module."""
    case = VENDORS[request.param]
    with case.fake() as fake:
        yield case, fake


def no_identifiers(result: SweepResult, ids: set[str]) -> None:
    """Nothing in the result names a record: counts, rules and the vendor's notes only."""
    text = " ".join(
        [*(e.value for e in result.evidence), result.instructions or "", result.reason or ""]
    )
    words = set(text.replace(":", " ").replace(",", " ").split())
    assert not words & ids


# ------------------------------------------------------------------------- every vendor


def test_art_5_1_e_sweep_deletes_only_expired_records(vendor: tuple[Vendor, FakeServer]) -> None:
    """Art. 5(1)(e) GDPR: kept no longer than necessary; exactly the expired records go, by
    the erasure's permanent endpoint, and the counts match what the fake lost."""
    case, fake = vendor
    expired, kept = case.seed(fake)
    fake.clear_log()
    result = sweep(case.build(fake), [case.rule], dry_run=False)
    assert result.status == OutcomeStatus.COMPLETED
    assert result.counts == [
        SweepCount(collection=case.rule.collection, expired=len(expired), deleted=len(expired))
    ]
    assert sorted(case.deleted(fake)) == sorted(expired)
    assert case.remaining(fake) & (expired | kept) == kept
    assert {e for e in fake.endpoints if e[0] == "DELETE"} <= case.deletes_by
    no_identifiers(result, expired | kept)


def test_art_5_1_e_sweep_dry_run_deletes_nothing(vendor: tuple[Vendor, FakeServer]) -> None:
    """A dry run counts what has expired and changes nothing: the officer approves first."""
    case, fake = vendor
    expired, _ = case.seed(fake)
    before = case.remaining(fake)
    fake.clear_log()
    result = sweep(case.build(fake), [case.rule], dry_run=True)
    assert result.status == OutcomeStatus.COMPLETED
    assert result.counts == [SweepCount(collection=case.rule.collection, expired=len(expired))]
    assert fake.calls("DELETE") == []
    assert case.remaining(fake) == before
    assert result.evidence == []  # nothing was done, so nothing to prove


def test_art_5_1_e_second_sweep_finds_nothing(vendor: tuple[Vendor, FakeServer]) -> None:
    """A sweep is idempotent: run again, it finds nothing expired and deletes nothing."""
    case, fake = vendor
    _, kept = case.seed(fake)
    sweep(case.build(fake), [case.rule], dry_run=False)
    fake.clear_log()
    again = sweep(case.build(fake), [case.rule], dry_run=False)
    assert again.counts == [SweepCount(collection=case.rule.collection)]
    assert fake.calls("DELETE") == []
    assert kept <= case.remaining(fake)


def test_art_5_1_e_collection_the_api_cannot_sweep_is_a_manual_step(
    vendor: tuple[Vendor, FakeServer],
) -> None:
    """A collection the connector cannot sweep is not silently skipped: the deleting sweep
    asks a person to act, with the rule and cutoff in words; its dry run says so too."""
    case, fake = vendor
    case.seed(fake)
    other = rule("chat_transcripts", "ended_at", days=180)
    counted = sweep(case.build(fake), [case.rule, other], dry_run=True)
    assert counted.status == OutcomeStatus.COMPLETED
    assert "chat_transcripts" in (counted.instructions or "")
    swept = sweep(case.build(fake), [case.rule, other], dry_run=False)
    assert swept.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert [c.collection for c in swept.counts] == [case.rule.collection]
    assert other.cutoff.isoformat() in (swept.instructions or "")


# ---------------------------------------------------------------------- vendor specifics


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    """A fake of the class the test names (an `indirect` parameter), for that test alone."""
    with request.param() as fake:
        yield fake


@pytest.mark.parametrize("served", [fd.Freshdesk], indirect=True)
def test_art_5_1_e_freshdesk_sweep_goes_past_the_filter_apis_300_results(
    served: fd.Freshdesk,
) -> None:
    """The filter API lists 300 tickets a query (10 pages of 30): the sweep asks again until
    every expired ticket is gone, and reports the vendor's total."""
    freshdesk = served
    freshdesk.reset()
    contact = freshdesk.add_contact("Jan Jansen", "jan@example.com")
    old = {freshdesk.add_ticket(contact, f"Old {n}", age_days=400 + n) for n in range(305)}
    recent = freshdesk.add_ticket(contact, "Recent", age_days=3)
    build = VENDORS["freshdesk"].build
    counted = sweep(build(freshdesk), [rule("tickets", "updated_at")], dry_run=True)
    assert counted.counts == [SweepCount(collection="tickets", expired=305)]
    swept = sweep(build(freshdesk), [rule("tickets", "updated_at")], dry_run=False)
    assert swept.counts == [SweepCount(collection="tickets", expired=305, deleted=305)]
    assert set(freshdesk.ticket_deletes) == old
    pages = [r for r in freshdesk.calls("GET", "/api/v2/search/tickets")]
    assert all("page=11" not in r.query for r in pages)
    assert not freshdesk.tickets[recent]["deleted"]


@pytest.mark.parametrize("served", [fd.Freshdesk], indirect=True)
def test_art_5_1_e_freshdesk_tickets_go_to_the_trash_and_the_evidence_says_so(
    served: fd.Freshdesk,
) -> None:
    """Freshdesk has no API call that deletes a ticket for good: the sweep says truthfully
    that the Trash is emptied after 30 days, and never hard-deletes a contact (that would
    take its recent tickets along)."""
    freshdesk = served
    seed_freshdesk(freshdesk)
    result = sweep(
        VENDORS["freshdesk"].build(freshdesk), [rule("tickets", "updated_at")], dry_run=False
    )
    assert any("30 days" in e.value for e in result.evidence)
    assert freshdesk.hard_deleted == [] and freshdesk.soft_deleted == []
    contacts = sweep(
        VENDORS["freshdesk"].build(freshdesk), [rule("contacts", "updated_at")], dry_run=False
    )
    assert contacts.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert freshdesk.hard_deleted == []


@pytest.mark.parametrize("served", [intercom.FakeIntercom], indirect=True)
def test_art_5_1_e_intercom_sweep_deletes_contacts_not_seen_for_the_period(
    served: intercom.FakeIntercom,
) -> None:
    """Contacts are searched by UTC day, as Intercom documents: one updated 400 days ago is
    deleted (`DELETE /contacts/{id}`), those updated this year stay, with their chats."""
    intercom_fake = served
    intercom_fake.contacts[intercom.OTHER_ID]["updated_at"] = intercom.age(400)
    conversations = set(intercom_fake.conversations)
    result = sweep(
        VENDORS["intercom"].build(intercom_fake), [rule("contacts", "updated_at")], dry_run=False
    )
    assert result.counts == [SweepCount(collection="contacts", expired=1, deleted=1)]
    assert intercom.OTHER_ID not in intercom_fake.contacts
    assert intercom.SUBJECT_ID in intercom_fake.contacts
    assert set(intercom_fake.conversations) == conversations
    assert deleted_ids(intercom_fake, "/contacts/") == [intercom.OTHER_ID]
