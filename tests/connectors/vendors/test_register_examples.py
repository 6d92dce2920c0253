"""The example register: valid, and each system builds with its installed connector."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors import registry
from schemas.register import load_register, localize

EXAMPLE = Path(__file__).parents[3] / "examples" / "register.yaml"
SECRETS = {
    "HUBSPOT_TOKEN": "pat-eu1-x",
    "ACTIVECAMPAIGN_API_URL": "https://webwinkel.api-us1.com/api/3",
    "ACTIVECAMPAIGN_API_KEY": "k",
    "MAILCHIMP_API_KEY": "0123456789abcdef-us21",
    "INTERCOM_TOKEN": "t",
    "FRESHDESK_API_KEY": "k",
    "ZENDESK_EMAIL": "dpo@webwinkel.example",
    "ZENDESK_API_TOKEN": "t",
}


def test_example_register_covers_the_processors_of_the_seeds() -> None:
    register = load_register(EXAMPLE, SECRETS)
    assert {s.connector for s in register.systems} >= {
        "hubspot", "activecampaign", "mailchimp", "intercom", "tawkto", "freshdesk", "zendesk",
    }  # fmt: skip
    freshdesk = register.get("freshdesk")
    # seed 001: at the latest after 12 months
    assert "12 months" in localize(freshdesk.retention, "en")
    assert "12 maanden" in localize(freshdesk.retention, "nl")
    assert register.get("activecampaign").location.transfer_mechanism


@pytest.mark.parametrize("name", load_register(EXAMPLE, SECRETS).names)
def test_every_example_system_builds_with_its_connector(name: str) -> None:
    system = load_register(EXAMPLE, SECRETS).get(name)
    connector = registry.build(system)  # validates the settings against the connector's model
    assert connector.capabilities
    asyncio.run(connector.aclose())
