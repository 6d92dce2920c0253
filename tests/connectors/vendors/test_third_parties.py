"""Other people's data in shared objects: marked on access, never in the copy, untouched by
the subject's erasure, which removes the subject's own part by the vendor's own means.

Art. 15(4) GDPR: the copy "shall not adversely affect the rights and freedoms of others";
EDPB Guidelines 01/2022 on the right of access (v2.1, section 6.2): that limit is met by
leaving out or making illegible what concerns others, not by refusing the copy. Art. 4(1):
what the other people wrote is their personal data, not the subject's, so Art. 17(1) does
not reach it and the subject's erasure reports nothing "retained" for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from connectors.conformance import run_task
from connectors.fakes import hubspot, intercom
from connectors.fakes import zendesk as zd
from orchestrator.artifacts.redaction import MARKERS, protect
from schemas.events import OutcomeStatus, RequestType, TaskOutcome
from tests.connectors.targets import completed, subject
from tests.connectors.vendors.test_hubspot import build as build_hubspot
from tests.connectors.vendors.test_intercom import build as build_intercom
from tests.connectors.vendors.test_zendesk import SUBJECT as FEMKE
from tests.connectors.vendors.test_zendesk import build as build_zendesk

ANNA = subject(intercom.SUBJECT_EMAIL)  # the same subject in both fakes


@pytest.fixture(scope="module")
def chat() -> Iterator[intercom.FakeIntercom]:
    """Intercom, with a conversation the subject shares with Jan."""
    with intercom.FakeIntercom() as server:
        yield server


@pytest.fixture(scope="module")
def crm() -> Iterator[hubspot.FakeHubSpot]:
    """HubSpot, with a deal and an e-mail the subject shares with Jan."""
    with hubspot.FakeHubSpot() as server:
        yield server


def _copy(outcome: TaskOutcome, language: str = "en") -> str:
    """What the export writes of an access outcome, redacted, as one JSON text."""
    protected = [protect(r, "redact", "nl" if language == "nl" else "en") for r in outcome.records]
    return json.dumps([r.model_dump(mode="json") for r in protected if r is not None])


def test_art_15_4_shared_conversation_export_has_no_other_persons_data(
    chat: intercom.FakeIntercom,
) -> None:
    chat.reset()
    outcome = completed(chat, build_intercom(chat), ANNA)
    [shared] = [r for r in outcome.records if r.data["id"] == "shared"]
    assert shared.others  # marked by the connector
    text = _copy(outcome, "nl")
    for other in (intercom.OTHER_NAME, intercom.OTHER_EMAIL, intercom.OTHER_ID, "Dorpsstraat"):
        assert other not in text
    # The subject's own messages, and the context to read them, are all there.
    assert intercom.SUBJECT_MESSAGE in text and "Hello, where is my order?" in text
    assert "shared-p0" in text and "1717200060" in text  # the withheld part's id and time
    assert MARKERS["nl"] in text
    # The subject's own conversations are not touched.
    assert all(not r.others for r in outcome.records if r.data["id"] != "shared")


def test_art_15_4_shared_deal_export_has_no_other_persons_data(
    crm: hubspot.FakeHubSpot,
) -> None:
    crm.reset()
    outcome = completed(crm, build_hubspot(crm), ANNA)
    marked = {(r.collection, r.data["id"]) for r in outcome.records if r.others}
    assert marked == {("deals", "703"), ("emails", "6003")}
    text = _copy(outcome)
    for other in (hubspot.OTHER_NAME, hubspot.OTHER_EMAIL, hubspot.OTHER_PHONE):
        assert other not in text
    assert "Shared family deal" in text and '"amount": "300"' in text  # the subject's deal
    assert MARKERS["en"] in text


def test_art_15_4_hold_keeps_shared_records_back_for_review(crm: hubspot.FakeHubSpot) -> None:
    crm.reset()
    outcome = completed(crm, build_hubspot(crm), ANNA)
    held = [r for r in outcome.records if protect(r, "hold", "en") is None]
    assert {r.data["id"] for r in held} == {"703", "6003"}
    kept = [r for r in outcome.records if r not in held]
    assert all(protect(r, "hold", "en") is r for r in kept)


def test_art_17_subject_messages_in_shared_conversation_redacted(
    chat: intercom.FakeIntercom,
) -> None:
    chat.reset()
    outcome = completed(chat, build_intercom(chat), ANNA, RequestType.ERASURE)
    # The vendor's own redaction, for the subject's opening message and reply only.
    assert chat.redactions == [("shared", "shared-s"), ("shared", "shared-p1")]
    assert len(chat.calls("POST", "/conversations/redact")) == 2
    parts = chat.conversations["shared"]["conversation_parts"]["conversation_parts"]
    assert [p["body"] for p in parts] == [intercom.OTHER_MESSAGE, None, "Shipped."]
    assert ("conversation_parts_redacted", "2") in {(e.kind, e.value) for e in outcome.evidence}
    assert outcome.counts.anonymised == 2
    _no_invented_ground(outcome)


def test_art_17_shared_ticket_is_a_manual_step_not_retained(
    chat: intercom.FakeIntercom,
) -> None:
    chat.reset()
    chat.tickets["t4"] = {
        "type": "ticket",
        "id": "t4",
        "contacts": {"contacts": [{"id": intercom.SUBJECT_ID}, {"id": intercom.OTHER_ID}]},
    }
    connector = build_intercom(chat)
    outcome = run_task(connector, connector.system, RequestType.ERASURE, ANNA)
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert outcome.instructions and "ticket t4" in outcome.instructions
    assert "t4" in chat.tickets  # the other person's ticket is not deleted
    assert outcome.counts.deleted == 7  # what the API could do is done and counted
    _no_invented_ground(outcome)


def test_art_17_shared_deal_association_removed(crm: hubspot.FakeHubSpot) -> None:
    crm.reset()
    outcome = completed(crm, build_hubspot(crm), ANNA, RequestType.ERASURE)
    assert sorted(crm.unlinked) == [
        ("contacts", "501", "deals", "703"),
        ("contacts", "501", "emails", "6003"),
    ]
    assert not crm.data["deals"]["703"]["archived"]  # Jan's deal too: not deleted
    assert ("502", "deals", "703") in crm.links  # and still his
    evidence = {(e.kind, e.value) for e in outcome.evidence}
    assert {("deal_associations_removed", "1"), ("email_associations_removed", "1")} <= evidence
    _no_invented_ground(outcome)


def test_art_17_shared_record_still_naming_the_subject_is_a_manual_step(
    crm: hubspot.FakeHubSpot,
) -> None:
    crm.reset()
    crm.data["deals"]["703"]["properties"]["description"] += f", {hubspot.SUBJECT_EMAIL}"
    connector = build_hubspot(crm)
    outcome = run_task(connector, connector.system, RequestType.ERASURE, ANNA)
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert outcome.instructions and "deal 703" in outcome.instructions
    assert "names the subject in: description" in outcome.instructions
    assert hubspot.SUBJECT_EMAIL not in outcome.instructions
    assert crm.gdpr_deleted == ["501"]  # the rest was done
    _no_invented_ground(outcome)


# ---------------------------------------------------------------------------- Zendesk


@pytest.fixture(scope="module")
def desk() -> Iterator[zd.Zendesk]:
    """Zendesk, reset per test by `_shared_desk`."""
    with zd.Zendesk() as server:
        yield server


def _shared_desk(fake: zd.Zendesk) -> dict[str, int]:
    """The subject with a ticket of its own and two shared with Jan (one each requested)."""
    fake.reset()
    femke = fake.add_user(zd.SUBJECT_NAME, zd.SUBJECT_EMAIL, zd.SUBJECT_PHONE)
    own = fake.add_ticket(femke, "Parcel late", comments=2)
    return {"femke": femke, "own": own, **fake.add_shared_tickets(femke)}


def test_art_15_4_shared_ticket_export_has_no_other_persons_data(desk: zd.Zendesk) -> None:
    seeded = _shared_desk(desk)
    outcome = completed(desk, build_zendesk(desk), FEMKE)
    marked = {(r.collection, r.data["id"]) for r in outcome.records if r.others}
    assert ("tickets", seeded["own"]) not in marked  # the subject's own ticket: untouched
    assert {("tickets", seeded["cc"]), ("tickets", seeded["requested"])} <= marked
    text = _copy(outcome, "nl")
    for other in (zd.OTHER_NAME, zd.OTHER_EMAIL, zd.OTHER_MESSAGE, "Dorpsstraat", "Two parcels"):
        assert other not in text
    assert f'"requester_id": {seeded["other"]}' not in text
    assert f'"email_cc_ids": [{seeded["other"]}]' not in text
    # The subject's own messages, and the context to read them (ids, times, title), stay.
    assert text.count(zd.SUBJECT_MESSAGE) >= 2 and "Wrong address" in text
    assert f'"requester_id": {seeded["femke"]}' in text
    assert MARKERS["nl"] in text
    # Staff are not other customers: a ticket only the subject and agents are on is its own.
    assert desk.calls("GET", "/api/v2/users/show_many")


def test_art_17_subject_comments_in_shared_ticket_redacted(desk: zd.Zendesk) -> None:
    seeded = _shared_desk(desk)
    connector = build_zendesk(desk)
    outcome = run_task(connector, connector.system, RequestType.ERASURE, FEMKE)
    # The subject requested one shared ticket: that link is a manual step (below).
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    mine = {
        tid: [c["id"] for c in desk.comments[tid] if c["author_id"] == seeded["femke"]]
        for tid in (seeded["cc"], seeded["requested"])
    }
    assert sorted(desk.redactions) == sorted((t, c) for t, cs in mine.items() for c in cs)
    for tid, comment_ids in mine.items():
        for comment in desk.comments[tid]:
            redacted = comment["id"] in comment_ids
            assert (set(comment["body"]) <= {zd.REDACTED}) is redacted
            assert all(
                (a["file_name"] == "redacted.txt") is redacted for a in comment["attachments"]
            )
        assert any(c["body"] == zd.OTHER_MESSAGE for c in desk.comments[tid])  # Jan's: intact
    # Removed from the CCs of Jan's ticket, by the documented update.
    assert desk.ticket_updates == [
        (
            seeded["cc"],
            {"ticket": {"email_ccs": [{"user_id": seeded["femke"], "action": "delete"}]}},
        )
    ]
    assert seeded["femke"] not in desk.tickets[seeded["cc"]]["email_cc_ids"]
    assert seeded["cc"] in desk.tickets and seeded["requested"] in desk.tickets
    assert seeded["own"] not in desk.tickets and desk.user_state[seeded["femke"]] == (
        "permanently_deleted"
    )
    evidence = {(e.kind, e.value) for e in outcome.evidence}
    assert {("comments_redacted", "2"), ("ccs_removed", "1"), ("tickets_deleted", "1")} <= evidence
    assert outcome.counts.anonymised == 2
    assert outcome.instructions and f"ticket {seeded['requested']}" in outcome.instructions
    assert f"ticket {seeded['cc']}" not in outcome.instructions
    assert zd.SUBJECT_EMAIL not in outcome.instructions
    _no_invented_ground(outcome)


def test_art_17_shared_ticket_redaction_is_not_repeated(desk: zd.Zendesk) -> None:
    """A second attempt (at-least-once delivery) finds nothing left to redact."""
    seeded = _shared_desk(desk)
    desk.add_ticket(seeded["femke"], "Second", comments=1)
    connector = build_zendesk(desk)
    run_task(connector, connector.system, RequestType.ERASURE, FEMKE)
    assert len(desk.redactions) == 2


def _no_invented_ground(outcome: TaskOutcome) -> None:
    """Nothing of the subject's is reported kept without a legal duty to keep it."""
    assert outcome.retained == []
    assert "does not extend" not in outcome.model_dump_json()
