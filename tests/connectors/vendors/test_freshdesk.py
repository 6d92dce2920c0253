"""Freshdesk: the conformance suite, deep paging, the vendor's rate limit, hard delete."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import ConnectorConfigError
from connectors.fakes import freshdesk as fd
from connectors.vendors.freshdesk import FreshdeskConnector
from schemas.events import RequestType
from tests.connectors.targets import (
    SeededIds,
    builder,
    completed,
    conformance_suite,
    erased_counts,
    ids,
    per_second,
    subject,
    unlimited_access,
    vendor_limit_kept_or_waited_out,
)

FAKE = fd.Freshdesk
RATE = (20, 1.0)
SUBJECT = subject(fd.SUBJECT_EMAIL, fd.SUBJECT_PHONE)


build = builder(
    FreshdeskConnector,
    "freshdesk",
    lambda fake: {"base_url": f"{fake.url}/api/v2", "api_key": fd.API_KEY},
    rate_limit=per_second(RATE[0], concurrency=4),
)


def seed(fake: fd.Freshdesk) -> SeededIds:
    """The subject (an active and a soft-deleted contact), others, and what access must find."""
    fake.reset()
    anna = fake.add_contact(fd.SUBJECT_NAME, fd.SUBJECT_EMAIL, fd.SUBJECT_PHONE)
    old_profile = fake.add_contact(fd.SUBJECT_NAME, fd.SUBJECT_EMAIL, deleted=True)
    jan = fake.add_contact("Jan Jansen", "jan@example.com", "+31600000001")
    piet = fake.add_contact("Piet Bakker", "piet@example.org")
    recent = fake.add_ticket(anna, "Parcel late", age_days=2, conversations=2)
    old = fake.add_ticket(anna, "Invoice question", age_days=400, conversations=35)
    trashed = fake.add_ticket(anna, "Spam-looking", age_days=90, deleted=True, conversations=1)
    from_old_profile = fake.add_ticket(old_profile, "Old account", age_days=800)
    fake.add_ticket(jan, "Refund", conversations=3)
    fake.add_ticket(piet, "Trashed, not the subject's", deleted=True, conversations=1)
    return SeededIds(
        SUBJECT,
        expected={"contacts": 2, "tickets": 4, "conversations": 38},
        erased=2 + 4 + 38,  # the hard delete takes the tickets and conversations along
        personal_values=[fd.SUBJECT_NAME],
        ids={
            "contacts": [anna, old_profile],
            "tickets": [recent, old, trashed, from_old_profile],
            "others": [jan, piet],
        },
    )


TestFreshdeskConformance = conformance_suite(
    "freshdesk", build, seed, {"api_key": "wrong-key"}, RATE
)


def test_old_and_trashed_tickets_are_exported(fake: fd.Freshdesk) -> None:
    seeded = seed(fake)
    outcome = completed(fake, build(fake), SUBJECT)
    assert ids(outcome, "tickets") == set(seeded.ids["tickets"])
    assert ids(outcome, "contacts") == set(seeded.ids["contacts"])
    listings = [r for r in fake.calls("GET") if r.path == "/api/v2/tickets"]
    assert listings and all("updated_since=2000-01-01" in r.query for r in listings)
    assert any("filter=deleted" in r.query for r in listings)


@pytest.mark.parametrize("link_header", [True, False], ids=["link", "no-link"])
def test_a_thousand_tickets_are_exported_completely(
    fake: fd.Freshdesk, link_header: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.reset()
    monkeypatch.setattr(fake, "link_header", link_header)
    anna = fake.add_contact(fd.SUBJECT_NAME, fd.SUBJECT_EMAIL)
    tickets = {fake.add_ticket(anna, f"T{n}", age_days=n % 700) for n in range(1000)}
    outcome = unlimited_access(fake, build, SUBJECT)
    assert ids(outcome, "tickets") == tickets
    pages = [r for r in fake.calls("GET", "/api/v2/tickets") if r.path == "/api/v2/tickets"]
    assert all("per_page=100" in r.query for r in pages)
    assert len(pages) <= 2 * 11  # 10 full pages (+ one empty) per listing, nothing more


@pytest.mark.parametrize("requests", [10, 40], ids=["within", "too-fast"])
def test_the_vendor_limit_is_kept_or_its_429s_are_waited_out(fake: Any, requests: int) -> None:
    vendor_limit_kept_or_waited_out(fake, build, seed(fake), 10, requests)


def test_erasure_hard_deletes_with_force_and_never_only_soft(fake: fd.Freshdesk) -> None:
    seeded = seed(fake)
    outcome = completed(fake, build(fake), SUBJECT, RequestType.ERASURE)
    hard = fake.calls("DELETE", "/api/v2/contacts")
    assert {r.path for r in hard} == {
        f"/api/v2/contacts/{c}/hard_delete" for c in seeded.ids["contacts"]
    }
    assert all(r.query == "force=true" and r.status == 204 for r in hard)
    assert fake.soft_deleted == []
    # Nothing restorable is left: no contact of the subject, deleted or not, and no tickets.
    assert set(fake.contacts) == set(seeded.ids["others"])
    assert not set(seeded.ids["tickets"]) & set(fake.tickets)
    assert [e.value for e in outcome.evidence if e.kind == "freshdesk_hard_delete"] == [
        f"contact {c}: 204" for c in seeded.ids["contacts"]
    ]


def test_art17_erasure_counts_the_tickets_and_conversations_the_hard_delete_took(
    fake: fd.Freshdesk,
) -> None:
    seeded = seed(fake)
    outcome = completed(fake, build(fake), SUBJECT, RequestType.ERASURE)
    assert erased_counts(outcome) == seeded.expected
    assert outcome.counts.deleted == sum(seeded.expected.values())
    assert not set(seeded.ids["tickets"]) & set(fake.tickets)
    assert not set(seeded.ids["tickets"]) & set(fake.conversations)


def test_the_fake_refuses_hard_delete_without_force_and_keeps_soft_deletes(
    fake: fd.Freshdesk,
) -> None:
    import httpx

    seed(fake)
    cid = next(iter(fake.contacts))
    auth = (fd.API_KEY, "X")
    base = f"{fake.url}/api/v2/contacts/{cid}"
    assert httpx.delete(f"{base}/hard_delete", auth=auth).status_code == 400
    assert httpx.delete(base, auth=auth).status_code == 204
    assert fake.soft_deleted == [cid] and cid in fake.contacts  # restorable
    assert httpx.put(f"{base}/restore", auth=auth).status_code == 204
    assert httpx.get(f"{fake.url}/api/v2/contacts", auth=("nope", "X")).json() == {
        "code": "invalid_credentials",
        "message": "You have to be logged in to perform this action.",
    }
    bad = httpx.get(f"{fake.url}/api/v2/tickets?per_page=101", auth=auth)
    assert bad.status_code == 400 and bad.json()["description"] == "Validation failed"


def test_settings_need_exactly_one_of_domain_and_base_url() -> None:
    with pytest.raises(ConnectorConfigError):
        FreshdeskConnector("fd", {"api_key": "k"})
    with pytest.raises(ConnectorConfigError):
        FreshdeskConnector("fd", {"api_key": "k", "domain": "evil.com/x"})
    connector = FreshdeskConnector("fd", {"api_key": "secret-key-123", "domain": "acme"})
    assert connector.http.base_url == "https://acme.freshdesk.com/api/v2"
    assert "secret-key-123" not in repr(connector.settings)
