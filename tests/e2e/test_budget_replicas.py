"""A vendor's rate budget holds for the whole deployment, not per connector worker process.

Three `dsr worker connectors` processes of one group run against a fake vendor that counts
every call's arrival (`connectors.fakes.counting`). Tasks are keyed by system, so one worker
owns a system's partition and its limiter is the whole deployment's. The counts come from the
fake's own log, never from timings: in no window of the vendor's length did it see more calls
than the limit, also not across a rebalance after one worker is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.fakes.counting import TOKEN, CountingVendor, spec
from orchestrator.intake.decode import partition_for
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import settings_env
from schemas.envelope import EnvelopeError, decode, encode
from schemas.events import RequestType, Subject, TaskDispatched, TaskOutcome
from schemas.kafka import KafkaSettings
from schemas.topics import OUTCOMES, TASKS
from tests.e2e.conftest import committed_offset

pytestmark = pytest.mark.broker

LIMIT = 6  # calls the vendor allows per window
WINDOW = 1.0  # seconds
PAGES = 2  # calls per access task
SUBJECT = Subject(identifiers=[{"type": "email", "value": "anna.devries@example.nl"}])


class Workers:
    """Connector worker processes of one group, with their logs."""

    def __init__(self, settings: Settings, group: str, log_dir: Path) -> None:
        self.env = {**os.environ, **settings_env(settings), "DSR_ALLOW_UNSIGNED_REQUESTS": "true"}
        self.group = group
        self.log_dir = log_dir
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, n: int) -> None:
        """Start worker `n`."""
        command = ["worker", "connectors", "--group", self.group]
        with open(self.log_dir / f"worker-{n}.log", "ab") as log:
            self.processes[n] = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", *command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def owner_of(self, partition: int) -> int | None:
        """The live worker whose latest assignment (from its log) holds `partition`."""
        for n, process in self.processes.items():
            if process.poll() is not None:
                continue
            text = (self.log_dir / f"worker-{n}.log").read_text(errors="replace")
            owned = re.findall(r"owns \S+ partitions \[([0-9, ]*)\]", text)
            if owned and str(partition) in owned[-1].replace(" ", "").split(","):
                return n
        return None

    def kill(self, n: int) -> None:
        """SIGKILL worker `n`: no revoke, no commit; the group notices after its session."""
        os.kill(self.processes[n].pid, signal.SIGKILL)
        self.processes[n].wait(timeout=10)

    def check(self, killed: set[int]) -> None:
        """Fail if a worker died that the test did not kill."""
        for n, process in self.processes.items():
            if n not in killed and process.poll() is not None:
                log = (self.log_dir / f"worker-{n}.log").read_text(errors="replace")
                raise AssertionError(f"worker {n} exited: {log[-3000:]}")

    def stop(self) -> None:
        """SIGTERM every live worker, SIGKILL after 15 s."""
        live = [p for p in self.processes.values() if p.poll() is None]
        for process in live:
            process.terminate()
        for process in live:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _system(name: str, spec_file: Path, base_url: str, group: str) -> dict[str, object]:
    return {
        "name": name,
        "kind": "crm",
        "connector": "rest",
        "group": group,
        "settings": {"spec": str(spec_file), "base_url": base_url, "credentials": {"token": TOKEN}},
        "data_categories": ["contact details"],
        "purposes": ["sales"],
        "legal_basis": ["contract"],
        "profiling": "none",
        "retention": "2 years",
    }


def _settings(
    tmp_path: Path,
    kafka: KafkaSettings,
    fake: CountingVendor,
    group: str,
    limits: dict[str, tuple[int, float]],
) -> Settings:
    """A register of `group` with one system per entry of `limits` (requests, per seconds),
    each its own account at the fake."""
    systems = []
    for name, (requests, per_seconds) in limits.items():
        spec_file = tmp_path / f"{name}.yaml"
        spec_file.write_text(yaml.safe_dump(spec(requests, per_seconds, concurrency=2)))
        systems.append(_system(name, spec_file, f"{fake.url}/api/{name}", group))
    register = tmp_path / "register.yaml"
    register.write_text(yaml.safe_dump({"systems": systems}))
    settings = Settings(register_file=register, data_dir=tmp_path / "data", kafka=kafka)
    settings.data_keys()  # the bus key file, created once here, as `Stack.start` does
    return settings


def _tasks(settings: Settings, system: str, count: int) -> list[TaskDispatched]:
    """Access tasks for `system`, each of its own request (whose data key the records of its
    outcome are sealed with: created here, as the orchestrator does on arrival)."""
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    keys = settings.data_keys()
    for n in range(count):
        keys.create(f"budget-{run}-{n:03d}")
    return [
        TaskDispatched(
            request_id=f"budget-{run}-{n:03d}",
            task_id=f"budget-{run}-{n:03d}/{system}",
            system=system,
            action=RequestType.ACCESS,
            subject=SUBJECT,
            deadline=now + timedelta(days=30),
            dispatched_at=now,
        )
        for n in range(count)
    ]


async def _publish(kafka: KafkaSettings, tasks: list[TaskDispatched]) -> None:
    """Send tasks keyed by system, to the partition the orchestrator's sender picks."""
    producer = AIOKafkaProducer(**kafka.aiokafka_options(), acks="all")
    await producer.start()
    try:
        for task in tasks:
            message = encode(task, source="tests/budget", key=task.system, event_id=task.task_id)
            await producer.send_and_wait(
                TASKS.name,
                key=message.key,
                value=message.value,
                headers=message.headers,
                partition=partition_for(task.system, kafka.partitions),
            )
    finally:
        await producer.stop()


async def _outcomes(
    kafka: KafkaSettings,
    wanted: set[str],
    during: Callable[[list[str]], None],
    timeout: float = 120,
) -> list[str]:
    """Task ids of outcomes for `wanted`, in the order they arrive, until all came; `during`
    sees the list after each poll (to act mid-run)."""
    consumer = AIOKafkaConsumer(
        OUTCOMES.name, **kafka.consumer_options(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    try:
        while not wanted <= set(seen) and loop.time() < end:
            batches = await consumer.getmany(timeout_ms=200)
            for record in (r for batch in batches.values() for r in batch):
                try:
                    body = decode(record.value, record.headers).body
                except EnvelopeError:
                    continue
                if isinstance(body, TaskOutcome) and body.task_id in wanted:
                    assert body.status == "completed", body.reason
                    if body.task_id not in seen:
                        seen.append(body.task_id)
            during(seen)
    finally:
        await consumer.stop()
    return seen


@pytest.fixture
def fake() -> Iterator[CountingVendor]:
    """The counting vendor, its answers a little slow so that calls overlap."""
    with CountingVendor(pages=PAGES, answer_seconds=0.02) as vendor:
        yield vendor


def test_a_vendors_rate_limit_holds_for_three_workers_and_across_a_kill_9(
    tmp_path: Path, kafka_settings: KafkaSettings, fake: CountingVendor
) -> None:
    group = f"budget-{uuid.uuid4().hex[:6]}"
    settings = _settings(tmp_path, kafka_settings, fake, group, {"metered": (LIMIT, WINDOW)})
    tasks = _tasks(settings, "metered", 36)  # 72 calls: 12 windows of the limit at least
    partition = partition_for("metered", kafka_settings.partitions)
    workers = Workers(settings, group, tmp_path)
    killed: set[int] = set()

    def during(done: list[str]) -> None:
        workers.check(killed)
        if not killed and fake.calls_of("metered") >= 20:
            owner = workers.owner_of(partition)
            assert owner is not None, "no worker's log says it owns the system's partition"
            workers.kill(owner)  # mid-run: its uncommitted tasks come again elsewhere
            killed.add(owner)

    try:
        for n in range(3):
            workers.spawn(n)
        asyncio.run(_publish(kafka_settings, tasks))
        done = asyncio.run(_outcomes(kafka_settings, {t.task_id for t in tasks}, during))
    finally:
        workers.stop()
    assert killed, "the owner was never killed: the vendor saw too few calls"
    assert set(done) == {t.task_id for t in tasks}, f"{len(done)} of {len(tasks)} tasks done"
    assert fake.calls_of("metered") >= len(tasks) * PAGES
    # The vendor's own log: never more than the limit in any window, killed owner included.
    assert fake.max_in_window_of("metered", WINDOW) <= LIMIT
    assert fake.max_concurrent_of("metered") <= 2


def test_a_throttled_vendor_holds_up_no_other_system_of_its_group(
    tmp_path: Path, kafka_settings: KafkaSettings, fake: CountingVendor
) -> None:
    # Both systems' tasks on one partition: even there the free one passes the throttled one.
    free = next(
        f"free{n}"
        for n in range(1000)
        if partition_for(f"free{n}", kafka_settings.partitions)
        == partition_for("throttled", kafka_settings.partitions)
    )
    group = f"budget-{uuid.uuid4().hex[:6]}"
    limits = {"throttled": (2, WINDOW), free: (1000, WINDOW)}
    settings = _settings(tmp_path, kafka_settings, fake, group, limits)
    slow, quick = _tasks(settings, "throttled", 12), _tasks(settings, free, 6)
    workers = Workers(settings, group, tmp_path)
    try:
        workers.spawn(0)
        asyncio.run(_publish(kafka_settings, slow))

        def started(done: list[str]) -> None:
            workers.check(set())
            if fake.calls_of("throttled") >= 2:
                raise _Started

        with pytest.raises(_Started):  # the backlog is being worked on: now the quick tasks
            asyncio.run(_outcomes(kafka_settings, {t.task_id for t in slow}, started))
        asyncio.run(_publish(kafka_settings, quick))
        wanted = {t.task_id for t in slow + quick}
        done = asyncio.run(_outcomes(kafka_settings, wanted, lambda _: workers.check(set())))
    finally:
        workers.stop()
    assert set(done) == wanted
    last_quick = max(done.index(t.task_id) for t in quick)
    slow_before = sum(1 for t in done[:last_quick] if t.endswith("/throttled"))
    # Every quick task was done while most of the throttled backlog still waited.
    assert slow_before < len(slow) // 2, done
    assert fake.max_in_window_of("throttled", WINDOW) <= 2


class _Started(Exception):
    """The throttled system's first calls arrived."""


def test_the_first_owner_of_a_never_committed_partition_calls_at_once_and_claims_it_first(
    tmp_path: Path, kafka_settings: KafkaSettings, fake: CountingVendor
) -> None:
    """A new owner waits out the vendor's window (the old owner may have used it), except on
    a partition the group never committed: nobody called for it, so `dsr up` and a fresh
    deployment do not sit out a window (Freshdesk's is a minute). The worker commits such a
    partition before its first call, so a later owner does wait."""
    group = f"budget-{uuid.uuid4().hex[:6]}"
    window = 600.0  # were the first owner to wait a window, no outcome would come in time
    settings = _settings(tmp_path, kafka_settings, fake, group, {"fresh": (LIMIT, window)})
    tasks = _tasks(settings, "fresh", 2)
    workers = Workers(settings, group, tmp_path)
    try:
        workers.spawn(0)
        asyncio.run(_publish(kafka_settings, tasks))
        done = asyncio.run(
            _outcomes(kafka_settings, {t.task_id for t in tasks}, lambda _: None, timeout=60)
        )
        fresh = partition_for("fresh", kafka_settings.partitions)
        committed = committed_offset(kafka_settings, f"dsr-connectors-{group}", TASKS.name, fresh)
    finally:
        workers.stop()
    assert set(done) == {t.task_id for t in tasks}
    assert committed is not None  # claimed: the next owner will wait a window
