"""The plain-kcat example of docs/publishing.md publishes a request the orchestrator accepts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from orchestrator.intake.kcat import (
    LIBRARY_NAME,
    LibrdkafkaError,
    kcat_environment,
    kcat_library_env,
    librdkafka_dir,
)
from orchestrator.intake.publishers import IssuedKey, create_publisher
from schemas.envelope import SIGNATURE_HEADER, EnvelopeError, decode, header_dict
from schemas.events import RequestStatus, RequestSubmitted
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import RequestVerifier
from schemas.topics import REQUESTS
from tests.processes import start_dsr_up
from tests.test_client import assert_cloudevent, java_partition, read_published

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = EXAMPLES / "kcat-publish.sh"
REQUEST = EXAMPLES / "request.json"


def _kcat() -> str:
    """The kcat binary; skipped locally and failed in CI when it is missing."""
    path = shutil.which("kcat")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("kcat is not installed: apt-get install -y kcat")
        pytest.skip("kcat is not installed (apt-get install -y kcat)")
    return path


def test_example_request_is_valid() -> None:
    request = RequestSubmitted.model_validate_json(REQUEST.read_bytes())
    assert request.type == "access"
    assert request.verification.verified


def test_librdkafka_dir_links_the_wheels_library(tmp_path: Path) -> None:
    pytest.importorskip("confluent_kafka")
    directory = librdkafka_dir(tmp_path / "lib")
    link = directory / LIBRARY_NAME
    assert link.is_symlink()
    assert link.resolve().parent.name == "confluent_kafka.libs"
    assert librdkafka_dir(tmp_path / "lib") == directory  # a second call replaces the link
    env = kcat_environment(tmp_path / "lib", base={"LD_LIBRARY_PATH": "/opt/lib"})
    assert env["LD_LIBRARY_PATH"] == f"{directory}{os.pathsep}/opt/lib"


def test_missing_confluent_kafka_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(LibrdkafkaError, match=r"pip install 'confluent-kafka>=2.5'"):
        librdkafka_dir(tmp_path)


#: Stands in for kcat: records its arguments, one per NUL-terminated field.
FAKE_KCAT = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$FAKE_KCAT_ARGS"
"""


def _run_script(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the example script with `env` only (no stdin), capturing its output."""
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _fake_kcat_run(tmp_path: Path, env: dict[str, str]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Run the script with the fake kcat; return the key and headers it would have sent."""
    fake = tmp_path / "kcat"
    fake.write_text(FAKE_KCAT)
    fake.chmod(0o755)
    args_file = tmp_path / "args"
    result = _run_script(
        {
            "PATH": os.environ["PATH"],
            "BOOTSTRAP": "127.0.0.1:1",
            "KCAT": str(fake),
            "FAKE_KCAT_ARGS": str(args_file),
            **env,
        }
    )
    assert result.returncode == 0, result.stderr
    args = args_file.read_bytes().split(b"\0")[:-1]
    key = args[args.index(b"-k") + 1]
    headers = [
        (name.decode(), value)
        for name, _, value in (
            args[i + 1].partition(b"=") for i, a in enumerate(args) if a == b"-H"
        )
    ]
    assert args[-1] == str(REQUEST).encode()  # the file is sent as it is
    return key, headers


def _verify(issued: IssuedKey, key: bytes, headers: list[tuple[str, bytes]]) -> RequestSubmitted:
    envelope = decode(
        REQUEST.read_bytes(),
        headers,
        key=key,
        expect=REQUESTS.events,
        verify=RequestVerifier(issued.keys_file),
    )
    assert isinstance(envelope.body, RequestSubmitted)
    return envelope.body


@pytest.mark.parametrize("algorithm", ["ed25519", "hmac-sha256"])
def test_script_signs_so_the_orchestrator_accepts_it(tmp_path: Path, algorithm: str) -> None:
    issued = create_publisher(tmp_path / "keys.yaml", "web-form", algorithm)
    env = {"DSR_PUBLISHER_ID": "web-form", "DSR_PUBLISHER_KEY_FILE": str(issued.key_file)}
    key, headers = _fake_kcat_run(tmp_path, env)  # the key id derived in the shell
    body = _verify(issued, key, headers)
    assert body == RequestSubmitted.model_validate_json(REQUEST.read_bytes())
    assert header_dict(headers)[SIGNATURE_HEADER].startswith(
        f"v1;alg={algorithm};publisher=web-form;kid={issued.key_id};sig="
    )
    if algorithm == "hmac-sha256":  # the secret itself, instead of the file
        env = {"DSR_PUBLISHER_ID": "web-form", "DSR_PUBLISHER_SECRET": issued.key_file.read_text()}
        _verify(issued, *_fake_kcat_run(tmp_path, env))


def test_script_with_another_key_is_refused(tmp_path: Path) -> None:
    known = create_publisher(tmp_path / "keys.yaml", "web-form", "hmac-sha256")
    other = create_publisher(tmp_path / "other.yaml", "web-form", "hmac-sha256")
    env = {"DSR_PUBLISHER_ID": "web-form", "DSR_PUBLISHER_KEY_FILE": str(other.key_file)}
    key, headers = _fake_kcat_run(tmp_path, {**env, "DSR_PUBLISHER_KEY_ID": known.key_id})
    with pytest.raises(EnvelopeError, match="does not verify"):
        _verify(known, key, headers)


def test_script_needs_a_publisher_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_PUBLISHER")}
    result = _run_script({**env, "BOOTSTRAP": "127.0.0.1:1"})
    assert result.returncode != 0
    assert "DSR_PUBLISHER_ID" in result.stderr and "must be signed" in result.stderr
    short = _run_script(
        {**env, "BOOTSTRAP": "x:1", "DSR_PUBLISHER_ID": "a", "DSR_PUBLISHER_SECRET": "short"}
    )
    assert short.returncode != 0 and "at least 32 characters" in short.stderr


def test_script_needs_bootstrap(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BOOTSTRAP"}
    result = _run_script(env)
    assert result.returncode != 0
    assert "set BOOTSTRAP" in result.stderr


@pytest.mark.kcat
@pytest.mark.broker
def test_kcat_example_publishes_a_valid_request(
    kafka_settings: KafkaSettings, tmp_path: Path, test_publisher: IssuedKey
) -> None:
    kcat = _kcat()
    env = kcat_environment(tmp_path / "librdkafka")
    env.update(BOOTSTRAP=kafka_settings.require_bootstrap(), KCAT=kcat, CE_SOURCE="kcat-test")
    env.update(test_publisher.env())
    result = _run_script(env, timeout=60)
    assert result.returncode == 0, f"kcat-publish.sh failed:\n{result.stdout}\n{result.stderr}"

    sent = RequestSubmitted.model_validate_json(REQUEST.read_bytes())
    partition, key, headers, envelope = read_published(kafka_settings, sent.request_id)[-1]
    assert envelope.body == sent
    assert _verify(test_publisher, key or b"", headers) == sent  # signed, exactly as sent
    assert key == sent.request_id.encode()
    assert envelope.time is not None
    assert_cloudevent(headers, "dsr.request.submitted.v1", "kcat-test")
    # murmur2_random: the partition a Java or kafka-python producer would choose, not the one
    # of librdkafka's default partitioner (CRC32; the example's id is one where they differ).
    expected = java_partition(sent.request_id, kafka_settings.partitions)
    assert expected != zlib.crc32(key) % kafka_settings.partitions
    assert partition == expected


def test_kcat_library_env_is_empty_without_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    assert kcat_library_env(tmp_path / "lib") == {}  # `dsr up` writes no LD_LIBRARY_PATH then


README = EXAMPLES.parent / "README.md"


def _readme_kcat_line() -> str:
    """The README's kcat line, exactly as a newcomer copies it."""
    lines = [line for line in README.read_text().splitlines() if "examples/kcat-publish.sh" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.kcat
@pytest.mark.broker
def test_readme_kcat_line_against_dsr_up_completes_a_request(tmp_path: Path) -> None:
    pytest.importorskip("confluent_kafka")  # the README installs it: pip install -e '.[kcat]'
    _kcat()
    (tmp_path / "examples").symlink_to(EXAMPLES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSR_", "LD_LIBRARY"))}
    env["DSR_DASHBOARD_PORT"] = "0"
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 60}
    init = subprocess.run([sys.executable, "-m", "orchestrator.cli", "init"], **run)  # type: ignore[call-overload]
    assert init.returncode == 0, init.stderr
    up = start_dsr_up(tmp_path, env)
    try:
        assert up.stdout is not None
        for line in up.stdout:  # the state files are written before this line
            if line.startswith("Kafka:"):
                break
        published = subprocess.run(["bash", "-c", _readme_kcat_line()], **run)  # type: ignore[call-overload]
        assert published.returncode == 0, published.stderr
        request_id = RequestSubmitted.model_validate_json(REQUEST.read_bytes()).request_id
        status = _wait_for_status(tmp_path, env, request_id)
        assert status == "completed"
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.communicate(timeout=60)


def _wait_for_status(directory: Path, env: dict[str, str], request_id: str) -> str:
    """The request's status once final (`dsr status --json`, as a newcomer would check)."""
    deadline = time.monotonic() + 120
    status = ""
    while time.monotonic() < deadline:
        shown = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "status", request_id, "--json"],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if shown.returncode == 0:
            status = json.loads(shown.stdout)["status"]
            if RequestStatus(status).is_final:
                return status
        time.sleep(0.5)
    raise AssertionError(f"{request_id} not final within 120 s (last status {status!r})")
