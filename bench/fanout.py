"""Benchmark: fan-out width. Tasks/s of requests to 200 memory systems against 4, and the
orchestrator's memory per open request at each width.

Same embedded broker, one orchestrator and one connector worker per width; the same number of
tasks at each width (`--tasks`), so the per-task cost compares directly: the target is the
wide case within 20 % of the narrow one. Memory: the orchestrator's RSS before and after
`--open` requests that stay open (awaiting identity verification, all systems in scope).

    python bench/fanout.py --tasks 2000 --widths 4 200 --open 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import drive, register

from orchestrator.intake.publishers import local_publisher
from orchestrator.runtime.broker import EmbeddedBroker
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from schemas.envelope import decode, encode
from schemas.events import (
    Identifier,
    IdentityVerification,
    RequestStatus,
    RequestStatusChanged,
    RequestSubmitted,
    Subject,
)
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import RequestSigner
from schemas.topics import REQUESTS, STATUS


def _rss_kib(pid: int) -> int:
    """Resident set size of a process (Linux), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_requests(
    kafka: KafkaSettings, signer: RequestSigner, count: int, timeout: float
) -> int:
    """Submit `count` unverified access requests; wait until each awaits verification."""
    run = uuid.uuid4().hex[:6]
    consumer = AIOKafkaConsumer(
        STATUS.name, **kafka.consumer_options(), auto_offset_reset="latest", group_id=f"o-{run}"
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    producer = AIOKafkaProducer(**kafka.aiokafka_options(), linger_ms=2, enable_idempotence=False)
    await producer.start()
    now = datetime.now(UTC)
    for n in range(count):
        request = RequestSubmitted(
            request_id=f"open-{run}-{n}",
            type="access",
            subject=Subject(identifiers=[Identifier(type="email", value=f"o{n}@bench.example")]),
            received_at=now,
            verification=IdentityVerification(verified=False),
            requested_by="bench",
        )
        message = signer.sign(encode(request, source="bench"))
        await producer.send(
            REQUESTS.name, key=message.key, value=message.value, headers=message.headers
        )
    await producer.flush()
    waiting: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(waiting) < count and time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                body = decode(record.value, record.headers).body
                if (
                    isinstance(body, RequestStatusChanged)
                    and body.request_id.startswith(f"open-{run}-")
                    and body.status == RequestStatus.AWAITING_VERIFICATION
                ):
                    waiting.add(body.request_id)
    await producer.stop()
    await consumer.stop()
    return len(waiting)


def run_width(width: int, tasks: int, open_count: int, timeout: float) -> dict[str, object]:
    """One stack with `width` systems: tasks/s, and memory per open request."""
    requests = max(1, tasks // width)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        (root / "register.yaml").write_text(yaml.safe_dump(register(width, 2)))
        publisher = local_publisher(root / "publishers")
        signer = publisher.signer()
        settings = Settings(
            register_file=root / "register.yaml",
            data_dir=root / "data",
            publisher_keys=publisher.keys_file,
        ).for_embedded(broker.bootstrap)
        with Stack(settings, log_dir=root / "logs") as stack:
            warm = max(1, min(20, requests // 10))
            asyncio.run(drive(settings.kafka, signer, warm, None, timeout))
            figures = asyncio.run(drive(settings.kafka, signer, requests, None, timeout))
            pid = stack.processes["orchestrator"].pid
            before = _rss_kib(pid)
            opened = asyncio.run(open_requests(settings.kafka, signer, open_count, timeout))
            after = _rss_kib(pid)
    seconds = float(figures["seconds"]) or 1.0
    return {
        "systems": width,
        "requests": requests,
        "completed": figures["completed"],
        "tasks_per_s": round(int(figures["completed"]) * width / seconds, 1),
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "open_requests": opened,
        "orchestrator_rss_before_mib": round(before / 1024, 1),
        "orchestrator_rss_after_mib": round(after / 1024, 1),
        "kib_per_open_request": round((after - before) / max(1, opened), 1),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and print (and return) its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="Tasks per width.")
    parser.add_argument("--widths", type=int, nargs="+", default=[4, 200])
    parser.add_argument("--open", type=int, default=200, help="Open requests for memory.")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    rows = [run_width(w, args.tasks, args.open, args.timeout) for w in args.widths]
    narrow = float(rows[0]["tasks_per_s"]) or 1.0  # type: ignore[arg-type]
    figures: dict[str, object] = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "widths": rows,
        "tasks_per_s_ratio_widest_to_narrowest": round(
            float(rows[-1]["tasks_per_s"]) / narrow,  # type: ignore[arg-type]
            3,
        ),
    }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
