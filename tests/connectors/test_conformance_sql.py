"""The conformance suite against the SQL connector on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from connectors.conformance import ConnectorConformance, Seeded, Target
from connectors.sql import SQLConnector
from schemas.events import Identifier, Subject

SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value="Pieter.Post@example.nl"),
        Identifier(type="phone", value="+31 6 1111 2222"),
    ]
)

_SCHEMA = [
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(200), email VARCHAR(200),"
    " phone VARCHAR(40))",
    "CREATE TABLE tickets (id INTEGER PRIMARY KEY, requester VARCHAR(200), subject VARCHAR(200))",
]
_ROWS = [
    "INSERT INTO customers VALUES (1, 'Pieter Post', 'pieter.post@example.nl', '+31611112222')",
    "INSERT INTO customers VALUES (2, 'Other Person', 'other@example.nl', '+31699998888')",
    "INSERT INTO tickets VALUES (1, 'PIETER.POST@example.nl', 'Pakket kwijt')",
    "INSERT INTO tickets VALUES (2, 'pieter.post@example.nl', 'Retour')",
    "INSERT INTO tickets VALUES (3, 'other@example.nl', 'Vraag')",
]
SETTINGS: dict[str, Any] = {
    "tables": [
        {"name": "tickets", "identity": {"email": "requester"}},
        {"name": "customers", "identity": {"email": "email", "phone": "phone"}},
    ]
}


class SQLTarget(Target):
    """A database with one subject (a customer with two tickets) among other people."""

    name = "shop_db"

    def __init__(self, url: str, wrong_password_url: str | None = None) -> None:
        self.url = url
        self.wrong_password_url = wrong_password_url

    def connector(self) -> SQLConnector:
        return SQLConnector(self.name, {"url": self.url, **SETTINGS})

    def bad_credentials(self) -> SQLConnector | None:
        if self.wrong_password_url is None:
            return None
        return SQLConnector(self.name, {"url": self.wrong_password_url, **SETTINGS})

    def seed(self) -> Seeded:
        engine = create_engine(self.url)
        with engine.begin() as conn:
            for table in ("tickets", "customers"):
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
            for statement in _SCHEMA + _ROWS:
                conn.execute(text(statement))
        engine.dispose()
        return Seeded(
            SUBJECT,
            expected={"customers": 1, "tickets": 2},
            erased=3,
            personal_values=["Pieter Post"],
        )


class TestSQLiteConformance(ConnectorConformance):
    @pytest.fixture
    def target(self, tmp_path: Path) -> Target:
        return SQLTarget(f"sqlite:///{tmp_path / 'shop.db'}")


@pytest.mark.postgres
class TestPostgreSQLConformance(ConnectorConformance):
    @pytest.fixture
    def target(self, postgres_url: str) -> Target:
        return SQLTarget(postgres_url)


@pytest.mark.mariadb
class TestMariaDBConformance(ConnectorConformance):
    @pytest.fixture
    def target(self, mariadb_url: str) -> Target:
        wrong = make_url(mariadb_url).set(password="not-the-password")
        return SQLTarget(mariadb_url, wrong.render_as_string(hide_password=False))
