"""Retention duties: erasure keeps (or anonymises) what the law says to keep, and says so.

Run on SQLite and on a real PostgreSQL server: the rule becomes one date comparison in SQL.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from connectors import registry
from connectors.base import ConnectorConfigError
from connectors.sql import SQLConnector
from schemas.events import Identifier, OutcomeStatus, Subject
from schemas.register import RetentionRule, System

EMAIL = "jan.smit@example.nl"
SUBJECT = Subject(identifiers=[Identifier(type="email", value=EMAIL)])
TODAY = date.today()
FISCAL = "Art. 52 AWR (fiscal retention)"


def _rule(**overrides: Any) -> RetentionRule:
    values: dict[str, Any] = {
        "collection": "invoices",
        "legal_basis": FISCAL,
        "period": "7 years",
        "date_field": "invoice_date",
        "counted_from": "end_of_year",
    }
    return RetentionRule(**(values | overrides))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(URL, table name) with the subject's invoices: recent, old, undated; and someone else's."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
    else:
        request.applymarker(pytest.mark.postgres)
        url = request.getfixturevalue("postgres_url")
    table = f"inv_{uuid.uuid4().hex[:8]}"
    recent, last_year = date(TODAY.year, 1, 15), date(TODAY.year - 1, 6, 1)
    old = date(TODAY.year - 9, 3, 1)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, email TEXT, phone TEXT, "
                "invoice_date DATE, amount NUMERIC(10, 2))"
            )
        )
        rows = [
            (1, EMAIL, "0612345678", recent),
            (2, EMAIL, "0612345678", last_year),
            (3, EMAIL, "0612345678", old),
            (4, EMAIL, None, None),
            (5, "other@example.nl", "0687654321", old),
        ]
        for row_id, email, phone, day in rows:
            conn.execute(
                text(f"INSERT INTO {table} VALUES (:i, :e, :p, :d, 10)"),
                {"i": row_id, "e": email, "p": phone, "d": day},
            )
    engine.dispose()
    return url, table


def _connector(url: str, table: str, *rules: RetentionRule) -> SQLConnector:
    connector = SQLConnector(
        "shop",
        {
            "url": url,
            "tables": [{"name": table, "collection": "invoices", "identity": {"email": "email"}}],
        },
    )
    connector.use_retention(rules)
    return connector


def _rows(url: str, table: str) -> dict[int, tuple[Any, ...]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = {
            r[0]: tuple(r[1:]) for r in conn.execute(text(f"SELECT id, email, phone FROM {table}"))
        }
    engine.dispose()
    return rows


def test_erasure_keeps_records_under_retention_and_reports_them(database: tuple[str, str]) -> None:
    url, table = database
    connector = _connector(url, table, _rule(reason="invoices are kept for the tax authority"))
    result = asyncio.run(connector.erase(SUBJECT))
    asyncio.run(connector.aclose())

    assert result.status == OutcomeStatus.COMPLETED
    assert (result.counts.deleted, result.counts.retained, result.counts.found) == (1, 3, 4)
    [item] = result.retained
    assert item.collection == "invoices" and item.count == 3 and item.legal_basis == FISCAL
    assert item.reason == "invoices are kept for the tax authority"
    # The newest kept invoice is from this year: kept until the end of the year, plus 7 years.
    assert item.until == date(TODAY.year + 7, 12, 31)
    # The old invoice (period over) is gone; the recent ones, the undated one and the other
    # customer's invoice are still there.
    assert set(_rows(url, table)) == {1, 2, 4, 5}


def test_a_repeated_erasure_reports_the_same_retained_records(database: tuple[str, str]) -> None:
    url, table = database
    connector = _connector(url, table, _rule())
    asyncio.run(connector.erase(SUBJECT))
    again = asyncio.run(connector.erase(SUBJECT))
    asyncio.run(connector.aclose())
    assert again.status == OutcomeStatus.RETAINED
    assert again.reason and "invoices" in again.reason
    assert again.counts.deleted == 0 and again.counts.retained == 3
    assert again.retained[0].until == date(TODAY.year + 7, 12, 31)


def test_anonymise_action_keeps_the_record_but_clears_fields(database: tuple[str, str]) -> None:
    url, table = database
    rule = _rule(action="anonymise", fields=["phone"], counted_from="record_date")
    connector = _connector(url, table, rule)
    result = asyncio.run(connector.erase(SUBJECT))
    asyncio.run(connector.aclose())
    rows = _rows(url, table)
    assert set(rows) == {1, 2, 4, 5}
    assert rows[1] == (EMAIL, None) and rows[2] == (EMAIL, None)
    assert rows[5][1] == "0687654321"  # someone else's
    [item] = result.retained
    assert item.count == 3 and item.until == date(TODAY.year, 1, 15).replace(year=TODAY.year + 7)
    assert "phone cleared" in (item.reason or "")


def test_a_wrong_date_field_fails_clearly_without_erasing(database: tuple[str, str]) -> None:
    url, table = database
    connector = _connector(url, table, _rule(date_field="issued_on"))
    with pytest.raises(ConnectorConfigError, match="date_field 'issued_on'"):
        asyncio.run(connector.erase(SUBJECT))
    asyncio.run(connector.aclose())
    assert set(_rows(url, table)) == {1, 2, 3, 4, 5}  # the transaction rolled back


def test_rule_arithmetic() -> None:
    rule = _rule()
    assert rule.until(date(2024, 3, 12)) == date(2031, 12, 31)
    assert rule.cutoff(date(2026, 11, 22)) == date(2019, 1, 1)
    by_date = _rule(counted_from="record_date", period="18 months")
    assert by_date.until(date(2024, 8, 31)) == date(2026, 2, 28)
    assert by_date.cutoff(date(2026, 2, 28)) == date(2024, 8, 28)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"period": "forever"}, "period 'forever' is not understood"),
        ({"action": "anonymise"}, "needs 'fields'"),
        ({"fields": ["phone"]}, "only used with action 'anonymise'"),
    ],
)
def test_rule_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _rule(**overrides)


def test_a_connector_that_cannot_apply_rules_refuses_them() -> None:
    system = System(
        name="chat",
        kind="chat",
        connector="memory",
        data_categories=["chats"],
        purposes=["support"],
        legal_basis=["contract"],
        profiling="none",
        retention="1 year",
        retention_rules=[_rule(collection="chats")],
    )
    with pytest.raises(ConnectorConfigError, match="cannot apply them"):
        registry.build(system)
