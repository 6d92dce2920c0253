"""Retention sweeps end to end on a real broker: the orchestrator, connector workers (memory
systems), signed sweep events, officers' approvals and the timer's schedules.

Storage limitation, Art. 5(1)(e) GDPR: personal data "kept in a form which permits
identification of data subjects for no longer than is necessary"; Recital 39: "time limits
should be established by the controller for erasure or for a periodic review".
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from orchestrator.intake.publishers import IssuedKey, create_publisher
from orchestrator.lifecycle.deadlines import DEFAULT_ZONE
from orchestrator.lifecycle.sweeps import FINAL_STATUSES
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from schemas.envelope import encode
from schemas.events import DeadLetter
from schemas.kafka import KafkaSettings
from schemas.sweeps import (
    SweepApproved,
    SweepRequested,
    SweepStatus,
    SweepStatusChanged,
    SweepTrigger,
)
from schemas.topics import DEAD_LETTER, REQUESTS, STATUS
from tests.e2e.conftest import read_topic
from tests.orchestrator.test_sweeps_lifecycle import TICKETS, sweepable

pytestmark = pytest.mark.broker

OFFICER = "officer-42"
OLD = "2020-01-15"


def _tickets(old: int, recent: int) -> list[dict[str, Any]]:
    """Tickets without identifiers beyond a number: old ones past 180 days, recent ones not."""
    today = date.today().isoformat()
    dates = [OLD] * old + [today] * recent
    return [
        {"collection": "tickets", "data": {"ticket": n, "updated_at": d}}
        for n, d in enumerate(dates)
    ]


@dataclass
class Sweeps:
    """A running stack with two sweepable memory systems, and how to talk to it."""

    stack: Stack
    kafka: KafkaSettings
    officer: IssuedKey  # the stack's local publisher: it may start and approve sweeps
    data_dir: Path

    def publish(self, body: BaseModel, signer: IssuedKey | None = None) -> None:
        """Sign a sweep event and put it on the requests topic, keyed by its sweep id."""
        message = (signer or self.officer).signer().sign(encode(body, source="tests"))

        async def _send() -> None:
            producer = AIOKafkaProducer(**self.kafka.aiokafka_options())
            await producer.start()
            try:
                await producer.send_and_wait(
                    REQUESTS.name, message.value, key=message.key, headers=message.headers
                )
            finally:
                await producer.stop()

        asyncio.run(_send())

    def history(self, sweep_id: str) -> list[SweepStatusChanged]:
        return [
            e.body
            for _, e in read_topic(self.kafka, STATUS.name, timeout=3)
            if e is not None
            and isinstance(e.body, SweepStatusChanged)
            and e.body.sweep_id == sweep_id
        ]

    def wait_for(
        self,
        match: Callable[[SweepStatusChanged], bool],
        timeout: float = 90,
    ) -> SweepStatusChanged:
        """The first sweep status event meeting `match`, waiting for it."""
        end = time.monotonic() + timeout
        while True:
            self.stack.check()
            for _, e in read_topic(self.kafka, STATUS.name, timeout=3):
                if e is not None and isinstance(e.body, SweepStatusChanged) and match(e.body):
                    return e.body
            assert time.monotonic() < end, "no sweep status event matched in time"
            time.sleep(0.5)

    def dead_letters(self, key: str) -> list[DeadLetter]:
        return [
            e.body
            for _, e in read_topic(self.kafka, DEAD_LETTER.name, timeout=3)
            if e is not None and isinstance(e.body, DeadLetter) and e.body.key == key
        ]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweeps]:
    root = tmp_path_factory.mktemp("sweeps")
    register = root / "register.yaml"
    systems = [
        sweepable("helpdesk", "required", [TICKETS], records=_tickets(old=3, recent=1)),
        sweepable("archive", "not_required", [TICKETS], records=_tickets(old=2, recent=2)),
    ]
    register.write_text(yaml.safe_dump({"systems": systems}))
    settings = Settings(
        register_file=register,
        data_dir=root / "data",
        tick_interval_seconds=0.5,
        retry_delay_seconds=0.2,
    )
    with Stack(settings, log_dir=root / "logs") as stack:
        assert stack.local_publisher is not None  # may decide: every request event type
        yield Sweeps(stack, stack.settings.kafka, stack.local_publisher, root / "data")


def _requested(system: str, *, dry_run: bool = True) -> SweepRequested:
    return SweepRequested(
        sweep_id=f"sweep-{system}-{uuid.uuid4().hex[:8]}",
        system=system,
        dry_run=dry_run,
        requested_by=OFFICER,
        requested_at=datetime.now(UTC),
    )


def _approved(sweep_id: str) -> SweepApproved:
    return SweepApproved(sweep_id=sweep_id, approved_by=OFFICER, approved_at=datetime.now(UTC))


def _dead_letters(sweeps: Sweeps, key: str, timeout: float = 30) -> list[DeadLetter]:
    deadline = time.monotonic() + timeout
    while not (letters := sweeps.dead_letters(key)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return letters


def test_recital_39_the_timer_starts_scheduled_sweeps_and_a_trusted_system_runs_through(
    sweeps: Sweeps,
) -> None:
    """On start-up every system with a sweep policy is due: the trusted one is swept at once
    (no approval), the guarded one is counted and waits for an officer."""
    trusted = sweeps.wait_for(
        lambda s: (
            s.system == "archive"
            and s.trigger == SweepTrigger.SCHEDULE
            and s.status in FINAL_STATUSES
        )
    )
    assert trusted.status == SweepStatus.COMPLETED, trusted.reason
    assert trusted.sweep_id.startswith("sweep-archive-") and len(trusted.sweep_id) == 26
    assert [(c.collection, c.deleted) for c in trusted.counts] == [("tickets", 2)]
    # Days count in the controller's time zone (Amsterdam): between 23:00 and 24:00 UTC in
    # winter its date is already tomorrow's. Five minutes back: a sweep started before midnight.
    zone = ZoneInfo(DEFAULT_ZONE)
    days = {(datetime.now(zone) - timedelta(minutes=m)).date() for m in (0, 5)}
    assert trusted.rules[0].cutoff in {day - timedelta(days=180) for day in days}
    assert trusted.certificate and Path(trusted.certificate).exists(), trusted.reason
    history = [s.status for s in sweeps.history(trusted.sweep_id)]
    assert history[0] == SweepStatus.SWEEPING and SweepStatus.AWAITING_APPROVAL not in history

    guarded = sweeps.wait_for(
        lambda s: (
            s.system == "helpdesk"
            and s.trigger == SweepTrigger.SCHEDULE
            and s.status == SweepStatus.AWAITING_APPROVAL
        )
    )
    assert [(c.collection, c.expired) for c in guarded.dry_run_counts] == [("tickets", 3)]


def test_art_5_2_a_manual_sweep_counts_waits_and_deletes_after_approval(sweeps: Sweeps) -> None:
    """A dry run deletes nothing and waits; the officer's approval (recorded: who, when)
    deletes what expired, and the certificate proves it."""
    event = _requested("helpdesk")
    sweeps.publish(event)
    counted = sweeps.wait_for(
        lambda s: s.sweep_id == event.sweep_id and s.status == SweepStatus.AWAITING_APPROVAL
    )
    assert [(c.collection, c.expired, c.deleted) for c in counted.dry_run_counts] == [
        ("tickets", 3, 0)
    ]
    assert counted.trigger == SweepTrigger.MANUAL and counted.requested_by == OFFICER
    time.sleep(1.5)  # a wrongly eager orchestrator would be sweeping by now
    assert sweeps.history(event.sweep_id)[-1].status == SweepStatus.AWAITING_APPROVAL

    sweeps.publish(_approved(event.sweep_id))
    done = sweeps.wait_for(lambda s: s.sweep_id == event.sweep_id and s.status in FINAL_STATUSES)
    assert done.status == SweepStatus.COMPLETED, done.reason
    assert [(c.collection, c.deleted) for c in done.counts] == [("tickets", 3)]
    assert done.approved_by == OFFICER and done.approved_at is not None
    assert done.certificate and Path(done.certificate).exists(), done.reason
    body = json.loads(Path(done.certificate).read_text())
    assert event.sweep_id in json.dumps(body)

    # Swept: a new dry run finds nothing left to delete.
    again = _requested("helpdesk")
    sweeps.publish(again)
    nothing = sweeps.wait_for(lambda s: s.sweep_id == again.sweep_id and s.status in FINAL_STATUSES)
    assert nothing.status == SweepStatus.NOTHING_EXPIRED


def test_approval_by_a_publisher_not_allowed_to_decide_is_dead_lettered(
    sweeps: Sweeps, tmp_path: Path
) -> None:
    """Starting or approving a sweep is an officer's decision: a publisher whose allow-list
    lacks it is refused at intake, and the sweep keeps waiting."""
    waiting = sweeps.wait_for(
        lambda s: (
            s.system == "helpdesk"
            and s.trigger == SweepTrigger.SCHEDULE
            and s.status == SweepStatus.AWAITING_APPROVAL
        )
    )
    intake = create_publisher(
        sweeps.officer.keys_file, f"intake-{uuid.uuid4().hex[:6]}", out_dir=tmp_path
    )  # the default allow-list: requests, no decisions
    sweeps.publish(_approved(waiting.sweep_id), signer=intake)
    [letter] = _dead_letters(sweeps, waiting.sweep_id)
    assert letter.stage == "signature" and "may not publish" in letter.reason
    assert "dsr.sweep.approved.v1" in letter.reason
    time.sleep(1.5)
    assert sweeps.history(waiting.sweep_id)[-1].status == SweepStatus.AWAITING_APPROVAL


def test_a_sweep_of_a_system_outside_the_register_is_dead_lettered_with_its_reason(
    sweeps: Sweeps,
) -> None:
    event = _requested("nowhere")
    sweeps.publish(event)
    [letter] = _dead_letters(sweeps, event.sweep_id)
    assert letter.stage == "process" and "not in the register" in letter.reason
    assert sweeps.history(event.sweep_id) == []
