"""The register: validation errors name file, entry and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.runtime.demo import register_path, sql_register_path
from schemas.register import (
    LegalBasis,
    LocalText,
    Profiling,
    RecipientCategory,
    Register,
    RegisterError,
    load_register,
    localize,
    parse_register,
)

VALID = {
    "name": "crm",
    "kind": "crm",
    "connector": "sql",
    "data_categories": ["email"],
    "purposes": ["sales"],
    "legal_basis": ["contract"],
    "profiling": "none",
    "retention": "2 years",
}


def test_demo_register_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSR_DEMO_DIR", "/tmp/demo")
    register = load_register(sql_register_path())
    assert register.names == ["crm", "mailing", "chat", "support", "orders"]
    assert register.get("crm").settings["url"] == "sqlite:////tmp/demo/crm.db"
    assert {s.kind for s in register.systems} == {
        "crm",
        "mailing",
        "chat",
        "support_desk",
        "database",
    }


def test_error_names_file_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "register.yaml"
    path.write_text(
        "systems:\n"
        "  - {name: crm, kind: crm, connector: sql, data_categories: [e], purposes: [p],"
        " legal_basis: [contract], retention: 1y}\n"
        "  - {name: mail, kind: mailing, connector: sql, data_categories: [e], purposes: [p],"
        " legal_basis: [because], retention: 1y}\n"
    )
    with pytest.raises(RegisterError) as err:
        load_register(path)
    message = str(err.value)
    assert str(path) in message and "systems[1] (mail)" in message and "legal_basis" in message


def test_missing_field_and_duplicate_names() -> None:
    with pytest.raises(RegisterError, match=r"systems\[0\] \(crm\) retention: Field required"):
        parse_register({"systems": [{k: v for k, v in VALID.items() if k != "retention"}]})
    with pytest.raises(RegisterError, match="used twice"):
        parse_register({"systems": [VALID, VALID]})


def test_outside_eea_needs_transfer_mechanism() -> None:
    with pytest.raises(RegisterError, match="transfer_mechanism"):
        parse_register({"systems": [{**VALID, "location": {"region": "US"}}]})


def test_env_references_in_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "s3cret")
    register = parse_register({"systems": [{**VALID, "settings": {"token": "${CRM_TOKEN}"}}]})
    assert register.get("crm").settings["token"] == "s3cret"
    monkeypatch.delenv("CRM_TOKEN")
    with pytest.raises(RegisterError, match="CRM_TOKEN is not set"):
        parse_register({"systems": [{**VALID, "settings": {"token": "${CRM_TOKEN}"}}]})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(RegisterError, match="cannot read"):
        load_register(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("systems: [\n")
    with pytest.raises(RegisterError, match="not valid YAML"):
        load_register(bad)


def test_watched_register_reloads_changes_and_keeps_the_last_valid_one(tmp_path: Path) -> None:
    import os

    import yaml

    from schemas.register import WatchedRegister

    path = tmp_path / "register.yaml"
    path.write_text(yaml.safe_dump({"systems": [VALID]}))
    watched = WatchedRegister(path)
    first = watched.current()
    assert watched.current() is first  # unchanged file: the same object, no re-read
    path.write_text(yaml.safe_dump({"systems": [VALID, {**VALID, "name": "mail"}]}))
    os.utime(path, ns=(1, 10**18))  # a different mtime even within one clock tick
    assert watched.current().names == ["crm", "mail"] and watched.version == 2
    path.write_text("systems: [{name: broken}]\n")
    os.utime(path, ns=(1, 2 * 10**18))
    assert watched.current().names == ["crm", "mail"]  # invalid edit: last valid one stays
    assert watched.error is not None and "systems[0] (broken)" in str(watched.error)


# ---------------------------------------------------------------------------------------------
# The Art. 15 / Art. 30 facts are validated (issue 14)
# ---------------------------------------------------------------------------------------------

RECIPIENT = {
    "name": "PostNL",
    "category": "carrier",
    "purpose": "bezorgen",
    "data_categories": ["adres"],
}


def test_art_28_3_processor_agreement_required() -> None:
    """A processor may only process under a contract binding it to the controller (Art. 28(3)
    GDPR): a register naming a processor without its agreement is refused, and the error names
    the system, the field and the article."""
    with pytest.raises(RegisterError) as err:
        parse_register({"systems": [{**VALID, "processor": {"name": "HubSpot Ireland Ltd."}}]})
    message = str(err.value)
    assert "systems[0] (crm)" in message and "processor.agreement" in message
    assert "28(3)" in message
    agreement = {"signed_on": "2024-01-15", "reference": "VO-2024-01"}
    register = parse_register(
        {"systems": [{**VALID, "processor": {"name": "HubSpot", "agreement": agreement}}]}
    )
    assert register.get("crm").processor.agreement.reference == "VO-2024-01"  # type: ignore[union-attr]


def test_art_13_1_c_plain_purposes_with_two_bases_are_refused() -> None:
    """Each purpose has its own legal basis (Art. 13(1)(c), 30(1)(b) GDPR): plain purpose names
    under two bases cannot say which basis serves which purpose."""
    two = {**VALID, "purposes": ["sales", "newsletter"], "legal_basis": ["contract", "consent"]}
    with pytest.raises(RegisterError, match=r"systems\[0\] \(crm\).*give each purpose its own"):
        parse_register({"systems": [two]})


def test_a_recipient_naming_an_unknown_system_is_refused() -> None:
    unknown = "recipient 'PostNL' names systems not in the register: shop"
    with pytest.raises(RegisterError, match=unknown):
        parse_register({"systems": [VALID], "recipients": [{**RECIPIENT, "systems": ["shop"]}]})
    notified_by = {**RECIPIENT, "notify": {"system": "shop"}}
    with pytest.raises(RegisterError, match="not in the register: shop"):
        parse_register({"systems": [VALID], "recipients": [notified_by]})


def test_art_19_a_notification_has_exactly_one_way() -> None:
    """Art. 19 GDPR: each recipient is told one way: by a system, an e-mail or instructions."""
    both = {**RECIPIENT, "notify": {"email": "privacy@postnl.example", "instructions": "bel"}}
    with pytest.raises(RegisterError, match=r"recipients\.0\.notify.*exactly one of"):
        parse_register({"systems": [VALID], "recipients": [both]})
    with pytest.raises(RegisterError, match="exactly one of"):
        parse_register({"systems": [VALID], "recipients": [{**RECIPIENT, "notify": {}}]})


# ---------------------------------------------------------------------------------------------
# The demo and example registers are truthful and bilingual
# ---------------------------------------------------------------------------------------------

EXAMPLE = Path(__file__).parents[2] / "examples" / "register.yaml"


def _registers() -> dict[str, Register]:
    env = _Anything()
    return {
        "demo": load_register(register_path(), env),
        "sql": load_register(sql_register_path(), env),
        "example": load_register(EXAMPLE, env),
    }


class _Anything(dict[str, str]):
    """An environment in which every `${VAR}` is set (the settings are not under test)."""

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> str:
        return "x"


def _texts(register: Register) -> list[object]:
    """Every free text of the register a document shows."""
    found: list[object] = [*register.data_subjects, *register.security_measures]
    for system in register.systems:
        found += [system.retention, system.source, *system.data_categories, *system.data_subjects]
        for purpose in system.purpose_list():
            found += [purpose.name, *filter(None, [purpose.legitimate_interest])]
        if system.profiling != "none":
            found += [system.profiling.logic, system.profiling.consequences]
    for recipient in register.recipients:
        found += [recipient.purpose, *recipient.data_categories]
        if recipient.notify is not None and recipient.notify.instructions is not None:
            found.append(recipient.notify.instructions)
    return found


@pytest.mark.parametrize("which", ["demo", "sql", "example"])
def test_every_free_text_of_the_shipped_registers_is_in_dutch_and_english(which: str) -> None:
    register = _registers()[which]
    plain = [text for text in _texts(register) if not isinstance(text, LocalText)]
    assert plain == [], which


@pytest.mark.parametrize("which", ["demo", "sql", "example"])
def test_art_13_1_d_every_legitimate_interests_purpose_names_the_interest(which: str) -> None:
    """Art. 13(1)(d) GDPR: where processing rests on Art. 6(1)(f), the interest is stated."""
    for system in _registers()[which].systems:
        for purpose in system.purpose_list():
            if purpose.legal_basis == LegalBasis.LEGITIMATE_INTERESTS:
                assert purpose.legitimate_interest is not None, (which, system.name)


@pytest.mark.parametrize("which", ["demo", "sql", "example"])
def test_art_15_1_h_the_mailing_tools_lead_scoring_is_stated_as_profiling(which: str) -> None:
    """ActiveCampaign scores contacts on e-mail engagement and site visits (its contact
    scoring): profiling, stated with its logic and consequences (Art. 15(1)(h) GDPR); it has
    no legal or similarly significant effect, so the register says it is no Art. 22 decision.
    The systems without such processing say `none` explicitly."""
    register = _registers()[which]
    scoring = [s for s in register.systems if s.profiling != "none"]
    assert [s.processor.name for s in scoring] == ["ActiveCampaign LLC"]  # type: ignore[union-attr]
    profiling = scoring[0].profiling
    assert isinstance(profiling, Profiling) and profiling.kind == "profiling"
    assert "artikel 22" in localize(profiling.consequences, "nl")
    assert "Article 22" in localize(profiling.consequences, "en")


@pytest.mark.parametrize("which", ["demo", "sql", "example"])
def test_art_15_1_c_recipients_beyond_processors_with_a_notification_way(which: str) -> None:
    """Art. 15(1)(c), 30(1)(d) GDPR name every recipient, not only processors; Art. 19 needs a
    way to tell each of them."""
    register = _registers()[which]
    assert {r.category for r in register.recipients} >= {
        RecipientCategory.CARRIER,
        RecipientCategory.PAYMENT_PROVIDER,
        RecipientCategory.TAX_AUTHORITY,
        RecipientCategory.ACCOUNTANT,
    }
    assert all(r.notify is not None for r in register.recipients)
    controller = register.controller
    assert controller is not None and controller.complaints and controller.privacy_statement
    assert register.data_subjects and register.security_measures
