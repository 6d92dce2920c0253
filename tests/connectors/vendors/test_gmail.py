"""Google Workspace (Gmail) against its strict fake: a service account's delegated tokens, 1,200
messages across three mailboxes (spam and trash too), permanent deletion, Gmail's quota."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from typing import Any

import httpx
import pytest

from connectors.base import Connector, ConnectorConfigError
from connectors.conformance import Seeded, run_task
from connectors.fakes import gmail
from connectors.metadata import packaged
from connectors.vendors.gmail import (
    DIRECTORY_SCOPE,
    FULL_SCOPE,
    READONLY_SCOPE,
    DelegatedTokens,
    GmailConnector,
    batch_answers,
    batch_body,
    pseudonym,
    search_query,
)
from orchestrator.artifacts.redaction import protect
from schemas.events import OutcomeStatus, RequestType
from tests.connectors.targets import (
    FAST_RETRY,
    completed,
    conformance_suite,
    per_second,
    subject,
)

FAKE = gmail.FakeGmail
SUBJECT = subject(gmail.SUBJECT_EMAIL)
FAST = {"requests": 2000, "per_seconds": 1.0, "concurrency": 16}
#: Backoff that outlasts the fake's 1-second quota window without a Retry-After.
PATIENT_RETRY = {"attempts": 12, "backoff_seconds": 0.1, "max_backoff_seconds": 1.0,
                 "max_wait_seconds": 2.0}  # fmt: skip


def build(
    fake: gmail.FakeGmail, system: str = "gmail", wrong_key: bool = False, **settings: Any
) -> Connector:
    """A Gmail connector for the fake, listing mailboxes from its Directory; `wrong_key`: a key
    the service account does not have."""
    key = fake.key_info(gmail.private_key_pem("not-the-service-account") if wrong_key else None)
    defaults: dict[str, Any] = {
        "service_account_key": json.dumps(key),
        "admin": gmail.ADMIN,
        "gmail_url": fake.url,
        "directory_url": fake.url,
        "retry": FAST_RETRY,
        "rate_limit": per_second(40, concurrency=4),
    }
    return GmailConnector(system, {**defaults, **settings})


SEEDED = Seeded(SUBJECT, expected={"messages": 12}, erased=12, personal_values=["Anna de Vries"])

TestGmailConformance = conformance_suite("gmail", build, SEEDED, {"wrong_key": True}, (40, 1.0))


def _by_mailbox(records: list[Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for record in records:
        found.setdefault(record.data["mailbox"], set()).add(record.data["id"])
    return found


def test_1200_messages_in_three_mailboxes_are_all_exported_with_spam_and_trash(
    fresh: gmail.FakeGmail,
) -> None:
    fresh.reset(messages=1200)
    involved = fresh.involving(gmail.SUBJECT_EMAIL)
    expected = {m: {s.id for s in found} for m, found in involved.items()}
    outcome = completed(fresh, build(fresh, rate_limit=FAST), SUBJECT)
    assert len(outcome.records) == outcome.counts.found == 1200
    assert _by_mailbox(outcome.records) == expected
    assert [len(expected[m]) for m in gmail.MAILBOXES] == [600, 400, 200]
    labels = Counter(label for r in outcome.records for label in r.data["labelIds"])
    assert labels["SPAM"] == 120 and labels["TRASH"] > 100  # only listed with includeSpamTrash
    lists = fresh.calls("GET", "/gmail/v1/users/")
    lists = [r for r in lists if r.path.endswith("/messages")]
    assert len(lists) == 4  # 600 messages take two pages of 500
    assert all("includeSpamTrash=true" in r.query and "maxResults=500" in r.query for r in lists)
    exported = {r.data["from"][0] for r in outcome.records}
    assert gmail.LOOKALIKE_EMAIL not in exported  # Gmail's loose match, checked exactly
    assert ("POST", "/gmail/v1/users/{user}/messages/{id}/trash") not in fresh.endpoints


def test_the_eml_is_the_message_as_stored(fresh: gmail.FakeGmail) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT)
    for record in outcome.records:
        stored = fresh.mail[record.data["mailbox"]][record.data["id"]]
        assert base64.b64decode(record.data["eml"]) == stored.raw
        assert record.data["date"].startswith("2026-")


def test_access_uses_read_only_tokens_and_erasure_full_scope_only_to_delete(
    fresh: gmail.FakeGmail,
) -> None:
    completed(fresh, build(fresh), SUBJECT)
    assert set(fresh.token_requests) == {(gmail.ADMIN, DIRECTORY_SCOPE)} | {
        (m, READONLY_SCOPE) for m in gmail.MAILBOXES
    }
    fresh.token_requests.clear()
    completed(fresh, build(fresh), SUBJECT, RequestType.ERASURE)
    full = {m for m, scope in fresh.token_requests if scope == FULL_SCOPE}
    assert full == set(gmail.MAILBOXES)


def test_art_17_erasure_deletes_every_message_permanently_never_to_trash(
    fresh: gmail.FakeGmail,
) -> None:
    fresh.reset(messages=1200)
    outcome = completed(fresh, build(fresh, rate_limit=FAST), SUBJECT, RequestType.ERASURE)
    assert outcome.counts.deleted == 1200
    assert all(not found for found in fresh.involving(gmail.SUBJECT_EMAIL).values())
    assert all(len(stored) == 3 for stored in fresh.mail.values())  # other people's mail stays
    routes = Counter(route for _, route in fresh.endpoints)
    assert routes["/gmail/v1/users/{user}/messages/batchDelete"] == 3  # one per mailbox
    assert "/gmail/v1/users/{user}/messages/{id}/trash" not in routes
    per_mailbox = {e.value for e in outcome.evidence if e.kind == "mailbox_messages_deleted"}
    assert per_mailbox == {
        f"{pseudonym(m)}: {n}" for m, n in zip(gmail.MAILBOXES, (600, 400, 200), strict=True)
    }
    assert not any(m in e.value for e in outcome.evidence for m in gmail.MAILBOXES)
    second = run_task(build(fresh), "gmail", RequestType.ERASURE, SUBJECT)
    assert second.status == OutcomeStatus.NOT_FOUND


def test_erasure_in_batches_of_batch_size_or_one_by_one(fresh: gmail.FakeGmail) -> None:
    fresh.reset(messages=1200)
    completed(fresh, build(fresh, rate_limit=FAST, batch_size=250), SUBJECT, RequestType.ERASURE)
    routes = Counter(route for _, route in fresh.endpoints)
    assert routes["/gmail/v1/users/{user}/messages/batchDelete"] == 3 + 2 + 1
    fresh.reset()
    completed(fresh, build(fresh, batch_delete=False), SUBJECT, RequestType.ERASURE)
    deletes = [route for method, route in fresh.endpoints if method == "DELETE"]
    assert deletes == ["/gmail/v1/users/{user}/messages/{id}"] * 12
    assert all(not found for found in fresh.involving(gmail.SUBJECT_EMAIL).values())


@pytest.mark.parametrize(("status", "retry_after"), [(429, True), (403, False)])
def test_gmail_user_quota_is_waited_out(
    fresh: gmail.FakeGmail, status: int, retry_after: bool
) -> None:
    """429 with Retry-After, and 403 `userRateLimitExceeded` without: both backed off."""
    fresh.reset(messages=240)
    fresh.quota = gmail.Quota(units=200, seconds=1.0, status=status, retry_after=retry_after)
    connector = build(fresh, f"quota-{status}", rate_limit=FAST, retry=PATIENT_RETRY)
    outcome = completed(fresh, connector, SUBJECT)
    assert len(outcome.records) == 240
    refused = [r for r in [*fresh.requests, *fresh.batched] if r.status == status]
    assert refused, "the quota was never reached: the test proves nothing"


def test_a_wrong_key_is_refused_by_the_token_endpoint_and_fails_clearly(
    fresh: gmail.FakeGmail,
) -> None:
    outcome = run_task(build(fresh, wrong_key=True), "gmail", RequestType.ACCESS, SUBJECT)
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    reason = outcome.reason or ""
    assert "credentials rejected" in reason and "invalid_grant" in reason
    assert not any(m in reason for m in gmail.MAILBOXES)
    assert [r.status for r in fresh.calls("POST", "/token")] == [401]
    assert not fresh.calls("GET", "/gmail/")


def test_a_scope_not_delegated_fails_erasure_naming_the_scope(fresh: gmail.FakeGmail) -> None:
    fresh.granted = frozenset({gmail.READONLY, gmail.DIRECTORY})
    try:
        outcome = run_task(build(fresh), "gmail", RequestType.ERASURE, SUBJECT)
    finally:
        fresh.granted = frozenset({gmail.READONLY, gmail.FULL, gmail.DIRECTORY})
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    assert "unauthorized_client" in (outcome.reason or "")
    assert FULL_SCOPE in (outcome.reason or "")


def test_configured_mailboxes_are_searched_without_the_directory(fresh: gmail.FakeGmail) -> None:
    connector = build(fresh, admin=None, mailboxes=list(gmail.MAILBOXES[1:]))
    outcome = completed(fresh, connector, SUBJECT)
    assert set(_by_mailbox(outcome.records)) == set(gmail.MAILBOXES[1:])
    assert not fresh.calls("GET", "/admin/")


def test_the_directory_is_paged(fresh: gmail.FakeGmail) -> None:
    fresh.add_users(600)
    outcome = completed(fresh, build(fresh, rate_limit=FAST), SUBJECT)
    assert len(outcome.records) == 12
    pages = fresh.calls("GET", "/admin/directory/v1/users")
    assert len(pages) == 2 and all("customer=my_customer" in p.query for p in pages)
    assert len(fresh.calls("GET", "/gmail/")) >= 603  # every mailbox searched


def test_art_15_4_other_participants_are_withheld_from_the_copy(fresh: gmail.FakeGmail) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT)
    assert all(record.others for record in outcome.records)
    copies = [protect(r, "redact", "en") for r in outcome.records]
    text = json.dumps([c.model_dump(mode="json") for c in copies if c is not None])
    for other in (gmail.OTHER_EMAIL, *gmail.MAILBOXES):
        assert other not in text
    encoded = [c.data["eml"] for c in copies if c is not None]
    assert all(not str(e).startswith("RnJvbT") for e in encoded)  # no raw message left
    own = [c for c in copies if c is not None and c.data["sent_by_subject"]]
    assert own and all(c.data["subject"].startswith("Bestelling") for c in own)
    assert gmail.SUBJECT_EMAIL in text


def test_search_query_quotes_each_address_and_drops_unquotable_ones() -> None:
    query = search_query(["anna@example.nl", 'x"y@example.nl', "a b@example.nl"])
    assert query == (
        'from:"anna@example.nl" OR to:"anna@example.nl" OR cc:"anna@example.nl" '
        'OR bcc:"anna@example.nl"'
    )
    assert search_query([]) == ""


def test_metadata_labels_every_exported_field(fresh: gmail.FakeGmail) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT)
    info = packaged("gmail")["messages"]
    assert {f for r in outcome.records for f in r.data} <= set(info.fields)
    sent = next(r for r in outcome.records if r.data["sent_by_subject"])
    received = next(r for r in outcome.records if not r.data["sent_by_subject"])
    assert info.from_subject(sent.data) and not info.from_subject(received.data)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"service_account_key": "{not json"}, "service_account_key"),
        ({"service_account_key": json.dumps({"type": "authorized_user"})}, "service_account_key"),
        ({"service_account_key_file": "/nonexistent/key.json"}, "service_account_key_file"),
    ],
)
def test_a_bad_key_setting_names_the_setting_never_the_value(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        GmailConnector("gmail", {"admin": gmail.ADMIN, **settings})
    assert named in str(caught.value) and "{not json" not in str(caught.value)


def test_mailboxes_or_admin_exactly_one() -> None:
    key = json.dumps({"type": "service_account"})
    with pytest.raises(ConnectorConfigError, match="exactly one of mailboxes"):
        GmailConnector("gmail", {"service_account_key": key})


def test_the_fake_is_strict(fresh: gmail.FakeGmail) -> None:
    tokens = DelegatedTokens("strict", fresh.key_info(), 5.0)

    async def token(user: str, scope: str) -> str:
        return await tokens.token(user, scope)

    sales, it = gmail.MAILBOXES[1], gmail.MAILBOXES[0]
    read = asyncio.run(token(sales, READONLY_SCOPE))
    messages = f"{fresh.url}/gmail/v1/users/{sales}/messages"
    with httpx.Client(headers={"Authorization": f"Bearer {read}"}) as client:
        assert client.get(messages).status_code == 200
        assert client.get(f"{fresh.url}/gmail/v1/users/{it}/messages").status_code == 403
        assert client.get(messages, params={"maxResults": 501}).status_code == 400
        assert client.get(messages, params={"q": "subject:x"}).status_code == 400
        hidden = client.get(messages, params={"q": "to:anna"}).json()["resultSizeEstimate"]
        shown = client.get(messages, params={"q": "to:anna", "includeSpamTrash": "true"}).json()
        assert shown["resultSizeEstimate"] > hidden
        some = shown["messages"][0]["id"]
        denied = client.delete(f"{messages}/{some}")
        assert denied.status_code == 403  # gmail.readonly cannot delete
        assert denied.json()["error"]["errors"][0]["reason"] == "insufficientPermissions"
        assert client.get(f"{fresh.url}/admin/directory/v1/users").status_code == 403
    full = asyncio.run(token(sales, FULL_SCOPE))
    with httpx.Client(headers={"Authorization": f"Bearer {full}"}) as client:
        too_many = client.post(f"{messages}/batchDelete", json={"ids": ["x"] * 1001})
        assert too_many.status_code == 400
    assert httpx.get(messages).status_code == 401
    with pytest.raises(Exception, match="credentials rejected"):
        asyncio.run(token("nobody@shop.example", READONLY_SCOPE))
    tokens.close()


# ------------------------------------------------------------------------------ batches


def _batched_ids(fresh: gmail.FakeGmail, status: int | None = None) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in fresh.batched if status is None or r.status == status]


def test_messages_are_fetched_in_batches_of_at_most_50_calls(fresh: gmail.FakeGmail) -> None:
    fresh.reset(messages=300)
    outcome = completed(fresh, build(fresh, rate_limit=FAST), SUBJECT)
    assert len(outcome.records) == 300
    batches = fresh.calls("POST", gmail.BATCH_PATH)
    assert len(batches) == 4 + 3 + 2  # 151, 101 and 51 listed: Gmail's loose search adds one
    singles = [r for r in fresh.calls("GET", "/gmail/v1/users/") if "/messages/" in r.path]
    assert not singles  # every messages.get went inside a batch
    assert all("format=raw" in r.query for r in fresh.batched)
    assert sorted(_batched_ids(fresh)) == sorted(set(_batched_ids(fresh)))  # each once


def test_a_batch_never_holds_more_calls_than_the_rate_limit_allows_a_window(
    fresh: gmail.FakeGmail,
) -> None:
    """Google counts each call of a batch against the quota: so does the client's limiter."""
    fresh.reset(messages=120)
    completed(fresh, build(fresh, rate_limit=per_second(25, concurrency=4)), SUBJECT)
    sizes = Counter(r.at for r in fresh.batched)  # a batch's calls are answered together
    assert max(sizes.values()) == 25
    calls = [*fresh.batched, *fresh.requests]  # Gmail's calls, each of a batch on its own
    arrivals = sorted(r.at for r in calls if not r.path.startswith(("/batch/", "/token")))
    in_window = max(sum(1 for later in arrivals if 0 <= later - at < 1.0) for at in arrivals)
    assert in_window <= 25


def test_only_the_calls_google_refused_in_a_batch_are_sent_again(fresh: gmail.FakeGmail) -> None:
    fresh.reset(messages=90)
    fresh.quota = gmail.Quota(units=150, seconds=1.0)  # 30 gets a second: a batch of 50 is cut
    outcome = completed(fresh, build(fresh, rate_limit=FAST, retry=PATIENT_RETRY), SUBJECT)
    assert len(outcome.records) == 90
    refused = _batched_ids(fresh, 429)
    fetched = _batched_ids(fresh, 200)
    assert refused, "no call was refused: the test proves nothing"
    assert sorted(fetched) == sorted(set(fetched))  # no message fetched twice
    assert set(refused) <= set(fetched)  # each refused call was sent again and answered
    assert not [r for r in fresh.requests if r.status == 429]  # the batch itself was accepted


def test_batch_calls_1_fetches_each_message_alone(fresh: gmail.FakeGmail) -> None:
    outcome = completed(fresh, build(fresh, batch_calls=1), SUBJECT)
    assert len(outcome.records) == 12
    assert not fresh.calls("POST", gmail.BATCH_PATH) and not fresh.batched
    singles = [r for r in fresh.calls("GET", "/gmail/v1/users/") if "/messages/" in r.path]
    assert len(singles) == 12 + 3  # and the 3 lookalikes Gmail's search also finds


def test_batch_body_and_answers_round_trip_through_the_email_parser() -> None:
    body = batch_body("b0undary", ["GET /gmail/v1/users/a@x.nl/messages/1?format=raw"])
    assert body == (
        b"--b0undary\r\nContent-Type: application/http\r\nContent-ID: <0>\r\n\r\n"
        b"GET /gmail/v1/users/a@x.nl/messages/1?format=raw HTTP/1.1\r\n\r\n--b0undary--\r\n"
    )
    with pytest.raises(ValueError, match="one ASCII line"):
        batch_body("b", ["GET /x HTTP/1.1\r\nHost: evil"])
    answer = (
        b"--r\r\nContent-Type: application/http\r\nContent-ID: <response-1>\r\n\r\n"
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\n{}\r\n"
        b"--r\r\nContent-Type: application/http\r\nContent-ID: <response-0>\r\n\r\n"
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"id": "1"}\r\n--r--\r\n'
    )
    answers = batch_answers("multipart/mixed; boundary=r", answer)
    assert answers["0"].status_code == 200 and answers["0"].json() == {"id": "1"}
    assert answers["1"].status_code == 429 and answers["1"].headers["Retry-After"] == "3"
    with pytest.raises(ValueError):
        batch_answers("application/json", b"{}")


def test_the_fake_batch_endpoint_is_strict(fresh: gmail.FakeGmail) -> None:
    tokens = DelegatedTokens("strict-batch", fresh.key_info(), 5.0)
    sales, it = gmail.MAILBOXES[1], gmail.MAILBOXES[0]
    read = asyncio.run(tokens.token(sales, READONLY_SCOPE))
    some = next(iter(fresh.mail[sales]))
    url = fresh.url + gmail.BATCH_PATH

    def send(calls: list[str]) -> httpx.Response:
        return httpx.post(
            url,
            content=batch_body("bb", calls),
            headers={"Authorization": f"Bearer {read}",
                     "Content-Type": "multipart/mixed; boundary=bb"},
        )  # fmt: skip

    mine = f"GET /gmail/v1/users/{sales}/messages/{some}?format=raw"
    gone = f"GET /gmail/v1/users/{sales}/messages/ffff?format=raw"
    answered = send([mine, f"GET /gmail/v1/users/{it}/messages/{some}", gone])
    assert answered.status_code == 200
    statuses = {
        k: r.status_code
        for k, r in batch_answers(answered.headers["Content-Type"], answered.content).items()
    }
    assert statuses == {"0": 200, "1": 403, "2": 404}  # each call judged alone
    assert send([mine] * 101).status_code == 400
    assert send([f"GET {fresh.url}/gmail/v1/users/{sales}/messages/{some}"]).status_code == 400
    not_multipart = httpx.post(url, json={}, headers={"Authorization": f"Bearer {read}"})
    assert not_multipart.status_code == 400
    assert httpx.post(url, content=batch_body("bb", [mine])).status_code == 401
    tokens.close()
