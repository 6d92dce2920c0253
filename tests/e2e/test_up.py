"""`dsr up`: runs everything until Ctrl-C, then stops every process it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.runtime import demo
from tests.processes import read_until, start_dsr_up

pytestmark = pytest.mark.broker


def test_up_serves_requests_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    systems = demo.seed(tmp_path / "systems")
    env = {
        **os.environ,
        "DSR_REGISTER": str(demo.sql_register_path()),
        "DSR_DATA_DIR": str(tmp_path / "data"),
        "DSR_DEMO_DIR": str(systems),
        "DSR_STATE_DIR": str(tmp_path / ".dsr"),
        "DSR_DASHBOARD_PORT": "0",  # any free port: tests run beside other servers
    }
    env.pop("DSR_KAFKA_BOOTSTRAP", None)
    up = start_dsr_up(tmp_path, env, merge_stderr=True)
    try:
        printed = read_until(up, "Ctrl-C stops", 60)
        dashboard = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+/)\?token=(\S+)", printed)
        assert dashboard, printed  # no token configured: one made up for this session
        bootstrap = (tmp_path / ".dsr" / "bootstrap").read_text().strip()
        # ... and signs with the local publisher key `dsr up` created, through .dsr/publisher.env
        assert "DSR_PUBLISHER_ID=local" in (tmp_path / ".dsr" / "publisher.env").read_text()
        # another terminal: submit finds the embedded broker through .dsr/bootstrap
        submit = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "submit",
                "--id",
                "up-1",
                "--type",
                "access",
                "--email",
                demo.DEMO_EMAIL,
                "--verified",
                "id_document",
                "--wait",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert submit.returncode == 0, submit.stdout + submit.stderr
        assert "up-1: access completed (5/5 systems" in submit.stdout
        url, token = dashboard.groups()
        assert httpx.get(f"{url}api/requests", timeout=10).status_code == 401
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the dashboard did not get ready"
            time.sleep(0.2)
        listed = httpx.get(
            f"{url}api/requests/up-1", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert listed.status_code == 200 and listed.json()["status"] == "completed"
    finally:
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "Stopping" in output
    host, port = bootstrap.split(":")
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=1):
        pass  # the embedded broker is gone
    assert not (tmp_path / ".dsr" / "bootstrap").exists()
    assert not (tmp_path / ".dsr" / "publisher.env").exists()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting for a new parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's parent-death signal is Linux's")
def test_up_killed_outright_leaves_no_broker_or_worker_running(tmp_path: Path) -> None:
    """SIGKILL (or the OOM killer) gives `dsr up` no chance to stop what it started: its
    broker, orchestrator, connector workers, intake and dashboard end by themselves, and the
    broker's port closes."""
    env = {
        **os.environ,
        "DSR_REGISTER": str(demo.sql_register_path()),
        "DSR_DATA_DIR": str(tmp_path / "data"),
        "DSR_DEMO_DIR": str(demo.seed(tmp_path / "systems")),
        "DSR_STATE_DIR": str(tmp_path / ".dsr"),
        "DSR_DASHBOARD_PORT": "0",
    }
    env.pop("DSR_KAFKA_BOOTSTRAP", None)
    up = start_dsr_up(tmp_path, env, merge_stderr=True)
    children: list[int] = []
    try:
        read_until(up, "Ctrl-C stops", 60)
        bootstrap = (tmp_path / ".dsr" / "bootstrap").read_text().strip()
        children = _children(up.pid)
        assert len(children) >= 5, children  # broker, orchestrator, connectors, intake, dashboard
        up.kill()
        up.wait(10)
        deadline = time.monotonic() + 40
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in children if _running(pid)]
        assert not left, f"still running after dsr up was killed: {left}"
        host, port = bootstrap.split(":")
        with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=1):
            pass
    finally:
        for pid in [up.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        up.communicate(timeout=10)
