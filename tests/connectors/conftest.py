"""Fixtures of the connector tests: the vendor fake a test module names (`FAKE`), reset for
each test; the database a SQL test module seeds (`seed(engine)` at its `db_url`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from connectors.fakes.server import FakeServer


@pytest.fixture(scope="module")
def fake(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    """The fake the test module names in `FAKE` (its class), serving for the whole module."""
    with request.module.FAKE() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> None:
    """A test that uses the fake starts at the vendor's own limits, faults off, log empty."""
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset_faults()


@pytest.fixture
def fresh(fake: FakeServer) -> FakeServer:
    """The module's fake, seeded afresh (`reset()`), for a vendor-specific test."""
    fake.reset()  # type: ignore[attr-defined]  # every seeded vendor fake has one
    return fake


@pytest.fixture
def db(db_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The database at the module's `db_url`, filled by the module's `seed(engine)`."""
    engine = create_engine(db_url)
    request.module.seed(engine)
    yield engine
    engine.dispose()
