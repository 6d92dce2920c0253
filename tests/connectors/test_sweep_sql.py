"""Retention sweeps by the SQL connector, on SQLite and a real PostgreSQL server.

Storage limitation (Art. 5(1)(e) GDPR): personal data is kept "for no longer than is necessary
for the purposes for which the personal data are processed". A sweep deletes (or anonymises)
what has passed the register's retention period, children first, in one transaction; what a
legal duty keeps (Art. 17(3)(b) GDPR: "for compliance with a legal obligation which requires
processing by Union or Member State law", here the Dutch fiscal retention of Art. 52 AWR)
stays and is reported with its basis. Every count is checked against the database itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
)

from connectors.base import ConnectorConfigError, ConnectorError, SweepResult
from connectors.conformance import Seeded, SeededSweep, SweepConformance, Target
from connectors.sql import SQLConnector
from schemas.events import OutcomeStatus
from schemas.register import CollectionRetention, RetentionRule
from schemas.sweeps import CountedFrom, SweepCount, SweepRule
from tests.connectors.databases import empty_database, fail_on_delete_from_customers, run

TODAY = date.today()
FISCAL = "Art. 52 AWR and Art. 2:10 BW (fiscal retention, 7 years)"
EMAILS = ["old.one@example.nl", "old.two@example.nl", "young@example.nl", "undated@example.nl"]

metadata = MetaData()
customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(200)),
    Column("last_activity", Date),
)
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("ordered_at", Date),
)
invoices = Table(
    "invoices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("invoice_date", Date),
)
tickets = Table(
    "tickets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(200)),
    Column("updated_at", DateTime),
)
chats = Table(
    "chats",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(200)),
    Column("ip", String(45)),
    Column("created_at", DateTime),
)
ALL = (customers, orders, invoices, tickets, chats)


def _ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def _at(day: date) -> datetime:
    return datetime.combine(day, time(12, 0))


def seed(engine: Engine) -> None:
    """Customers 1 and 2 inactive for 3 years (2 with an invoice under the fiscal duty),
    3 active, 4 undated; tickets and chats old and young."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                {"id": 1, "email": EMAILS[0], "last_activity": _ago(3 * 365)},
                {"id": 2, "email": EMAILS[1], "last_activity": _ago(3 * 365)},
                {"id": 3, "email": EMAILS[2], "last_activity": _ago(30)},
                {"id": 4, "email": EMAILS[3], "last_activity": None},
            ],
        )
        conn.execute(
            insert(orders),
            [
                {"id": 10, "customer_id": 1, "ordered_at": _ago(4 * 365)},
                {"id": 11, "customer_id": 1, "ordered_at": _ago(3 * 365)},
                {"id": 12, "customer_id": 2, "ordered_at": _ago(3 * 365)},
                {"id": 13, "customer_id": 3, "ordered_at": _ago(30)},
            ],
        )
        conn.execute(
            insert(invoices),
            [
                {"id": 20, "customer_id": 2, "invoice_date": _ago(3 * 365)},  # under the duty
                {"id": 21, "customer_id": 3, "invoice_date": _ago(10 * 365)},  # duty over
            ],
        )
        conn.execute(
            insert(tickets),
            [
                {"id": 30, "email": EMAILS[0], "updated_at": _at(_ago(400))},
                {"id": 31, "email": EMAILS[1], "updated_at": _at(_ago(800))},
                {"id": 32, "email": EMAILS[2], "updated_at": _at(_ago(30))},
                {"id": 33, "email": EMAILS[3], "updated_at": None},
            ],
        )
        conn.execute(
            insert(chats),
            [
                {"id": 40, "email": EMAILS[0], "ip": "192.0.2.1", "created_at": _at(_ago(200))},
                {"id": 41, "email": EMAILS[1], "ip": "192.0.2.2", "created_at": _at(_ago(365))},
                {"id": 42, "email": EMAILS[2], "ip": "192.0.2.3", "created_at": _at(_ago(10))},
            ],
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL."""
    yield from empty_database(request, tmp_path / "shop.db")


TABLES: list[dict[str, Any]] = [
    {"name": "customers", "identity": {"email": "email", "customer_id": "id"}},
    {"name": "orders", "parent": {"table": "customers", "columns": {"customer_id": "id"}}},
    {"name": "invoices", "parent": {"table": "customers", "columns": {"customer_id": "id"}}},
    {"name": "tickets", "identity": {"email": "email"}},
    {"name": "chats", "collection": "chat_messages", "identity": {"email": "email"}},
]
DUTY = RetentionRule(
    collection="invoices",
    legal_basis=FISCAL,
    period="7 years",
    date_field="invoice_date",
    counted_from="end_of_year",
)


def rule(
    collection: str,
    period: str,
    date_field: str,
    counted_from: Literal["created", "last_activity"] = "last_activity",
    **extra: Any,
) -> SweepRule:
    """A sweep rule as the orchestrator dispatches it: the register's retention, cut off today."""
    retention = CollectionRetention(
        collection=collection,
        period=period,
        counted_from=counted_from,
        date_field=date_field,
        **extra,
    )
    return SweepRule(
        collection=collection,
        date_field=date_field,
        cutoff=retention.cutoff(TODAY),
        period=period,
        counted_from=CountedFrom(counted_from),
        **extra,
    )


CUSTOMERS = rule("customers", "2 years", "last_activity")
TICKETS = rule("tickets", "12 months", "updated_at")
CHATS = rule(
    "chat_messages", "180 days", "created_at", "created", action="anonymise", fields=["email", "ip"]
)


@pytest.fixture
def shop(db: Engine, db_url: str) -> Iterator[SQLConnector]:
    """The connector on the seeded shop, with the fiscal duty on invoices."""
    connector = SQLConnector("shop", {"url": db_url, "tables": TABLES})
    connector.use_retention([DUTY])
    yield connector
    run(connector.aclose())


def ids(engine: Engine, table: Table) -> set[int]:
    """Primary keys left in a table, read directly."""
    with engine.connect() as conn:
        return set(conn.scalars(select(table.c.id)))


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read directly."""
    with engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(select(t).order_by(t.c.id))] for t in ALL}


def by_collection(result: SweepResult) -> dict[str, SweepCount]:
    """The result's counts by collection."""
    return {count.collection: count for count in result.counts}


def test_art_5_1_e_expired_rows_are_swept(shop: SQLConnector, db: Engine) -> None:
    """Art. 5(1)(e) GDPR: rows older than the period are deleted; younger and undated stay."""
    before = {t.name: ids(db, t) for t in ALL}
    result = run(shop.sweep([TICKETS], dry_run=False))
    assert result.status == OutcomeStatus.COMPLETED
    assert ids(db, tickets) == {32, 33}  # 30 days old, and undated: not shown to have expired
    [count] = result.counts
    assert count == SweepCount(collection="tickets", expired=2, deleted=2)
    assert len(before["tickets"]) - len(ids(db, tickets)) == count.deleted
    assert {t.name: ids(db, t) for t in ALL if t is not tickets} == {
        name: rows for name, rows in before.items() if name != "tickets"
    }
    again = run(shop.sweep([TICKETS], dry_run=False))  # a second sweep finds nothing
    assert again.counts == [SweepCount(collection="tickets")]


def test_sweep_deletes_children_first_and_counts_match_the_rows_gone(
    shop: SQLConnector, db: Engine
) -> None:
    """An expired customer's orders go with it, before it: the foreign keys hold."""
    before = {t.name: ids(db, t) for t in ALL}
    result = run(shop.sweep([CUSTOMERS, TICKETS], dry_run=False))
    counts = by_collection(result)
    after = {t.name: ids(db, t) for t in ALL}
    assert after["orders"] == {13}  # customer 3's, who is active
    assert after["customers"] == {2, 3, 4}  # 2 stays: its invoice is kept (below)
    for table in ("customers", "orders", "tickets"):
        assert len(before[table]) - len(after[table]) == counts[table].deleted, table
    assert counts["orders"] == SweepCount(collection="orders", expired=3, deleted=3)
    assert counts["customers"] == SweepCount(collection="customers", expired=2, deleted=1, kept=1)


def test_art_17_3_b_retention_duty_wins_over_a_sweep(shop: SQLConnector, db: Engine) -> None:
    """Art. 17(3)(b) GDPR: an invoice under the 7-year fiscal duty stays, even when its
    collection's sweep period has passed, and so does the customer it refers to; both are
    reported with the legal basis. The invoice whose duty has run out goes."""
    invoices_rule = rule("invoices", "2 years", "invoice_date", "created")
    result = run(shop.sweep([CUSTOMERS, invoices_rule], dry_run=False))
    assert ids(db, invoices) == {20}
    assert ids(db, customers) == {2, 3, 4}
    counts = by_collection(result)
    assert counts["invoices"] == SweepCount(collection="invoices", expired=2, deleted=1, kept=1)
    assert counts["customers"].kept == 1
    retained = {item.collection: item for item in result.retained}
    assert retained["invoices"].count == 1 and retained["invoices"].legal_basis == FISCAL
    kept_on = _ago(3 * 365)
    assert retained["invoices"].until == date(kept_on.year + 7, 12, 31)
    assert retained["customers"].count == 1 and retained["customers"].legal_basis == FISCAL
    assert "retention duty" in (retained["customers"].reason or "")


def test_sweep_dry_run_changes_nothing(shop: SQLConnector, db: Engine) -> None:
    """A dry run counts what the sweep would do, per collection, and changes no row."""
    rules = [CUSTOMERS, TICKETS, CHATS]
    before = snapshot(db)
    dry = run(shop.sweep(rules, dry_run=True))
    assert snapshot(db) == before
    assert all(c.deleted == 0 and c.anonymised == 0 for c in dry.counts)
    real = run(shop.sweep(rules, dry_run=False))
    assert [(c.collection, c.expired, c.kept) for c in dry.counts] == [
        (c.collection, c.expired, c.kept) for c in real.counts
    ]
    assert dry.retained == real.retained


def test_sweep_anonymises_the_rules_fields(shop: SQLConnector, db: Engine) -> None:
    """`action: anonymise` keeps the row and clears the rule's fields; a second sweep has
    nothing left to clear."""
    result = run(shop.sweep([CHATS], dry_run=False))
    assert result.counts == [SweepCount(collection="chat_messages", expired=2, anonymised=2)]
    with db.connect() as conn:
        rows = {r.id: (r.email, r.ip) for r in conn.execute(select(chats))}
    assert rows == {40: (None, None), 41: (None, None), 42: (EMAILS[2], "192.0.2.3")}
    again = run(shop.sweep([CHATS], dry_run=False))
    assert again.counts == [SweepCount(collection="chat_messages")]


def test_a_rule_for_an_unknown_collection_fails_clearly_and_changes_nothing(
    shop: SQLConnector, db: Engine
) -> None:
    before = snapshot(db)
    with pytest.raises(ConnectorConfigError, match=r"collection 'leads'.*sweep policy"):
        run(shop.sweep([TICKETS, rule("leads", "1 year", "created_at")], dry_run=False))
    with pytest.raises(ConnectorConfigError, match="closed_at"):
        run(shop.sweep([rule("tickets", "1 year", "closed_at")], dry_run=False))
    assert snapshot(db) == before


def test_a_failing_sweep_rolls_every_table_back(shop: SQLConnector, db: Engine) -> None:
    """One transaction per sweep: a failure on the last table undoes the first ones."""
    fail_on_delete_from_customers(db)
    before = snapshot(db)
    with pytest.raises(ConnectorError, match="rolled back"):
        run(shop.sweep([CUSTOMERS, TICKETS], dry_run=False))
    assert snapshot(db) == before


def test_nothing_personal_is_logged_or_reported(
    shop: SQLConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    result = run(shop.sweep([CUSTOMERS, TICKETS, CHATS], dry_run=False))
    text = caplog.text + repr(result)
    for value in [*EMAILS, "192.0.2."]:
        assert value not in text


class SweepingShop(Target):
    """The shop for the conformance suite's sweep checks, seeded afresh for each."""

    name = "shop"

    def __init__(self, url: str) -> None:
        self.url = url

    def connector(self) -> SQLConnector:
        connector = SQLConnector(self.name, {"url": self.url, "tables": TABLES})
        connector.use_retention([DUTY])
        return connector

    def seed(self) -> Seeded:
        raise NotImplementedError("only the sweep checks run against this target")

    def seed_sweep(self) -> SeededSweep:
        engine = create_engine(self.url)
        metadata.drop_all(engine)
        seed(engine)
        engine.dispose()

        def remaining() -> dict[str, int]:
            engine = create_engine(self.url)
            left = {"tickets": len(ids(engine, tickets)), "chat_messages": len(ids(engine, chats))}
            engine.dispose()
            return left

        return SeededSweep(
            rules=[TICKETS, CHATS],
            expired={"tickets": 2, "chat_messages": 2},
            remaining=remaining,
            personal_values=[*EMAILS, "192.0.2.1"],
        )


class TestSQLSweepConformance(SweepConformance):
    @pytest.fixture
    def target(self, db_url: str) -> Target:
        return SweepingShop(db_url)
