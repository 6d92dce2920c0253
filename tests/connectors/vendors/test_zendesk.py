"""Zendesk: the conformance suite, deep paging, the vendor's rate limit, permanent deletion."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorConfigError
from connectors.conformance import run_task
from connectors.fakes import zendesk as zd
from connectors.vendors.zendesk import ZendeskConnector
from schemas.events import RequestType
from tests.connectors.targets import (
    FAST_RETRY,
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

FAKE = zd.Zendesk
RATE = (20, 1.0)
SUBJECT = subject(zd.SUBJECT_EMAIL, zd.SUBJECT_PHONE)


build = builder(
    ZendeskConnector,
    "zendesk",
    lambda fake: {"base_url": f"{fake.url}/api/v2", "email": zd.EMAIL, "api_token": zd.API_TOKEN},
    rate_limit=per_second(RATE[0], concurrency=4),
    job_poll_seconds=0.01,
)


def seed(fake: zd.Zendesk) -> SeededIds:
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
    return SeededIds(
        SUBJECT,
        expected={"users": 1, "identities": 3, "tickets": 3, "comments": 33},
        erased=1 + 3 + 3 + 33,  # comments go with their ticket, identities with the user
        personal_values=[zd.SUBJECT_NAME],
        ids={
            "user": femke,
            "tickets": tickets,
            "others": [lookalike, jan],
        },
    )


TestZendeskConformance = conformance_suite(
    "zendesk", build, seed, {"api_token": "wrong-token"}, RATE
)


def test_partial_search_matches_are_not_the_subject(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    outcome = completed(fake, build(fake), SUBJECT)
    assert ids(outcome, "users") == {seeded.ids["user"]}
    assert ids(outcome, "tickets") == set(seeded.ids["tickets"])


def test_a_thousand_tickets_are_exported_completely(fake: zd.Zendesk) -> None:
    fake.reset()
    femke = fake.add_user(zd.SUBJECT_NAME, zd.SUBJECT_EMAIL)
    tickets = {fake.add_ticket(femke, f"T{n}", comments=0) for n in range(1000)}
    outcome = unlimited_access(fake, build, SUBJECT)
    assert ids(outcome, "tickets") == tickets
    pages = fake.calls("GET", f"/api/v2/users/{femke}/tickets/requested")
    assert len(pages) == 10 and all("page[size]=100" in r.query for r in pages)


@pytest.mark.parametrize("requests", [5, 40], ids=["within", "too-fast"])
def test_the_vendor_limit_is_kept_or_its_429s_are_waited_out(fake: Any, requests: int) -> None:
    vendor_limit_kept_or_waited_out(fake, build, seed(fake), 5, requests)


def test_erasure_deletes_permanently_and_polls_jobs_to_completion(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    outcome = completed(fake, build(fake), SUBJECT, RequestType.ERASURE)
    uid = seeded.ids["user"]
    assert [r.status for r in fake.calls("DELETE", f"/api/v2/deleted_users/{uid}")] == [200]
    destroyed = {r.path.rsplit("/", 1)[1] for r in fake.calls("DELETE", "/api/v2/deleted_tickets")}
    assert destroyed == {str(t) for t in seeded.ids["tickets"]}
    assert len(fake.jobs) == 3 and all(j["status"] == "completed" for j in fake.jobs.values())
    assert fake.calls("GET", "/api/v2/job_statuses")
    assert fake.calls("GET", f"/api/v2/users/{uid}/compliance_deletion_statuses")
    # Nothing restorable is left: no soft-deleted ticket or user, the user is a shell.
    assert fake.deleted_tickets == {} and not set(seeded.ids["tickets"]) & set(fake.tickets)
    assert fake.user_state[uid] == "permanently_deleted"
    assert fake.users[uid]["name"] == zd.DELETED_NAME and fake.users[uid]["email"] is None
    kinds = Counter(e.kind for e in outcome.evidence)
    assert kinds["vendor_job_id"] == 3 and kinds["zendesk_compliance_deletion_status"] == 1
    # Art. 17(1), 5(2): per collection, what went along with a ticket or the user included.
    assert erased_counts(outcome) == seeded.expected
    assert not set(seeded.ids["tickets"]) & set(fake.comments)
    assert all(s != "permanently_deleted" for u, s in fake.user_state.items() if u != uid)


def test_the_fake_is_strict(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    base = f"{fake.url}/api/v2"
    headers = {"Authorization": f"Bearer {zd.OAUTH_TOKEN}"}
    assert httpx.get(f"{base}/users/search?query=x", auth=("a", "b")).json() == {
        "error": "Couldn't authenticate you"
    }
    uid = seeded.ids["user"]
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
    tid = seeded.ids["tickets"][0]
    assert httpx.delete(f"{base}/tickets/{tid}", headers=headers).status_code == 204
    assert httpx.put(f"{base}/deleted_tickets/{tid}/restore", headers=headers).status_code == 200
    gone = httpx.delete(f"{base}/deleted_users/{seeded.ids['others'][1]}", headers=headers)
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
        {"base_url": f"{fake.url}/api/v2", "oauth_token": zd.OAUTH_TOKEN, "retry": FAST_RETRY},
    )
    completed(fake, connector, SUBJECT)


def test_the_fake_redaction_and_ticket_update_are_strict(fake: zd.Zendesk) -> None:
    seeded = seed(fake)
    base = f"{fake.url}/api/v2"
    headers = {"Authorization": f"Bearer {zd.OAUTH_TOKEN}"}
    tid = seeded.ids["tickets"][0]
    comment = fake.comments[tid][0]
    url = f"{base}/comment_redactions/{comment['id']}"
    # Only the comment's own html_body, with <redact> tags added, is accepted.
    altered = {"ticket_id": tid, "html_body": "<p><redact>something else</redact></p>"}
    assert httpx.put(url, json=altered, headers=headers).json()["error"] == "InvalidValue"
    other_ticket = {"ticket_id": seeded.ids["tickets"][1], "html_body": comment["html_body"]}
    assert httpx.put(url, json=other_ticket, headers=headers).status_code == 404
    assert fake.redactions == []
    wrong = {"ticket": {"status": "solved"}}
    answer = httpx.put(f"{base}/tickets/{tid}", json=wrong, headers=headers)
    assert answer.status_code == 422 and answer.json()["error"] == "RecordInvalid"
    many = ",".join(str(n) for n in range(101))
    assert httpx.get(f"{base}/users/show_many?ids={many}", headers=headers).status_code == 400


def test_a_comment_with_a_link_and_an_image_is_redacted_whole(fake: zd.Zendesk) -> None:
    femke = seed(fake).ids["user"]
    shared = fake.add_shared_tickets(femke)
    [comment] = [c for c in fake.comments[shared["cc"]] if c["author_id"] == femke]
    comment["html_body"] = '<p>See <a href="https://x.example">my page</a> <img src="y.png" /></p>'
    run_task(build(fake), "zendesk", RequestType.ERASURE, SUBJECT)
    left = comment["html_body"]
    assert zd.REDACTED in left
    assert not any(text in left for text in ("See", "my page", "x.example", "y.png"))
