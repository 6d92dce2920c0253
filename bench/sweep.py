"""Benchmark: a retention sweep of 1 million expired rows; rows/s and peak RSS as JSON.

One table of customers: N expired (last activity 3 years ago, their fiscal duty over), 10,000
young ones and 10,000 expired but under a retention duty (booked last year: kept 7 years).
The SQL connector sweeps it as a connector worker does (`SQLConnector.sweep`, a rule of
"2 years after the last activity" and the duty from the register), first as a dry run, then
for real; the rows left are counted afterwards. The baseline is a plain `DELETE` of the same
N rows by primary key on a fresh copy, in the same run; throughput is reported as a ratio to
it. Each sweep runs in a fresh subprocess, so its peak RSS (ru_maxrss) belongs to it alone;
a smaller run beside the big one shows whether memory grows with the rows.

    python bench/sweep.py                        # SQLite, and PostgreSQL when installed
    python bench/sweep.py --rows 100000          # a quick run
    python bench/sweep.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Date, Integer, MetaData, String, Table, create_engine, insert, text

ROOT = Path(__file__).resolve().parents[1]
TODAY = date.today()
YOUNG = 10_000
UNDER_DUTY = 10_000
_BATCH = 10_000

metadata = MetaData()
customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(200)),
    Column("last_activity", Date),
    Column("booked_at", Date),
)


def fill(url: str, expired: int) -> None:
    """A fresh table: ids below `expired` have expired; then the young and the kept rows."""
    engine = create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    old, recent = TODAY - timedelta(days=3 * 365), TODAY - timedelta(days=10)
    duty_over, under_duty = TODAY - timedelta(days=10 * 365), TODAY - timedelta(days=365)
    kinds = [(expired, old, duty_over), (YOUNG, recent, duty_over), (UNDER_DUTY, old, under_duty)]
    with engine.begin() as conn:
        first = 0
        for count, last_activity, booked_at in kinds:
            for start in range(first, first + count, _BATCH):
                stop = min(start + _BATCH, first + count)
                conn.execute(
                    insert(customers),
                    [
                        {
                            "id": i,
                            "email": f"customer{i}@example.com",
                            "last_activity": last_activity,
                            "booked_at": booked_at,
                        }
                        for i in range(start, stop)
                    ],
                )
            first += count
    engine.dispose()


def _max_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the process's peak resident set so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(url: str) -> dict[str, Any]:
    """Sweep the table as a worker would: a dry run, then the sweep; figures and checks."""
    from connectors.sql import SQLConnector
    from schemas.register import CollectionRetention, RetentionRule
    from schemas.sweeps import CountedFrom, SweepRule

    retention = CollectionRetention(
        collection="customers",
        period="2 years",
        counted_from="last_activity",
        date_field="last_activity",
    )
    rule = SweepRule(
        collection="customers",
        date_field="last_activity",
        cutoff=retention.cutoff(TODAY),
        period=retention.period,
        counted_from=CountedFrom.LAST_ACTIVITY,
    )
    duty = RetentionRule(
        collection="customers",
        legal_basis="Art. 52 AWR (fiscal retention, 7 years)",
        period="7 years",
        date_field="booked_at",
        counted_from="end_of_year",
    )
    connector = SQLConnector(
        "bench", {"url": url, "tables": [{"name": "customers", "identity": {"email": "email"}}]}
    )
    connector.use_retention([duty])
    rss_start = _max_rss_mb()  # imports, engine and the first connection not yet counted
    started = time.perf_counter()
    dry = asyncio.run(connector.sweep([rule], dry_run=True))
    dry_seconds = time.perf_counter() - started
    rss_before = _max_rss_mb()
    started = time.perf_counter()
    swept = asyncio.run(connector.sweep([rule], dry_run=False))
    seconds = time.perf_counter() - started
    rss_after = _max_rss_mb()
    asyncio.run(connector.aclose())
    [count] = swept.counts
    engine = create_engine(url)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT COUNT(*) FROM customers")).scalar_one()
    engine.dispose()
    return {
        "expired_counted_by_dry_run": dry.counts[0].expired,
        "deleted": count.deleted,
        "kept_under_duty": count.kept,
        "rows_left": left,
        "dry_run_seconds": round(dry_seconds, 2),
        "sweep_seconds": round(seconds, 2),
        "sweep_rows_per_s": round(count.deleted / seconds),
        "peak_rss_mb_at_start": round(rss_start, 1),
        "peak_rss_mb_before_sweep": round(rss_before, 1),
        "peak_rss_mb_after_sweep": round(rss_after, 1),
        "rss_growth_mb_during_sweep": round(rss_after - rss_before, 1),
    }


def baseline(url: str, expired: int) -> float:
    """Rows/s of a plain DELETE of the same expired rows, by primary key, on a fresh copy."""
    fill(url, expired)
    engine = create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM customers WHERE id < :n"), {"n": expired})
    seconds = time.perf_counter() - started
    engine.dispose()
    return expired / seconds


def run_database(url: str, sizes: list[int]) -> dict[str, Any]:
    """Each size swept in its own subprocess, then its baseline; the figures per size."""
    figures: dict[str, Any] = {}
    for expired in sizes:
        fill(url, expired)
        cmd = [sys.executable, "-m", "bench.sweep", "--measure", url]
        done = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        run = json.loads(done.stdout)
        # The dry run counts every expired row, the kept ones included; the sweep deletes the rest.
        assert run["deleted"] == expired == run["expired_counted_by_dry_run"] - UNDER_DUTY, run
        assert run["kept_under_duty"] == UNDER_DUTY, run
        assert run["rows_left"] == YOUNG + UNDER_DUTY, run
        plain = baseline(url, expired)
        run["baseline_plain_delete_rows_per_s"] = round(plain)
        run["sweep_vs_plain_delete_ratio"] = round(run["sweep_rows_per_s"] / plain, 3)
        figures[f"{expired}_expired"] = run
    return figures


@contextmanager
def _postgres() -> Iterator[str | None]:
    """A throwaway PostgreSQL server (the tests' fixture), or None when none can start."""
    import pytest

    sys.path.insert(0, str(ROOT))  # run as a script: the tests' package is beside bench/
    from tests.fixtures_postgres import postgres_url

    # The fixture's own function: the same throwaway server the tests start.
    server = contextmanager(getattr(postgres_url, "__wrapped__"))()  # noqa: B009
    try:
        url = server.__enter__()
    except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        yield None
        return
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


def main() -> None:
    """Fill, sweep and measure on SQLite and PostgreSQL; print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--postgres", help="PostgreSQL URL (default: start a throwaway server)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dsr-sweep-bench-") as tmp:
        results["sqlite"] = run_database(f"sqlite:///{Path(tmp) / 'bench.db'}", args.rows)
    if args.postgres:
        results["postgresql"] = run_database(args.postgres, args.rows)
    elif not args.no_postgres:
        with _postgres() as url:
            if url is not None:
                results["postgresql"] = run_database(url, args.rows)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
