"""Publishing from the intake process: signed events, each awaited until Kafka acknowledged it."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from orchestrator.intake.client import PublishError
from schemas.envelope import encode
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import RequestSigner
from schemas.topics import REQUESTS

log = logging.getLogger("dsr.intake.bus")


class BusPublisher:
    """One aiokafka producer; `publish` returns once the broker has the event (acks=all).

    Every event is signed by `signer` (the intake component's key, publisher `intake`):
    the orchestrator verifies it like any publisher's. The intake checks the HTTP caller's
    own signature and permissions before it publishes anything on the caller's behalf; the
    CloudEvents `source` names the caller (`http:<publisher>`, `public-page`,
    `opendsr:<controller>`).
    """

    def __init__(
        self, kafka: KafkaSettings, signer: RequestSigner | None, *, timeout: float = 30.0
    ) -> None:
        self.kafka = kafka
        self.signer = signer
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect (also done on first publish)."""
        await self._started()

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            async with self._lock:
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        **self.kafka.aiokafka_options(),
                        acks="all",
                        linger_ms=1,
                        enable_idempotence=False,
                    )
                    await producer.start()
                    self._producer = producer
        return self._producer

    async def publish(
        self, body: BaseModel, *, source: str, topic: str = REQUESTS.name, key: str | None = None
    ) -> None:
        """Sign and send one event; raise `PublishError` unless Kafka acknowledged it."""
        message = encode(body, source=source, key=key)
        if self.signer is not None:
            message = self.signer.sign(message)
        try:
            producer = await self._started()
            sent = await producer.send(
                topic, key=message.key, value=message.value, headers=message.headers
            )
            await asyncio.wait_for(sent, self.timeout)
        except (KafkaError, TimeoutError) as exc:
            raise PublishError(
                f"an event for {topic} was not acknowledged by Kafka within {self.timeout:g}s "
                f"({type(exc).__name__})"
            ) from exc

    async def stop(self) -> None:
        """Flush and disconnect; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


__all__ = ["BusPublisher"]
