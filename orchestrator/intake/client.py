"""A small synchronous client for services that publish requests (web form, portal, support tool).

Built on kafka-python so that it pulls in neither Faust nor asyncio. Every call waits for the
broker's acknowledgement: when `publish` returns, the request is on the requests topic.
Request events are signed with the publisher's key (see `schemas.primitives.signing`): pass a
`RequestSigner`, or set DSR_PUBLISHER_ID and DSR_PUBLISHER_KEY_FILE (or DSR_PUBLISHER_SECRET).

    from orchestrator.intake.client import publish_request
    publish_request(request, bootstrap="kafka:9092", source="web-form")
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, TypeVar

from kafka import KafkaProducer
from kafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from schemas.envelope import TYPE_OF, describe_validation_error, encode
from schemas.errors import DsrError
from schemas.events import (
    DeadlineExtended,
    DecisionRecorded,
    DeliveryRecorded,
    IdentityVerified,
    RequestSubmitted,
    TaskOutcome,
)
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import PublisherKeyError, RequestSigner
from schemas.sweeps import SweepApproved, SweepRequested
from schemas.topics import OUTCOMES, REQUESTS

log = logging.getLogger("dsr.client")

_Body = TypeVar("_Body", bound=BaseModel)
_LINGER_MS = 5


class PublishError(DsrError, RuntimeError):
    """An event was not published; the message says why and what to check (no personal data)."""


class RequestPublisher:
    """Publishes requests and identity verifications to the requests topic, one ack at a time."""

    def __init__(
        self,
        kafka: KafkaSettings | str,
        source: str,
        *,
        signer: RequestSigner | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Connect to Kafka (settings or bootstrap string); `source` names the publishing
        service; `signer` signs request events (default: from DSR_PUBLISHER_* variables)."""
        if not source:
            raise ValueError("source must name the publishing service, e.g. 'web-form'")
        try:
            self.signer = signer or RequestSigner.from_env()
        except PublisherKeyError as exc:
            raise PublishError(str(exc)) from None
        self._warned_unsigned = False
        settings = KafkaSettings(bootstrap=kafka) if isinstance(kafka, str) else kafka
        try:
            options = settings.kafka_python_options()
        except ValueError as exc:
            raise PublishError(str(exc)) from None
        self.source = source
        self._timeout = timeout
        timeout_ms = int(timeout * 1000)
        try:
            self._producer: KafkaProducer | None = KafkaProducer(
                **options,
                # api_version stays on auto: pinned below (2, 5) the idempotent producer
                # silently drops every record on the embedded broker.
                acks="all",
                linger_ms=_LINGER_MS,
                max_block_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                delivery_timeout_ms=timeout_ms + _LINGER_MS,  # kafka-python: >= linger + request
            )
        except KafkaError as exc:
            raise PublishError(
                f"cannot connect to Kafka at {settings.bootstrap} ({exc}); check that the broker "
                "runs and DSR_KAFKA_BOOTSTRAP (or the bootstrap argument) points at it"
            ) from exc

    def publish(self, request: RequestSubmitted) -> None:
        """Validate a data-subject request and publish it; return once the broker acked it."""
        self._send(_validated(request, RequestSubmitted))

    def verify_identity(self, event: IdentityVerified) -> None:
        """Publish that a request's subject was verified; the orchestrator then fans it out."""
        self._send(_validated(event, IdentityVerified))

    def extend_deadline(self, event: DeadlineExtended) -> None:
        """Publish a deadline extension (Art. 12(3)); the orchestrator allows one per request."""
        self._send(_validated(event, DeadlineExtended))

    def publish_decision(self, event: DecisionRecorded) -> None:
        """Publish an officer's decision (refuse, refuse_system, legal_hold, fee, approve); the
        orchestrator accepts it only from a publisher whose keys file `events` lists it."""
        self._send(_validated(event, DecisionRecorded))

    def record_delivery(self, event: DeliveryRecorded) -> None:
        """Publish that the answer reached the subject (post, ZIVVER, in person, e-mail); allowed
        like decisions, only to publishers whose keys file `events` lists it."""
        self._send(_validated(event, DeliveryRecorded))

    def publish_sweep(self, event: SweepRequested | SweepApproved) -> None:
        """Publish a retention sweep's start or an officer's approval of it (signed); allowed
        like decisions, only to publishers whose keys file `events` lists the type."""
        self._send(_validated(event, type(event)))

    def report_outcome(self, outcome: TaskOutcome) -> None:
        """Publish a task's outcome, e.g. a manual task completed by a person; signed like
        request events, with the person's publisher key (its `events` must list
        dsr.task.outcome.v1, or the orchestrator dead-letters it)."""
        self._send(_validated(outcome, TaskOutcome), topic=OUTCOMES.name)

    def _send(
        self,
        body: RequestSubmitted
        | IdentityVerified
        | DeadlineExtended
        | DecisionRecorded
        | DeliveryRecorded
        | TaskOutcome
        | SweepRequested
        | SweepApproved,
        topic: str = REQUESTS.name,
    ) -> None:
        if self._producer is None:
            raise PublishError("this RequestPublisher is closed; create a new one")
        message = encode(body, source=self.source)
        if self.signer is not None:
            message = self.signer.sign(message)
        elif not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning(
                "publishing unsigned events: the orchestrator dead-letters them "
                "unless it runs with DSR_ALLOW_UNSIGNED_REQUESTS=true; set DSR_PUBLISHER_ID "
                "and DSR_PUBLISHER_KEY_FILE, or pass signer="
            )
        about = (
            f"sweep {body.sweep_id}"
            if isinstance(body, SweepRequested | SweepApproved)
            else f"request {body.request_id}"
        )
        what = f"{TYPE_OF[type(body)]} for {about}"
        try:
            future = self._producer.send(
                topic, key=message.key, value=message.value, headers=message.headers
            )
            future.get(timeout=self._timeout)
        except KafkaError as exc:
            raise PublishError(
                f"{what} was not acknowledged by Kafka within {self._timeout:g}s ({exc}); "
                f"check that topic {topic} exists and the broker is reachable"
            ) from exc

    def close(self) -> None:
        """Flush anything pending and disconnect; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=self._timeout)

    def __enter__(self) -> RequestPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _validated(body: Any, model: type[_Body]) -> _Body:
    """Validate again: `model_copy(update=...)` and `model_construct` skip validation."""
    if not isinstance(body, model):
        raise TypeError(f"expected a {model.__name__}, got {type(body).__name__}")
    try:
        return model.model_validate(body.model_dump())
    except ValidationError as exc:
        raise PublishError(
            f"invalid {model.__name__}, not published: {describe_validation_error(exc)}"
        ) from None


def publish_request(
    request: RequestSubmitted,
    *,
    bootstrap: KafkaSettings | str | None = None,
    source: str = "dsr-client",
    signer: RequestSigner | None = None,
    timeout: float = 30.0,
) -> None:
    """Publish one request and wait for the ack; bootstrap defaults to DSR_KAFKA_BOOTSTRAP,
    the signer to the DSR_PUBLISHER_* variables."""
    with RequestPublisher(
        bootstrap or KafkaSettings(), source, signer=signer, timeout=timeout
    ) as publisher:
        publisher.publish(request)


__all__ = ["PublishError", "RequestPublisher", "publish_request"]
