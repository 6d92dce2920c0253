"""The Intercom connector against its strict fake: conformance, deep paging, 429s, deletion."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from connectors.conformance import Seeded
from connectors.fakes import intercom
from connectors.vendors.intercom import IntercomConnector
from schemas.events import RequestType
from tests.connectors.targets import (
    access_under_vendor_limit,
    builder,
    completed,
    conformance_suite,
    erased_counts,
    per_second,
    subject,
)

FAKE = intercom.FakeIntercom
SUBJECT = subject(intercom.SUBJECT_EMAIL)
#: Erasure deletes four own conversations, two tickets and the contact; in the conversation
#: shared with another contact it redacts the subject's two messages (opening and one reply).
ERASED = 7
REDACTED = 2


build = builder(
    IntercomConnector,
    "intercom",
    lambda fake: {"token": intercom.TOKEN, "base_url": fake.url},
    rate_limit=per_second(40, concurrency=4),
)


#: The subject's contact, conversations, tickets, notes and tags; the fake's 429s carry
#: X-RateLimit-Reset (unix time).
SEEDED = Seeded(
    SUBJECT,
    expected=dict(intercom.SUBJECT_EXPECTED),
    erased=ERASED + REDACTED,
    personal_values=[intercom.SUBJECT_NAME, "+31612345678"],
)


TestIntercomConformance = conformance_suite(
    "intercom", build, SEEDED, {"token": "not-the-token"}, (40, 1.0)
)


def test_500_conversations_are_exported_completely(fresh: intercom.FakeIntercom) -> None:
    fresh.reset(conversations=500)
    fast = {"requests": 400, "per_seconds": 1.0, "concurrency": 8}
    outcome = completed(fresh, build(fresh, rate_limit=fast), SUBJECT)
    conversations: list[Any] = [r.data for r in outcome.records if r.collection == "conversations"]
    assert len({c["id"] for c in conversations}) == 501  # 500 own + the shared one
    assert all("conversation_parts" in c for c in conversations)  # full, not search results
    assert len(fresh.calls("POST", "/conversations/search")) == 4  # 150 per page
    first = next(c for c in conversations if c["id"] == "c0")
    assert len(first["conversation_parts"]["conversation_parts"]) == 20
    assert set(fresh.versions) == {"2.14"}


def test_429_with_reset_header_completes_within_the_configured_rate(
    fresh: intercom.FakeIntercom,
) -> None:
    fresh.faults.rate_limit_every = 4
    connector = build(fresh, rate_limit=per_second(10))
    assert access_under_vendor_limit(fresh, connector, SEEDED, (10, 1.0))
    assert fresh.max_in_window(1.0) <= 10


def test_erasure_deletes_permanently_and_never_archives(fresh: intercom.FakeIntercom) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT, RequestType.ERASURE)
    assert outcome.counts.deleted == ERASED
    assert outcome.counts.anonymised == REDACTED
    assert erased_counts(outcome) == {"conversations": 4, "tickets": 2, "contacts": 1}
    deletes = Counter(route for method, route in fresh.endpoints if method == "DELETE")
    assert deletes == {"/conversations/{id}": 4, "/tickets/{id}": 2, "/contacts/{id}": 1}
    assert fresh.archived == []
    assert not [e for e in fresh.endpoints if e[1] == "/contacts/{id}/archive"]
    assert intercom.SUBJECT_ID not in fresh.contacts
    # Other people's data stays, and so does the conversation shared with one of them, with
    # the subject's messages redacted (tests/connectors/vendors/test_third_parties.py).
    assert {"shared", "jan"} == set(fresh.conversations)
    assert set(fresh.tickets) == {"t3"}
    assert outcome.retained == []


def test_region_selects_the_base_url() -> None:
    eu = IntercomConnector("intercom", {"token": "x", "region": "eu"})
    assert isinstance(eu, IntercomConnector) and eu.http.base_url == "https://api.eu.intercom.io"
    au = IntercomConnector("intercom", {"token": "x", "region": "au"})
    assert isinstance(au, IntercomConnector) and au.http.base_url == "https://api.au.intercom.io"


def test_the_fake_is_strict(fresh: intercom.FakeIntercom) -> None:
    headers = {"Authorization": f"Bearer {intercom.TOKEN}"}
    query = {"query": {"field": "email", "operator": "=", "value": intercom.SUBJECT_EMAIL}}
    with httpx.Client(base_url=fresh.url, headers=headers) as client:
        too_many = client.post("/contacts/search", json={**query, "pagination": {"per_page": 151}})
        assert too_many.status_code == 400 and too_many.json()["type"] == "error.list"
        archived = client.post(f"/contacts/{intercom.SUBJECT_ID}/archive")
        assert archived.status_code == 200
        found = client.post("/contacts/search", json=query).json()
        assert found["total_count"] == 1  # archiving is not deletion
        assert fresh.versions[-1] is None  # no Intercom-Version: answered, but recorded
        gone = client.delete("/contacts/unknown")
        assert gone.status_code == 404 and gone.json()["errors"][0]["code"] == "not_found"
    denied = httpx.post(fresh.url + "/contacts/search", json=query)
    assert denied.status_code == 401
    assert denied.json()["errors"][0]["code"] == "unauthorized"
