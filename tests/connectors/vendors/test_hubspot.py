"""The HubSpot connector against its strict fake: conformance, paging, 429s, GDPR delete."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from connectors.base import Connector
from connectors.conformance import ConnectorConformance, Faults, Seeded, Target, run_task
from connectors.fakes import hubspot
from connectors.vendors.hubspot import HubSpotConnector
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject

RATE = {"requests": 40, "per_seconds": 1.0, "concurrency": 4}
RETRY = {"attempts": 4, "backoff_seconds": 0.05, "max_backoff_seconds": 0.5, "max_wait_seconds": 1}
SUBJECT = Subject(identifiers=[Identifier(type="email", value=hubspot.SUBJECT_EMAIL)])


def _connector(fake: hubspot.FakeHubSpot, token: str = hubspot.TOKEN, **extra: Any) -> Connector:
    settings = {
        "token": token,
        "base_url": fake.url,
        "rate_limit": RATE,
        "retry": RETRY,
        "associations_page_size": 25,  # the subject's 60 notes come in three pages
        **extra,
    }
    return HubSpotConnector("hubspot", settings)


class HubSpotFaults(Faults):
    """Fault controls on the HubSpot fake; 429s come without Retry-After (UNCONFIRMED)."""

    def __init__(self, fake: hubspot.FakeHubSpot) -> None:
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
            self.fake.fail_5xx_times = self.fake._served_5xx = 0

    def max_rate_seen(self, window_seconds: float) -> int:
        return self.fake.max_in_window(window_seconds)

    @property
    def configured_rate(self) -> tuple[int, float]:
        return int(RATE["requests"]), float(RATE["per_seconds"])


class HubSpotTarget(Target):
    """HubSpot with one subject contact, its deals, tickets and 60 notes, and other people."""

    name = "hubspot"

    def __init__(self, fake: hubspot.FakeHubSpot) -> None:
        self.fake = fake

    def connector(self) -> Connector:
        return _connector(self.fake)

    def bad_credentials(self) -> Connector:
        return _connector(self.fake, token="not-the-token")

    def faults(self) -> Faults:
        return HubSpotFaults(self.fake)

    def seed(self) -> Seeded:
        self.fake.reset()
        return Seeded(
            SUBJECT,
            expected=dict(hubspot.SUBJECT_EXPECTED),
            erased=hubspot.SUBJECT_ERASED,
            personal_values=[hubspot.SUBJECT_NAME, "+31612345678"],
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[hubspot.FakeHubSpot]:
    with hubspot.FakeHubSpot() as server:
        yield server


class TestHubSpotConformance(ConnectorConformance):
    @pytest.fixture
    def target(self, fake: hubspot.FakeHubSpot) -> Target:
        return HubSpotTarget(fake)


@pytest.fixture
def seeded(fake: hubspot.FakeHubSpot) -> hubspot.FakeHubSpot:
    fake.reset()
    return fake


def test_access_pages_associations_and_reads_every_property(seeded: hubspot.FakeHubSpot) -> None:
    outcome = run_task(_connector(seeded), "hubspot", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED
    notes = [r.data["id"] for r in outcome.records if r.collection == "notes"]
    assert len(set(notes)) == hubspot.SUBJECT_NOTES
    pages = seeded.calls("GET", "/crm/v4/objects/contacts/501/associations/notes")
    assert len(pages) == 3
    contact: Any = next(r.data for r in outcome.records if r.collection == "contacts")
    assert contact["properties"]["city"] == "Utrecht"  # not a default property


def test_access_with_small_batches_reads_in_chunks(seeded: hubspot.FakeHubSpot) -> None:
    outcome = run_task(_connector(seeded, batch_size=7), "hubspot", RequestType.ACCESS, SUBJECT)
    assert Counter(r.collection for r in outcome.records) == hubspot.SUBJECT_EXPECTED
    assert len(seeded.calls("POST", "/crm/v3/objects/notes/batch/read")) == 9


def test_429_without_retry_after_is_backed_off_within_the_vendor_limit(
    seeded: hubspot.FakeHubSpot,
) -> None:
    seeded.max_rate = (10, 1.0)  # the vendor's SECONDLY policy, stricter than our setting
    rate = {"requests": 10, "per_seconds": 1.0}
    outcome = run_task(_connector(seeded, rate_limit=rate), "hubspot", RequestType.ACCESS, SUBJECT)
    seeded.max_rate = None
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert Counter(r.collection for r in outcome.records) == hubspot.SUBJECT_EXPECTED
    assert seeded.max_in_window(1.0) <= 10


def test_rate_limit_every_third_call_completes(seeded: hubspot.FakeHubSpot) -> None:
    seeded.rate_limit_every = 3
    outcome = run_task(_connector(seeded), "hubspot", RequestType.ACCESS, SUBJECT)
    seeded.rate_limit_every = None
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert any(r.status == 429 for r in seeded.requests)
    assert seeded.max_in_window(1.0) <= RATE["requests"]


def test_erasure_uses_gdpr_delete_and_keeps_shared_records(seeded: hubspot.FakeHubSpot) -> None:
    outcome = run_task(_connector(seeded), "hubspot", RequestType.ERASURE, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert seeded.gdpr_deleted == ["501"]
    assert "501" not in seeded.data["contacts"]  # not merely archived
    assert ("contacts", "501") not in seeded.plain_deletes
    assert not [e for e in seeded.endpoints if e == ("DELETE", "/crm/v3/objects/{type}/{id}")]
    assert ("POST", "/crm/v3/objects/contacts/gdpr-delete") in seeded.endpoints
    assert outcome.counts.deleted == hubspot.SUBJECT_ERASED
    # The deal shared with another contact stays; other people's records are untouched.
    assert not seeded.data["deals"]["703"]["archived"]
    assert not seeded.data["deals"]["704"]["archived"]
    assert not seeded.data["notes"]["9900"]["archived"]
    assert [(r.collection, r.count) for r in outcome.retained] == [("deals", 1)]
    assert all(seeded.data["notes"][str(9000 + n)]["archived"] for n in range(60))
    kinds = {e.kind for e in outcome.evidence}
    assert kinds == {"vendor_note"}
    assert any("30 days" in e.value for e in outcome.evidence)


def test_erasure_of_an_unknown_subject_does_not_blocklist(seeded: hubspot.FakeHubSpot) -> None:
    stranger = Subject(identifiers=[Identifier(type="email", value="nobody@example.org")])
    outcome = run_task(_connector(seeded), "hubspot", RequestType.ERASURE, stranger)
    assert outcome.status == OutcomeStatus.NOT_FOUND
    assert seeded.blocklist == []
    assert not seeded.calls("POST", "/crm/v3/objects/contacts/gdpr-delete")


def test_the_fake_blocklists_unknown_emails_and_archives_plain_deletes(
    seeded: hubspot.FakeHubSpot,
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {hubspot.TOKEN}"}
    with httpx.Client(base_url=seeded.url, headers=headers) as client:
        answer = client.post(
            "/crm/v3/objects/contacts/gdpr-delete",
            json={"objectId": "nobody@example.org", "idProperty": "email"},
        )
        assert answer.status_code == 204 and not answer.content
        assert seeded.blocklist == ["nobody@example.org"]
        assert client.delete("/crm/v3/objects/contacts/502").status_code == 204
        assert seeded.data["contacts"]["502"]["archived"]  # restorable, still there
        too_many = client.post(_search_path(), json={"limit": 201, "filterGroups": []})
        assert too_many.status_code == 400
        assert too_many.json()["category"] == "VALIDATION_ERROR"
        denied = httpx.post(seeded.url + _search_path(), json={})
        assert denied.status_code == 401
        assert denied.json()["category"] == "INVALID_AUTHENTICATION"


def _search_path() -> str:
    return "/crm/v3/objects/contacts/search"
