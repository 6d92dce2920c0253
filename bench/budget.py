"""Vendor budget across replicas: how close to C / L does a subject needing C calls finish?

Three `dsr worker connectors` processes of one group on an embedded broker, one system whose
vendor (`connectors.fakes.counting`) allows L calls per window. A subject needing C calls
(C / pages tasks of `pages` calls each) is published once the group has settled; the figure is
the time to the last outcome over the ideal C / L windows (target <= 1.15), with the most calls
the vendor saw in any window (must be <= L). Prints JSON.

    .venv/bin/python bench/budget.py --calls 120 --limit 10 --window 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the e2e test's helpers
from connectors.fakes.counting import CountingVendor
from orchestrator.runtime.broker import EmbeddedBroker
from orchestrator.runtime.topics import ensure_topics
from schemas.kafka import KafkaSettings
from tests.e2e.test_budget_replicas import (
    Workers,
    _outcomes,
    _publish,
    _settings,
    _tasks,
)


def _settled(workers: Workers, count: int, timeout: float = 60) -> None:
    """Wait until every worker's log shows an assignment, and none changed for 3 s."""
    end = time.monotonic() + timeout
    last: list[str] = []
    stable_since = time.monotonic()
    while time.monotonic() < end:
        seen = [
            re.findall(r"owns \S+ partitions \[[0-9, ]*\]", p.read_text(errors="replace"))
            for p in sorted(workers.log_dir.glob("worker-*.log"))
        ]
        now = [found[-1] if found else "" for found in seen]
        if now != last:
            last, stable_since = now, time.monotonic()
        elif len(now) == count and all(now) and time.monotonic() - stable_since > 3:
            return
        time.sleep(0.2)
    raise SystemExit("the workers' group did not settle")


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and print (and return) its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=120, help="C: calls the subject needs.")
    parser.add_argument("--limit", type=int, default=10, help="L: calls per window.")
    parser.add_argument("--window", type=float, default=1.0, help="The window, in seconds.")
    parser.add_argument("--pages", type=int, default=4, help="Calls per task.")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker() as broker,
        CountingVendor(pages=args.pages, answer_seconds=0.01) as fake,
    ):
        root = Path(tmp)
        kafka = KafkaSettings().for_embedded(broker.bootstrap)
        ensure_topics(kafka)
        limits = {"metered": (args.limit, args.window)}
        settings = _settings(root, kafka, fake, "bench", limits)
        workers = Workers(settings, "bench", root)
        try:
            for n in range(args.workers):
                workers.spawn(n)
            _settled(workers, args.workers)
            warm = _tasks(settings, "metered", 1)
            asyncio.run(_publish(kafka, warm))
            asyncio.run(_outcomes(kafka, {warm[0].task_id}, lambda _: None))
            time.sleep(args.window * 1.2)  # the warm-up's calls out of the window
            fake.clear_log()
            tasks = _tasks(settings, "metered", max(1, args.calls // args.pages))
            started = time.monotonic()
            asyncio.run(_publish(kafka, tasks))
            asyncio.run(_outcomes(kafka, {t.task_id for t in tasks}, lambda _: None, 600))
            elapsed = time.monotonic() - started
        finally:
            workers.stop()
    calls = fake.calls_of("metered")
    ideal = calls / args.limit * args.window
    figures: dict[str, object] = {
        "workers": args.workers,
        "calls": calls,
        "limit_per_window": args.limit,
        "window_s": args.window,
        "elapsed_s": round(elapsed, 2),
        "ideal_s": round(ideal, 2),
        "ratio_to_ideal": round(elapsed / ideal, 3),
        "max_in_any_window": fake.max_in_window_of("metered", args.window),
    }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
