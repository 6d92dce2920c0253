"""The orchestrator's batches on a real stream (`orchestrator.fanout.batches`): a worker running
`take_batches` on the embedded broker (`tests/e2e/batch_app.py`), fed by a producer here."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.kafka import KafkaSettings
from tests.e2e.conftest import committed_offset
from tests.processes import read_until

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


class _Worker:
    """The batch app on its own topic; `batch()` reads the next batch it printed."""

    def __init__(self, kafka: KafkaSettings, max_: int, within: float, pause: float) -> None:
        self.kafka = kafka
        run = uuid.uuid4().hex[:8]
        self.topic, self.group = f"batches-{run}", f"batches-test-{run}"
        asyncio.run(self._create_topic())
        bootstrap = kafka.require_bootstrap()
        args = [bootstrap, self.group, self.topic, str(max_), str(within), str(pause)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.batch_app", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        read_until(self.process, "ready", 60)

    async def _create_topic(self) -> None:
        admin = AIOKafkaAdminClient(**self.kafka.aiokafka_options())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, 1, 1)])
        finally:
            await admin.close()

    def send(self, *values: str, apart: float = 0.0) -> None:
        """Send these values, `apart` seconds from one another."""

        async def send() -> None:
            producer = AIOKafkaProducer(**self.kafka.aiokafka_options(), enable_idempotence=False)
            await producer.start()
            try:
                for n, value in enumerate(values):
                    if n and apart:
                        await asyncio.sleep(apart)
                    await producer.send_and_wait(self.topic, value.encode())
            finally:
                await producer.stop()

        asyncio.run(send())

    def batch(self, timeout: float = 30) -> dict[str, Any]:
        line = read_until(self.process, '"values"', timeout).splitlines()[-1]
        return json.loads(line)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def workers(kafka_settings: KafkaSettings) -> Iterator[list[_Worker]]:
    started: list[_Worker] = []
    yield started
    for worker in started:
        worker.stop()


def test_events_that_came_in_during_a_slow_batch_go_without_waiting_the_batch_window(
    kafka_settings: KafkaSettings, workers: list[_Worker]
) -> None:
    """The window (`within`) counts from a batch's first event: events that waited while the
    previous batch was processed are not held back for another whole window, as Faust's
    `take_events` held them (its window starts when the previous batch ends). The batch is
    committed once it is processed."""
    within = 5.0
    worker = _Worker(kafka_settings, max_=100, within=within, pause=3.0)
    workers.append(worker)
    worker.send("a")
    assert worker.batch()["values"] == ["a"]
    worker.send("b", "c", "d")  # while "a" is processed (3 s)
    second = worker.batch()
    assert second["values"] == ["b", "c", "d"]
    assert second["waited"] < within / 2, second  # take_events: >= within
    deadline = time.monotonic() + 30
    while committed_offset(kafka_settings, worker.group, worker.topic, 0) != 4:
        assert time.monotonic() < deadline, "the batches were not committed"
        time.sleep(0.5)


def test_a_first_event_waits_for_company_and_a_full_batch_goes_at_once(
    kafka_settings: KafkaSettings, workers: list[_Worker]
) -> None:
    """An event of an idle stream waits up to `within` for others; a batch never holds more
    than `max_` events, and events keep their order."""
    worker = _Worker(kafka_settings, max_=3, within=2.0, pause=0.0)
    workers.append(worker)
    worker.send("x", "y", apart=0.3)
    assert worker.batch()["values"] == ["x", "y"]
    worker.send(*(str(n) for n in range(7)))
    batches = [worker.batch()["values"] for _ in range(3)]
    assert batches == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
