"""Crash safety: kill -9 the orchestrator and a connector worker mid-batch, restart them.

Every request must still reach a final status; each system's outcome is counted once; each
request gets exactly one export or certificate. The test runs its own embedded broker and
stack, since it kills processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.intake.client import RequestPublisher
from orchestrator.intake.publishers import IssuedKey
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from orchestrator.status.view import StatusView, read_status
from schemas.events import RequestStatus, RequestSubmitted, StatusTrigger
from tests.e2e.conftest import read_topic
from tests.e2e.test_pipeline import new_request

pytestmark = pytest.mark.broker

SYSTEMS = ["crm", "mailing", "chat", "support"]
PER_SUBJECT = 3


def _register(delay: float) -> dict[str, Any]:
    return {
        "systems": [
            {
                "name": name,
                "kind": "other",
                "connector": "memory",
                "settings": {"generate": {"per_subject": PER_SUBJECT}, "delay_seconds": delay},
                "data_categories": ["contact details"],
                "purposes": ["service"],
                "legal_basis": ["contract"],
                "profiling": "none",
                "retention": "1 year",
            }
            for name in SYSTEMS
        ]
    }


def _request(n: int) -> RequestSubmitted:
    kind = "access" if n % 2 else "erasure"
    return new_request(kind, f"person{n}@example.nl", request_id=f"crash-{n:03d}", scope=None)


def _kill_and_restart(stack: Stack, name: str, args: list[str]) -> None:
    process = stack.processes[name]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    stack.spawn(name, args)


def test_kill_9_mid_batch_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, test_publisher: IssuedKey
) -> None:
    register = tmp_path / "register.yaml"
    register.write_text(yaml.safe_dump(_register(delay=0.15)))
    settings = Settings(
        register_file=register,
        data_dir=tmp_path / "data",
        retry_delay_seconds=0.2,
        tick_interval_seconds=0.5,
        task_timeout_seconds=6,
        max_attempts=5,
        publisher_keys=test_publisher.keys_file,
    )
    requests = [_request(n) for n in range(40)]
    ids = {r.request_id for r in requests}
    with Stack(settings, log_dir=tmp_path / "logs") as stack:
        kafka = stack.settings.kafka
        signer = test_publisher.signer()
        with RequestPublisher(kafka, source="crash-test", signer=signer) as publisher:
            for request in requests:
                publisher.publish(request)
        time.sleep(1.5)  # tasks are being dispatched and carried out
        _kill_and_restart(stack, "orchestrator", ["worker", "orchestrator"])
        time.sleep(1.5)
        _kill_and_restart(
            stack, "connectors-default", ["worker", "connectors", "--group", "default"]
        )

        def done(view: StatusView) -> bool:
            stack.check()
            return all((s := view.get(r)) is not None and s.status.is_final for r in ids)

        view = asyncio.run(read_status(kafka, until=done, timeout=180))
        finals = {r: view.get(r) for r in ids}
        outcomes = read_topic(kafka, "dsr.outcomes.v1")

    # Every request is final, and completed: nothing was lost.
    assert all(s is not None and s.status == RequestStatus.COMPLETED for s in finals.values()), {
        r: (s.status, s.reason) if s else None for r, s in finals.items()
    }
    # Each system's outcome counted once: counts are one run's, never two runs' summed.
    for request_id, status in finals.items():
        assert status is not None and status.systems_done == status.systems_total == 4
        for name, progress in status.systems.items():
            if request_id.endswith(("1", "3", "5", "7", "9")):  # access
                assert progress.counts.found == PER_SUBJECT, (request_id, name)
            else:  # erasure: the first run deletes; a re-run after a crash finds nothing
                assert progress.counts.deleted in (0, PER_SUBJECT), (request_id, name)
    # One finished event per request, whatever was re-delivered.
    finished = Counter(
        e.request_id for r in ids for e in view.history[r] if e.trigger == StatusTrigger.FINISHED
    )
    assert set(finished) == ids and set(finished.values()) == {1}, finished
    # Exactly one export or certificate per request.
    data = tmp_path / "data"
    exports = sorted(p.name.removesuffix(".zip.enc") for p in (data / "exports").glob("*.zip.enc"))
    certificates = sorted(p.stem for p in (data / "certificates").glob("*.json"))
    assert exports == sorted(r.request_id for r in requests if r.type == "access")
    assert certificates == sorted(r.request_id for r in requests if r.type == "erasure")
    for request_id in ids:
        result = json.loads((data / "results" / f"{request_id}.json").read_text())
        assert result["status"] == "completed"
    # The crash really happened mid-batch: some work was done twice (and ignored).
    per_task = Counter(
        (e.body.request_id, e.body.system)  # type: ignore[union-attr]
        for _, e in outcomes
        if e is not None
    )
    assert set(per_task) == {(r, s) for r in ids for s in SYSTEMS}
