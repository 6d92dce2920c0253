"""A Faust worker with the orchestrator's app and requests table, for the table recovery test.

    python -m tests.e2e.table_app write BOOTSTRAP APP_ID COUNT   # COUNT entries, then waits
    python -m tests.e2e.table_app read BOOTSTRAP APP_ID          # the recovered table, then exits

`write` prints "ready" once its table is recovered. When its agent gets the first event (the
test sends one), it puts COUNT entries in the table, as the orchestrator writes states from its
agent, flushes the changelog and prints "written"; the test then kills it with SIGKILL. `read`
prints the table as JSON once the table's recovery has completed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import faust

from orchestrator.fanout.faust_app import create_app, input_topic, requests_table
from orchestrator.runtime.config import Settings
from schemas.kafka import KafkaSettings


def main(mode: str, bootstrap: str, app_id: str, count: int = 0) -> None:
    settings = Settings(kafka=KafkaSettings().for_embedded(bootstrap), app_id=app_id)
    app = create_app(settings)
    # Whole batches of changelog records (the producer waits 50 ms to fill each): a table
    # restored only up to the start of each partition's last batch would miss most of it.
    app.conf.producer_linger = 0.05
    table = requests_table(app, settings.kafka.partitions)

    @app.agent(input_topic(app))
    async def agent(stream: Any) -> None:
        async for _ in stream:
            if mode == "write":
                for n in range(count):
                    table[f"key-{n:05d}"] = f"value-{n}"
                await app.producer.flush()
                print("written", flush=True)

    @app.task
    async def report() -> None:
        await app.tables.wait_until_recovery_completed()
        if mode == "write":
            print("ready", flush=True)
            return
        print("table", json.dumps(dict(table.items())), flush=True)
        os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:]))
