"""Freshdesk: the conformance suite, deep paging, the vendor's rate limit, hard delete."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from connectors.base import Connector, ConnectorConfigError
from connectors.conformance import ConnectorConformance, Faults, Seeded, Target, run_task
from connectors.fakes import freshdesk as fd
from connectors.vendors.freshdesk import FreshdeskConnector
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject

RATE = (20, 1.0)
#: Fast retries so the checks take little time; a server's Retry-After is capped at 1 s.
RETRY = {
    "attempts": 4,
    "backoff_seconds": 0.05,
    "max_backoff_seconds": 0.2,
    "max_wait_seconds": 1.0,
}

SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value=fd.SUBJECT_EMAIL),
        Identifier(type="phone", value=fd.SUBJECT_PHONE),
    ]
)


def build(
    fake: fd.Freshdesk,
    *,
    key: str = fd.API_KEY,
    rate: tuple[int, float] = RATE,
    concurrency: int = 4,
    system: str = "freshdesk",
) -> FreshdeskConnector:
    """A connector against the fake with a fast retry policy."""
    return FreshdeskConnector(
        system,
        {
            "base_url": f"{fake.url}/api/v2",
            "api_key": key,
            "rate_limit": {
                "requests": rate[0],
                "per_seconds": rate[1],
                "concurrency": concurrency,
            },
            "retry": RETRY,
        },
    )


def seed(fake: fd.Freshdesk) -> dict[str, Any]:
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
    return {
        "contacts": [anna, old_profile],
        "tickets": [recent, old, trashed, from_old_profile],
        "others": [jan, piet],
        "expected": {"contacts": 2, "tickets": 4, "conversations": 38},
    }


class FreshdeskFaults(Faults):
    """Fault controls on the Freshdesk fake."""

    def __init__(self, fake: fd.Freshdesk) -> None:
        self.fake = fake

    @contextmanager
    def rate_limit(self, every: int, retry_after: int) -> Iterator[None]:
        self.fake.rate_limit_every, self.fake.retry_after = every, retry_after
        self.fake.requests.clear()  # measure this access only, not the previous checks
        try:
            yield
        finally:
            self.fake.rate_limit_every = None

    @contextmanager
    def server_errors(self) -> Iterator[None]:
        self.fake.fail_5xx = 10**9
        try:
            yield
        finally:
            self.fake.fail_5xx = self.fake._served_5xx = 0

    def max_rate_seen(self, window_seconds: float) -> int:
        return self.fake.max_in_window(window_seconds)

    @property
    def configured_rate(self) -> tuple[int, float]:
        return RATE


class FreshdeskTarget(Target):
    """The Freshdesk connector against its fake."""

    name = "freshdesk"

    def __init__(self, fake: fd.Freshdesk) -> None:
        self.fake = fake

    def connector(self) -> Connector:
        return build(self.fake)

    def bad_credentials(self) -> Connector:
        return build(self.fake, key="wrong-key")

    def faults(self) -> Faults:
        return FreshdeskFaults(self.fake)

    def seed(self) -> Seeded:
        seeded = seed(self.fake)
        return Seeded(
            SUBJECT, expected=seeded["expected"], erased=2, personal_values=[fd.SUBJECT_NAME]
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[fd.Freshdesk]:
    with fd.Freshdesk() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_knobs(fake: fd.Freshdesk) -> None:
    fake.max_rate = fake.rate_limit_every = None
    fake.fail_5xx = fake._served_5xx = 0
    fake.link_header = True


class TestFreshdeskConformance(ConnectorConformance):
    @pytest.fixture
    def target(self, fake: fd.Freshdesk) -> Target:
        return FreshdeskTarget(fake)


def _ids(outcome: Any, collection: str) -> set[int]:
    return {int(r.data["id"]) for r in outcome.records if r.collection == collection}


def test_old_and_trashed_tickets_are_exported(fake: fd.Freshdesk) -> None:
    seeded = seed(fake)
    outcome = run_task(build(fake), "freshdesk", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert _ids(outcome, "tickets") == set(seeded["tickets"])
    assert _ids(outcome, "contacts") == set(seeded["contacts"])
    listings = [r for r in fake.calls("GET") if r.path == "/api/v2/tickets"]
    assert listings and all("updated_since=2000-01-01" in r.query for r in listings)
    assert any("filter=deleted" in r.query for r in listings)


@pytest.mark.parametrize("link_header", [True, False], ids=["link", "no-link"])
def test_a_thousand_tickets_are_exported_completely(fake: fd.Freshdesk, link_header: bool) -> None:
    fake.reset()
    fake.link_header = link_header
    anna = fake.add_contact(fd.SUBJECT_NAME, fd.SUBJECT_EMAIL)
    tickets = {fake.add_ticket(anna, f"T{n}", age_days=n % 700) for n in range(1000)}
    fake.requests.clear()
    connector = build(fake, rate=(5000, 1.0), concurrency=16, system="freshdesk-deep")
    outcome = run_task(connector, "freshdesk-deep", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert _ids(outcome, "tickets") == tickets
    pages = [r for r in fake.calls("GET", "/api/v2/tickets") if r.path == "/api/v2/tickets"]
    assert all("per_page=100" in r.query for r in pages)
    assert len(pages) <= 2 * 11  # 10 full pages (+ one empty) per listing, nothing more


def test_access_keeps_within_the_vendor_rate_limit(fake: fd.Freshdesk) -> None:
    seeded = seed(fake)
    fake.max_rate = (10, 1.0)
    fake.requests.clear()
    connector = build(fake, rate=(10, 1.0), system="freshdesk-rate")
    outcome = run_task(connector, "freshdesk-rate", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert dict(Counter(r.collection for r in outcome.records)) == seeded["expected"]
    assert fake.max_in_window(1.0) <= 10
    assert not [r for r in fake.requests if r.status == 429]


def test_a_too_fast_client_waits_out_the_vendors_429(fake: fd.Freshdesk) -> None:
    seeded = seed(fake)
    fake.max_rate = (10, 1.0)
    fake.requests.clear()
    connector = build(fake, rate=(40, 1.0), system="freshdesk-fast")
    outcome = run_task(connector, "freshdesk-fast", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert dict(Counter(r.collection for r in outcome.records)) == seeded["expected"]
    assert [r for r in fake.requests if r.status == 429]  # the vendor did push back


def test_erasure_hard_deletes_with_force_and_never_only_soft(fake: fd.Freshdesk) -> None:
    seeded = seed(fake)
    fake.requests.clear()
    outcome = run_task(build(fake), "freshdesk", RequestType.ERASURE, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert outcome.counts.deleted == 2
    hard = fake.calls("DELETE", "/api/v2/contacts")
    assert {r.path for r in hard} == {
        f"/api/v2/contacts/{c}/hard_delete" for c in seeded["contacts"]
    }
    assert all(r.query == "force=true" and r.status == 204 for r in hard)
    assert fake.soft_deleted == []
    # Nothing restorable is left: no contact of the subject, deleted or not, and no tickets.
    assert set(fake.contacts) == set(seeded["others"])
    assert not set(seeded["tickets"]) & set(fake.tickets)
    assert {e.kind for e in outcome.evidence} == {"freshdesk_hard_delete"}


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
