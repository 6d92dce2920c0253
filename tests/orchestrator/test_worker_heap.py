"""A worker process's heap after start-up (`orchestrator.cli.run._settle_heap`)."""

from __future__ import annotations

import json
import subprocess
import sys

from orchestrator.cli.run import GC_THRESHOLDS


def test_a_worker_freezes_its_start_up_objects_and_collects_less_often() -> None:
    """Both workers settle their heap before they take events: what start-up built is frozen
    out of the collector's view, and the collector runs at `GC_THRESHOLDS`, not Python's
    (700, 10, 10), which ran it many times per batch (bench/pipeline.py: about 3 % of the
    orchestrator's and 10 % of the connector worker's CPU per request). In a fresh
    interpreter, so this test process keeps its own settings."""
    script = (
        "import gc, json; from orchestrator.cli.run import _settle_heap; "
        "before = gc.get_threshold(); _settle_heap(); "
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    before, after, frozen = json.loads(result.stdout)
    assert tuple(before) == (700, 10, 10)
    assert tuple(after) == GC_THRESHOLDS and GC_THRESHOLDS[0] >= 10 * before[0]
    assert frozen > 10_000  # modules, classes, the app's objects
