"""The soak's short CI variant: faults and kill -9 restarts lose, duplicate and strand nothing.

`python bench/soak.py` runs the full 10,000 requests; figures in docs/operators.md (Benchmark).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import run_soak

pytestmark = pytest.mark.broker


def test_soak_short_variant(tmp_path: Path) -> None:
    result = run_soak(
        200, fault_rate=0.1, kills=2, workdir=tmp_path, rate=50.0, timeout=240, task_timeout=20
    )
    assert (result["lost"], result["duplicated"], result["stuck"]) == (0, 0, 0), result
    assert result["missing_outputs"] == 0, result
    assert result["final_statuses"] == {"completed": 200}, result
    assert len(result["kills"]) == 2
    # The injected faults cost retries: about 10 % of 800 tasks, each retried.
    assert result["extra_attempts"] > 20, result
