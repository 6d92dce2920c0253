"""Benchmark: N requests through K in-memory systems on the embedded broker.

Prints requests/s and end-to-end latency (publish -> final status seen) at full load and at
half that load, next to the raw broker produce-and-consume rate measured in the same run:
the ratio, not the absolute number, is the figure to compare between machines. Also the CPU
milliseconds each process (orchestrator, connector workers, broker, this bench) used per
request at full load: where a request's cost goes.

    python bench/pipeline.py --requests 2000 --systems 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from orchestrator.intake.publishers import local_publisher
from orchestrator.runtime.broker import EmbeddedBroker
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from schemas.envelope import decode, encode
from schemas.events import (
    Identifier,
    IdentityVerification,
    RequestStatusChanged,
    RequestSubmitted,
    Subject,
    VerificationMethod,
)
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import RequestSigner
from schemas.topics import REQUESTS, STATUS


def register(systems: int, records: int) -> dict[str, object]:
    """A register of `systems` memory systems answering `records` records each."""
    return {
        "systems": [
            {
                "name": f"sys{n}",
                "kind": "other",
                "connector": "memory",
                "settings": {"generate": {"per_subject": records}},
                "data_categories": ["email"],
                "purposes": ["benchmark"],
                "legal_basis": ["contract"],
                "profiling": "none",
                "retention": "1 day",
            }
            for n in range(systems)
        ]
    }


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds a process and (with `children`) its live child processes,
    such as the orchestrator's export process, have used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in _children(pid)) if children else own


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def _cpu(pid: int) -> float:
    """A worker's CPU with its child processes; the bench's own without (the workers and the
    broker are its children)."""
    return cpu_seconds(pid, children=pid != os.getpid())


def cpu_per_request(pids: dict[str, int], before: dict[str, float], requests: int) -> dict:
    """CPU milliseconds per request of each process since `before`."""
    return {
        name: round((_cpu(pid) - before[name]) * 1000 / max(1, requests), 2)
        for name, pid in pids.items()
    }


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def raw_rate(kafka: KafkaSettings, messages: int, size: int = 1024) -> float:
    """Messages/s for producing and consuming at once on a scratch topic (the baseline)."""
    topic = f"bench-raw-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.require_bootstrap())
    await admin.start()
    await admin.create_topics(
        [NewTopic(topic, num_partitions=kafka.partitions, replication_factor=1)]
    )
    await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.require_bootstrap(), enable_idempotence=False
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.require_bootstrap(), enable_auto_commit=False
    )
    await producer.start()
    await consumer.start()
    await consumer._client.force_metadata_update()
    tps = [TopicPartition(topic, p) for p in range(kafka.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    payload = os.urandom(size)

    async def produce() -> None:
        futures = [
            await producer.send(topic, key=str(i).encode(), value=payload) for i in range(messages)
        ]
        await asyncio.gather(*futures)

    async def consume() -> None:
        seen = 0
        while seen < messages:
            batches = await consumer.getmany(timeout_ms=500)
            seen += sum(len(b) for b in batches.values())

    start = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - start
    await producer.stop()
    await consumer.stop()
    return messages / elapsed


def _request(n: int, run: str) -> RequestSubmitted:
    now = datetime.now(UTC)
    return RequestSubmitted(
        request_id=f"bench-{run}-{n}",
        type="access",
        subject=Subject(identifiers=[Identifier(type="email", value=f"p{n}@bench.example")]),
        received_at=now,
        verification=IdentityVerification(
            verified=True, method=VerificationMethod.AUTHENTICATED_SESSION, verified_at=now
        ),
        requested_by="bench",
    )


async def drive(
    kafka: KafkaSettings, signer: RequestSigner, count: int, rate: float | None, timeout: float
) -> dict[str, float]:
    """Publish `count` requests (at `rate`/s, or as fast as possible) and time each to its end."""
    run = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    messages = 0
    consumer = AIOKafkaConsumer(
        STATUS.name,
        **kafka.consumer_options(),
        auto_offset_reset="latest",
        group_id=f"bench-{run}",
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    producer = AIOKafkaProducer(**kafka.aiokafka_options(), linger_ms=2, enable_idempotence=False)
    await producer.start()

    async def watch() -> None:
        nonlocal messages
        while len(done) < count:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    messages += 1
                    body = decode(record.value, record.headers).body
                    assert isinstance(body, RequestStatusChanged)
                    if body.status.is_final and body.request_id in sent:
                        done.setdefault(body.request_id, time.perf_counter())

    async def publish() -> None:
        interval = 1 / rate if rate else 0.0
        start = time.perf_counter()
        futures = []
        for n in range(count):
            if interval:
                delay = start + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            message = signer.sign(encode(_request(n, run), source="bench"))
            sent[f"bench-{run}-{n}"] = time.perf_counter()
            futures.append(
                await producer.send(
                    REQUESTS.name, key=message.key, value=message.value, headers=message.headers
                )
            )
        await asyncio.gather(*futures)

    start = time.perf_counter()
    watcher = asyncio.create_task(watch())
    await publish()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher, timeout)
    elapsed = max(done.values(), default=time.perf_counter()) - start
    await producer.stop()
    await consumer.stop()
    latencies = [(done[r] - sent[r]) * 1000 for r in done]
    return {
        "requests": count,
        "completed": len(done),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(done) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else -1,
        "p95_ms": round(percentile(latencies, 95), 1) if latencies else -1,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else -1,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and print (and return) its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--systems", type=int, default=4)
    parser.add_argument("--records", type=int, default=2, help="Records per system per request.")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--skip-half-load", action="store_true")
    parser.add_argument("--orchestrators", type=int, default=1, help="Orchestrator processes.")
    parser.add_argument(
        "--producer-batch",
        type=int,
        default=None,
        help="Orchestrator producer_max_batch_size (default: 16384 bytes, as on Kafka).",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        tmp = os.environ.get("BENCH_DIR", tmp)
        root = Path(tmp)
        (root / "register.yaml").write_text(yaml.safe_dump(register(args.systems, args.records)))
        publisher = local_publisher(root / "publishers")
        signer = publisher.signer()
        settings = Settings(
            register_file=root / "register.yaml",
            data_dir=root / "data",
            publisher_keys=publisher.keys_file,
        ).for_embedded(broker.bootstrap)
        settings = settings.model_copy(update={"orchestrator_workers": args.orchestrators})
        if args.producer_batch:
            settings = settings.model_copy(update={"producer_max_batch_size": args.producer_batch})
        baseline = asyncio.run(raw_rate(settings.kafka, 30_000))
        with Stack(settings, log_dir=root / "logs") as stack:
            asyncio.run(drive(settings.kafka, signer, min(50, args.requests), None, 60))  # warm-up
            pids = {name: process.pid for name, process in stack.processes.items()}
            if broker._process is not None:
                pids["broker"] = broker._process.pid
            pids["bench (publisher, status reader)"] = os.getpid()
            before = {name: _cpu(pid) for name, pid in pids.items()}
            full = asyncio.run(drive(settings.kafka, signer, args.requests, None, args.timeout))
            cpu = cpu_per_request(pids, before, int(full["completed"]))
            half = None
            if not args.skip_half_load and full["requests_per_s"]:
                half = asyncio.run(
                    drive(
                        settings.kafka,
                        signer,
                        args.requests,
                        full["requests_per_s"] / 2,
                        args.timeout,
                    )
                )
    # Messages per request: request, K tasks, K outcomes, K+1 status events.
    per_request = 1 + 3 * args.systems + 1
    figures: dict[str, object] = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "systems": args.systems,
        "orchestrator_workers": args.orchestrators,
        "raw_produce_consume_msgs_per_s": round(baseline),
        "messages_per_request": per_request,
        "full_load": full,
        "cpu_ms_per_request": cpu,
        "half_load": half,
        "pipeline_msgs_per_s": round(full["requests_per_s"] * per_request),
        "ratio_to_raw": round(full["requests_per_s"] * per_request / baseline, 3),
    }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
