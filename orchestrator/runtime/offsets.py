"""Where each partition ends, as a fetch reports it.

A partition's end offset (the offset its next record will get) is what a table's recovery
reads the changelog up to. Kafka answers it through ListOffsets. The embedded broker answers
ListOffsets with the last batch's first offset plus one: after a batch of 7 records at offsets
300-306 it reports 301, not 307. A table restored up to there would silently lose the last
batch's updates. So each reported end is checked by fetching from just before it: every fetch
response carries the partition's high-watermark, and that one the embedded broker gets right.
Against Kafka the two agree and the check costs one fetch. One code path for both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.kafka import KafkaSettings

log = logging.getLogger(__name__)

#: How long to wait for the fetches that confirm the ends, in all.
CONFIRM_SECONDS = 10.0


async def confirmed_ends(
    kafka: KafkaSettings,
    reported: Mapping[TopicPartition, int | None],
    timeout: float = CONFIRM_SECONDS,
) -> dict[TopicPartition, int]:
    """`reported` end offsets, each raised to the high-watermark a fetch from just before it
    returns. An empty partition (end 0) needs no fetch. A partition whose fetch does not answer
    within `timeout` keeps its reported end, with a warning."""
    ends = {tp: end or 0 for tp, end in reported.items()}
    todo = {tp: end for tp, end in ends.items() if end > 0}
    if not todo:
        return ends
    probe = AIOKafkaConsumer(
        **kafka.aiokafka_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",  # a reported end past the log (never seen) reads the end
    )
    await probe.start()
    try:
        probe.assign(list(todo))
        for tp, end in todo.items():
            probe.seek(tp, end - 1)  # the last record ListOffsets counts: its batch is fetched
        deadline = asyncio.get_running_loop().time() + timeout
        while todo and asyncio.get_running_loop().time() < deadline:
            await probe.getmany(*todo, timeout_ms=200)
            for tp in list(todo):
                highwater = probe.highwater(tp)
                if highwater is not None:
                    ends[tp] = max(ends[tp], highwater)
                    del todo[tp]
    finally:
        await probe.stop()
    if todo:
        log.warning(
            "end offsets of %d partitions not confirmed by a fetch in %.0f s: using the reported",
            len(todo),
            timeout,
        )
    return ends


__all__ = ["CONFIRM_SECONDS", "confirmed_ends"]
