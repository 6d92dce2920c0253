"""The Mailchimp connector against its strict local fake: conformance plus vendor specifics."""

from __future__ import annotations

import hashlib
from collections import Counter

import httpx
import pytest

from connectors.base import ConnectorConfigError
from connectors.conformance import Seeded, run_task
from connectors.fakes import mailchimp as mc
from connectors.vendors.mailchimp import MailchimpConnector
from schemas.events import OutcomeStatus, RequestType
from tests.connectors.targets import (
    FAST_RETRY,
    builder,
    completed,
    conformance_suite,
    per_second,
    subject,
)

FAKE = mc.Mailchimp
#: Mailchimp limits connections, not requests per second; the suite needs a rate to check.
SUITE_RATE = (50, 1.0)
EXPECTED = {"members": 2, "activity": 7, "notes": 2, "tags": 4, "events": 1}
SUBJECT = subject(mc.SUBJECT_EMAIL)
HASH = mc.member_id(mc.SUBJECT_EMAIL)
#: A bare 429 says nothing about the wait: back off more often.
RETRY = {**FAST_RETRY, "attempts": 6}


build = builder(
    MailchimpConnector,
    "mailchimp",
    lambda fake: {"api_key": mc.API_KEY, "base_url": f"{fake.url}/3.0"},
    retry=RETRY,
    rate_limit=per_second(SUITE_RATE[0], concurrency=5),
)


#: Three audiences, the subject in two; the fake's 429 carries no Retry-After, as the vendor's.
SEEDED = Seeded(SUBJECT, expected=EXPECTED, erased=2, personal_values=["de Vries", HASH])


TestMailchimpConformance = conformance_suite(
    "mailchimp", build, SEEDED, {"api_key": "not-the-key-us6"}, SUITE_RATE
)


def test_settings_derive_the_datacenter_and_refuse_bad_keys() -> None:
    connector = MailchimpConnector("mc", {"api_key": "abc123-us6"})
    assert connector.settings.url() == "https://us6.api.mailchimp.com/3.0"
    with pytest.raises(ConnectorConfigError, match="datacenter") as err:
        MailchimpConnector("mc", {"api_key": "secretwithoutdc"})
    assert "secretwithoutdc" not in str(err.value)
    with pytest.raises(ConnectorConfigError, match="page_size"):
        MailchimpConnector("mc", {"api_key": "abc-us6", "page_size": 1001})


def test_paging_reads_every_page(fresh: mc.Mailchimp) -> None:
    outcome = completed(fresh, build(fresh, page_size=2), SUBJECT)
    assert dict(Counter(r.collection for r in outcome.records)) == EXPECTED
    assert [c.query for c in fresh.calls("GET", "/3.0/lists/a1/members/" + HASH + "/activity")] == [
        "count=2&offset=0",
        "count=2&offset=2",
        "count=2&offset=4",
    ]
    assert len([c for c in fresh.calls("GET") if c.path == "/3.0/lists"]) == 2  # 3 audiences


def test_connection_cap_keeps_under_the_vendor_limit(fresh: mc.Mailchimp) -> None:
    fresh.reset(extra_audiences=20)
    fresh.faults.latency_seconds = 0.1
    completed(fresh, build(fresh, rate_limit={"concurrency": 10}), SUBJECT)
    assert fresh.max_concurrent() <= mc.MAX_CONNECTIONS
    assert not [r for r in fresh.requests if r.status == 429]


def test_bare_429_from_too_many_connections_is_backed_off(fresh: mc.Mailchimp) -> None:
    fresh.reset(extra_audiences=20)
    fresh.faults.latency_seconds = 0.1
    too_many = build(fresh, rate_limit={"concurrency": 16}, retry={**RETRY, "attempts": 10})
    outcome = run_task(too_many, "mailchimp", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert dict(Counter(r.collection for r in outcome.records)) == EXPECTED
    assert [r for r in fresh.requests if r.status == 429]  # the vendor did push back


def test_erasure_is_permanent_in_every_audience(fresh: mc.Mailchimp) -> None:
    completed(fresh, build(fresh), SUBJECT, RequestType.ERASURE)
    forget = {c.path for c in fresh.calls("POST") if c.path.endswith("/delete-permanent")}
    assert forget == {
        f"/3.0/lists/{a}/members/{HASH}/actions/delete-permanent" for a in ("a1", "a3")
    }
    assert fresh.calls("DELETE") == [] and fresh.archived == []
    assert fresh.forgotten == {("a1", HASH), ("a3", HASH)}
    auth = ("any", mc.API_KEY)
    with httpx.Client(base_url=f"{fresh.url}/3.0", auth=auth) as client:
        assert client.get(f"/lists/a1/members/{HASH}").status_code == 404
        again = client.post("/lists/a1/members", json={"email_address": mc.SUBJECT_EMAIL})
        assert again.status_code == 400
        assert again.json()["title"] == "Forgotten Email Not Subscribed"
    assert len(fresh.data["lists"]["a1"]["members"]) == 1  # Jan stays


@pytest.mark.parametrize("action", [RequestType.OBJECTION, RequestType.CONSENT_WITHDRAWAL])
def test_objection_and_withdrawal_unsubscribe_everywhere_and_delete_nothing(
    fresh: mc.Mailchimp, action: RequestType
) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT, action)
    assert outcome.counts.suppressed == 2 and outcome.counts.deleted == 0
    assert fresh.status_changes == [("a1", HASH, "unsubscribed"), ("a3", HASH, "unsubscribed")]
    assert fresh.calls("DELETE") == [] and fresh.forgotten == set()
    assert not [c for c in fresh.calls("POST")]
    members = [m for a in fresh.data["lists"].values() for m in a["members"].values()]
    assert len(members) == 5
    assert fresh.data["lists"]["a1"]["members"][HASH]["related"]["activity"]  # data kept
    again = run_task(build(fresh), "mailchimp", action, SUBJECT)
    assert again.status == OutcomeStatus.COMPLETED and again.counts.suppressed == 0


def test_the_fake_is_as_strict_as_the_vendor(fresh: mc.Mailchimp) -> None:
    with httpx.Client(base_url=f"{fresh.url}/3.0", auth=("u", mc.API_KEY)) as client:
        # The MD5 of the address as typed, not lower-cased: no such member.
        wrong_hash = hashlib.md5(b"Anna.deVries@example.nl", usedforsecurity=False).hexdigest()
        assert client.get(f"/lists/a1/members/{wrong_hash}").status_code == 404
        big = client.get("/lists", params={"count": 1001})
        assert big.status_code == 400
        assert big.headers["content-type"].startswith("application/problem+json")
        assert set(big.json()) == {"type", "title", "status", "detail", "instance"}
        assert client.delete(f"/lists/a1/members/{HASH}").status_code == 204
        assert client.get(f"/lists/a1/members/{HASH}").json()["status"] == "archived"
        assert fresh.archived == [("a1", HASH)]
    with httpx.Client(base_url=f"{fresh.url}/3.0", auth=("u", "wrong")) as client:
        denied = client.get("/lists")
        assert denied.status_code == 401 and denied.json()["status"] == 401
