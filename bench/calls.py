"""Calls per exported record: how many vendor API calls each built-in connector makes.

For every built-in vendor, its strict fake (`connectors/fakes/`) is seeded with a subject that
has several records per collection and enough of them to page, as the vendor tests seed it
(`tests/connectors/vendors/`), with larger volumes where the fake takes one. An access and then
(seeded afresh) an erasure run through the connector as a worker runs them; the calls are
counted from the fake's own log, never from the client. "Cold" runs use a fresh connector, so
per-connector caches (HubSpot's property names, OpenDSR's discovery and certificate) start
empty, as for a worker's first task; "warm" runs come after an access by the same connector,
as every later task of a long-running worker. The fake's own rate limit is lifted: a 429 and
its retry would count as calls.

Calls are HTTP requests: a batch request (Gmail's `POST /batch/gmail/v1`) counts as one. Where
a connector batches, "API calls" also counts each call inside a batch, and not the batch
itself: what the vendor's quota counts. The table shows `requests (API calls)` where they differ.

    .venv/bin/python bench/calls.py            # a table
    .venv/bin/python bench/calls.py --json     # the same figures as JSON
    .venv/bin/python bench/calls.py --endpoints hubspot   # which endpoints each run called

Tawk.to has no API (manual tasks only): it makes no calls and has no row of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the vendor tests' set-ups
from connectors.base import Connector
from connectors.conformance import Seeded, dispatched
from connectors.execute import perform
from connectors.fakes.server import FakeServer
from schemas.events import OutcomeStatus, RequestType, TaskOutcome

#: A client rate that never holds a run back: the figures are calls, not time.
FAST = {"requests": 5000, "per_seconds": 1.0, "concurrency": 16}


@dataclass(frozen=True)
class Vendor:
    """One vendor's set-up: its test module (`FAKE`, `build`, and `seed` or `SEEDED`) and the
    volume its fake's `reset` takes, if any."""

    name: str
    module: str
    volume: dict[str, Any]

    def _test(self) -> Any:
        return importlib.import_module(f"tests.connectors.vendors.test_{self.module}")

    def seed(self, fake: FakeServer) -> Seeded:
        """Seed the fake as the vendor test does, at this bench's volume."""
        test = self._test()
        if hasattr(test, "seed"):
            seeded: Seeded = test.seed(fake)
        else:
            fake.reset(**self.volume)
            seeded = test.SEEDED
        fake.faults.max_rate = None  # the vendor's own limit would add 429s and retries
        return seeded

    def run(self, action: RequestType, warm: bool = False) -> tuple[int, int, Counter[str], int]:
        """Calls, records (exported or deleted), calls per endpoint and API calls (inside
        batches counted one by one) of one task; `warm`: after an access by the same
        connector."""
        test = self._test()
        with test.FAKE() as fake:
            seeded = self.seed(fake)
            connector = test.build(fake, rate_limit=FAST)
            warm_up = [RequestType.ACCESS] if warm else []
            outcomes = asyncio.run(_tasks(fake, connector, seeded, [*warm_up, action]))
            outcome = outcomes[-1]
            if outcome.status != OutcomeStatus.COMPLETED:
                raise SystemExit(f"{self.name}: {action.value} did not complete")
            calls = len(fake.requests)
            endpoints = Counter(f"{r.method} {_shape(r.path)}" for r in fake.requests)
            batched = list(getattr(fake, "batched", []))  # a fake with a batch endpoint
            batches = sum(1 for r in fake.requests if r.path.startswith("/batch/"))
            api_calls = calls - batches + len(batched)
            endpoints.update(f"{r.method} {_shape(r.path)} (batched)" for r in batched)
        if action == RequestType.ACCESS:
            return calls, len(outcome.records), endpoints, api_calls
        return calls, outcome.counts.deleted, endpoints, api_calls


async def _tasks(
    fake: FakeServer, connector: Connector, seeded: Seeded, actions: list[RequestType]
) -> list[TaskOutcome]:
    """Run tasks one after another on one connector, as a worker does; the fake's log holds
    the last one's calls only."""
    outcomes = []
    try:
        for n, action in enumerate(actions):
            fake.clear_log()
            task = dispatched(connector.system, action, seeded.subject, request_id=f"bench-{n}")
            outcomes.append(await perform(connector, task))
    finally:
        await connector.aclose()
    return outcomes


def _shape(path: str) -> str:
    """A path with its ids folded, so calls group by endpoint."""
    parts = [
        "{id}" if any(c.isdigit() for c in part) and part not in ("v1", "v2", "v3", "v4") else part
        for part in path.split("/")
    ]
    return "/".join(parts)


VENDORS = (
    Vendor("hubspot", "hubspot", {}),
    Vendor("intercom", "intercom", {"conversations": 60}),
    Vendor("activecampaign", "activecampaign", {}),
    Vendor("mailchimp", "mailchimp", {"extra_audiences": 3}),
    Vendor("freshdesk", "freshdesk", {}),
    Vendor("zendesk", "zendesk", {}),
    Vendor("gmail", "gmail", {"messages": 300}),
    Vendor("messagebird", "messagebird", {}),
    Vendor("opendsr", "opendsr", {}),
)


def measure(vendors: tuple[Vendor, ...] = VENDORS) -> list[dict[str, Any]]:
    """Per vendor: access calls and records, erasure calls and records deleted, the ratios."""
    rows = []
    for vendor in vendors:
        access, exported, read, access_api = vendor.run(RequestType.ACCESS)
        erasure, deleted, erased, erasure_api = vendor.run(RequestType.ERASURE)
        warm_access = vendor.run(RequestType.ACCESS, warm=True)[0]
        warm_erasure = vendor.run(RequestType.ERASURE, warm=True)[0]
        rows.append(
            {
                "vendor": vendor.name,
                "access_calls": access,
                "exported": exported,
                "calls_per_record": round(access / exported, 3) if exported else None,
                "access_api_calls": access_api,
                "erasure_calls": erasure,
                "deleted": deleted,
                "calls_per_deleted": round(erasure / deleted, 3) if deleted else None,
                "erasure_api_calls": erasure_api,
                "warm_access_calls": warm_access,
                "warm_erasure_calls": warm_erasure,
                "access_endpoints": dict(read.most_common()),
                "erasure_endpoints": dict(erased.most_common()),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table, Tawk.to's manual row last."""
    keys: list[tuple[str, Callable[[Any], str]]] = [
        ("vendor", str),
        ("access_calls", str),
        ("exported", str),
        ("calls_per_record", lambda v: "-" if v is None else f"{v:.3f}"),
        ("erasure_calls", str),
        ("deleted", str),
        ("calls_per_deleted", lambda v: "-" if v is None else f"{v:.3f}"),
        ("warm_access_calls", str),
        ("warm_erasure_calls", str),
    ]
    head = (
        "| vendor | access calls | exported | calls/record | erasure calls | deleted "
        "| calls/deleted | warm access | warm erasure |"
    )
    lines = [head, "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key, show) for key, show in keys) + " |")
    lines.append("| tawkto | 0 | - | manual | 0 | - | manual | 0 | 0 |")
    return "\n".join(lines)


def _cell(row: dict[str, Any], key: str, show: Callable[[Any], str]) -> str:
    """One figure; a request count followed by the API calls it held, where they differ."""
    text = show(row[key])
    api = row.get(key.replace("_calls", "_api_calls")) if key.endswith("_calls") else None
    return f"{text} ({api})" if api is not None and api != row[key] else text


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; print a table (or JSON) and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    parser.add_argument("--endpoints", metavar="VENDOR", help="Also list one vendor's calls.")
    parser.add_argument("--only", metavar="VENDOR", action="append", help="Measure these only.")
    args = parser.parse_args(argv)
    vendors = tuple(v for v in VENDORS if not args.only or v.name in args.only)
    rows = measure(vendors)
    if args.json:
        print(json.dumps(rows, indent=2))
        return rows
    print(table(rows))
    for row in rows:
        if row["vendor"] == args.endpoints:
            for kind in ("access_endpoints", "erasure_endpoints"):
                print(f"\n{kind}:")
                for endpoint, count in row[kind].items():
                    print(f"  {count:5d}  {endpoint}")
    return rows


if __name__ == "__main__":
    main()
