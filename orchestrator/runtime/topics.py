"""Creating our topics (idempotently) with the configured partitions and replication.

The status topic keeps what the dashboard and `dsr status` rebuild their view from, for as long
as the register's `case_files.status_topic` says (Art. 5(1)(e) and 5(2) GDPR): its `retention.ms`
is set when it is created and brought up to date on an existing topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.kafka import KafkaSettings
from schemas.register import CaseFiles, parse_period
from schemas.topics import ALL_TOPICS, STATUS

#: The topic config that holds how long a topic keeps its events.
RETENTION_MS = "retention.ms"

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


def retention_ms(period: str) -> int:
    """A calendar period ('2 years') as Kafka's `retention.ms`, never shorter than the period:
    a year counts 366 days and a month 31."""
    delta = parse_period(period)
    days = delta.years * 366 + delta.months * 31 + delta.days
    return int(timedelta(days=days).total_seconds() * 1000)


def status_topic_configs(
    case_files: CaseFiles | None, configs: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, dict[str, str]]:
    """`configs` per topic with the status topic's retention from the register's case files
    (its defaults without a register); a `retention.ms` in `configs` wins."""
    per_topic = {t.name: dict(t.configs) for t in ALL_TOPICS if t.configs}
    for name, items in (configs or {}).items():
        per_topic.setdefault(name, {}).update(items)
    retention = str(retention_ms((case_files or CaseFiles()).status_topic))
    per_topic.setdefault(STATUS.name, {}).setdefault(RETENTION_MS, retention)
    return per_topic


def ensure_topics(
    settings: KafkaSettings,
    timeout: float = 30.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    case_files: CaseFiles | None = None,
) -> list[str]:
    """Create any missing topic of ours (with `configs` per topic); return the names created.

    The status topic gets its `retention.ms` from `case_files` (see `status_topic_configs`).
    Existing topics keep their partitions and configs, except that with `case_files` given
    the status topic's retention is set to the register's (`update_status_retention`).
    """
    configs = status_topic_configs(case_files, configs)
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
        if case_files is not None and STATUS.name in existing:
            update_status_retention(admin, configs[STATUS.name][RETENTION_MS])
        return created
    finally:
        admin.close()


def update_status_retention(admin: KafkaAdminClient, retention: str) -> bool:
    """Set the existing status topic's `retention.ms` (IncrementalAlterConfigs: the topic's
    other configs stay as they are); False, with a warning, where the broker refuses.

    A refusal does not stop the caller: the topic then keeps its retention until an operator
    changes it (`kafka-configs --alter`), which the warning says.
    """
    resource = ConfigResource(ConfigResourceType.TOPIC, STATUS.name, {RETENTION_MS: retention})
    try:
        answer = admin.alter_configs([resource], raise_on_unknown=False, incremental=True)
    except (KafkaError, ValueError) as exc:
        answer = {"topic": {STATUS.name: str(exc)}}
    outcome = answer.get("topic", {}).get(STATUS.name, "no answer")
    if outcome == "OK":
        return True
    log.warning(
        "the retention of topic %s could not be set to %s ms (%s); set it on the broker, "
        "e.g. kafka-configs --alter --entity-type topics --entity-name %s "
        "--add-config retention.ms=%s",
        STATUS.name,
        retention,
        outcome,
        STATUS.name,
        retention,
    )
    return False


__all__ = [
    "RETENTION_MS",
    "ensure_topics",
    "parse_topic_configs",
    "retention_ms",
    "status_topic_configs",
    "topic_names",
    "update_status_retention",
]
