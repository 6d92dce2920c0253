"""`dsr intake`: the HTTP intake as its own process, on the session broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.cli.init import starter_text
from orchestrator.intake.publishers import IssuedKey, create_publisher
from orchestrator.runtime.broker import free_port
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import settings_env
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import INTAKE_PUBLISHER
from schemas.topics import REQUEST_EVENT_TYPES

pytestmark = pytest.mark.broker


def _env(tmp_path: Path, kafka: KafkaSettings, key: IssuedKey, port: int) -> dict[str, str]:
    register = tmp_path / "register.yaml"
    register.write_text(starter_text("register.yaml"))
    settings = Settings.model_validate(
        {"register_file": register, "data_dir": tmp_path / "data", "publisher_keys": key.keys_file}
    ).model_copy(update={"kafka": kafka})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    return {**env, **settings_env(settings), **key.env(), "DSR_INTAKE_PORT": str(port)}


def _wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"{url}/readyz not 200 within {timeout}s"
        time.sleep(0.2)


def test_intake_process_serves_health_and_stops_on_sigterm(
    tmp_path: Path, kafka_settings: KafkaSettings
) -> None:
    key = create_publisher(
        tmp_path / "keys.yaml", INTAKE_PUBLISHER, events=list(REQUEST_EVENT_TYPES)
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "intake"],
        env=_env(tmp_path, kafka_settings, key, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        health = httpx.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert httpx.get(f"{url}/readyz", timeout=5).json() == {"status": "ready"}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert re.search(rf"Intake on http://127\.0\.0\.1:{port}/", output), output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)


def test_intake_refuses_a_bad_setting_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "intake"],
        env={**env, "DSR_KAFKA_BOOTSTRAP": "127.0.0.1:1", "DSR_INTAKE_PORT": "http"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "DSR_INTAKE_PORT" in result.stderr and "Traceback" not in result.stderr
