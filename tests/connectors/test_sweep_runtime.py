"""Retention sweeps through the connector worker: `SweepDispatched` in, `SweepOutcome` out.

The worker's `_process` runs a batch of records from the tasks topic against a producer that
keeps what it is given, so each test reads exactly what would go to the outcomes and dead-letter
topics. Sweeps carry no identifiers, and none may appear in an outcome or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiokafka import ConsumerRecord
from pydantic import BaseModel
from sqlalchemy import create_engine, text

from connectors import registry
from connectors.base import Connector, ConnectorError, Result, SweepResult
from connectors.conformance import dispatched
from connectors.runtime import ConnectorWorker
from schemas.envelope import decode, encode
from schemas.events import DeadLetter, Identifier, OutcomeStatus, RequestType, Subject
from schemas.kafka import KafkaSettings
from schemas.register import Register, System, parse_register
from schemas.sweeps import CountedFrom, SweepCount, SweepDispatched, SweepOutcome, SweepRule
from schemas.topics import DEAD_LETTER, OUTCOMES, TASKS
from tests.connectors.databases import run

TODAY = date.today()
EMAIL = "piet.de.vries@example.nl"
IP = "198.51.100.7"
CUTOFF = TODAY - timedelta(days=180)
FISCAL = "Art. 52 AWR (fiscal retention, 7 years)"
SUBJECT = Subject(identifiers=[Identifier(type="email", value=EMAIL)])


class Producer:
    """Keeps what the worker sends; every send is taken by the 'broker' at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None = None,
        value: bytes = b"",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, list(headers or [])))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def bodies(self, topic: str) -> list[BaseModel]:
        """The events sent to `topic`, decoded as their readers decode them."""
        expect = {t.name: t.events for t in (OUTCOMES, DEAD_LETTER)}[topic]
        return [
            decode(value, headers, key=key, expect=expect).body
            for sent_to, key, value, headers in self.sent
            if sent_to == topic
        ]

    def outcomes(self) -> list[SweepOutcome]:
        """The sweep outcomes sent, each keyed by its sweep id (one sweep stays in order)."""
        found = [b for b in self.bodies(OUTCOMES.name) if isinstance(b, SweepOutcome)]
        keys = [key for topic, key, _, _ in self.sent if topic == OUTCOMES.name]
        assert keys == [b.sweep_id.encode() for b in found]
        return found

    def dead_letters(self) -> list[DeadLetter]:
        """The dead letters sent."""
        return [b for b in self.bodies(DEAD_LETTER.name) if isinstance(b, DeadLetter)]


def record(body: BaseModel | None = None, *, value: bytes | None = None) -> ConsumerRecord:
    """A record on the tasks topic, as the consumer hands it over."""
    message = encode(body or sweep(), source="test/orchestrator")
    payload = message.value if value is None else value
    return ConsumerRecord(
        TASKS.name, 0, 0, 0, 0, message.key, payload, None, 0, len(payload), message.headers
    )


def sweep(system: str = "chat", *, dry_run: bool = False, **extra: Any) -> SweepDispatched:
    """A sweep task with one rule: messages older than 180 days go."""
    rules = [
        SweepRule(
            collection="messages",
            date_field="created_at",
            cutoff=CUTOFF,
            period="180 days",
            counted_from=CountedFrom.CREATED,
        )
    ]
    values: dict[str, Any] = {
        "sweep_id": f"sweep-{system}-1",
        "task_id": f"sweep-{system}-1/{system}",
        "system": system,
        "dry_run": dry_run,
        "rules": rules,
        "dispatched_at": datetime.now(UTC),
    }
    return SweepDispatched(**(values | extra))


def _entry(name: str, connector: str, settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "chat",
        "connector": connector,
        "settings": settings,
        "data_categories": ["email address", "IP address", "messages"],
        "purposes": ["support"],
        "legal_basis": ["contract"],
        "profiling": "none",
        "retention": "180 days after the conversation",
        **extra,
    }


def _messages() -> list[dict[str, Any]]:
    old, young = TODAY - timedelta(days=400), TODAY - timedelta(days=10)
    return [
        {"collection": "messages", "data": {"email": EMAIL, "ip": IP, "created_at": str(day)}}
        for day in (old, old, young)
    ]


def register(tmp_path: Path) -> Register:
    """A chat in memory, a shop in SQLite, a mailing tool served by another worker group."""
    return parse_register(
        {
            "systems": [
                _entry("chat", "memory", {"records": _messages()}),
                _entry(
                    "shop",
                    "sql",
                    {
                        "url": f"sqlite:///{tmp_path / 'shop.db'}",
                        "tables": [
                            {"name": "messages", "identity": {"email": "email"}},
                            {"name": "invoices", "identity": {"email": "email"}},
                        ],
                    },
                    retention_rules=[
                        {
                            "collection": "invoices",
                            "legal_basis": FISCAL,
                            "period": "7 years",
                            "date_field": "created_at",
                            "counted_from": "end_of_year",
                        }
                    ],
                ),
                _entry("mailing", "memory", {"records": _messages()}, group="mailing"),
            ]
        }
    )


def fill_shop(tmp_path: Path) -> None:
    """The shop's messages (2 expired, 1 young) and invoices (1 under the duty)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with engine.begin() as conn:
        for table in ("messages", "invoices"):
            conn.execute(
                text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, email TEXT, created_at DATE)")
            )
        for n, days in enumerate((400, 500, 10)):
            conn.execute(
                text("INSERT INTO messages VALUES (:n, :e, :d)"),
                {"n": n, "e": EMAIL, "d": TODAY - timedelta(days=days)},
            )
        conn.execute(
            text("INSERT INTO invoices VALUES (1, :e, :d)"),
            {"e": EMAIL, "d": TODAY - timedelta(days=400)},
        )
    engine.dispose()


def count(tmp_path: Path, table: str) -> int:
    """Rows left in a table of the shop, read directly."""
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with engine.connect() as conn:
        rows = int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    engine.dispose()
    return rows


def process(worker: ConnectorWorker, *records: ConsumerRecord) -> Producer:
    """One batch through the worker; what it sent."""
    producer = Producer()
    run(worker._process(records, producer))
    return producer


def test_a_sweep_task_gives_a_sweep_outcome_keyed_by_sweep_id(tmp_path: Path) -> None:
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path))
    [outcome] = process(worker, record(sweep("chat"))).outcomes()
    assert outcome.status == OutcomeStatus.COMPLETED and not outcome.dry_run
    assert (outcome.sweep_id, outcome.task_id, outcome.attempt) == (
        "sweep-chat-1",
        "sweep-chat-1/chat",
        1,
    )
    assert outcome.counts == [SweepCount(collection="messages", expired=2, deleted=2)]
    again = process(worker, record(sweep("chat"))).outcomes()  # the same connector: all gone
    assert again[0].counts == [SweepCount(collection="messages")]


def test_art_17_3_b_a_sql_sweep_through_the_worker_keeps_what_a_duty_keeps(
    tmp_path: Path,
) -> None:
    """The register's retention duties reach the connector at build time and win over the
    sweep (Art. 17(3)(b) GDPR); the counts match the rows gone."""
    fill_shop(tmp_path)
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path))
    invoices = sweep().rules[0].model_copy(update={"collection": "invoices"})
    task = sweep("shop", rules=[sweep().rules[0], invoices])
    dry = process(worker, record(task.model_copy(update={"dry_run": True}))).outcomes()[0]
    assert (count(tmp_path, "messages"), count(tmp_path, "invoices")) == (3, 1)
    assert dry.dry_run and [c.expired for c in dry.counts] == [2, 1]
    [outcome] = process(worker, record(task)).outcomes()
    assert outcome.counts == [
        SweepCount(collection="messages", expired=2, deleted=2),
        SweepCount(collection="invoices", expired=1, kept=1),
    ]
    assert (count(tmp_path, "messages"), count(tmp_path, "invoices")) == (1, 1)
    [item] = outcome.retained
    assert item.collection == "invoices" and item.legal_basis == FISCAL and item.until


class _NoSweeps(Connector):
    """A connector that cannot sweep (a processor without an API for it)."""

    capabilities: ClassVar[frozenset[RequestType]] = frozenset({RequestType.ERASURE})
    supports_retention = True

    async def erase(self, subject: Subject) -> Result:
        return Result.not_found()


class _Raises(Connector):
    """A connector whose sweep raises what it is given."""

    sweeps = True
    supports_retention = True
    error: ClassVar[Exception] = RuntimeError()

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        raise self.error


def _worker_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connector: type[Connector]
) -> ConnectorWorker:
    def build(system: System) -> Connector:
        built = connector(system.name, {})
        built.use_retention(system.retention_rules)
        return built

    monkeypatch.setattr(registry, "build", build)
    return ConnectorWorker(KafkaSettings(), register(tmp_path))


def test_a_connector_that_cannot_sweep_gives_a_manual_task_with_exact_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = _worker_with(tmp_path, monkeypatch, _NoSweeps)
    anonymise = SweepRule(
        collection="visitors",
        date_field="last_seen",
        cutoff=date(2025, 1, 1),
        period="12 months",
        counted_from=CountedFrom.LAST_ACTIVITY,
        action="anonymise",
        fields=["ip", "email"],
    )
    task = sweep("shop", rules=[sweep().rules[0], anonymise])
    [outcome] = process(worker, record(task)).outcomes()
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED and not outcome.counts
    instructions = outcome.instructions or ""
    assert (
        f"messages: delete every record whose created_at is before {CUTOFF.isoformat()}"
        in instructions
    )
    assert "visitors: clear ip, email of every record whose last_seen is before 2025-01-01" in (
        instructions
    )
    assert "invoices" in instructions and FISCAL in instructions  # the duty to keep
    assert task.task_id in instructions


def test_a_connector_error_fails_the_sweep_as_retryable_as_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _Raises, "error", ConnectorError("shop: the database is down", retryable=True)
    )
    worker = _worker_with(tmp_path, monkeypatch, _Raises)
    [outcome] = process(worker, record(sweep("shop"))).outcomes()
    assert outcome.status == OutcomeStatus.FAILED and outcome.retryable
    assert outcome.reason == "shop: the database is down"


def test_an_unexpected_error_fails_retryable_without_leaking_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(_Raises, "error", RuntimeError(f"row ({EMAIL}, {IP}) is locked"))
    worker = _worker_with(tmp_path, monkeypatch, _Raises)
    [outcome] = process(worker, record(sweep("shop"))).outcomes()
    assert outcome.status == OutcomeStatus.FAILED and outcome.retryable
    assert outcome.reason == "unexpected RuntimeError in connector for 'shop'"
    for leak in (EMAIL, IP):
        assert leak not in caplog.text and leak not in outcome.model_dump_json()


def test_an_invalid_sweep_task_is_dead_lettered_and_the_rest_of_the_batch_runs(
    tmp_path: Path,
) -> None:
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path))
    body = json.loads(record(sweep("chat")).value)
    body["rules"] = []
    sent = process(worker, record(sweep("chat"), value=json.dumps(body).encode()), record())
    [letter] = sent.dead_letters()
    assert letter.stage == "body" and "rules" in letter.reason
    assert len(sent.outcomes()) == 1


def test_a_sweep_for_another_worker_group_is_left_to_it(tmp_path: Path) -> None:
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path))
    assert process(worker, record(sweep("mailing"))).sent == []


def test_no_identifier_reaches_a_sweep_outcome_or_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fill_shop(tmp_path)
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path))
    sent = process(worker, record(sweep("chat")), record(sweep("shop", dry_run=True)))
    assert len(sent.outcomes()) == 2
    wire = b"".join(value for _, _, value, _ in sent.sent).decode() + caplog.text
    for leak in (EMAIL, IP):
        assert leak not in wire


def test_sweeps_share_the_systems_concurrency_limit_with_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep must not run beside the system's tasks beyond its limit (here one at a time)."""
    running = {"now": 0, "most": 0}

    class Slow(_NoSweeps):
        sweeps = True

        async def _busy(self) -> None:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
            await asyncio.sleep(0.05)
            running["now"] -= 1

        async def erase(self, subject: Subject) -> Result:
            await self._busy()
            return Result.not_found()

        async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
            await self._busy()
            return SweepResult.done([])

    monkeypatch.setattr(registry, "build", lambda system: Slow(system.name, {}))
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path), concurrency=1)
    task = dispatched("shop", RequestType.ERASURE, SUBJECT)
    sent = process(worker, record(sweep("shop")), record(task), record(sweep("shop")))
    assert len(sent.sent) == 3 and running["most"] == 1


def test_a_connector_that_cannot_start_fails_the_sweep_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(system: System) -> Connector:
        raise ConnectorError(f"system {system.name!r}: settings are invalid", retryable=False)

    monkeypatch.setattr(registry, "build", broken)
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path))
    [outcome] = process(worker, record(sweep("shop"))).outcomes()
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    assert outcome.reason == "system 'shop': settings are invalid"
