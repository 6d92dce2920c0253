"""Spec hooks: the engine's hook points on their own (a Deskly spec with a hook file beside it)
and the Zendesk spec's hooks where its vendor tests do not reach (identities, duplicates,
a ticket between two of the subject's own users)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connectors.conformance import run_task
from connectors.declarative import DeclarativeConnector
from connectors.fakes import specfake
from connectors.fakes import zendesk as zd
from schemas.events import OutcomeStatus, RequestType
from tests.connectors.targets import completed, ids, subject
from tests.connectors.vendors.test_zendesk import build

FAKE = zd.Zendesk
FEMKE = subject(zd.SUBJECT_EMAIL, zd.SUBJECT_PHONE)

# --------------------------------------------------------------------- engine hook points

DESKLY_HOOKS = '''
from schemas.events import Evidence


async def match(record, subject, context):
    """Only callable with the context: the engine passes it to a three-parameter match."""
    assert context.client is not None and context.system.startswith("deskly")
    return None


def erase_record(found, context):
    """Mark the listed tickets for the steps' condition; the steps still run."""
    for related in context.related:
        if related.collection == "tickets":
            related.values["shared"] = bool(related.record.get("cc_ids"))
    return False


def after_erase(found, context):
    context.evidence.append(Evidence(kind="deskly_status", value=f"user {found.record['id']}"))
'''

DESKLY_SPEC = {
    "name": "deskly-hooks",
    "auth": {"type": "bearer", "token": "{credentials.token}"},
    "retry": {"attempts": 3, "backoff_seconds": 0.01},
    "hooks": "deskly_hooks.py",
    "rights": ["access", "erasure"],
    "find": {
        "path": "/users",
        "records_path": "users",
        "collection": "users",
        "params": {"email": "{email}"},
    },
    "related": [
        {
            "collection": "tickets",
            "path": "/users/{id}/tickets",
            "records_path": "tickets",
            "paging": {"type": "page", "page_size": 2},
            "where": {"item.requester_id": "{id}"},
        }
    ],
    "erase": [
        {
            "over": "tickets",
            "when": {"shared": False},
            "path": "/tickets/{item.id}",
            "expect": [202],
        },
        {"path": "/users/{id}"},
    ],
}


@pytest.fixture(scope="module")
def deskly() -> Iterator[specfake.Deskly]:
    """The Deskly fake, for this module's engine tests."""
    with specfake.Deskly() as server:
        yield server


def test_art_17_erase_record_hook_decides_shared_tickets_steps_and_evidence_follow(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    """Art. 17(1) reaches the subject's data only: the `erase_record` hook sees the related
    records (listed once, for it and the steps) and marks the one Jan is on; the steps'
    condition keeps it; `after_erase` adds evidence; `match` gets the context."""
    deskly.reset()
    (tmp_path / "deskly_hooks.py").write_text(DESKLY_HOOKS)
    path = tmp_path / "deskly-hooks.yaml"
    path.write_text(yaml.safe_dump(DESKLY_SPEC, sort_keys=False))
    settings = {"spec": str(path), "base_url": f"{deskly.url}/api"}
    settings["credentials"] = {"token": specfake.TOKEN}
    subject_ = subject(specfake.SUBJECT_EMAIL)
    deskly.clear_log()
    run_task(DeclarativeConnector("deskly-a", settings), "deskly-a", RequestType.ACCESS, subject_)
    listed = len(deskly.calls("GET", "/api/users/1/tickets"))
    deskly.clear_log()
    connector = DeclarativeConnector("deskly-e", settings)
    outcome = run_task(connector, "deskly-e", RequestType.ERASURE, subject_)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert [c.path for c in deskly.calls("DELETE", "/api/tickets/")] == [
        "/api/tickets/10",
        "/api/tickets/11",
    ]
    assert len(deskly.calls("GET", "/api/users/1/tickets")) == listed  # not listed twice
    assert ("deskly_status", "user 1") in {(e.kind, e.value) for e in outcome.evidence}


# ------------------------------------------------------------------------------- Zendesk


def test_art_5_1_f_user_known_by_a_secondary_identity_is_the_subjects(fake: zd.Zendesk) -> None:
    """The search matches partially: a look-alike is the subject's only when one of its
    identities equals the subject's address exactly (else it is another person)."""
    fake.reset()
    alias = fake.add_user("F. Smit", "femke.smit@example.nl.invalid")
    fake.identities[alias].append(
        {"id": 9_999, "user_id": alias, "type": "email", "value": zd.SUBJECT_EMAIL.upper()}
    )
    other = fake.add_user("F. Smit", "femke.smit@example.nl.example")
    fake.add_ticket(alias, "Mine", comments=1)
    fake.add_ticket(other, "Not mine", comments=1)
    outcome = completed(fake, build(fake), subject(zd.SUBJECT_EMAIL))
    assert ids(outcome, "users") == {alias}
    assert len(ids(outcome, "tickets")) == 1


def test_art_15_ticket_requested_and_ccd_is_exported_and_erased_once(fake: zd.Zendesk) -> None:
    fake.reset()
    femke = fake.add_user(zd.SUBJECT_NAME, zd.SUBJECT_EMAIL, zd.SUBJECT_PHONE)
    both = fake.add_ticket(femke, "Copy to myself", comments=2, ccs=(femke,))
    outcome = completed(fake, build(fake), FEMKE)
    assert [r.data["id"] for r in outcome.records if r.collection == "tickets"] == [both]
    assert len([r for r in outcome.records if r.collection == "comments"]) == 2
    erased = completed(fake, build(fake), FEMKE, RequestType.ERASURE)
    assert [r.path for r in fake.calls("DELETE", "/api/v2/deleted_tickets/")] == [
        f"/api/v2/deleted_tickets/{both}"
    ]
    assert ("tickets_deleted", "1") in {(e.kind, e.value) for e in erased.evidence}


def test_art_17_ticket_between_two_of_the_subjects_users_is_deleted_not_redacted(
    fake: zd.Zendesk,
) -> None:
    """The subject known by two Zendesk users (email, phone): a ticket only those two are on
    is the subject's own, so it is deleted for good, not treated as shared."""
    fake.reset()
    by_email = fake.add_user(zd.SUBJECT_NAME, zd.SUBJECT_EMAIL)
    by_phone = fake.add_user("Femke (mobile)", None, zd.SUBJECT_PHONE)
    ticket = fake.add_ticket(by_email, "Parcel", comments=1, ccs=(by_phone,))
    outcome = completed(fake, build(fake), FEMKE, RequestType.ERASURE)
    assert ticket not in fake.tickets and fake.deleted_tickets == {}
    assert fake.redactions == [] and fake.ticket_updates == []
    assert {fake.user_state[u] for u in (by_email, by_phone)} == {"permanently_deleted"}
    kinds = [e.kind for e in outcome.evidence]
    assert kinds.count("zendesk_compliance_deletion_status") == 2
