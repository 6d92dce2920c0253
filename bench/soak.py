"""Soak: many requests through four systems with injected vendor faults and kill -9 restarts.

Starts its own embedded broker and stack (orchestrator and connector worker as processes),
publishes N signed requests (access and erasure alternately, a distinct subject each) at a
steady rate, injects retryable vendor faults (HTTP 503) into a share of all tasks, and kills
the orchestrator and the connector worker with SIGKILL (restarting them at once) while requests
are in flight. Then it waits for every request to be final and reports:

- lost: requests with no final status at the end (and no status at all);
- duplicated: requests finished more than once, or with more than one export/certificate,
  or a system's outcome counted twice (counts of two runs summed);
- stuck: requests seen but not final when the wait ends;
- seconds, requests per second, and how many task attempts the faults and kills cost.

    python bench/soak.py                       # 10,000 requests, 10 % faults, 2 kills
    python bench/soak.py --requests 300 --kills 2 --fault-rate 0.1   # the CI variant
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

SYSTEMS = ("crm", "mailing", "chat", "support")
PER_SUBJECT = 2


def _register(fault_rate: float, delay: float) -> dict[str, Any]:
    settings = {
        "generate": {"per_subject": PER_SUBJECT},
        "fault_rate": fault_rate,
        "delay_seconds": delay,
    }
    return {
        "systems": [
            {
                "name": name,
                "kind": "other",
                "connector": "memory",
                "settings": settings,
                "data_categories": ["contact details"],
                "purposes": ["service"],
                "legal_basis": ["contract"],
                "profiling": "none",
                "retention": "1 year",
            }
            for name in SYSTEMS
        ]
    }


def _finished(view: Any, ids: list[str]) -> int:
    return sum(1 for r in ids if (s := view.get(r)) is not None and s.status.is_final)


def run_soak(
    requests: int,
    *,
    fault_rate: float = 0.1,
    kills: int = 2,
    workdir: Path,
    rate: float = 100.0,
    timeout: float = 900.0,
    delay: float = 0.0,
    task_timeout: float = 60.0,
) -> dict[str, Any]:
    """Run the soak in `workdir`; return the figures (see the module docstring)."""
    from orchestrator.intake.client import RequestPublisher
    from orchestrator.intake.publishers import create_publisher
    from orchestrator.runtime.config import Settings
    from orchestrator.runtime.stack import Stack
    from orchestrator.status.view import StatusView, read_status
    from schemas.events import (
        Identifier,
        IdentityVerification,
        RequestSubmitted,
        StatusTrigger,
        Subject,
        VerificationMethod,
    )

    workdir.mkdir(parents=True, exist_ok=True)
    register = workdir / "register.yaml"
    register.write_text(yaml.safe_dump(_register(fault_rate, delay)))
    # An intake that checks identity itself: it may submit verified requests (issue 16).
    issued = create_publisher(
        workdir / "publisher-keys.yaml",
        "soak",
        events=["dsr.request.submitted.v1", "dsr.request.identity_verified.v1"],
    )
    data = workdir / "data"
    settings = Settings(
        register_file=register,
        data_dir=data,
        retry_delay_seconds=0.2,
        max_attempts=8,  # 10 % faults: eight tries fail together once in 10^8
        tick_interval_seconds=1.0,
        # Tasks a killed worker took with it come back through this re-dispatch.
        task_timeout_seconds=task_timeout,
        publisher_keys=issued.keys_file,
    )
    ids = [f"soak-{n:06d}" for n in range(requests)]
    kinds = {rid: ("access" if n % 2 else "erasure") for n, rid in enumerate(ids)}
    started = time.monotonic()
    kill_log: list[dict[str, Any]] = []
    with Stack(settings, log_dir=workdir / "logs") as stack:
        kafka = stack.settings.kafka

        def publish() -> None:
            with RequestPublisher(kafka, source="soak", signer=issued.signer()) as publisher:
                begin = time.monotonic()
                for n, rid in enumerate(ids):
                    now = datetime.now(UTC)
                    publisher.publish(
                        RequestSubmitted(
                            request_id=rid,
                            type=kinds[rid],  # type: ignore[arg-type]
                            subject=Subject(
                                identifiers=[Identifier(type="email", value=f"soak{n}@example.nl")]
                            ),
                            received_at=now,
                            verification=IdentityVerification(
                                verified=True,
                                method=VerificationMethod.ID_DOCUMENT,
                                verified_at=now,
                            ),
                            requested_by="soak",
                        )
                    )
                    pause = begin + (n + 1) / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)

        publisher_thread = threading.Thread(target=publish, daemon=True)
        publisher_thread.start()
        targets = [
            ("orchestrator", ["worker", "orchestrator"]),
            ("connectors-default", ["worker", "connectors", "--group", "default"]),
        ]
        for k in range(kills):
            # Kill while requests are in flight: once a share of them has finished.
            share = (k + 1) / (kills + 2)
            threshold = int(requests * share)

            def reached(view: StatusView, threshold: int = threshold) -> bool:
                return _finished(view, ids) >= threshold

            asyncio.run(read_status(kafka, until=reached, timeout=timeout, idle=timeout))
            name, args = targets[k % len(targets)]
            process = stack.processes[name]
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            stack.spawn(name, args)
            kill_log.append(
                {
                    "worker": name,
                    "at_s": round(time.monotonic() - started, 1),
                    "after_finished": int(requests * share),
                }
            )
        publisher_thread.join()
        published_at = time.monotonic() - started

        def done(view: StatusView) -> bool:
            stack.check()
            return all((s := view.get(r)) is not None and s.status.is_final for r in ids)

        view = asyncio.run(read_status(kafka, until=done, timeout=timeout, idle=timeout))
    seconds = time.monotonic() - started

    lost, stuck, duplicated = [], [], []
    attempts = 0
    for rid in ids:
        status = view.get(rid)
        if status is None:
            lost.append(rid)
            continue
        if not status.status.is_final:
            stuck.append(rid)
            continue
        finished = sum(1 for e in view.history[rid] if e.trigger == StatusTrigger.FINISHED)
        counted_twice = any(
            p.counts.found > PER_SUBJECT or p.counts.deleted > PER_SUBJECT
            for p in status.systems.values()
        )
        if finished > 1 or counted_twice:
            duplicated.append(rid)
        attempts += sum(p.attempt for p in status.systems.values())
    files = Counter(
        p.name.removesuffix(".zip.enc").removesuffix(".json")
        for folder in ("exports", "certificates")
        for p in (data / folder).glob("*.*")
        if p.name.endswith((".zip.enc", ".json"))
    )
    duplicated += [rid for rid, n in files.items() if n > 1]
    statuses = Counter(
        str(s.status) for rid in ids if (s := view.get(rid)) is not None and s.status.is_final
    )
    return {
        "requests": requests,
        "systems": len(SYSTEMS),
        "fault_rate": fault_rate,
        "kills": kill_log,
        "lost": len(lost),
        "duplicated": len(set(duplicated)),
        "stuck": len(stuck),
        "final_statuses": dict(statuses),
        "missing_outputs": requests - len(files),
        "task_attempts": attempts,
        "extra_attempts": attempts - requests * len(SYSTEMS) + len(lost) * len(SYSTEMS),
        "publish_seconds": round(published_at, 1),
        "seconds": round(seconds, 1),
        "requests_per_second": round(requests / seconds, 1),
        "examples": {"lost": lost[:5], "stuck": stuck[:5], "duplicated": duplicated[:5]},
    }


def main() -> None:
    """Run the soak and print its figures as JSON; exit 1 unless lost, duplicated, stuck are 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="requests published per second")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--task-timeout", type=float, default=60.0)
    parser.add_argument("--dir", type=Path, default=None, help="keep the run here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsr-soak-") as tmp:
        workdir = args.dir or Path(tmp)
        result = run_soak(
            args.requests,
            fault_rate=args.fault_rate,
            kills=args.kills,
            workdir=workdir,
            rate=args.rate,
            timeout=args.timeout,
            task_timeout=args.task_timeout,
        )
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["lost"] == result["duplicated"] == result["stuck"] == 0 else 1)


if __name__ == "__main__":
    main()
