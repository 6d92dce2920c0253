"""Linked tables (customers -> orders -> order_lines) on SQLite, PostgreSQL and MariaDB.

Every database has real foreign keys, so an erasure in the wrong order fails, and rows of
another customer that must survive every erasure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text

from connectors.base import ConnectorConfigError, ConnectorError
from connectors.fakes.shop_db import (
    RELATIONS,
    TABLES,
    customers,
    metadata,
    order_lines,
    orders,
    products,
)
from connectors.sql import SQLConnector
from schemas.events import Identifier, OutcomeStatus, Subject
from tests.connectors.databases import empty_database, fail_on_delete_from_customers, run

SYSTEM = "shop"
SALT = "pepper-for-tests-only"
STORED_EMAIL = "Jan.Jansen@Example.com"  # other capitals than the request: matching ignores case
SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value="jan.jansen@example.com"),
        Identifier(type="customer_id", value="1"),
    ]
)
BY_EMAIL = Subject(identifiers=[Identifier(type="email", value="jan.jansen@example.com")])

#: The primary keys in each table before anything is erased; the subject's are 1, 10-11, 100-102.
SEEDED = {
    "customers": [1, 2],
    "products": [7],
    "orders": [10, 11, 12],
    "order_lines": [100, 101, 102, 103],
}


def seed(engine: Engine) -> None:
    """The subject (customer 1: two orders, three lines) and customer 2, whom 1 referred."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                {"id": 1, "name": "Jan Jansen", "email": STORED_EMAIL, "city": "Utrecht"},
                {"id": 2, "name": "Piet Pietersen", "email": "piet@example.com", "city": "Ede"},
            ],
        )
        conn.execute(customers.update().where(customers.c.id == 2).values(referred_by=1))
        conn.execute(insert(products), [{"id": 7, "title": "Kaas"}])
        conn.execute(
            insert(orders),
            [
                {"id": 10, "customer_id": 1, "total": Decimal("9.95")},
                {"id": 11, "customer_id": 1, "total": Decimal("5.00")},
                {"id": 12, "customer_id": 2, "total": Decimal("42.00")},
            ],
        )
        conn.execute(
            insert(order_lines),
            [
                {"id": 100, "order_id": 10, "product_id": 7, "quantity": 1},
                {"id": 101, "order_id": 10, "product_id": 7, "quantity": 2},
                {"id": 102, "order_id": 11, "product_id": 7, "quantity": 3},
                {"id": 103, "order_id": 12, "product_id": 7, "quantity": 4},
            ],
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each kind of server."""
    yield from empty_database(request, tmp_path / "shop.db")


def connector(url: str, tables: list[dict[str, Any]], **settings: Any) -> SQLConnector:
    """The connector on `url` with these tables."""
    return SQLConnector(SYSTEM, {"url": url, "tables": tables, **settings})


def left(engine: Engine) -> dict[str, list[int]]:
    """Primary keys left in every table, read directly."""
    with engine.connect() as conn:
        return {t.name: sorted(conn.scalars(select(t.c.id))) for t in TABLES}


def found(records: list[Any]) -> dict[str, list[int]]:
    """Exported records as collection -> ids."""
    by_collection: dict[str, list[int]] = {}
    for record in records:
        by_collection.setdefault(record.collection, []).append(record.data["id"])
    return by_collection


# -- access ---------------------------------------------------------------------------------


def test_access_returns_the_subjects_linked_rows_and_nobody_elses(db: Engine, db_url: str) -> None:
    shop = connector(db_url, RELATIONS)

    result = run(shop.access(BY_EMAIL))
    streamed = list(shop.iter_access(BY_EMAIL))
    run(shop.aclose())

    assert result.status == OutcomeStatus.COMPLETED
    assert result.counts.found == 6
    # Parents first, each table by primary key; collection names give the provenance.
    assert found(result.records) == {
        "customers": [1],
        "orders": [10, 11],
        "order_lines": [100, 101, 102],
    }
    assert list(found(result.records)) == ["customers", "orders", "order_lines"]
    assert result.records[0].data["email"] == STORED_EMAIL
    assert streamed == result.records


def test_following_foreign_keys_finds_the_declared_tables(db: Engine, db_url: str) -> None:
    tables = [{**RELATIONS[0], "collection": "klanten"}]
    shop = connector(db_url, tables, follow_foreign_keys=True)

    records = run(shop.access(SUBJECT)).records
    run(shop.aclose())

    # Not products (referenced, not referencing) nor customer 2 (referred_by: a cycle).
    assert found(records) == {"klanten": [1], "orders": [10, 11], "order_lines": [100, 101, 102]}


# -- erasure --------------------------------------------------------------------------------


def test_erasure_deletes_children_first_and_leaves_others_intact(db: Engine, db_url: str) -> None:
    # The foreign keys are real: without the linked tables, deleting the customer fails.
    customers_only = connector(db_url, RELATIONS[:1])
    with pytest.raises(ConnectorError, match="'customers'"):
        run(customers_only.erase(SUBJECT))
    run(customers_only.aclose())
    assert left(db) == SEEDED
    shop = connector(db_url, RELATIONS)

    result = run(shop.erase(SUBJECT))

    assert result.status == OutcomeStatus.COMPLETED
    assert (result.counts.deleted, result.counts.anonymised) == (6, 0)
    assert left(db) == {
        "customers": [2],
        "products": [7],
        "orders": [12],
        "order_lines": [103],
    }
    with db.connect() as conn:
        # The other customer's reference to the subject is cut by the database (SET NULL).
        assert conn.scalar(select(customers.c.referred_by).where(customers.c.id == 2)) is None
    assert run(shop.erase(SUBJECT)).status == OutcomeStatus.NOT_FOUND
    run(shop.aclose())


def test_discovered_tables_are_erased_too(db: Engine, db_url: str) -> None:
    shop = connector(db_url, RELATIONS[:1], follow_foreign_keys=True)

    result = run(shop.erase(BY_EMAIL))
    run(shop.aclose())

    assert result.counts.deleted == 6
    assert left(db) == {"customers": [2], "products": [7], "orders": [12], "order_lines": [103]}


def test_masking_strategies_null_fixed_and_salted_hash(db: Engine, db_url: str) -> None:
    masked = {
        **RELATIONS[0],
        "erasure": "anonymise",
        "mask": {"email": "hash", "name": None, "city": {"value": "erased"}},
    }
    shop = connector(db_url, [masked, *RELATIONS[1:]], hash_salt=SALT)

    result = run(shop.erase(SUBJECT))

    assert (result.counts.deleted, result.counts.anonymised) == (5, 1)
    with db.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(customers))}
    subject, other = rows[1], rows[2]
    assert (subject.name, subject.city) == (None, "erased")
    assert subject.email == hashlib.sha256((SALT + STORED_EMAIL).encode()).hexdigest()
    assert (other.name, other.email, other.city) == ("Piet Pietersen", "piet@example.com", "Ede")
    assert left(db)["orders"] == [12]
    # Found again by customer number, but already masked: the hash is not hashed again.
    assert run(shop.erase(SUBJECT)).status == OutcomeStatus.NOT_FOUND
    with db.connect() as conn:
        assert conn.scalar(select(customers.c.email).where(customers.c.id == 1)) == subject.email
    run(shop.aclose())


def test_a_failure_mid_erasure_leaves_all_data_untouched(db: Engine, db_url: str) -> None:
    shop = connector(db_url, RELATIONS)
    fail_on_delete_from_customers(db)

    with pytest.raises(ConnectorError) as raised:
        run(shop.erase(SUBJECT))
    run(shop.aclose())

    assert raised.value.retryable
    assert "table 'customers'" in str(raised.value)
    for value in ("jan.jansen", "Jansen", STORED_EMAIL):
        assert value.lower() not in str(raised.value).lower()
    # Lines and orders were deleted before the customer failed: all rolled back.
    assert left(db) == SEEDED


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tables", "settings", "named"),
    [
        (
            [
                {"name": "customers", "identity": {"email": "email"}},
                {"name": "orders", "parent": {"table": "order_lines", "columns": {"a": "b"}}},
                {"name": "order_lines", "parent": {"table": "orders", "columns": {"c": "d"}}},
            ],
            {},
            ["cycle", "orders -> order_lines -> orders"],
        ),
        (
            [{"name": "orders", "parent": {"table": "customers", "columns": {"a": "b"}}}],
            {},
            ["'orders'", "parent 'customers' is not in tables"],
        ),
        ([{"name": "orders"}], {}, ["'orders'", "'identity'", "'parent'"]),
        (
            [{"name": "customers", "identity": {"email": "email"}, "erasure": "anonymise"}],
            {},
            ["'mask' or 'anonymise'"],
        ),
        (
            [{**RELATIONS[0], "erasure": "anonymise", "mask": {"email": "hash"}}],
            {"hash_salt": "short"},
            ["hash_salt"],
        ),
    ],
)
def test_invalid_relations_and_masks_are_refused(
    tables: list[dict[str, Any]], settings: dict[str, Any], named: list[str]
) -> None:
    with pytest.raises(ConnectorConfigError) as raised:
        connector("sqlite://", tables, **settings)
    for part in named:
        assert part in str(raised.value)


def test_a_column_too_short_for_a_hash_is_a_configuration_error(db: Engine, db_url: str) -> None:
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite does not enforce column lengths")
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE products ADD COLUMN code VARCHAR(8)"))
    table = {"name": "products", "identity": {"account_id": "code"}, "erasure": "anonymise"}
    shop = connector(db_url, [{**table, "mask": {"code": "hash"}}], hash_salt=SALT)

    with pytest.raises(ConnectorConfigError, match=r"'code'.*64"):
        run(shop.access(SUBJECT))
    run(shop.aclose())
