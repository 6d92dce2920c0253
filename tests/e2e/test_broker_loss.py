"""The embedded broker keeps its log in memory: when it dies, say exactly what was lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.intake.client import RequestPublisher
from orchestrator.intake.publishers import IssuedKey
from orchestrator.lifecycle.recovery import open_requests
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack, StackError
from orchestrator.status.view import read_status
from schemas.events import RequestStatus, RequestSubmitted
from tests.e2e.test_pipeline import new_request

pytestmark = pytest.mark.broker


def _request(request_id: str, system: str) -> RequestSubmitted:
    return new_request("access", f"{request_id}@example.nl", request_id=request_id, scope=[system])


def test_a_lost_embedded_broker_is_reported_with_the_requests_in_flight(
    tmp_path: Path, test_publisher: IssuedKey
) -> None:
    def system(name: str, delay: float) -> dict[str, object]:
        return {
            "name": name,
            "kind": "other",
            "connector": "memory",
            "settings": {"generate": {"per_subject": 1}, "delay_seconds": delay},
            "data_categories": ["contact details"],
            "purposes": ["service"],
            "legal_basis": ["contract"],
            "profiling": "none",
            "retention": "1 year",
        }

    register = tmp_path / "register.yaml"
    register.write_text(yaml.safe_dump({"systems": [system("fast", 0), system("slow", 60)]}))
    settings = Settings(
        register_file=register,
        data_dir=tmp_path / "data",
        tick_interval_seconds=0.3,
        publisher_keys=test_publisher.keys_file,
    )
    stack = Stack(settings, log_dir=tmp_path / "logs").start()
    try:
        kafka = stack.settings.kafka
        with RequestPublisher(kafka, source="test", signer=test_publisher.signer()) as publisher:
            publisher.publish(_request("done-1", "fast"))
            for n in (1, 2):
                publisher.publish(_request(f"inflight-{n}", "slow"))

        def settled(view) -> bool:  # type: ignore[no-untyped-def]
            done, a, b = (view.get(r) for r in ("done-1", "inflight-1", "inflight-2"))
            return (
                done is not None
                and done.status == RequestStatus.COMPLETED
                and all(s is not None and s.status == RequestStatus.IN_PROGRESS for s in (a, b))
            )

        asyncio.run(read_status(kafka, until=settled, timeout=60))
        deadline = time.monotonic() + 10
        while set(open_requests(settings.data_dir)) != {"inflight-1", "inflight-2"}:
            assert time.monotonic() < deadline, open_requests(settings.data_dir)
            time.sleep(0.2)

        assert stack.broker is not None
        os.kill(stack.broker._process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while stack.broker.running:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(StackError) as lost:
            stack.check()
    finally:
        stack.stop(timeout=3)
    message = str(lost.value)
    assert "embedded Kafka broker stopped" in message and "in memory only" in message
    assert "inflight-1 (in_progress)" in message and "inflight-2 (in_progress)" in message
    assert "done-1" not in message  # finished: its result is on disk
    assert "re-send them" in message and "DSR_KAFKA_BOOTSTRAP" in message
    assert "@example.nl" not in message  # ids and statuses only
