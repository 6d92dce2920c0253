"""Creating our topics (idempotently) with the configured partitions and replication."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.kafka import KafkaSettings
from schemas.topics import ALL_TOPICS

log = logging.getLogger(__name__)


def topic_names() -> list[str]:
    """Every topic the application uses."""
    return [t.name for t in ALL_TOPICS]


def parse_topic_configs(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """`[TOPIC:]KEY=VALUE` items as configs per topic; without TOPIC, for every topic.

    A topic-specific item wins over a general one. Unknown topics are refused, so a typo in
    deployment values cannot go unnoticed.
    """
    names = topic_names()
    general: dict[str, str] = {}
    specific: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        topic, colon, key = target.rpartition(":")
        if not sep or not key:
            raise ValueError(f"{item!r}: use KEY=VALUE or TOPIC:KEY=VALUE")
        if not colon:
            general[key] = value
        elif topic in names:
            specific.setdefault(topic, {})[key] = value
        else:
            raise ValueError(f"{item!r}: unknown topic {topic!r}; ours are {', '.join(names)}")
    return {name: {**general, **specific.get(name, {})} for name in names}


def ensure_topics(
    settings: KafkaSettings,
    timeout: float = 30.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create any missing topic of ours (with `configs` per topic); return the names created.

    Existing topics are left as they are: their partitions and configs are not changed.
    """
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
                            topic_configs=dict((configs or {}).get(name, {})),
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


__all__ = ["ensure_topics", "parse_topic_configs", "topic_names"]
