"""Where a large export's bulk work runs: on the CPUs this process may use, below the
orchestrator's priority.

Both the export process's member-writing and deflate threads (`orchestrator.artifacts.export`)
and its spooling processes (`orchestrator.fanout.exporter`) size and place themselves with
these, so a large export takes the cores the orchestrator leaves idle, not its own.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

#: The nice value of a large export's bulk work: its spooling processes, and the threads
#: writing its members. Below the orchestrator's (0), so a large export takes the cores the
#: orchestrator leaves idle, not its own; the same for all, so they share what is left evenly.
BULK_NICENESS = 10


def lower_priority() -> None:
    """Run the calling thread at `BULK_NICENESS` at least (Linux keeps a nice value per
    thread, and threads started from it inherit it; elsewhere, nothing changes)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    if os.getpriority(os.PRIO_PROCESS, thread) < BULK_NICENESS:
        os.setpriority(os.PRIO_PROCESS, thread, BULK_NICENESS)


def usable_cpus(
    cgroups: Path = Path("/sys/fs/cgroup"), own: Path = Path("/proc/self/cgroup")
) -> int:
    """CPUs this process may use: those it may run on, and no more than its cgroup's CPU limit
    (a container's `resources.limits.cpu`, cgroup v2 `cpu.max`, rounded down). Without that
    bound a large export's spooling processes and deflate threads would share a two-CPU quota
    with the orchestrator, and the quota, used up early in a period, would throttle the
    orchestrator for the rest of it."""
    affinity = getattr(os, "sched_getaffinity", None)  # not on macOS
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    try:
        groups = own.read_text().splitlines()
        path = next(line[3:] for line in groups if line.startswith("0::"))
        quota, period = (cgroups / path.lstrip("/") / "cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, StopIteration, ValueError):
        pass  # no cgroup v2 CPU limit to be read: the CPUs it may run on
    return cpus


__all__ = ["BULK_NICENESS", "lower_priority", "usable_cpus"]
