"""The SQL connector against SQLite and a real PostgreSQL server, with other people's rows."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, insert, select, text

from connectors.base import ConnectorConfigError, ConnectorError
from connectors.conformance import dispatched
from connectors.execute import perform
from connectors.fakes.shop_db import customers, metadata, newsletter, orders
from connectors.registry import connector_class
from connectors.sql import SQLConnector
from schemas.events import FieldChange, Identifier, OutcomeStatus, RequestType, Subject
from tests.connectors.databases import empty_database, fail_on_delete_from_customers, run

SYSTEM = "crm"
# Stored with other capitals than the request uses: matching must ignore case.
STORED_EMAIL = "Jan.Jansen@Example.com"
SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value="jan.jansen@example.com"),
        Identifier(type="customer_id", value="8675309"),
    ]
)
#: Everything about the subject that must never reach a log line or an error message.
PERSONAL = ["jan.jansen@example.com", "8675309", "Jansen", "+31612345678", "1980-05-17"]


def _customer(id_: int, name: str, email: str, phone: str | None) -> dict[str, Any]:
    return {
        "id": id_,
        "name": name,
        "email": email,
        "phone": phone,
        "birth_date": date(1980, 5, 17) if id_ == 8675309 else date(1975, 1, 2),
        "balance": Decimal("12.50"),
        "created_at": datetime(2024, 3, 1, 9, 30),
        "avatar": b"\x89PNG",
        "marketing_opt_in": True,
        "processing_restricted": False,
    }


def seed(engine: Engine) -> None:
    """The subject (8675309) and two other people, in three tables."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                _customer(8675309, "Jan Jansen", STORED_EMAIL, "+31612345678"),
                _customer(8675310, "Piet Pietersen", "piet@example.com", "+31600000002"),
                _customer(8675311, "Klaas Klaassen", "klaas@example.com", None),
            ],
        )
        conn.execute(
            insert(newsletter),
            [
                {"id": 1, "email": "JAN.JANSEN@example.com", "newsletter": True},
                {"id": 2, "email": "piet@example.com", "newsletter": True},
            ],
        )
        conn.execute(
            insert(orders),
            [
                {"id": 10, "customer_id": 8675309, "total": Decimal("99.95")},
                {"id": 11, "customer_id": 8675309, "total": Decimal("5.00")},
                {"id": 12, "customer_id": 8675310, "total": Decimal("42.00")},
            ],
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL."""
    yield from empty_database(request, tmp_path / "crm.db")


def tables(**customers_settings: Any) -> list[dict[str, Any]]:
    """The register's tables, children first; keyword arguments change the customers entry."""
    return [
        {"name": "orders", "identity": {"customer_id": "customer_id"}},
        {
            "name": "newsletter_subscriptions",
            "collection": "newsletter",
            "identity": {"email": "email"},
            "consent_withdrawal": {"newsletter": False},
        },
        {
            "name": "customers",
            "identity": {"email": "email", "phone": "phone", "customer_id": "id"},
            "restriction": {"processing_restricted": True},
            "objection": {"marketing_opt_in": False},
            **customers_settings,
        },
    ]


@pytest.fixture
def crm(db: Engine, db_url: str) -> Iterator[SQLConnector]:
    """The connector on the seeded database with the default tables."""
    connector = SQLConnector(SYSTEM, {"url": db_url, "tables": tables()})
    yield connector
    run(connector.aclose())


def ids(engine: Engine, table: Table) -> list[int]:
    """Primary keys left in a table, read directly."""
    with engine.connect() as conn:
        return sorted(conn.scalars(select(table.c.id)))


# -- access ---------------------------------------------------------------------------------


def test_access_finds_exactly_the_subjects_rows_with_provenance(crm: SQLConnector) -> None:
    result = run(crm.access(SUBJECT))

    assert result.status == OutcomeStatus.COMPLETED
    assert result.counts.found == 4
    by_collection: dict[str, list[dict[str, Any]]] = {}
    for record in result.records:
        by_collection.setdefault(record.collection, []).append(record.data)
    assert sorted(by_collection) == ["customers", "newsletter", "orders"]
    assert [o["id"] for o in by_collection["orders"]] == [10, 11]
    assert [n["id"] for n in by_collection["newsletter"]] == [1]
    [customer] = by_collection["customers"]
    assert customer["email"] == STORED_EMAIL
    # Dates, decimals and bytes arrive JSON-safe, without losing digits.
    assert customer["birth_date"] == "1980-05-17"
    assert customer["created_at"] == "2024-03-01T09:30:00"
    assert customer["balance"] == "12.50"
    assert customer["avatar"] == "iVBORw=="
    assert by_collection["orders"][0]["total"] == "99.95"
    json.dumps([r.data for r in result.records])


def test_portability_and_concurrent_calls_share_one_engine(crm: SQLConnector) -> None:
    async def many() -> list[int]:
        results = await asyncio.gather(*(crm.portability(SUBJECT) for _ in range(8)))
        return [r.counts.found for r in results]

    assert run(many()) == [4] * 8


def test_a_subject_without_a_matching_identifier_type_is_not_found(crm: SQLConnector) -> None:
    stranger = Subject(identifiers=[Identifier(type="account_id", value="A-1")])
    assert run(crm.access(stranger)).status == OutcomeStatus.NOT_FOUND
    # A customer number that cannot be an integer matches nothing instead of failing.
    odd = Subject(identifiers=[Identifier(type="customer_id", value="not-a-number")])
    assert run(crm.access(odd)).status == OutcomeStatus.NOT_FOUND


# -- erasure --------------------------------------------------------------------------------


def test_erasure_deletes_the_subjects_rows_and_no_one_elses(crm: SQLConnector, db: Engine) -> None:
    result = run(crm.erase(SUBJECT))

    assert result.status == OutcomeStatus.COMPLETED
    assert (result.counts.deleted, result.counts.anonymised) == (4, 0)
    assert ids(db, customers) == [8675310, 8675311]
    assert ids(db, orders) == [12]
    assert ids(db, newsletter) == [2]
    # Tasks arrive at least once: a second erasure is safe and says so.
    assert run(crm.erase(SUBJECT)).status == OutcomeStatus.NOT_FOUND
    assert run(crm.access(SUBJECT)).status == OutcomeStatus.NOT_FOUND


def test_anonymise_overwrites_the_configured_columns_and_keeps_the_row(
    db: Engine, db_url: str
) -> None:
    anonymise = {"name": None, "email": None, "phone": None, "birth_date": None}
    settings = {"url": db_url, "tables": tables(erasure="anonymise", anonymise=anonymise)}
    connector = SQLConnector(SYSTEM, settings)

    result = run(connector.erase(SUBJECT))

    assert (result.counts.deleted, result.counts.anonymised) == (3, 1)
    assert ids(db, customers) == [8675309, 8675310, 8675311]
    with db.connect() as conn:
        row = conn.execute(select(customers).where(customers.c.id == 8675309)).one()
        other = conn.execute(select(customers).where(customers.c.id == 8675310)).one()
    assert (row.name, row.email, row.phone, row.birth_date) == (None, None, None, None)
    assert row.balance == Decimal("12.50")
    assert other.name == "Piet Pietersen"
    # Matched again by customer number, but there is nothing left to anonymise.
    assert run(connector.erase(SUBJECT)).status == OutcomeStatus.NOT_FOUND
    run(connector.aclose())


@pytest.mark.parametrize("break_it", ["trigger", "dropped_column"])
def test_a_failure_mid_erasure_rolls_back_every_table(
    crm: SQLConnector, db: Engine, break_it: str
) -> None:
    run(crm.access(SUBJECT))  # reflect the tables before the schema changes under us
    if break_it == "trigger":
        fail_on_delete_from_customers(db)
        failing = "customers"
    else:
        with db.begin() as conn:
            conn.execute(text("ALTER TABLE newsletter_subscriptions DROP COLUMN email"))
        failing = "newsletter_subscriptions"

    with pytest.raises(ConnectorError) as raised:
        run(crm.erase(SUBJECT))

    assert raised.value.retryable
    assert f"table {failing!r}" in str(raised.value)
    assert repr(SYSTEM) in str(raised.value)
    # The orders were deleted first, then rolled back with the rest.
    assert ids(db, orders) == [10, 11, 12]
    assert ids(db, customers) == [8675309, 8675310, 8675311]
    if break_it == "dropped_column":
        # The next attempt reflects again and names what must change in the register.
        with pytest.raises(ConnectorConfigError, match="no column 'email'"):
            run(crm.erase(SUBJECT))


# -- rectification -------------------------------------------------------------------------


def test_rectification_updates_the_field_and_names_unknown_fields(
    crm: SQLConnector, db: Engine
) -> None:
    changes = [
        FieldChange(field="phone", value="+31687654321"),
        FieldChange(field="birth_date", value="1981-01-02"),
        FieldChange(field="shoe_size", value=44),
    ]

    result = run(crm.rectify(SUBJECT, changes))

    assert result.status == OutcomeStatus.COMPLETED
    assert result.counts.updated == 1
    assert result.reason is not None and "shoe_size" in result.reason
    with db.connect() as conn:
        rows = conn.execute(select(customers.c.id, customers.c.phone, customers.c.birth_date))
        by_id = {r.id: (r.phone, r.birth_date) for r in rows}
    assert by_id[8675309] == ("+31687654321", date(1981, 1, 2))
    assert by_id[8675310] == ("+31600000002", date(1975, 1, 2))


def test_rectification_of_fields_no_table_has_is_manual(crm: SQLConnector) -> None:
    result = run(crm.rectify(SUBJECT, [FieldChange(field="shoe_size", value=44)]))

    assert result.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert result.instructions is not None and "shoe_size" in result.instructions


def test_rectification_with_a_value_that_does_not_fit_names_the_field(
    crm: SQLConnector,
) -> None:
    with pytest.raises(ConnectorError, match="birth_date") as raised:
        run(crm.rectify(SUBJECT, [FieldChange(field="birth_date", value="next tuesday")]))
    assert "next tuesday" not in str(raised.value)
    assert not raised.value.retryable


# -- restriction, objection, consent withdrawal ---------------------------------------------


def test_restriction_objection_and_consent_withdrawal_update_the_configured_columns(
    crm: SQLConnector, db: Engine
) -> None:
    restricted = run(crm.restrict(SUBJECT))
    objected = run(crm.object(SUBJECT))
    withdrawn = run(crm.withdraw_consent(SUBJECT))

    assert [r.counts.suppressed for r in (restricted, objected, withdrawn)] == [1, 1, 1]
    with db.connect() as conn:
        flags = {
            r.id: (r.processing_restricted, r.marketing_opt_in)
            for r in conn.execute(select(customers))
        }
        letters = {r.id: r.newsletter for r in conn.execute(select(newsletter))}
    assert flags == {8675309: (True, False), 8675310: (False, True), 8675311: (False, True)}
    assert letters == {1: False, 2: True}


def test_rights_without_configured_updates_are_manual(db: Engine, db_url: str) -> None:
    bare = [{"name": "customers", "identity": {"email": "email"}}]
    connector = SQLConnector(SYSTEM, {"url": db_url, "tables": bare})

    for call in (connector.restrict, connector.object, connector.withdraw_consent):
        result = run(call(SUBJECT))
        assert result.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
        assert result.instructions is not None and "customers" in result.instructions
    assert "restriction: {column: value}" in (run(connector.restrict(SUBJECT)).instructions or "")
    run(connector.aclose())


# -- through the runtime --------------------------------------------------------------------


def test_tasks_run_through_perform_to_outcomes(db: Engine, db_url: str) -> None:
    connector = connector_class("sql")(SYSTEM, {"url": db_url, "tables": tables()})

    async def scenario() -> list[Any]:
        outcomes = [
            await perform(connector, dispatched(SYSTEM, RequestType.ACCESS, SUBJECT)),
            await perform(connector, dispatched(SYSTEM, RequestType.ERASURE, SUBJECT)),
            await perform(connector, dispatched(SYSTEM, RequestType.ERASURE, SUBJECT, attempt=2)),
        ]
        await connector.aclose()
        return outcomes

    access, erasure, again = run(scenario())

    assert access.status == OutcomeStatus.COMPLETED
    assert {r.collection for r in access.records} == {"customers", "newsletter", "orders"}
    assert erasure.status == OutcomeStatus.COMPLETED and erasure.counts.deleted == 4
    assert again.status == OutcomeStatus.NOT_FOUND
    assert ids(db, customers) == [8675310, 8675311]


def test_a_failed_erasure_becomes_a_retryable_outcome(crm: SQLConnector, db: Engine) -> None:
    fail_on_delete_from_customers(db)

    outcome = run(perform(crm, dispatched(SYSTEM, RequestType.ERASURE, SUBJECT)))

    assert outcome.status == OutcomeStatus.FAILED and outcome.retryable
    assert outcome.reason is not None and "customers" in outcome.reason


# -- settings and connection errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"name": "customerz"}, ["'customerz'", "does not exist"]),
        ({"identity": {"email": "mail"}}, ["'customers'", "'mail'", "identity"]),
        ({"restriction": {"restricted": True}}, ["'customers'", "'restricted'", "restriction"]),
        ({"objection": {"birth_date": "soon"}}, ["'customers'", "'birth_date'", "objection"]),
    ],
)
def test_settings_that_do_not_fit_the_database_name_table_and_column(
    db: Engine, db_url: str, change: dict[str, Any], named: list[str]
) -> None:
    connector = SQLConnector(SYSTEM, {"url": db_url, "tables": tables(**change)})

    with pytest.raises(ConnectorConfigError) as raised:
        run(connector.access(SUBJECT))

    assert not raised.value.retryable
    assert repr(SYSTEM) in str(raised.value)
    for part in named:
        assert part in str(raised.value)
    run(connector.aclose())


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"url": "not a url", "tables": tables()}, "url"),
        ({"url": "sqlite://", "tables": tables(name="customers; drop")}, "tables.2.name"),
        ({"url": "sqlite://", "tables": tables(erasure="anonymise")}, "'anonymise'"),
        ({"url": "sqlite://", "tables": tables(anonymise={"name": None})}, "erasure: anonymise"),
        ({"url": "sqlite://", "tables": [*tables(), *tables()]}, "listed twice"),
        ({"url": "sqlite://", "tables": [{"name": "t", "identity": {}}]}, "identity"),
    ],
)
def test_invalid_settings_are_refused_when_the_connector_is_built(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConnectorConfigError, match=named.replace(".", r"\.")) as raised:
        SQLConnector(SYSTEM, settings)
    assert repr(SYSTEM) in str(raised.value)


def test_an_unknown_dialect_is_a_configuration_error() -> None:
    connector = SQLConnector(SYSTEM, {"url": "nosuchdb://host/db", "tables": tables()})
    with pytest.raises(ConnectorConfigError, match="database URL"):
        run(connector.access(SUBJECT))


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_unreachable_database_is_a_retryable_error(kind: str, tmp_path: Any) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/no/such/dir/crm.db"
    else:
        # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
        url = "postgresql+psycopg://postgres@127.0.0.1:9/crm?connect_timeout=5"
    connector = SQLConnector(SYSTEM, {"url": url, "tables": tables()})

    with pytest.raises(ConnectorError) as raised:
        run(connector.access(SUBJECT))

    assert raised.value.retryable
    assert not isinstance(raised.value, ConnectorConfigError)
    run(connector.aclose())


# -- personal data stays out of logs and errors ---------------------------------------------


def test_no_personal_data_in_logs_or_error_messages(
    crm: SQLConnector, db: Engine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy keeps its loggers at WARNING unless told; an operator debugging SQL says so.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    messages: list[str] = []

    run(crm.access(SUBJECT))
    run(crm.rectify(SUBJECT, [FieldChange(field="phone", value="+31612345678")]))
    run(crm.restrict(SUBJECT))
    with pytest.raises(ConnectorError) as raised:
        run(crm.rectify(SUBJECT, [FieldChange(field="birth_date", value="1980-05-17x")]))
    messages.append(str(raised.value))
    fail_on_delete_from_customers(db)
    outcome = run(perform(crm, dispatched(SYSTEM, RequestType.ERASURE, SUBJECT)))
    messages.append(outcome.reason or "")
    on_table = " ON customers" if db.dialect.name == "postgresql" else ""
    with db.begin() as conn:
        conn.execute(text(f"DROP TRIGGER keep_customers{on_table}"))
    # Without `orders` in the register, PostgreSQL refuses to delete the customer and its
    # error detail quotes the customer number ("Key (id)=(...) is still referenced").
    customers_only = SQLConnector(SYSTEM, {"url": db_url, "tables": tables()[2:]})
    try:
        run(customers_only.erase(SUBJECT))
    except ConnectorError as exc:
        messages.append(str(exc))
    run(customers_only.aclose())

    logged = [r.getMessage() for r in caplog.records]
    # SQLAlchemy logged its statements (so the check has teeth), without values or rows.
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    for text_ in logged + messages:
        for value in PERSONAL:
            assert value.lower() not in text_.lower(), (value, text_)
