"""Benchmark: peak memory of a SQL access over N related rows, for N = 10k and 100k.

One subject with N/10 orders and 9N/10 order lines (customers -> orders -> order_lines, the
shop database of the SQL tests, `connectors.fakes.shop_db`) is exported with
`SQLConnector.iter_access`. Each N is measured in a fresh subprocess, so one run's peak cannot
hide in the next one's; the database is filled beforehand by this process.
The figure is the ratio of the two peaks: flat (about 1) means memory does not grow with
the number of rows. Prints JSON.

    python bench/sql_memory.py                       # SQLite in a temporary directory
    python bench/sql_memory.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

from connectors.fakes.shop_db import RELATIONS, customers, metadata, order_lines, orders, products
from connectors.sql import SQLConnector
from schemas.events import Identifier, Subject

SUBJECT = Subject(identifiers=[Identifier(type="email", value="bench@example.com")])
OTHER = Subject(identifiers=[Identifier(type="email", value="other@example.com")])
_BATCH = 5_000


def fill(url: str, rows: int) -> None:
    """A fresh schema with the subject (customer 1) owning `rows` orders and lines."""
    engine = create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    order_count = rows // 10
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [{"id": 1, "email": "Bench@Example.com"}, {"id": 2, "email": "other@example.com"}],
        )
        conn.execute(insert(products), [{"id": 1, "title": "T-shirt"}])
        conn.execute(insert(orders), [{"id": 0, "customer_id": 2, "total": "1.00"}])
        for start in range(1, order_count + 1, _BATCH):
            stop = min(start + _BATCH, order_count + 1)
            conn.execute(
                insert(orders),
                [{"id": i, "customer_id": 1, "total": "12.34"} for i in range(start, stop)],
            )
        for start in range(0, rows - order_count, _BATCH):
            stop = min(start + _BATCH, rows - order_count)
            conn.execute(
                insert(order_lines),
                [
                    {
                        "id": i,
                        "order_id": 1 + i % order_count,
                        "product_id": 1,
                        "description": f"article {i:08d}, size M, colour blue",
                        "quantity": 1 + i % 5,
                    }
                    for i in range(start, stop)
                ],
            )
    engine.dispose()


def _max_rss_kib() -> int:
    # ru_maxrss is in KiB on Linux: the process's peak resident set so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(url: str) -> dict[str, Any]:
    """Export the subject twice: timed (RSS peak growth) and under tracemalloc (Python peak)."""
    connector = SQLConnector("bench", {"url": url, "tables": RELATIONS})
    # Warm up: imports, engine, reflection and statement caches are not per-row costs.
    sum(1 for _ in connector.iter_access(OTHER))
    baseline = _max_rss_kib()
    started = time.perf_counter()
    count = sum(1 for _ in connector.iter_access(SUBJECT))
    seconds = time.perf_counter() - started
    rss_growth = _max_rss_kib() - baseline
    tracemalloc.start()
    sum(1 for _ in connector.iter_access(SUBJECT))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "records": count,
        "seconds": round(seconds, 3),
        "rows_per_second": round(count / seconds),
        "peak_rss_growth_kib": rss_growth,
        "tracemalloc_peak_kib": traced_peak // 1024,
    }


def main() -> None:
    """Fill and measure each N in its own subprocess; print the figures and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: SQLite in a temporary directory)")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.url)))
        return
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        runs: dict[str, Any] = {}
        for rows in args.rows:
            fill(url, rows)
            done = subprocess.run(
                [sys.executable, __file__, "--measure", "--url", url],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            runs[str(rows)] = json.loads(done.stdout)
    small, large = runs[str(min(args.rows))], runs[str(max(args.rows))]
    dialect = create_engine(url).dialect.name
    print(
        json.dumps(
            {
                "dialect": dialect,
                "runs": runs,
                # Flat is the goal: about 1 while the rows grow tenfold.
                "tracemalloc_peak_ratio": round(
                    large["tracemalloc_peak_kib"] / max(small["tracemalloc_peak_kib"], 1), 2
                ),
                "rss_growth_kib_difference": large["peak_rss_growth_kib"]
                - small["peak_rss_growth_kib"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
