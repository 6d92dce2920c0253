"""The Intercom connector against its strict fake: conformance, deep paging, 429s, deletion."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from connectors.base import Connector
from connectors.conformance import ConnectorConformance, Faults, Seeded, Target, run_task
from connectors.fakes import intercom
from connectors.vendors.intercom import IntercomConnector
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject

RATE = {"requests": 40, "per_seconds": 1.0, "concurrency": 4}
RETRY = {"attempts": 4, "backoff_seconds": 0.05, "max_backoff_seconds": 0.5, "max_wait_seconds": 1}
SUBJECT = Subject(identifiers=[Identifier(type="email", value=intercom.SUBJECT_EMAIL)])
#: Erasure deletes four own conversations, two tickets and the contact; the shared one stays.
ERASED = 7


def _connector(fake: intercom.FakeIntercom, token: str = intercom.TOKEN, **extra: Any) -> Connector:
    settings = {"token": token, "base_url": fake.url, "rate_limit": RATE, "retry": RETRY, **extra}
    return IntercomConnector("intercom", settings)


class IntercomFaults(Faults):
    """Fault controls on the Intercom fake; 429s carry X-RateLimit-Reset (unix time)."""

    def __init__(self, fake: intercom.FakeIntercom) -> None:
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


class IntercomTarget(Target):
    """Intercom with the subject's contact, conversations, tickets, notes and tags."""

    name = "intercom"

    def __init__(self, fake: intercom.FakeIntercom) -> None:
        self.fake = fake

    def connector(self) -> Connector:
        return _connector(self.fake)

    def bad_credentials(self) -> Connector:
        return _connector(self.fake, token="not-the-token")

    def faults(self) -> Faults:
        return IntercomFaults(self.fake)

    def seed(self) -> Seeded:
        self.fake.reset()
        return Seeded(
            SUBJECT,
            expected=dict(intercom.SUBJECT_EXPECTED),
            erased=ERASED,
            personal_values=[intercom.SUBJECT_NAME, "+31612345678"],
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[intercom.FakeIntercom]:
    with intercom.FakeIntercom() as server:
        yield server


class TestIntercomConformance(ConnectorConformance):
    @pytest.fixture
    def target(self, fake: intercom.FakeIntercom) -> Target:
        return IntercomTarget(fake)


@pytest.fixture
def seeded(fake: intercom.FakeIntercom) -> intercom.FakeIntercom:
    fake.reset()
    return fake


def test_500_conversations_are_exported_completely(seeded: intercom.FakeIntercom) -> None:
    seeded.reset(conversations=500)
    fast = {"requests": 400, "per_seconds": 1.0, "concurrency": 8}
    outcome = run_task(_connector(seeded, rate_limit=fast), "intercom", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    conversations: list[Any] = [r.data for r in outcome.records if r.collection == "conversations"]
    assert len({c["id"] for c in conversations}) == 501  # 500 own + the shared one
    assert all("conversation_parts" in c for c in conversations)  # full, not search results
    assert len(seeded.calls("POST", "/conversations/search")) == 4  # 150 per page
    first = next(c for c in conversations if c["id"] == "c0")
    assert len(first["conversation_parts"]["conversation_parts"]) == 20
    assert set(seeded.versions) == {"2.14"}


def test_429_with_reset_header_completes_within_the_configured_rate(
    seeded: intercom.FakeIntercom,
) -> None:
    seeded.rate_limit_every = 4
    seeded.max_rate = (10, 1.0)
    rate = {"requests": 10, "per_seconds": 1.0}
    outcome = run_task(_connector(seeded, rate_limit=rate), "intercom", RequestType.ACCESS, SUBJECT)
    seeded.rate_limit_every = seeded.max_rate = None
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert Counter(r.collection for r in outcome.records) == intercom.SUBJECT_EXPECTED
    assert any(r.status == 429 for r in seeded.requests)
    assert seeded.max_in_window(1.0) <= 10


def test_erasure_deletes_permanently_and_never_archives(seeded: intercom.FakeIntercom) -> None:
    outcome = run_task(_connector(seeded), "intercom", RequestType.ERASURE, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert outcome.counts.deleted == ERASED
    deletes = Counter(route for method, route in seeded.endpoints if method == "DELETE")
    assert deletes == {"/conversations/{id}": 4, "/tickets/{id}": 2, "/contacts/{id}": 1}
    assert seeded.archived == []
    assert not [e for e in seeded.endpoints if e[1] == "/contacts/{id}/archive"]
    assert intercom.SUBJECT_ID not in seeded.contacts
    # Other people's data stays, and so does the conversation shared with one of them.
    assert {"shared", "jan"} == set(seeded.conversations)
    assert set(seeded.tickets) == {"t3"}
    assert [(r.collection, r.count) for r in outcome.retained] == [("conversations", 1)]


def test_region_selects_the_base_url() -> None:
    eu = IntercomConnector("intercom", {"token": "x", "region": "eu"})
    assert isinstance(eu, IntercomConnector) and eu.http.base_url == "https://api.eu.intercom.io"
    au = IntercomConnector("intercom", {"token": "x", "region": "au"})
    assert isinstance(au, IntercomConnector) and au.http.base_url == "https://api.au.intercom.io"


def test_the_fake_is_strict(seeded: intercom.FakeIntercom) -> None:
    headers = {"Authorization": f"Bearer {intercom.TOKEN}"}
    query = {"query": {"field": "email", "operator": "=", "value": intercom.SUBJECT_EMAIL}}
    with httpx.Client(base_url=seeded.url, headers=headers) as client:
        too_many = client.post("/contacts/search", json={**query, "pagination": {"per_page": 151}})
        assert too_many.status_code == 400 and too_many.json()["type"] == "error.list"
        archived = client.post(f"/contacts/{intercom.SUBJECT_ID}/archive")
        assert archived.status_code == 200
        found = client.post("/contacts/search", json=query).json()
        assert found["total_count"] == 1  # archiving is not deletion
        assert seeded.versions[-1] is None  # no Intercom-Version: answered, but recorded
        gone = client.delete("/contacts/unknown")
        assert gone.status_code == 404 and gone.json()["errors"][0]["code"] == "not_found"
    denied = httpx.post(seeded.url + "/contacts/search", json=query)
    assert denied.status_code == 401
    assert denied.json()["errors"][0]["code"] == "unauthorized"
