"""ZIVVER: every right is a manual task with WebApp instructions, and no identifier in them."""

from __future__ import annotations

import asyncio

import pytest

from connectors import registry
from connectors.conformance import run_task
from connectors.vendors.zivver import ZivverConnector
from schemas.events import FieldChange, Identifier, OutcomeStatus, RequestType, Subject
from schemas.register import parse_register

SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value="klant@example.nl"),
        Identifier(type="phone", value="+31612345678"),
    ]
)


@pytest.mark.parametrize("action", list(RequestType))
def test_every_right_is_a_manual_task_with_instructions_and_no_identifier(
    action: RequestType,
) -> None:
    connector = ZivverConnector("zivver", {"mailboxes": ["klantenservice@webwinkel.example"]})
    outcome = run_task(connector, "zivver", action, SUBJECT)
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    text = outcome.instructions or ""
    assert "ZIVVER WebApp" in text and "klantenservice@webwinkel.example" in text
    assert "dsr tasks complete conformance-1/zivver" in text  # how to record the work
    for value in ("klant@example.nl", "+31612345678", "31612345678"):
        assert value not in text


def test_art_17_erasure_revokes_our_messages_and_says_what_zivver_keeps() -> None:
    outcome = run_task(ZivverConnector("zivver"), "zivver", RequestType.ERASURE, SUBJECT)
    text = (outcome.instructions or "").lower()
    assert "revoke" in text and "recipients and sender" in text and "trash" in text
    assert "six years" in text  # the audit log ZIVVER keeps, to be told to the subject


def test_rectification_names_fields_not_values() -> None:
    connector = ZivverConnector("zivver")
    result = asyncio.run(connector.rectify(SUBJECT, [FieldChange(field="phone", value="+3160")]))
    assert "phone" in (result.instructions or "") and "+3160" not in (result.instructions or "")


def test_a_register_entry_builds_through_the_entry_point() -> None:
    """`connector: zivver` in a register finds this class (no API, so no credentials)."""
    register = parse_register(
        {
            "systems": [
                {
                    "name": "zivver",
                    "kind": "other",
                    "connector": "zivver",
                    "data_categories": ["e-mail"],
                    "purposes": [{"name": "secure e-mail", "legal_basis": "contract"}],
                    "retention": "2 years",
                    "profiling": "none",
                }
            ]
        }
    )
    connector = registry.build(register.get("zivver"))
    assert isinstance(connector, ZivverConnector)
