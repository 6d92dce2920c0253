"""An aiokafka producer that takes sends one caller at a time.

aiokafka's `send` appends to the partition's open batch; when that batch is full, the caller
waits until the sender task drains it, then tries again. Every caller waiting on the same full
batch wakes at that drain, the first few fill the next batch, and the rest go back to waiting:
with a thousand sends in flight (a connector worker's tasks finishing together, an orchestrator
batch's outputs), that is quadratic work on the event loop. Measured under `bench/pipeline.py`
at 4,000 requests: a connector worker spent 18 ms of CPU per request and the pipeline ran at
52 requests/s, against ~2 ms and ~170 requests/s with one caller at a time (issue 19).

A lock lets one caller in; the others queue on it and are woken one by one, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer


class SerialProducer(AIOKafkaProducer):
    """`AIOKafkaProducer` whose `send` is entered by one caller at a time, first come first in."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._one_at_a_time = asyncio.Lock()

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        """Queue one message (as `AIOKafkaProducer.send`: returns the delivery future)."""
        async with self._one_at_a_time:
            return await super().send(*args, **kwargs)


__all__ = ["SerialProducer"]
