"""The HubSpot connector against its strict fake: conformance, paging, 429s, GDPR delete."""

from __future__ import annotations

from collections import Counter
from typing import Any

from connectors.conformance import Seeded, run_task
from connectors.fakes import hubspot
from connectors.vendors.hubspot import HubSpotConnector
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject
from tests.connectors.targets import (
    access_under_vendor_limit,
    builder,
    completed,
    conformance_suite,
    erased_counts,
    per_second,
    subject,
)

FAKE = hubspot.FakeHubSpot
SUBJECT = subject(hubspot.SUBJECT_EMAIL)


#: A connector for the fake; the subject's 60 notes come in three association pages.
build = builder(
    HubSpotConnector,
    "hubspot",
    lambda fake: {"token": hubspot.TOKEN, "base_url": fake.url},
    rate_limit=per_second(40, concurrency=4),
    associations_page_size=25,
)


#: One subject contact, its deals, tickets and 60 notes, among other people; the fake's 429s
#: come without Retry-After (UNCONFIRMED).
SEEDED = Seeded(
    SUBJECT,
    expected=dict(hubspot.SUBJECT_EXPECTED),
    erased=hubspot.SUBJECT_ERASED,
    personal_values=[hubspot.SUBJECT_NAME, "+31612345678"],
)


TestHubSpotConformance = conformance_suite(
    "hubspot", build, SEEDED, {"token": "not-the-token"}, (40, 1.0)
)


def test_access_pages_associations_and_reads_every_property(fresh: hubspot.FakeHubSpot) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT)
    notes = [r.data["id"] for r in outcome.records if r.collection == "notes"]
    assert len(set(notes)) == hubspot.SUBJECT_NOTES
    pages = fresh.calls("GET", "/crm/v4/objects/contacts/501/associations/notes")
    assert len(pages) == 3
    contact: Any = next(r.data for r in outcome.records if r.collection == "contacts")
    assert contact["properties"]["city"] == "Utrecht"  # not a default property


def test_access_with_small_batches_reads_in_chunks(fresh: hubspot.FakeHubSpot) -> None:
    outcome = run_task(build(fresh, batch_size=7), "hubspot", RequestType.ACCESS, SUBJECT)
    assert Counter(r.collection for r in outcome.records) == hubspot.SUBJECT_EXPECTED
    assert len(fresh.calls("POST", "/crm/v3/objects/notes/batch/read")) == 9


def test_429_without_retry_after_is_backed_off_within_the_vendor_limit(
    fresh: hubspot.FakeHubSpot,
) -> None:
    # The vendor's SECONDLY policy, as strict as our setting: no room for our retries.
    connector = build(fresh, rate_limit=per_second(10))
    access_under_vendor_limit(fresh, connector, SEEDED, (10, 1.0))
    assert fresh.max_in_window(1.0) <= 10


def test_rate_limit_every_third_call_completes(fresh: hubspot.FakeHubSpot) -> None:
    fresh.faults.rate_limit_every = 3
    completed(fresh, build(fresh), SUBJECT)
    assert any(r.status == 429 for r in fresh.requests)
    assert fresh.max_in_window(1.0) <= 40


def test_erasure_uses_gdpr_delete_and_unlinks_shared_records(fresh: hubspot.FakeHubSpot) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT, RequestType.ERASURE)
    assert fresh.gdpr_deleted == ["501"]
    assert "501" not in fresh.data["contacts"]  # not merely archived
    assert ("contacts", "501") not in fresh.plain_deletes
    assert not [e for e in fresh.endpoints if e == ("DELETE", "/crm/v3/objects/{type}/{id}")]
    assert ("POST", "/crm/v3/objects/contacts/gdpr-delete") in fresh.endpoints
    assert outcome.counts.deleted == hubspot.SUBJECT_ERASED
    # The deal shared with another contact stays, unlinked from the subject (nothing is
    # "retained" of the subject's); other people's records are untouched.
    assert not fresh.data["deals"]["703"]["archived"]
    assert not fresh.data["deals"]["704"]["archived"]
    assert not fresh.data["notes"]["9900"]["archived"]
    assert outcome.retained == []
    assert all(fresh.data["notes"][str(9000 + n)]["archived"] for n in range(60))
    kinds = {e.kind for e in outcome.evidence}
    unlinked = {"deal_associations_removed", "email_associations_removed"}
    assert kinds - {f"{c}_deleted" for c in hubspot.SUBJECT_EXPECTED} == {"vendor_note", *unlinked}
    assert sum(erased_counts(outcome).values()) == hubspot.SUBJECT_ERASED
    assert any("30 days" in e.value for e in outcome.evidence)


def test_erasure_of_an_unknown_subject_does_not_blocklist(fresh: hubspot.FakeHubSpot) -> None:
    stranger = Subject(identifiers=[Identifier(type="email", value="nobody@example.org")])
    outcome = run_task(build(fresh), "hubspot", RequestType.ERASURE, stranger)
    assert outcome.status == OutcomeStatus.NOT_FOUND
    assert fresh.blocklist == []
    assert not fresh.calls("POST", "/crm/v3/objects/contacts/gdpr-delete")


def test_the_fake_blocklists_unknown_emails_and_archives_plain_deletes(
    fresh: hubspot.FakeHubSpot,
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {hubspot.TOKEN}"}
    with httpx.Client(base_url=fresh.url, headers=headers) as client:
        answer = client.post(
            "/crm/v3/objects/contacts/gdpr-delete",
            json={"objectId": "nobody@example.org", "idProperty": "email"},
        )
        assert answer.status_code == 204 and not answer.content
        assert fresh.blocklist == ["nobody@example.org"]
        assert client.delete("/crm/v3/objects/contacts/502").status_code == 204
        assert fresh.data["contacts"]["502"]["archived"]  # restorable, still there
        too_many = client.post(_search_path(), json={"limit": 201, "filterGroups": []})
        assert too_many.status_code == 400
        assert too_many.json()["category"] == "VALIDATION_ERROR"
        denied = httpx.post(fresh.url + _search_path(), json={})
        assert denied.status_code == 401
        assert denied.json()["category"] == "INVALID_AUTHENTICATION"


def _search_path() -> str:
    return "/crm/v3/objects/contacts/search"
