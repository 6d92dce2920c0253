"""`dsr init`: a starter register a newcomer can run at once, and `dsr up` pointing at it."""

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
import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.cli.init import starter_text
from schemas.register import load_register, parse_register
from tests.processes import read_until, start_dsr_up

#: `${VAR}` references, as the register expands them.
ENV_REFERENCE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")


#: An access request for the starter register's sample subject.
SAMPLE_ACCESS = (
    "--type",
    "access",
    "--email",
    "jan.jansen@example.nl",
    "--verified",
    "id_document",
)


def _init(directory: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["init", str(directory), *args])
    return result.exit_code, result.output


def test_init_writes_a_register_that_validates_and_env_example(tmp_path: Path) -> None:
    code, output = _init(tmp_path / "new")
    assert code == 0, output
    register = load_register(tmp_path / "new" / "register.yaml", {})
    assert [s.connector for s in register.systems] == ["memory"]
    assert register.controller is not None and register.controller.privacy_statement
    assert (tmp_path / "new" / ".env.example").is_file()
    assert "dsr up" in output and "dsr submit" in output and "dashboard" in output


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "register.yaml").write_text("# mine\n")
    code, output = _init(tmp_path)
    assert code == 1
    assert "register.yaml" in output and "already there" in output and "--force" in output
    assert (tmp_path / "register.yaml").read_text() == "# mine\n"
    assert not (tmp_path / ".env.example").exists()  # nothing written at all
    code, output = _init(tmp_path, "--force")
    assert code == 0, output
    assert (tmp_path / "register.yaml").read_text() == starter_text("register.yaml")


def _uncommented(text: str) -> str:
    """The register with its commented example systems switched on."""
    lines = []
    for line in text.splitlines():
        body = line.removeprefix("  # ")
        if body != line and (body.startswith("- name:") or body.startswith("  ")):
            lines.append("  " + body)
        else:
            lines.append(line)
    return "\n".join(lines)


def test_commented_examples_validate_with_their_credentials() -> None:
    text = _uncommented(starter_text("register.yaml"))
    named = set(ENV_REFERENCE.findall(text))
    env = {name: "postgresql+psycopg://dsr@db/shop" for name in named}
    register = parse_register(yaml.safe_load(text), "register.yaml", env)
    assert register.names == ["sample", "orders", "hubspot"]
    assert register.get("hubspot").processor is not None  # Art. 28(3): its agreement


def test_env_example_names_every_credential_the_register_uses() -> None:
    named = set(ENV_REFERENCE.findall(starter_text("register.yaml")))
    listed = {
        line.split("=", 1)[0]
        for line in starter_text(".env.example").splitlines()
        if line and not line.startswith("#")
    }
    assert named and named == listed


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    return {**env, "DSR_DASHBOARD_PORT": "0"}


def test_up_without_a_register_suggests_init(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "up"],
        cwd=tmp_path,
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "register.yaml: cannot read the register" in result.stderr
    assert "run `dsr init` to create a starter register" in result.stderr


@pytest.mark.broker
def test_init_then_up_starts_in_an_empty_folder(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    init = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "init"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    up = start_dsr_up(tmp_path, env)
    try:
        printed = read_until(up, "Dashboard:", 90)
        intake = re.search(r"Intake: (http://127\.0\.0\.1:\d+/) \(request page and API\)", printed)
        assert intake, printed
        assert (tmp_path / ".dsr" / "intake-url").read_text().strip() == intake.group(1)
        deadline = time.monotonic() + 60
        while True:  # the intake process is up and follows the status topic
            try:
                if httpx.get(f"{intake.group(1)}readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert up.poll() is None, "dsr up stopped: a process of the stack died"
            assert time.monotonic() < deadline, "the intake did not get ready"
            time.sleep(0.2)
        submit = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "submit",
                "--id",
                "init-1",
                *SAMPLE_ACCESS,
                "--wait",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "init-1: access completed (1/1 systems" in submit.stdout, submit.stderr
    finally:
        os.killpg(up.pid, signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert not (tmp_path / ".dsr" / "intake-url").exists()
