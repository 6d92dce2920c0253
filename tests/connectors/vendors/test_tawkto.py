"""Tawk.to: every right is a manual task with instructions, and no identifier in them."""

from __future__ import annotations

import pytest

from connectors.conformance import run_task
from connectors.vendors.tawkto import TawkToConnector
from schemas.events import FieldChange, Identifier, OutcomeStatus, RequestType, Subject

SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value="klant@example.nl"),
        Identifier(type="phone", value="+31612345678"),
    ]
)


@pytest.mark.parametrize("action", list(RequestType))
def test_every_right_is_a_manual_task_with_instructions(action: RequestType) -> None:
    connector = TawkToConnector("chat", {"property_name": "webshop"})
    outcome = run_task(connector, "chat", action, SUBJECT)
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    text = outcome.instructions or ""
    assert "dashboard.tawk.to" in text and "'webshop'" in text
    assert "dsr tasks complete conformance-1/chat" in text  # how to record the work
    for value in ("klant@example.nl", "+31612345678", "31612345678"):
        assert value not in text


def test_erasure_instructions_cover_chats_and_contact() -> None:
    outcome = run_task(TawkToConnector("chat"), "chat", RequestType.ERASURE, SUBJECT)
    text = (outcome.instructions or "").lower()
    assert "delete" in text and "contact" in text and "trash" in text


def test_rectification_names_fields_not_values() -> None:
    connector = TawkToConnector("chat")

    async def go() -> str:
        result = await connector.rectify(
            SUBJECT, [FieldChange(field="phone", value="+31600000000")]
        )
        return result.instructions or ""

    import asyncio

    text = asyncio.run(go())
    assert "phone" in text and "+31600000000" not in text
