"""A small running system with its dashboard, on a broker of its own.

Not the session broker: the end-to-end `running` system consumes the same topics in the same
consumer group, so two systems on one broker would take each other's requests; and the counts
/metrics must match are exact only on a status topic nobody else writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from orchestrator.intake.client import RequestPublisher
from orchestrator.runtime.broker import EmbeddedBroker
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from orchestrator.runtime.topics import ensure_topics
from schemas.envelope import encode
from schemas.events import (
    RequestStatusChanged,
    RequestSubmitted,
    RequestType,
)
from schemas.kafka import KafkaSettings
from schemas.topics import STATUS
from tests import factories

TOKEN = "test-token-0123456789abcdef"
EMAIL = "dash.subject@example.nl"

SYSTEMS = [
    {
        "name": "crm",
        "kind": "crm",
        "connector": "memory",
        "settings": {"records": [{"collection": "contacts", "data": {"email": EMAIL}}]},
        "data_categories": ["email address"],
        "purposes": ["customer relationship management"],
        "legal_basis": ["contract"],
        "profiling": "none",
        "retention": "2 years",
    },
    {
        "name": "newsletter",
        "kind": "mailing",
        "connector": "memory",
        "data_categories": ["email address"],
        "purposes": ["newsletter"],
        "legal_basis": ["consent"],
        "profiling": "none",
        "retention": "until unsubscribed",
    },
    factories.paper_archive("archive"),
    factories.failing_ledger("broken"),
]


@dataclass
class DashboardSystem:
    """The running system under test, its dashboard, and what the tests published."""

    stack: Stack
    kafka: KafkaSettings
    data_dir: Path
    log_dir: Path
    #: request id -> request type, of everything published to this broker by the tests.
    published: dict[str, RequestType] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.settings.dashboard_port}"

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def submit(
        self, request_id: str, kind: RequestType, scope: list[str], *, verified: bool = True
    ) -> RequestSubmitted:
        request = factories.request(request_id, EMAIL, type=kind, scope=scope, verified=verified)
        with RequestPublisher(self.kafka, source="tests") as publisher:
            publisher.publish(request)
        self.published[request_id] = kind
        return request

    def publish_status(self, *events: RequestStatusChanged) -> None:
        """Put status events on the topic as the orchestrator would (for states it cannot
        reach quickly, such as a deadline long past)."""

        async def _send() -> None:
            producer = AIOKafkaProducer(**self.kafka.aiokafka_options())
            await producer.start()
            try:
                for event in events:
                    message = encode(event, source="tests")
                    await producer.send_and_wait(
                        STATUS.name, key=message.key, value=message.value, headers=message.headers
                    )
            finally:
                await producer.stop()

        asyncio.run(_send())
        for event in events:
            self.published[event.request_id] = event.request_type

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the dashboard answers /readyz with 200."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            self.stack.check()
            try:
                last = httpx.get(f"{self.url}/readyz", timeout=2)
                if last.status_code == 200:
                    return
            except httpx.TransportError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"dashboard not ready in {timeout}s: {last}")

    def wait_status(self, request_id: str, statuses: set[str], timeout: float = 60) -> dict:
        """Until the API shows the request in one of `statuses`; its detail."""
        end = time.monotonic() + timeout
        found: dict = {}
        with self.client() as client:
            while time.monotonic() < end:
                self.stack.check()
                response = client.get(f"/api/requests/{request_id}")
                if response.status_code == 200:
                    found = response.json()
                    if found["status"] in statuses:
                        return found
                time.sleep(0.1)
        raise AssertionError(f"{request_id} not in {statuses} in {timeout}s: {found}")


def status_event(
    request_id: str,
    *,
    kind: RequestType = RequestType.ERASURE,
    status: str = "in_progress",
    received_days_ago: int = 40,
    sequence: int = 1,
    **extra: object,
) -> RequestStatusChanged:
    """A status event as the orchestrator publishes it."""
    received = datetime.now(UTC) - timedelta(days=received_days_ago)
    deadline = received + timedelta(days=30)
    fields: dict[str, object] = {
        "request_id": request_id,
        "request_type": kind,
        "sequence": sequence,
        "status": status,
        "trigger": "overdue" if deadline < datetime.now(UTC) else "dispatched",
        "systems_total": 2,
        "systems_done": 1,
        "systems": {
            "crm": {"status": "completed", "attempt": 1, "counts": {"found": 3, "deleted": 2}},
            "newsletter": {"status": "dispatched", "attempt": 1},
        },
        "received_at": received,
        "verified_at": received,
        "deadline": deadline,
        "days_left": (deadline.date() - datetime.now(UTC).date()).days,
        "overdue": deadline < datetime.now(UTC),
        "occurred_at": datetime.now(UTC),
    }
    fields.update(extra)
    return RequestStatusChanged.model_validate(fields)


@pytest.fixture(scope="package")
def dashboard_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardSystem]:
    """Orchestrator, connector worker and dashboard (as `dsr up` starts them) on a new broker."""
    root = tmp_path_factory.mktemp("dashboard")
    register = root / "register.yaml"
    register.write_text(
        yaml.safe_dump(
            {
                "controller": {"name": "Test B.V.", "contact": "privacy@test.example"},
                "systems": SYSTEMS,
            }
        )
    )
    with EmbeddedBroker(log_path=root / "broker.log") as broker:
        kafka = KafkaSettings().for_embedded(broker.bootstrap)
        ensure_topics(kafka)
        settings = Settings(
            register_file=register,
            data_dir=root / "data",
            kafka=kafka,
            allow_unsigned_requests=True,
            retry_delay_seconds=0.2,
            tick_interval_seconds=1.0,
            dashboard_port=0,
            dashboard_token=TOKEN,
            dashboard_lag_interval_seconds=1.0,
        )
        with Stack(settings, log_dir=root / "logs", dashboard=True) as stack:
            system = DashboardSystem(stack, kafka, root / "data", root / "logs")
            system.wait_ready()
            yield system
