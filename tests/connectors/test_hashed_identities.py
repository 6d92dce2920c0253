"""Hashed identities (OpenDSR `sha256`, `md5`, `sha1`): connectors that can compare them match
the subject by hashing their own stored values; the others never see them.

A processor must assist the controller with requests (Art. 28(3)(e) GDPR) also when the
controller sends only a digest of the identifier; a digest must never be mistaken for the
identifier itself (a vendor searched for the hex string would answer "not found").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine

from connectors.base import Connector, Result
from connectors.execute import perform
from connectors.memory import MemoryConnector
from connectors.sql import SQLConnector
from schemas.events import (
    Identifier,
    OutcomeStatus,
    RequestType,
    Subject,
    TaskDispatched,
)
from tests.connectors.databases import empty_database, run

EMAIL = "Jan.Jansen@Example.nl"
PHONE = "+31 (6) 1234-5678"


def digest(algorithm: str, value: str) -> str:
    return hashlib.new(algorithm, value.encode()).hexdigest()


def hashed(identifier_type: str, algorithm: str, normalised: str) -> Subject:
    value = digest(algorithm, normalised)
    return Subject(identifiers=[Identifier(type=identifier_type, value=value, format=algorithm)])


# -- the model ------------------------------------------------------------------------------


def test_a_hashed_identifier_is_lower_case_hex_of_the_right_length() -> None:
    upper = digest("sha256", "x").upper()
    assert Identifier(type="email", value=upper, format="sha256").value == upper.lower()
    for algorithm, length in Identifier.HEX_LENGTHS.items():
        with pytest.raises(ValidationError, match=f"{length} hexadecimal characters"):
            Identifier(type="email", value="abc", format=algorithm)
    with pytest.raises(ValidationError):
        Identifier(type="email", value="jan@example.nl", format="sha1")


def test_a_hashed_identifier_skips_raw_checks_and_its_error_never_quotes_the_value() -> None:
    # 64 hex digits are no e-mail address and no BSN: only the raw form is checked for those.
    Identifier(type="email", value=digest("sha256", "x"), format="sha256")
    with pytest.raises(ValidationError) as raised:
        Identifier(type="email", value="g" * 64, format="sha256")
    assert "g" * 64 not in str(raised.value.errors(include_input=False))


def test_hashes_are_of_the_value_normalised_as_a_raw_identifier() -> None:
    assert Identifier.normalise("email", f"  {EMAIL} ") == EMAIL.lower()
    assert Identifier.normalise("phone", PHONE) == "+31612345678"
    assert Identifier.digest("md5", "a") == hashlib.md5(b"a").hexdigest()


# -- memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "md5", "sha1"])
def test_memory_connector_matches_a_hashed_email(algorithm: str) -> None:
    records = [
        {"collection": "customers", "data": {"email": EMAIL, "n": 1}},
        {"collection": "customers", "data": {"email": "piet@example.nl", "n": 2}},
    ]
    connector = MemoryConnector("crm", {"records": records})
    subject = hashed("email", algorithm, EMAIL.lower())

    found = run(connector.access(subject))
    assert [r.data["n"] for r in found.records] == [1]
    assert run(connector.erase(subject)).counts.deleted == 1
    assert run(connector.access(subject)).status == OutcomeStatus.NOT_FOUND


def test_memory_connector_does_not_match_a_hash_of_the_unnormalised_value() -> None:
    connector = MemoryConnector("crm", {"records": [{"collection": "c", "data": {"e": EMAIL}}]})
    assert run(connector.access(hashed("email", "sha256", EMAIL))).status == OutcomeStatus.NOT_FOUND


# -- SQL ------------------------------------------------------------------------------------

metadata = MetaData()
customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(200)),
    Column("phone", String(40)),
    Column("number", Integer),
)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from empty_database(request, tmp_path / "crm.db")


@pytest.fixture
def crm(db_url: str) -> Iterator[tuple[SQLConnector, Engine]]:
    engine = create_engine(db_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            customers.insert(),
            [
                {"id": 1, "email": f" {EMAIL}", "phone": PHONE, "number": 4711},
                {"id": 2, "email": "piet@example.nl", "phone": "+31687654321", "number": 42},
            ],
        )
    identity = {"email": "email", "phone": "phone", "customer_id": "number"}
    connector = SQLConnector(
        "crm", {"url": db_url, "tables": [{"name": "customers", "identity": identity}]}
    )
    yield connector, engine
    run(connector.aclose())
    engine.dispose()


@pytest.mark.parametrize(
    ("identifier_type", "algorithm", "normalised"),
    [
        ("email", "sha256", EMAIL.lower()),
        ("email", "md5", EMAIL.lower()),
        ("phone", "sha256", "+31612345678"),
        ("customer_id", "sha256", "4711"),
    ],
)
def test_sql_connector_matches_hashed_identities_in_the_database(
    crm: tuple[SQLConnector, Engine], identifier_type: str, algorithm: str, normalised: str
) -> None:
    connector, _ = crm
    subject = hashed(identifier_type, algorithm, normalised)
    found = run(connector.access(subject))
    assert [r.data["id"] for r in found.records] == [1]
    assert run(connector.erase(subject)).counts.deleted == 1
    assert run(connector.access(subject)).status == OutcomeStatus.NOT_FOUND


def test_sql_connector_sha1_on_sqlite_and_mariadb(crm: tuple[SQLConnector, Engine]) -> None:
    connector, engine = crm
    if engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL computes SHA-1 only with the pgcrypto extension (documented)")
    found = run(connector.access(hashed("email", "sha1", EMAIL.lower())))
    assert [r.data["id"] for r in found.records] == [1]


def test_sql_connector_never_compares_a_digest_as_a_raw_value(
    crm: tuple[SQLConnector, Engine],
) -> None:
    connector, engine = crm
    value = digest("sha256", "piet@example.nl")
    with engine.begin() as conn:  # a row that holds the hex string itself
        conn.execute(customers.insert(), [{"id": 3, "email": value, "number": 7}])
    found = run(connector.access(hashed("email", "sha256", "piet@example.nl")))
    assert [r.data["id"] for r in found.records] == [2]


# -- connectors that cannot compare hashes --------------------------------------------------


class _RawOnly(Connector):
    """Records every subject it is given; matches raw values only (the default)."""

    capabilities: ClassVar[frozenset[RequestType]] = frozenset({RequestType.ACCESS})
    seen: ClassVar[list[Subject]] = []

    async def access(self, subject: Subject) -> Result:
        self.seen.append(subject)
        return Result.not_found()


def _task(identifiers: list[Identifier]) -> TaskDispatched:
    data: dict[str, Any] = {
        "request_id": "req-hashed-1",
        "task_id": "req-hashed-1/vendor",
        "system": "vendor",
        "action": "access",
        "attempt": 1,
        "subject": Subject(identifiers=identifiers),
        "dispatched_at": datetime.now(UTC),
        "deadline": datetime.now(UTC),
    }
    fields = TaskDispatched.model_fields
    return TaskDispatched.model_validate({k: v for k, v in data.items() if k in fields})


def test_a_connector_that_cannot_compare_hashes_gets_a_manual_task_naming_the_formats() -> None:
    _RawOnly.seen.clear()
    only_hashed = [Identifier(type="email", value=digest("sha256", "x"), format="sha256")]
    outcome = run(perform(_RawOnly("vendor"), _task(only_hashed)))
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert "email (sha256)" in (outcome.instructions or "")
    assert _RawOnly.seen == []  # the digest never reached it as if it were an address


def test_a_connector_that_cannot_compare_hashes_gets_the_raw_identifiers_only() -> None:
    _RawOnly.seen.clear()
    both = [
        Identifier(type="email", value=digest("sha256", "x"), format="sha256"),
        Identifier(type="customer_id", value="4711"),
    ]
    outcome = run(perform(_RawOnly("vendor"), _task(both)))
    assert outcome.status == OutcomeStatus.NOT_FOUND
    assert [(i.type, i.format) for i in _RawOnly.seen[0].identifiers] == [("customer_id", "raw")]
