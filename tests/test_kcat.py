"""The README's plain-kcat example publishes a request the orchestrator accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from orchestrator.kcat import LIBRARY_NAME, LibrdkafkaError, kcat_environment, librdkafka_dir
from schemas.events import RequestSubmitted
from schemas.kafka import KafkaSettings
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


def test_script_needs_bootstrap(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BOOTSTRAP"}
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "set BOOTSTRAP" in result.stderr


@pytest.mark.kcat
@pytest.mark.broker
def test_kcat_example_publishes_a_valid_request(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kcat = _kcat()
    env = kcat_environment(tmp_path / "librdkafka")
    env.update(BOOTSTRAP=kafka_settings.require_bootstrap(), KCAT=kcat, CE_SOURCE="kcat-test")
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kcat-publish.sh failed:\n{result.stdout}\n{result.stderr}"

    sent = RequestSubmitted.model_validate_json(REQUEST.read_bytes())
    partition, key, headers, envelope = read_published(kafka_settings, sent.request_id)[-1]
    assert envelope.body == sent
    assert key == sent.request_id.encode()
    assert envelope.time is not None
    assert_cloudevent(headers, "dsr.request.submitted.v1", "kcat-test")
    # murmur2_random: the partition a Java or kafka-python producer would choose, not the one
    # of librdkafka's default partitioner (CRC32; the example's id is one where they differ).
    expected = java_partition(sent.request_id, kafka_settings.partitions)
    assert expected != zlib.crc32(key) % kafka_settings.partitions
    assert partition == expected
