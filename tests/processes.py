"""`dsr up` as a newcomer runs it, for the tests that drive it from the outside."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def start_dsr_up(
    cwd: Path, env: dict[str, str], *, merge_stderr: bool = False
) -> subprocess.Popen[str]:
    """`dsr up` in `cwd` in a session of its own (SIGINT to its group is Ctrl-C); stdout piped
    as text, stderr merged into it or dropped."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "up"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def read_until(process: subprocess.Popen[str], text: str, timeout: float) -> str:
    """What `process` printed up to and including the first line containing `text`."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < end:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} not printed in {timeout}s: {''.join(seen)}")
