"""A web shop's database for SQL connector tests and benchmarks: customers, orders, lines.

The tables have real foreign keys, so an erasure in the wrong order fails: order lines reference
orders, orders reference customers. Lines also reference products, which are nobody's personal
data, and a customer may reference the customer who referred them: a link a connector must not
follow, or erasing one person would erase another. Customers have columns of every kind a
connector must export JSON-safe (dates, decimals, bytes, booleans) and the flags restriction and
objection set; newsletter subscriptions name their subscriber only by email address.
`RELATIONS` declares customers, orders and lines to the SQL connector (listed parents first: the
connector orders the erasure itself).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
)

metadata = MetaData()
customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100)),
    Column("email", String(200)),
    Column("phone", String(30)),
    Column("city", String(100)),
    Column("birth_date", Date),
    Column("balance", Numeric(10, 2)),
    Column("created_at", DateTime),
    Column("avatar", LargeBinary),
    Column("marketing_opt_in", Boolean),
    Column("processing_restricted", Boolean),
    # Another person's row may name the subject: following it would erase that person.
    Column("referred_by", Integer, ForeignKey("customers.id", ondelete="SET NULL")),
)
newsletter = Table(
    "newsletter_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(200)),
    Column("newsletter", Boolean),
)
products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("title", String(100)),
)
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("total", Numeric(10, 2)),
)
order_lines = Table(
    "order_lines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
    Column("product_id", Integer, ForeignKey("products.id"), nullable=False),
    Column("quantity", Integer),
    Column("description", String(200)),
)
#: The tables of orders, parents before the tables that reference them.
TABLES = (customers, products, orders, order_lines)

#: The SQL connector's `tables` setting for this schema: found by email or customer number.
RELATIONS: list[dict[str, Any]] = [
    {"name": "customers", "identity": {"email": "email", "customer_id": "id"}},
    {"name": "orders", "parent": {"table": "customers", "columns": {"customer_id": "id"}}},
    {"name": "order_lines", "parent": {"table": "orders", "columns": {"order_id": "id"}}},
]

__all__ = [
    "RELATIONS",
    "TABLES",
    "customers",
    "metadata",
    "newsletter",
    "order_lines",
    "orders",
    "products",
]
