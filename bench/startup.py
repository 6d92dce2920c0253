"""Benchmark: how long `dsr --help` and a whole `dsr demo` take, wall clock.

With `--baseline DIR` (a checkout of another version, e.g. `git worktree add /tmp/base HEAD`)
the same commands run from that checkout too, alternating A B B A, so a busy machine weighs on
both alike; compare the two columns of one run, not numbers between machines.

    python bench/startup.py --baseline /tmp/base --help-runs 10 --demo-runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _run(checkout: Path, args: list[str], cwd: Path) -> float:
    """Seconds for `python -m orchestrator.cli ARGS` run from `checkout`; fails loudly."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise SystemExit(f"dsr {' '.join(args)} from {checkout} failed:\n{tail}")
    return elapsed


def _help(checkout: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return _run(checkout, ["--help"], Path(tmp))


def _demo(checkout: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return _run(checkout, ["demo", "--out", str(Path(tmp) / "out")], Path(tmp))


def _abba(checkouts: dict[str, Path], measure: object, runs: int) -> dict[str, list[float]]:
    """Each checkout `runs` times, in A B B A order."""
    names = list(checkouts)
    times: dict[str, list[float]] = {name: [] for name in names}
    for n in range(runs):
        order = names if n % 2 == 0 else list(reversed(names))
        for name in order:
            times[name].append(measure(checkouts[name]))  # type: ignore[operator]
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "runs": len(times),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and print (and return) its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="Another checkout to compare with.")
    parser.add_argument("--help-runs", type=int, default=10)
    parser.add_argument("--demo-runs", type=int, default=2)
    args = parser.parse_args(argv)
    checkouts = {"this": HERE}
    if args.baseline:
        checkouts["baseline"] = args.baseline.resolve()
    figures: dict[str, object] = {"machine": f"{os.cpu_count()} cores"}
    helps = _abba(checkouts, _help, args.help_runs)
    demos = _abba(checkouts, _demo, args.demo_runs) if args.demo_runs else {}
    for name in checkouts:
        figures[name] = {
            "dsr --help": _summary(helps[name]),
            **({"dsr demo": _summary(demos[name])} if demos else {}),
        }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
