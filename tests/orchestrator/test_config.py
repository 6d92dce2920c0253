"""Configuration from DSR_* variables: every problem reported at once, by variable name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
