"""Creating our topics (idempotently) with the configured partitions and replication."""

from __future__ import annotations

import logging
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.kafka import KafkaSettings
from schemas.topics import ALL_TOPICS

log = logging.getLogger(__name__)


def topic_names() -> list[str]:
    """Every topic the application uses."""
    return [t.name for t in ALL_TOPICS]


def ensure_topics(settings: KafkaSettings, timeout: float = 30.0) -> list[str]:
    """Create any missing topic of ours; return the names created."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(**settings.kafka_python_options(), request_timeout_ms=10_000)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in topic_names() if name not in existing]
        created: list[str] = []
        for name in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=settings.partitions,
                            replication_factor=settings.replication_factor,
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        admin.close()


__all__ = ["ensure_topics", "topic_names"]
