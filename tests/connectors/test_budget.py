"""The parts that make a vendor's budget deployment-wide, each without a broker.

Tasks are keyed by system (the orchestrator's sender), so one connector worker owns a system;
a worker taking a system over waits out the last window (`connectors.http.take_over`); offsets
are committed in order whatever order tasks finish in. The whole, with three worker processes
and a kill -9, is `tests/e2e/test_budget_replicas.py`. Counts come from the fake vendor's log.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.fakes.counting import TOKEN, CountingVendor
from connectors.http import RateLimit, RateLimiter, limiter_for, take_over
from connectors.runtime import _check_key, _Partition
from orchestrator.fanout.output import Sender
from orchestrator.lifecycle.reducer import submit
from schemas.envelope import EnvelopeError, decode
from schemas.events import TaskDispatched
from schemas.primitives.sealing import DataKeys
from schemas.topics import TASKS
from tests.connectors.test_sweep_runtime import sweep
from tests.orchestrator.test_fanout import FakeOutput, ctx
from tests.orchestrator.test_lifecycle import SYSTEMS, request

LIMIT = RateLimit(requests=3, per_seconds=0.5)


@pytest.fixture(scope="module")
def vendor() -> Iterator[CountingVendor]:
    """The counting vendor, answering at once."""
    with CountingVendor(answer_seconds=0.0) as fake:
        yield fake


async def _calls(vendor: CountingVendor, account: str, limiter: RateLimiter, n: int) -> None:
    """`n` calls to `account`, each in a turn of `limiter`."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=vendor.url, headers=headers) as client:
        for _ in range(n):
            async with limiter.slot():
                response = await client.get(f"/api/{account}/people", params={"email": "a@b.nl"})
                assert response.status_code == 200


@pytest.mark.parametrize("handed_over", [True, False], ids=["taken-over", "not-taken-over"])
def test_a_new_owner_waits_one_window_so_both_owners_stay_within_the_limit(
    vendor: CountingVendor, handed_over: bool
) -> None:
    account = f"handover-{handed_over}".lower()
    system = f"budget-unit-{os.getpid()}-{handed_over}".lower()
    old = RateLimiter(LIMIT)  # the previous owner's, in another process
    asyncio.run(_calls(vendor, account, old, 3))  # it used the whole window
    if handed_over:
        take_over(system)  # the partition is ours now; the limiter is made on first use
    new = limiter_for(system, LIMIT)
    asyncio.run(_calls(vendor, account, new, 3))
    most = vendor.max_in_window_of(account, LIMIT.per_seconds)
    if handed_over:
        assert most <= 3
    else:  # without the hand-over the new owner would double the vendor's rate
        assert most == 6


def test_a_limiter_made_before_the_take_over_waits_too(vendor: CountingVendor) -> None:
    system = f"budget-unit-{os.getpid()}-early"
    new = limiter_for(system, LIMIT)
    old = RateLimiter(LIMIT)
    asyncio.run(_calls(vendor, "early", old, 3))
    take_over(system, since=time.monotonic())
    asyncio.run(_calls(vendor, "early", new, 3))
    assert vendor.max_in_window_of("early", LIMIT.per_seconds) <= 3


def test_offsets_are_committed_in_order_when_tasks_finish_out_of_order() -> None:
    part = _Partition()
    assert part.done_up_to() is None  # nothing taken: nothing to commit
    part.fetched = 15
    part.unfinished = {10, 11, 12, 13, 14}
    for finished, expected in [(12, 10), (14, 10), (10, 11), (11, 13), (13, 15)]:
        part.unfinished.discard(finished)
        assert part.done_up_to() == expected


def test_a_task_keyed_by_its_system_or_its_request_runs_any_other_key_is_refused() -> None:
    task = sweep("chat")
    _check_key(b"chat", task, "dsr.sweep.dispatched.v1")
    _check_key(task.sweep_id.encode(), task, "dsr.sweep.dispatched.v1")  # sent before keying
    _check_key(None, task, "dsr.sweep.dispatched.v1")
    with pytest.raises(EnvelopeError) as refused:
        _check_key(b"mailing", task, "dsr.sweep.dispatched.v1")
    assert refused.value.stage == "body" and "key tasks by system" in str(refused.value)


def test_the_orchestrator_keys_tasks_by_system_so_one_worker_owns_each(tmp_path: Path) -> None:
    keys = DataKeys(tmp_path / "dek", os.urandom(32))
    keys.create("req-1")
    output = FakeOutput()
    sender = Sender(output, keys, "tests")  # type: ignore[arg-type]
    _, effects = submit(None, request(), ctx())
    pending: list[Awaitable[Any]] = []
    sender.effects([effects], pending)
    asyncio.run(sender.wait(pending))
    sent = [message for topic, message, _ in output.sent if topic == TASKS.name]
    assert len(sent) == len(SYSTEMS)
    for message in sent:
        task = decode(message.value, message.headers).body
        assert isinstance(task, TaskDispatched)
        assert message.key == task.system.encode()
