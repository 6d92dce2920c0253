"""Vendor connectors keep only exact matches of the subject, and refuse dot-segment paths.

A vendor whose search treats `*` or `%` as a wildcard answers a search for `*@example.com`
with everyone at example.com; a record id of `..` would make `/contacts/{id}/notes` call
`/notes`. Neither may hand over or erase anyone else's data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connectors.base import Connector
from connectors.conformance import run_task
from connectors.fakes import activecampaign, freshdesk, hubspot, intercom
from connectors.fakes.server import FakeServer
from connectors.http import HttpClient, PathSegmentError
from connectors.vendors.base import identifier_key, matches_subject
from schemas.events import OutcomeStatus, RequestType
from tests.connectors.targets import subject
from tests.connectors.vendors import test_activecampaign as activecampaign_tests
from tests.connectors.vendors import test_freshdesk as freshdesk_tests
from tests.connectors.vendors import test_hubspot as hubspot_tests
from tests.connectors.vendors import test_intercom as intercom_tests

# ------------------------------------------------------------------------ the shared helper


@pytest.mark.parametrize(
    ("identifier_type", "ours", "theirs"),
    [
        ("email", "anna@example.nl", "Anna@Example.NL"),
        ("email", "anna@example.nl", " anna@example.nl "),
        ("phone", "+31612345678", "+31 6 1234-5678"),
        ("phone", "+31612345678", "0031 (6) 12345678"),
        ("customer_id", "42", 42),
    ],
)
def test_identifiers_match_exactly_after_normalising(
    identifier_type: str, ours: str, theirs: Any
) -> None:
    assert identifier_key(identifier_type, ours) == identifier_key(identifier_type, theirs)


@pytest.mark.parametrize(
    ("identifier_type", "ours", "theirs"),
    [
        ("email", "*@example.com", "jan.jansen@example.com"),
        ("email", "%@example.com", "jan.jansen@example.com"),
        ("email", "anna@example.nl", "anna@example.nl.evil.example"),
        ("phone", "+31612345678", "0612345678"),  # national form: not provably the same
        ("customer_id", "C-1", "c-1"),  # only e-mail ignores case
    ],
)
def test_partial_and_wildcard_values_do_not_match(
    identifier_type: str, ours: str, theirs: str
) -> None:
    assert identifier_key(identifier_type, ours) != identifier_key(identifier_type, theirs)


def test_a_record_matches_on_any_of_its_identifier_fields() -> None:
    anna = subject("anna@example.nl", "+31612345678")
    fields = {"email": "email", "other_emails": "email", "phone": "phone"}
    assert matches_subject({"email": "x@example.nl", "phone": "+31 6 12345678"}, fields, anna)
    assert matches_subject({"email": None, "other_emails": ["ANNA@example.nl"]}, fields, anna)
    assert not matches_subject({"email": "jan@example.nl", "phone": None}, fields, anna)
    assert not matches_subject({}, fields, anna)
    assert not matches_subject({"email": ""}, {"email": "email"}, subject("a@b.nl"))


# ---------------------------------------------------------------------- dot segments (http)


def _client(sent: list[httpx.Request]) -> HttpClient:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"ok": True})

    return HttpClient("crm", "https://vendor.example/api", transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("/contacts/{id}/notes", ".."),
        ("/contacts/{id}/notes", "."),
        ("/contacts/{id}", ".."),
        ("/{id}/contacts", ".."),
        ("/contacts/%2E{id}", "."),  # %2E is a dot (RFC 3986, section 2.3)
    ],
)
def test_dot_segment_in_a_path_placeholder_is_refused_before_sending(
    template: str, value: str
) -> None:
    sent: list[httpx.Request] = []
    client = _client(sent)
    with pytest.raises(PathSegmentError) as caught:
        asyncio.run(client.request("DELETE", template, path_params={"id": value}))
    assert not caught.value.retryable
    assert str(caught.value).startswith(f"crm: DELETE {template}: refused: ")
    assert "'.' or '..' segment" in str(caught.value)
    assert sent == []

    async def listing() -> list[Any]:
        return await client.all_records("GET", template, path_params={"id": value})

    with pytest.raises(PathSegmentError):
        asyncio.run(listing())
    assert sent == []


@pytest.mark.parametrize(
    ("value", "raw_path"),
    [
        ("../admin", b"/api/contacts/..%2Fadmin/notes"),  # one segment, not two
        ("a/b?c#d", b"/api/contacts/a%2Fb%3Fc%23d/notes"),
        ("...", b"/api/contacts/.../notes"),  # not a dot-segment
        ("%2E%2E", b"/api/contacts/%252E%252E/notes"),  # the value's own % is encoded
    ],
)
def test_placeholder_values_are_percent_encoded_as_one_segment(value: str, raw_path: bytes) -> None:
    sent: list[httpx.Request] = []
    client = _client(sent)
    asyncio.run(client.request("GET", "/contacts/{id}/notes", path_params={"id": value}))
    assert [r.url.raw_path for r in sent] == [raw_path]


def test_vendor_record_id_of_dot_dot_fails_the_erasure_and_deletes_nothing() -> None:
    with intercom.FakeIntercom() as fake:
        contact = dict(fake.contacts[intercom.SUBJECT_ID], id="..")
        fake.contacts = {"..": contact}
        fake.clear_log()
        connector = intercom_tests.build(fake, "intercom-dots")
        outcome = run_task(connector, connector.system, RequestType.ERASURE, intercom_tests.SUBJECT)
        assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
        reason = outcome.reason or ""
        assert "intercom-dots: DELETE /contacts/{id}: refused: a value filled into" in reason
        assert fake.calls("DELETE") == []
        assert ".." in fake.contacts


# ------------------------------------------------------------------- wildcards (vendors)


@dataclass(frozen=True)
class Vendor:
    """A vendor connector against its fake, and someone else its wildcard search finds."""

    fake: Callable[[], FakeServer]
    build: Callable[..., Connector]
    other_email: str
    seed: Callable[[Any], None] = lambda fake: None


def _seed_freshdesk(fake: freshdesk.Freshdesk) -> None:
    jan = fake.add_contact("Jan Jansen", "jan.jansen@example.com", "+31687654321")
    fake.add_ticket(jan, "Refund", conversations=2)


VENDORS = {
    "freshdesk": Vendor(
        freshdesk.Freshdesk, freshdesk_tests.build, "jan.jansen@example.com", _seed_freshdesk
    ),
    "intercom": Vendor(intercom.FakeIntercom, intercom_tests.build, intercom.OTHER_EMAIL),
    "hubspot": Vendor(hubspot.FakeHubSpot, hubspot_tests.build, hubspot.OTHER_EMAIL),
    "activecampaign": Vendor(
        activecampaign.ActiveCampaign, activecampaign_tests.build, "jan.jansen@example.com"
    ),
}
#: Calls that erase, archive or redact something, by method or by route.
_DESTRUCTIVE = ("delete", "archive", "redact", "unsubscribe")


@pytest.fixture(params=sorted(VENDORS))
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[Vendor, FakeServer]]:
    """Each vendor's fake, seeded, in wildcard-search mode."""
    chosen = VENDORS[request.param]
    with chosen.fake() as fake:
        chosen.seed(fake)
        fake.faults.wildcard_search = True
        yield chosen, fake


@pytest.mark.parametrize("pattern", ["*@example.com", "%@example.com"])
def test_art_5_1_f_wildcard_search_result_is_not_found_and_nothing_is_erased(
    vendor: tuple[Vendor, FakeServer], pattern: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A vendor search treating `*`/`%` as a wildcard finds other people; erasing them would be
    an accidental destruction of their data, a personal data breach (Art. 4(12), 5(1)(f))."""
    chosen, fake = vendor
    assert fake.search_matches(chosen.other_email, pattern)  # the fake finds someone else
    caplog.set_level(logging.INFO)
    connector = chosen.build(fake, "wild-" + ("star" if pattern[0] == "*" else "percent"))
    fake.clear_log()
    outcome = run_task(connector, connector.system, RequestType.ERASURE, subject(pattern))
    assert outcome.status == OutcomeStatus.NOT_FOUND, outcome.reason
    destructive = [
        (method, route)
        for method, route in fake.endpoints
        if method == "DELETE" or any(word in route.lower() for word in _DESTRUCTIVE)
    ]
    assert destructive == []
    assert fake.calls("DELETE") == []
    assert "search results: no identifier equals the subject's exactly" in caplog.text
    assert chosen.other_email not in caplog.text


def test_art_15_4_wildcard_search_hands_over_nobody_else(
    vendor: tuple[Vendor, FakeServer],
) -> None:
    """A copy of the data must not adversely affect others (Art. 15(4) GDPR): another person
    found by a wildcard search is not the subject's data."""
    chosen, fake = vendor
    connector = chosen.build(fake, "wild-access")
    outcome = run_task(connector, connector.system, RequestType.ACCESS, subject("*@example.com"))
    assert outcome.status == OutcomeStatus.NOT_FOUND, outcome.reason
    assert outcome.records == []
