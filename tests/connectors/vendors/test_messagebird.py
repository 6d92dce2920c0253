"""The MessageBird / Bird connector against its strict local fake: conformance plus specifics.

The subject is found by phone in the legacy REST API and by e-mail in Bird; their messages
are exported; erasure deletes messages, conversation and both contacts, and nobody else's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from connectors.base import ConnectorConfigError
from connectors.conformance import Seeded, run_task
from connectors.fakes import messagebird as mb
from connectors.fakes.server import Faults
from connectors.metadata import packaged
from connectors.vendors.messagebird import MessageBirdConnector
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject
from tests.connectors.targets import builder, completed, conformance_suite, per_second, subject

SUITE_RATE = (50, 1.0)
SUBJECT = subject(mb.SUBJECT_EMAIL, mb.SUBJECT_PHONE)
EXPECTED = {
    "contacts": 1,
    "messages": mb.SUBJECT_MESSAGES,
    "bird_contacts": 1,
    "bird_conversations": 1,
    "bird_messages": 3,
}

build = builder(
    MessageBirdConnector,
    "messagebird",
    lambda fake: {
        "access_key": mb.ACCESS_KEY,
        "base_url": fake.url,
        "bird_url": fake.url,
        "workspace_id": mb.WORKSPACE,
    },
    rate_limit=per_second(SUITE_RATE[0]),
)

SEEDED = Seeded(
    SUBJECT,
    expected=EXPECTED,
    erased=sum(EXPECTED.values()),
    personal_values=["de Vries", "31612345678", "Anna.deVries"],
)


@dataclass(eq=False)
class SuiteMessageBird(mb.MessageBird):
    """The fake at the vendor's own limit, which is the suite's rate."""

    default_faults = Faults(max_rate=SUITE_RATE)


FAKE = SuiteMessageBird

TestMessageBirdConformance = conformance_suite(
    "messagebird", build, SEEDED, {"access_key": "wrong"}, SUITE_RATE
)


def _collections(outcome: object) -> dict[str, int]:
    return dict(Counter(r.collection for r in outcome.records))  # type: ignore[attr-defined]


def test_contact_found_by_phone_with_its_messages_on_every_page(fresh: mb.MessageBird) -> None:
    by_phone = Subject(identifiers=[Identifier(type="phone", value="0031 6-12345678")])
    outcome = completed(fresh, build(fresh), by_phone)
    assert _collections(outcome) == {"contacts": 1, "messages": mb.SUBJECT_MESSAGES}
    pages = [c.query for c in fresh.calls("GET", "/contacts/c-anna/messages")]
    assert pages == ["limit=20&offset=0", "limit=20&offset=20"]
    searches = [c.query for c in fresh.calls("GET", "/contacts")]
    assert searches[0].startswith("msisdn=31612345678")


def test_contact_found_by_email_in_bird_with_its_conversation(fresh: mb.MessageBird) -> None:
    by_email = subject("ANNA.DEVRIES@example.nl")
    outcome = completed(fresh, build(fresh), by_email)
    assert _collections(outcome) == {
        "bird_contacts": 1,
        "bird_conversations": 1,
        "bird_messages": 3,
    }
    assert fresh.calls("GET", "/contacts") == []  # no phone: the legacy API is not asked


def test_an_ignored_msisdn_filter_still_exports_only_the_subject(fresh: mb.MessageBird) -> None:
    """Art. 15(4) GDPR: the copy must not disclose other people. If the vendor ignored the
    undocumented `msisdn` filter, every contact comes back; only the exact match is kept."""
    fresh.ignores_msisdn_filter = True
    try:
        outcome = completed(fresh, build(fresh, page_size=2), SUBJECT)
    finally:
        fresh.ignores_msisdn_filter = False
    assert _collections(outcome) == EXPECTED
    assert {r.data["id"] for r in outcome.records if r.collection == "contacts"} == {"c-anna"}


def test_wildcard_search_results_are_not_exported_or_erased(fresh: mb.MessageBird) -> None:
    fresh.faults.wildcard_search = True
    everyone = subject("*@example.com")
    outcome = run_task(build(fresh), "messagebird", RequestType.ERASURE, everyone)
    assert outcome.status == OutcomeStatus.NOT_FOUND
    assert fresh.calls("DELETE") == []


def test_art_17_erasure_deletes_the_subjects_messages_conversation_and_contacts_only(
    fresh: mb.MessageBird,
) -> None:
    outcome = completed(fresh, build(fresh), SUBJECT, RequestType.ERASURE)
    kinds = Counter(kind for kind, _ in fresh.deleted)
    assert kinds == {
        "message": mb.SUBJECT_MESSAGES,
        "contact": 1,
        "conversation_message": 3,
        "conversation": 1,
        "bird_contact": 1,
    }
    # Messages go before their contact, conversation messages before their conversation.
    order = [kind for kind, _ in fresh.deleted]
    assert order.index("contact") > max(i for i, k in enumerate(order) if k == "message")
    assert order[-1] == "bird_contact"
    evidence = {e.kind: e.value for e in outcome.evidence}
    assert evidence["messages_deleted"] == str(mb.SUBJECT_MESSAGES)
    assert "UNCONFIRMED" in evidence["vendor_caveat"]
    # Nobody else's data went.
    assert [c["id"] for c in fresh.data["contacts"]] == ["c-jan", "c-piet"]
    assert len(fresh.data["messages"]["c-jan"]) == 2
    assert [c["id"] for c in fresh.data["bird_contacts"]] == ["b-jan"]
    assert [c["id"] for c in fresh.data["conversations"]] == ["conv-jan"]


def test_without_a_workspace_only_the_legacy_api_is_used(fresh: mb.MessageBird) -> None:
    connector = MessageBirdConnector(
        "sms", {"access_key": mb.ACCESS_KEY, "base_url": fresh.url, "retry": {"attempts": 1}}
    )
    outcome = completed(fresh, connector, SUBJECT)
    assert _collections(outcome) == {"contacts": 1, "messages": mb.SUBJECT_MESSAGES}
    assert fresh.calls(path_prefix="/workspaces") == []


def test_vendor_rate_is_kept_and_its_429_waited_out(fresh: mb.MessageBird) -> None:
    fresh.faults.max_rate = (10, 1.0)
    fresh.faults.rate_limit_every = 5
    outcome = completed(fresh, build(fresh, "limited", rate_limit=per_second(10)), SUBJECT)
    assert _collections(outcome) == EXPECTED
    assert any(r.status == 429 for r in fresh.requests)
    assert fresh.max_in_window(1.0) <= 10


def test_default_settings_are_the_vendors() -> None:
    connector = MessageBirdConnector("sms", {"access_key": "secret-key-1"})
    assert connector.http.base_url == "https://rest.messagebird.com"
    assert connector.settings.rate_limit.requests == 50
    assert connector.bird is None
    assert "secret-key-1" not in repr(connector.settings)
    with pytest.raises(ConnectorConfigError, match="page_size"):
        MessageBirdConnector("sms", {"access_key": "k", "page_size": 101})


def test_every_exported_collection_and_field_is_described(fresh: mb.MessageBird) -> None:
    """Art. 12(1) GDPR: an intelligible copy; every field the export carries has a label."""
    outcome = completed(fresh, build(fresh), SUBJECT)
    infos = packaged("messagebird")
    for record in outcome.records:
        info = infos[record.collection]
        assert info.title is not None
        assert not sorted(f for f in record.data if f not in info.fields), record.collection
