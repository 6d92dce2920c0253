"""`dsr`: one handler turns a DsrError into a message and an exit code; --help stays light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from schemas.errors import DsrError


class _Refused(DsrError):
    """An error with its own exit code."""

    exit_code = 3


@click.command("refuse")
def _refuse() -> None:
    raise _Refused("request req-1 cannot be refused twice; see 'dsr status req-1'")


def test_a_dsr_error_in_any_command_is_one_line_and_its_exit_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A plain click command: the root group's handler reports it all the same.
    monkeypatch.setitem(main.commands, "refuse", _refuse)
    result = CliRunner().invoke(main, ["refuse"])
    assert result.exit_code == 3
    assert result.stderr == (
        "Error: request req-1 cannot be refused twice; see 'dsr status req-1'\n"
    )
    assert result.stdout == ""


def test_a_real_command_reports_its_error_without_a_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_DASHBOARD")}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "dashboard", "--bootstrap", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: the dashboard needs a token: set DSR_DASHBOARD_TOKEN")
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_sub_group_invoked_on_its_own_reports_errors_too(tmp_path: Path) -> None:
    from orchestrator.cli.keys import keys

    store = str(tmp_path / "keys")
    runner = CliRunner()
    assert runner.invoke(keys, ["create", "--dir", store]).exit_code == 0
    again = runner.invoke(keys, ["create", "--dir", store])
    assert again.exit_code == 1 and again.stderr.startswith("Error: ")
    assert again.exception is None or isinstance(again.exception, SystemExit)


def test_help_loads_no_heavy_module() -> None:
    heavy = ["faust", "aiokafka", "aiohttp", "sqlalchemy", "kafka", "connectors", "cryptography"]
    code = (
        "import sys\n"
        "from orchestrator.cli import main\n"
        "main(['--help'], standalone_mode=False)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Commands:" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "[]"
