"""The example register: valid, it covers every processor the seed privacy statements name
(with their retention and transfer facts), and each system builds with its installed connector;
`dsr connectors check` runs against the new processors' fakes."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors import registry
from connectors.fakes import messagebird as mb
from orchestrator.cli import main
from schemas.register import Register, load_register, localize

EXAMPLE = Path(__file__).parents[3] / "examples" / "register.yaml"
SEEDS = Path(__file__).parents[2] / "data" / "seeds"


def _service_account_key() -> str:
    """A real (throwaway) service account key, so the Gmail connector can be built."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "client_email": "dsr@webwinkel.iam.gserviceaccount.com",
            "private_key": pem,
            "private_key_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


SECRETS = {
    "HUBSPOT_TOKEN": "pat-eu1-x",
    "ACTIVECAMPAIGN_API_URL": "https://webwinkel.api-us1.com/api/3",
    "ACTIVECAMPAIGN_API_KEY": "k",
    "MAILCHIMP_API_KEY": "0123456789abcdef-us21",
    "INTERCOM_TOKEN": "t",
    "FRESHDESK_API_KEY": "k",
    "ZENDESK_EMAIL": "dpo@webwinkel.example",
    "ZENDESK_API_TOKEN": "t",
    "MESSAGEBIRD_ACCESS_KEY": mb.ACCESS_KEY,
    "BIRD_WORKSPACE_ID": mb.WORKSPACE,
    "GOOGLE_SERVICE_ACCOUNT_KEY": _service_account_key(),
}

#: Every processor the seeds name, as the statement writes it, with the seed it is in; and a
#: pattern its register entry (system processor or title, recipient, not-retrievable entry)
#: must match. Seeds 000 and 004 name no processor (only "verwerkers" and carriers in general).
SEED_PROCESSORS = [
    ("001_6df6efa484499ec6.txt", "Freshworks", r"Freshworks"),
    ("001_6df6efa484499ec6.txt", "Google reCAPTCHA", r"reCAPTCHA"),
    ("002_10c68ed50f8cb51e.txt", "ROL Solutions Ltd.", r"ROL Solutions"),
    ("002_10c68ed50f8cb51e.txt", "Hyperconnected", r"Hyperconnected"),
    ("002_10c68ed50f8cb51e.txt", "Massxess", r"Massxess"),
    ("002_10c68ed50f8cb51e.txt", "Messagebird", r"MessageBird"),
    ("002_10c68ed50f8cb51e.txt", "ZIVVER", r"ZIVVER|Zivver"),
    ("003_17a081ab3823b264.txt", "Google G-suite", r"Google Workspace"),
    ("003_17a081ab3823b264.txt", "Tawk", r"Tawk"),
    ("003_17a081ab3823b264.txt", "ActiveCampaign", r"ActiveCampaign"),
]


def _register() -> Register:
    return load_register(EXAMPLE, SECRETS)


def _entries(register: Register) -> list[str]:
    """Every name the register gives a party that holds or receives personal data."""
    names = [s.display_name for s in register.systems]
    names += [s.processor.name for s in register.systems if s.processor is not None]
    names += [r.name for r in register.recipients]
    names += [n.display_name for n in register.not_retrievable]
    return names


@pytest.mark.parametrize(("seed", "named", "entry"), SEED_PROCESSORS)
def test_example_register_covers_the_processors_of_the_seeds(
    seed: str, named: str, entry: str
) -> None:
    text = (SEEDS / seed).read_text(encoding="utf-8")
    assert named in text, f"{seed} no longer names {named!r}: update SEED_PROCESSORS"
    assert any(re.search(entry, name) for name in _entries(_register())), named


def test_the_seed_list_is_complete() -> None:
    """Every 'voor ...' line of seed 002's sub-processor list and every processor heading of
    seed 003 is in SEED_PROCESSORS, so a processor added to a seed is not silently missed."""
    listed = {named for _, named, _ in SEED_PROCESSORS}
    text = (SEEDS / "002_10c68ed50f8cb51e.txt").read_text(encoding="utf-8")
    sub_processors = re.findall("^\u2013 (.+?) voor ", text, re.M)  # an en dash
    assert len(sub_processors) == 4  # the list itself, besides ROL Solutions named above it
    assert set(sub_processors) <= listed
    text = (SEEDS / "003_17a081ab3823b264.txt").read_text(encoding="utf-8")
    headings = re.findall(r"^(\w[\w ]*)\n\nWij (?:gebruiken|maken)", text, re.M)
    assert headings == ["Google", "Tawk", "ActiveCampaign"]
    assert all(any(h in named for named in listed) for h in headings)


def test_the_seeds_retention_and_transfer_facts_are_in_the_register() -> None:
    register = _register()
    freshdesk = register.get("freshdesk")
    # seed 001: deleted once answered, at the latest after 12 months; EU model clauses
    assert "12 months" in localize(freshdesk.retention, "en")
    assert "12 maanden" in localize(freshdesk.retention, "nl")
    assert "SCC" in (freshdesk.location.transfer_mechanism or "")
    # seed 003: name and e-mail 180 days, phone number 160 days
    for name in ("activecampaign", "tawkto", "google_workspace"):
        retention = localize(register.get(name).retention, "en")
        assert "160" in retention and "180" in retention, name
    assert register.get("activecampaign").location.transfer_mechanism
    # seed 001: reCAPTCHA keeps nothing retrievable; no system, so no task
    (recaptcha,) = register.not_retrievable
    assert recaptcha.name not in register.names
    assert "Art" in localize(recaptcha.reason, "en")


@pytest.mark.parametrize("name", load_register(EXAMPLE, SECRETS).names)
def test_every_example_system_builds_with_its_connector(name: str) -> None:
    system = load_register(EXAMPLE, SECRETS).get(name)
    if system.connector not in registry.available():
        pytest.skip(f"connector {system.connector!r} is not installed here yet")
    connector = registry.build(system)  # validates the settings against the connector's model
    assert connector.capabilities
    asyncio.run(connector.aclose())


def _check(system: str, env: dict[str, str], *subject: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["connectors", "check", system, "--register", str(EXAMPLE), *subject],
        env={**SECRETS, **env},
    )
    return result.exit_code, result.output


def test_dsr_connectors_check_finds_the_subject_in_messagebird_by_phone_and_email() -> None:
    with mb.MessageBird() as fake:
        code, output = _check(
            "messagebird",
            {"MESSAGEBIRD_API_URL": fake.url, "BIRD_API_URL": fake.url},
            "--email",
            mb.SUBJECT_EMAIL,
            "--phone",
            mb.SUBJECT_PHONE,
        )
    assert code == 0, output
    assert "messagebird: completed" in output
    assert re.search(r"messages\s+25 records", output)
    assert re.search(r"bird_contacts\s+1 records", output)
    assert mb.SUBJECT_EMAIL not in output  # counts only, never the records


@pytest.mark.parametrize("system", ["zivver", "tawkto"])
def test_dsr_connectors_check_of_a_manual_processor_says_a_person_must_act(system: str) -> None:
    code, output = _check(system, {}, "--email", "klant@example.nl")
    assert code == 0, output
    assert f"{system}: manual_action_required" in output


def _vendor_check_cases() -> list[tuple[str, str, list[str], list[str]]]:
    """(system, vendor test module, --setting items, --unset keys) per built-in REST vendor of
    the example register: each pointed at its fake by the command line alone."""
    return [
        ("freshdesk", "test_freshdesk", ["base_url={url}/api/v2", "api_key={fd_key}"], ["domain"]),
        ("zendesk", "test_zendesk", ["base_url={url}/api/v2", "email={zd_email}",
                                     "api_token={zd_token}"], ["subdomain"]),
        ("hubspot", "test_hubspot", ["base_url={url}", "token={hs_token}"], []),
        ("intercom", "test_intercom", ["base_url={url}", "token={ic_token}"], ["region"]),
        ("activecampaign", "test_activecampaign", ["api_url={url}/api/3", "api_key={ac_key}"], []),
        ("mailchimp", "test_mailchimp", ["base_url={url}/3.0", "api_key={mc_key}"], []),
    ]  # fmt: skip


@pytest.mark.parametrize(("system", "module", "settings", "unset"), _vendor_check_cases())
def test_dsr_connectors_check_runs_each_vendor_of_the_example_register_against_its_fake(
    system: str, module: str, settings: list[str], unset: list[str]
) -> None:
    """`dsr connectors check SYSTEM --setting base_url=... --unset domain` tries a system of
    the register against a sandbox or a local fake without editing the register."""
    import importlib

    from connectors.fakes import activecampaign as ac
    from connectors.fakes import freshdesk as fd
    from connectors.fakes import hubspot as hs
    from connectors.fakes import intercom as ic
    from connectors.fakes import mailchimp as mc
    from connectors.fakes import zendesk as zd

    tests = importlib.import_module(f"tests.connectors.vendors.{module}")
    with tests.FAKE() as fake:
        if hasattr(tests, "seed"):
            tests.seed(fake)
        values = {
            "url": fake.url, "fd_key": fd.API_KEY, "zd_email": zd.EMAIL,
            "zd_token": zd.API_TOKEN, "hs_token": hs.TOKEN, "ic_token": ic.TOKEN,
            "ac_key": ac.API_KEY, "mc_key": mc.API_KEY,
        }  # fmt: skip
        flags = [f for item in settings for f in ("--setting", item.format(**values))]
        flags += [f for key in unset for f in ("--unset", key)]
        email = tests.SUBJECT.first("email")
        code, output = _check(system, {}, "--email", email, *flags)
    assert code == 0, output
    assert f"{system}: completed" in output, output
    assert re.search(r"\d+ records", output), output
    assert email not in output  # counts only, never the records
