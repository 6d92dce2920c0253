"""The register: validation errors name file, entry and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.runtime.demo import sql_register_path
from schemas.register import RegisterError, load_register, parse_register

VALID = {
    "name": "crm",
    "kind": "crm",
    "connector": "sql",
    "data_categories": ["email"],
    "purposes": ["sales"],
    "legal_basis": ["contract"],
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
