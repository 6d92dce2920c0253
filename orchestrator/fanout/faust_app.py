"""The Faust app the orchestrator runs in: broker options, its input topic and its table."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.types import TP, TableT

from orchestrator.runtime.config import Settings
from orchestrator.runtime.offsets import confirmed_ends
from schemas.kafka import KafkaSettings
from schemas.topics import OUTCOMES, REQUESTS

#: The table of request states (`orchestrator.fanout.table`).
TABLE_NAME = "requests"
#: The table of retention sweeps' states (`orchestrator.fanout.sweeps`).
SWEEPS_TABLE_NAME = "sweeps"


def create_app(settings: Settings) -> faust.App:
    """A Faust app for these settings: at-least-once, in-memory table store, no web server."""
    _set_faust_fetch_wait(settings.kafka.fetch_max_wait_ms)
    _confirm_faust_highwaters()
    app = faust.App(
        settings.app_id,
        **_faust_broker_options(settings),
        store="memory://",
        processing_guarantee="at_least_once",
        producer_max_batch_size=settings.producer_max_batch_size,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        web_enabled=False,
        autodiscover=False,
        table_standby_replicas=0,
    )
    _KAFKA_OF[app] = settings.kafka
    return app


#: Each app's Kafka settings, for the fetches that confirm its changelogs' ends.
_KAFKA_OF: weakref.WeakKeyDictionary[faust.App, KafkaSettings] = weakref.WeakKeyDictionary()


def input_topic(app: faust.App) -> faust.TopicT:
    """The requests and outcomes topics, read as raw bytes (`orchestrator.intake.decode`)."""
    return app.topic(
        REQUESTS.name,
        OUTCOMES.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


def requests_table(app: faust.App, partitions: int) -> TableT[str, str]:
    """The table of request states: request id -> sealed state (`orchestrator.lifecycle.state`)."""
    return _string_table(app, TABLE_NAME, partitions)


def sweeps_table(app: faust.App, partitions: int) -> TableT[str, str]:
    """The table of sweep states: sweep id -> state as JSON (`orchestrator.fanout.sweeps`)."""
    return _string_table(app, SWEEPS_TABLE_NAME, partitions)


def _string_table(app: faust.App, name: str, partitions: int) -> TableT[str, str]:
    # Partitioned by key, not by the event being processed: the timer writes too.
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        use_partitioner=True,
        key_type=str,
        value_type=str,
    )


def _set_faust_fetch_wait(milliseconds: int) -> None:
    """Make Faust's consumer use our fetch wait (faust-streaming 0.15 hard-codes 1500 ms).

    The embedded broker answers a fetch only when its wait is over, even if data arrived
    sooner: with 1500 ms every hop through the orchestrator would cost up to 1.5 s.
    """
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    create = getattr(thread, "_dsr_create_worker_consumer", thread._create_worker_consumer)

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = milliseconds  # read when the consumer starts
        return consumer

    thread._dsr_create_worker_consumer = create  # type: ignore[attr-defined]
    thread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


def _confirm_faust_highwaters() -> None:
    """Make a table's recovery read its changelog up to the end a fetch reports
    (`orchestrator.runtime.offsets`), not only ListOffsets': the embedded broker's ListOffsets
    stops short after a multi-record batch, and the table would lose that batch's updates.
    With it, the changelog is written in batches (`producer_max_batch_size`) on the embedded
    broker too."""
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    reported = getattr(thread, "_dsr_highwaters", thread._highwaters)

    async def _highwaters(self: Any, partitions: list[TP]) -> Mapping[TP, int]:
        ends = await reported(self, partitions)
        kafka = _KAFKA_OF.get(self.app)
        if kafka is None or self.consumer.in_transaction:
            return ends
        confirmed = await confirmed_ends(
            kafka, {TopicPartition(tp.topic, tp.partition): end for tp, end in ends.items()}
        )
        return {TP(tp.topic, tp.partition): end for tp, end in confirmed.items()}

    thread._dsr_highwaters = reported  # type: ignore[attr-defined]
    thread._highwaters = _highwaters  # type: ignore[method-assign]


def _faust_broker_options(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    servers = kafka.require_bootstrap().split(",")
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{s.strip()}" for s in servers),
        "broker_client_id": kafka.client_id,
        "broker_session_timeout": kafka.session_timeout_ms / 1000,
        "broker_heartbeat_interval": kafka.heartbeat_interval_ms / 1000,
        "broker_rebalance_timeout": kafka.rebalance_timeout_ms / 1000,
    }
    ssl_context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    if kafka.sasl_mechanism:
        options["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    elif ssl_context is not None:
        options["broker_credentials"] = faust.SSLCredentials(ssl_context)
    return options


__all__ = [
    "SWEEPS_TABLE_NAME",
    "TABLE_NAME",
    "create_app",
    "input_topic",
    "requests_table",
    "sweeps_table",
]
