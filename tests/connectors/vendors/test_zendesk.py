"""Zendesk: the conformance suite, deep paging, the vendor's rate limit, permanent deletion."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from connectors.base import Connector, ConnectorConfigError
from connectors.conformance import ConnectorConformance, Faults, Seeded, Target, run_task
from connectors.fakes import zendesk as zd
from connectors.vendors.zendesk import ZendeskConnector
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
        Identifier(type="email", value=zd.SUBJECT_EMAIL),
        Identifier(type="phone", value=zd.SUBJECT_PHONE),
    ]
)


def build(
    fake: zd.Zendesk,
    *,
    token: str = zd.API_TOKEN,
    rate: tuple[int, float] = RATE,
    concurrency: int = 4,
    system: str = "zendesk",
) -> ZendeskConnector:
    """A connector against the fake with fast retries and job polling."""
    return ZendeskConnector(
        system,
        {
            "base_url": f"{fake.url}/api/v2",
            "email": zd.EMAIL,
            "api_token": token,
            "rate_limit": {"requests": rate[0], "per_seconds": rate[1], "concurrency": concurrency},
            "retry": RETRY,
            "job_poll_seconds": 0.01,
        },
    )


def seed(fake: zd.Zendesk) -> dict[str, Any]:
    """The subject, a look-alike the partial search also returns, others; what access finds."""
    fake.reset()
    femke = fake.add_user(zd.SUBJECT_NAME, zd.SUBJECT_EMAIL, zd.SUBJECT_PHONE, extra_emails=1)
    lookalike = fake.add_user("F. Smit", "femke.smit@example.nl.invalid")
    jan = fake.add_user("Jan Jansen", "jan@example.com")
    tickets = [
        fake.add_ticket(femke, "Parcel late", comments=2),
        fake.add_ticket(femke, "Invoice", comments=30),
        fake.add_ticket(femke, "Refund", comments=1),
    ]
    fake.add_ticket(lookalike, "Not the subject's", comments=2)
    fake.add_ticket(jan, "Other", comments=1)
    return {
        "user": femke,
        "tickets": tickets,
        "others": [lookalike, jan],
        "expected": {"users": 1, "identities": 3, "tickets": 3, "comments": 33},
    }


class ZendeskFaults(Faults):
    """Fault controls on the Zendesk fake."""

    def __init__(self, fake: zd.Zendesk) -> None:
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


class ZendeskTarget(Target):
    """The Zendesk connector against its fake."""

    name = "zendesk"

    def __init__(self, fake: zd.Zendesk) -> None:
        self.fake = fake

    def connector(self) -> Connector:
        return build(self.fake)

    def bad_credentials(self) -> Connector:
        return build(self.fake, token="wrong-token")

    def faults(self) -> Faults:
        return ZendeskFaults(self.fake)

    def seed(self) -> Seeded:
        seeded = seed(self.fake)
        return Seeded(
            SUBJECT, expected=seeded["expected"], erased=4, personal_values=[zd.SUBJECT_NAME]
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[zd.Zendesk]:
    with zd.Zendesk() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_knobs(fake: zd.Zendesk) -> None:
    fake.max_rate = fake.rate_limit_every = None
    fake.fail_5xx = fake._served_5xx = 0


class TestZendeskConformance(ConnectorConformance):
    @pytest.fixture
    def target(self, fake: zd.Zendesk) -> Target:
        return ZendeskTarget(fake)


def _ids(outcome: Any, collection: str) -> set[int]:
    return {int(r.data["id"]) for r in outcome.records if r.collection == collection}


def test_partial_search_matches_are_not_the_subject(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    outcome = run_task(build(fake), "zendesk", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert _ids(outcome, "users") == {seeded["user"]}
    assert _ids(outcome, "tickets") == set(seeded["tickets"])


def test_a_thousand_tickets_are_exported_completely(fake: zd.Zendesk) -> None:
    fake.reset()
    femke = fake.add_user(zd.SUBJECT_NAME, zd.SUBJECT_EMAIL)
    tickets = {fake.add_ticket(femke, f"T{n}", comments=0) for n in range(1000)}
    fake.requests.clear()
    connector = build(fake, rate=(5000, 1.0), concurrency=16, system="zendesk-deep")
    outcome = run_task(connector, "zendesk-deep", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert _ids(outcome, "tickets") == tickets
    pages = fake.calls("GET", f"/api/v2/users/{femke}/tickets/requested")
    assert len(pages) == 10 and all("page[size]=100" in r.query for r in pages)


def test_access_keeps_within_the_vendor_rate_limit(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    fake.max_rate = (5, 1.0)
    fake.requests.clear()
    connector = build(fake, rate=(5, 1.0), system="zendesk-rate")
    outcome = run_task(connector, "zendesk-rate", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert dict(Counter(r.collection for r in outcome.records)) == seeded["expected"]
    assert fake.max_in_window(1.0) <= 5
    assert not [r for r in fake.requests if r.status == 429]


def test_a_too_fast_client_waits_out_the_vendors_429(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    fake.max_rate = (5, 1.0)
    fake.requests.clear()
    connector = build(fake, rate=(40, 1.0), system="zendesk-fast")
    outcome = run_task(connector, "zendesk-fast", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert dict(Counter(r.collection for r in outcome.records)) == seeded["expected"]
    assert [r for r in fake.requests if r.status == 429]


def test_erasure_deletes_permanently_and_polls_jobs_to_completion(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    fake.requests.clear()
    outcome = run_task(build(fake), "zendesk", RequestType.ERASURE, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    uid = seeded["user"]
    assert [r.status for r in fake.calls("DELETE", f"/api/v2/deleted_users/{uid}")] == [200]
    destroyed = {r.path.rsplit("/", 1)[1] for r in fake.calls("DELETE", "/api/v2/deleted_tickets")}
    assert destroyed == {str(t) for t in seeded["tickets"]}
    assert len(fake.jobs) == 3 and all(j["status"] == "completed" for j in fake.jobs.values())
    assert fake.calls("GET", "/api/v2/job_statuses")
    assert fake.calls("GET", f"/api/v2/users/{uid}/compliance_deletion_statuses")
    # Nothing restorable is left: no soft-deleted ticket or user, the user is a shell.
    assert fake.deleted_tickets == {} and not set(seeded["tickets"]) & set(fake.tickets)
    assert fake.user_state[uid] == "permanently_deleted"
    assert fake.users[uid]["name"] == zd.DELETED_NAME and fake.users[uid]["email"] is None
    kinds = Counter(e.kind for e in outcome.evidence)
    assert kinds["vendor_job_id"] == 3 and kinds["zendesk_compliance_deletion_status"] == 1
    assert all(s != "permanently_deleted" for u, s in fake.user_state.items() if u != uid)


def test_the_fake_is_strict(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    base = f"{fake.url}/api/v2"
    headers = {"Authorization": f"Bearer {zd.OAUTH_TOKEN}"}
    assert httpx.get(f"{base}/users/search?query=x", auth=("a", "b")).json() == {
        "error": "Couldn't authenticate you"
    }
    uid = seeded["user"]
    assert (
        httpx.get(f"{base}/users/{uid}/identities?page[size]=101", headers=headers).status_code
        == 400
    )
    assert (
        httpx.get(
            f"{base}/users/{uid}/tickets/requested?page=101&per_page=100", headers=headers
        ).status_code
        == 400
    )
    # A soft delete alone is restorable.
    assert httpx.delete(f"{base}/users/{uid}", headers=headers).status_code == 200
    listed = httpx.get(f"{base}/deleted_users", headers=headers).json()["deleted_users"]
    assert [u["id"] for u in listed] == [uid]
    fake.restore_user(uid)
    tid = seeded["tickets"][0]
    assert httpx.delete(f"{base}/tickets/{tid}", headers=headers).status_code == 204
    assert httpx.put(f"{base}/deleted_tickets/{tid}/restore", headers=headers).status_code == 200
    gone = httpx.delete(f"{base}/deleted_users/{seeded['others'][1]}", headers=headers)
    assert gone.json() == {"error": "RecordNotFound", "description": "Not found"}


def test_oauth_token_and_settings() -> None:
    with pytest.raises(ConnectorConfigError):
        ZendeskConnector("zd", {"subdomain": "acme"})
    with pytest.raises(ConnectorConfigError):
        ZendeskConnector("zd", {"subdomain": "a.b/c", "oauth_token": "t"})
    connector = ZendeskConnector("zd", {"subdomain": "acme", "oauth_token": "secret-oauth-1"})
    assert connector.http.base_url == "https://acme.zendesk.com/api/v2"
    assert "secret-oauth-1" not in repr(connector.settings)


def test_bearer_auth_works_against_the_fake(fake: zd.Zendesk) -> None:
    seed(fake)
    connector = ZendeskConnector(
        "zendesk-oauth",
        {"base_url": f"{fake.url}/api/v2", "oauth_token": zd.OAUTH_TOKEN, "retry": RETRY},
    )
    outcome = run_task(connector, "zendesk-oauth", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
