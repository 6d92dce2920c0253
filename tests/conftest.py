"""Shared fixtures: a real embedded Kafka-protocol broker per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.intake.publishers import IssuedKey, create_publisher
from orchestrator.runtime.broker import EmbeddedBroker
from orchestrator.runtime.topics import ensure_topics
from schemas.kafka import KafkaSettings
from schemas.topics import DECISION_EVENT_TYPES, REQUEST_EVENT_TYPES

pytest_plugins = ["tests.fixtures_postgres", "tests.fixtures_mariadb"]


#: What a publisher without an `events` list could send before issue 16 (every request event
#: but officers' steps); the tests' publishers submit, verify and extend.
OLD_DEFAULT = [t for t in REQUEST_EVENT_TYPES if t not in DECISION_EVENT_TYPES]
#: The tests' own publisher also completes manual tasks (`dsr tasks complete` signs with it).
TESTS_EVENTS = [*OLD_DEFAULT, "dsr.task.outcome.v1"]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One fresh Tansu broker on a free loopback port for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def kafka_settings(broker: EmbeddedBroker) -> KafkaSettings:
    """Settings pointing at the session broker, with our topics created."""
    settings = KafkaSettings().for_embedded(broker.bootstrap)
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="session")
def test_publisher(tmp_path_factory: pytest.TempPathFactory) -> IssuedKey:
    """The publisher tests sign request events with: `.keys_file` for the orchestrator
    (DSR_PUBLISHER_KEYS), `.signer()` and `.env()` for publishing clients."""
    directory = tmp_path_factory.mktemp("publishers")
    return create_publisher(directory / "publisher-keys.yaml", "tests", events=TESTS_EVENTS)
