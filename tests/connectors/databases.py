"""Databases for the SQL connector tests: a SQLite file, or a fresh database on a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

T = TypeVar("T")

#: The session fixture of each kind of server (tests/fixtures_*.py).
_SERVERS = {"postgres": "postgres_url", "mariadb": "mariadb_url"}


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to the end (no pytest-asyncio in this project)."""
    return asyncio.run(coroutine)


def empty_database(request: pytest.FixtureRequest, sqlite_file: Path) -> Iterator[str]:
    """The URL of an empty database of the kind `request.param` names ("sqlite", "postgres",
    "mariadb"); one on a server is created for the test and dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{sqlite_file}"
        return
    server = make_url(request.getfixturevalue(_SERVERS[request.param]))
    postgres = server.get_backend_name() == "postgresql"
    admin = create_engine(
        server.set(database="postgres" if postgres else server.database),
        isolation_level="AUTOCOMMIT",
    )
    name = f"t_{uuid4().hex[:12]}"  # lower case: no quoting on any server
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name}{' WITH (FORCE)' if postgres else ''}"))
    admin.dispose()


def fail_on_delete_from_customers(engine: Engine) -> None:
    """A trigger that makes deleting a customer fail, after other tables were changed."""
    statements = {
        "sqlite": [
            "CREATE TRIGGER keep_customers BEFORE DELETE ON customers "
            "BEGIN SELECT RAISE(ABORT, 'customers are kept'); END"
        ],
        "postgresql": [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'customers are kept'; END $$",
            "CREATE TRIGGER keep_customers BEFORE DELETE ON customers "
            "FOR EACH ROW EXECUTE FUNCTION refuse()",
        ],
        "mysql": [
            "CREATE TRIGGER keep_customers BEFORE DELETE ON customers FOR EACH ROW "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'customers are kept'"
        ],
    }
    with engine.begin() as conn:
        for statement in statements[engine.dialect.name]:
            conn.execute(text(statement))
