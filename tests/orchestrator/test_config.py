"""Configuration from DSR_* variables: every problem reported at once, by variable name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.lifecycle.deadlines import DeadlinePolicy
from orchestrator.runtime.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DSR_"):
            monkeypatch.delenv(name)


def _problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    return str(raised.value)


def test_a_bad_kafka_variable_is_named_with_its_prefix_next_to_other_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _problems(monkeypatch, DSR_KAFKA_SECURITY_PROTOCOL="bogus", DSR_MAX_ATTEMPTS="0")
    assert "DSR_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT'" in message
    assert "DSR_MAX_ATTEMPTS: Input should be greater than or equal to 1" in message


def test_sasl_needs_its_mechanism_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _problems(monkeypatch, DSR_KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    for name in ("SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD"):
        assert f"DSR_KAFKA_{name}: required with DSR_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in message


def test_a_sasl_mechanism_without_a_sasl_protocol_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _problems(monkeypatch, DSR_KAFKA_SASL_MECHANISM="SCRAM-SHA-512")
    assert "DSR_KAFKA_SASL_MECHANISM: set to SCRAM-SHA-512, but" in message
    assert "DSR_KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in message


def test_missing_tls_files_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    message = _problems(
        monkeypatch, DSR_KAFKA_SECURITY_PROTOCOL="SSL", DSR_KAFKA_SSL_CAFILE=str(tmp_path / "ca")
    )
    assert f"DSR_KAFKA_SSL_CAFILE: no such file {tmp_path / 'ca'}" in message


def test_the_health_port_is_optional_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().health_port is None
    assert "DSR_HEALTH_PORT" in _problems(monkeypatch, DSR_HEALTH_PORT="70000")
    monkeypatch.setenv("DSR_HEALTH_PORT", "8080")
    assert load_settings().health_port == 8080


def test_a_complete_sasl_ssl_configuration_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for name, value in {
        "DSR_KAFKA_BOOTSTRAP": "kafka:9093",
        "DSR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DSR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "DSR_KAFKA_SASL_USERNAME": "dsr",
        "DSR_KAFKA_SASL_PASSWORD": "from-a-secret",
        "DSR_KAFKA_SSL_CAFILE": str(ca),
    }.items():
        monkeypatch.setenv(name, value)
    kafka = load_settings().kafka
    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl_password is not None
    assert "from-a-secret" not in repr(kafka)


@pytest.mark.parametrize("value", ["3 months", "2 months", "5 weeks", "31 days"])
def test_art_12_3_deadline_policy_over_one_month_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = _problems(monkeypatch, DSR_DEADLINE_POLICY=value)
    assert f"DSR_DEADLINE_POLICY: deadline policy {value!r} is longer than one month" in message
    assert "Art. 12(3) GDPR" in message and "within one month of receipt" in message


@pytest.mark.parametrize("value", ["1 month", "4 weeks", "30 days", "2 weeks", "14 days"])
def test_art_12_3_deadline_policy_of_one_month_or_shorter_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DSR_DEADLINE_POLICY", value)
    assert load_settings().policy().deadline == DeadlinePolicy.parse(value)


def test_the_deadline_time_zone_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert str(load_settings().policy().deadline.zone) == "Europe/Amsterdam"
    message = _problems(monkeypatch, DSR_DEADLINE_TIMEZONE="Mars/Olympus")
    assert "DSR_DEADLINE_TIMEZONE: unknown time zone 'Mars/Olympus'" in message


def test_approval_required_names_rights_and_reaches_the_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DSR_APPROVAL_REQUIRED: the rights whose requests wait for an officer's approval."""
    from schemas.events import RequestType

    assert load_settings().policy().approval_required == frozenset()
    monkeypatch.setenv("DSR_APPROVAL_REQUIRED", "erasure, Restriction")
    policy = load_settings().policy()
    assert policy.approval_required == {RequestType.ERASURE, RequestType.RESTRICTION}
    message = _problems(monkeypatch, DSR_APPROVAL_REQUIRED="erasure,forgetting")
    assert "DSR_APPROVAL_REQUIRED" in message and "unknown right 'forgetting'" in message


def test_the_local_publisher_may_decide(tmp_path: Path) -> None:
    """`dsr up`'s own publisher is the officer's: it may publish decisions, which no
    publisher may by default."""
    from orchestrator.intake.publishers import local_publisher
    from schemas.primitives.signing import load_publisher_keys
    from schemas.topics import DECISION_EVENT_TYPES

    issued = local_publisher(tmp_path)
    allowed = load_publisher_keys(issued.keys_file).events["local"]
    assert set(DECISION_EVENT_TYPES) <= allowed


def test_reminder_and_waiting_warning_reach_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """DSR_REMINDER_AFTER_DAYS (0: no reminder) and DSR_WAITING_WARNING_DAYS."""
    from datetime import timedelta

    policy = load_settings().policy()
    assert policy.reminder_after == timedelta(days=14) and policy.waiting_warning_days == 14
    monkeypatch.setenv("DSR_REMINDER_AFTER_DAYS", "0")
    monkeypatch.setenv("DSR_WAITING_WARNING_DAYS", "21")
    policy = load_settings().policy()
    assert policy.reminder_after is None and policy.waiting_warning_days == 21
