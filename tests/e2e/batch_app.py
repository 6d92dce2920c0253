"""A Faust worker whose agent takes batches as the orchestrator's does, for the batching tests.

    python -m tests.e2e.batch_app BOOTSTRAP APP_ID TOPIC MAX WITHIN PAUSE

It reads TOPIC (values as text) in `take_batches(stream, MAX, WITHIN)` and prints each batch
as a JSON line: its values and `waited`, the seconds from the end of the previous batch to this
one. The first batch is processed for PAUSE seconds (a slow batch). "ready" is printed once the
worker has its partitions.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import faust

from orchestrator.fanout.batches import take_batches
from orchestrator.fanout.faust_app import create_app
from orchestrator.runtime.config import Settings
from schemas.kafka import KafkaSettings


def main(bootstrap: str, app_id: str, topic: str, max_: int, within: float, pause: float) -> None:
    settings = Settings(kafka=KafkaSettings().for_embedded(bootstrap), app_id=app_id)
    app = create_app(settings)
    source = app.topic(topic, value_type=bytes, value_serializer="raw", partitions=1)

    @app.agent(source)
    async def agent(stream: Any) -> None:
        ended: float | None = None
        async for events in take_batches(stream, max_, within):
            waited = None if ended is None else time.monotonic() - ended
            values = [event.value.decode() for event in events]
            print(json.dumps({"values": values, "waited": waited}), flush=True)
            if ended is None:
                await asyncio.sleep(pause)
            ended = time.monotonic()

    @app.task
    async def report() -> None:
        await app.tables.wait_until_recovery_completed()
        print("ready", flush=True)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(*sys.argv[1:4], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
