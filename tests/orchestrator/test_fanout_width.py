"""What keeps the orchestrator fast for wide requests and busy disks: compact table values,
data keys created side by side, finished requests written side by side (issue 19)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.fanout.app import Orchestrator
from orchestrator.fanout.table import RequestTable
from orchestrator.lifecycle.reducer import Context, Effects, RequestState, submit
from orchestrator.lifecycle.state import _context, decode_state, encode_state
from orchestrator.lifecycle.watch import Watchlist
from schemas.primitives.sealing import DataKeys, seal
from tests.orchestrator.test_fanout import PARTITIONS, POLICY
from tests.orchestrator.test_lifecycle import NOW, request

WIDE = tuple(f"system-{n}" for n in range(200))


@pytest.fixture
def keys(tmp_path: Path) -> DataKeys:
    return DataKeys(tmp_path / "dek", os.urandom(32), cache_size=16)


def wide_state() -> RequestState:
    """A request to 200 systems, just dispatched."""
    state, _ = submit(None, request(), Context(systems=WIDE, policy=POLICY, now=NOW))
    assert state is not None and len(state.systems) == 200
    return state


def test_a_wide_request_s_table_value_leaves_out_the_defaults(keys: DataKeys) -> None:
    state = wide_state()
    raw = encode_state(state, keys)
    # In full, a dispatched system's progress is about 290 bytes of JSON (then sealed and
    # base64ed); without the defaults about 90.
    full = len(state.model_dump_json())
    assert full > 50_000 and len(raw) < full / 2
    assert decode_state(raw, keys) == state


def test_a_state_stored_in_full_by_an_earlier_version_still_opens(keys: DataKeys) -> None:
    state = wide_state()
    key = keys.create(state.request_id)
    sealed = seal(key, state.model_dump_json().encode(), _context(state.request_id))
    raw = json.dumps(
        {"request_id": state.request_id, "status": "in_progress", "sealed": sealed.model_dump()}
    )
    assert decode_state(raw, keys) == state


def test_new_requests_data_keys_are_created_before_the_batch_is_decided(
    tmp_path: Path, keys: DataKeys
) -> None:
    """Created in threads into the loop's own (caching) store: the state is then sealed with
    the key from memory, not read back from disk and unwrapped on the event loop (one file
    read per new request). A request already in the table gets no new key."""
    table = RequestTable({"old": "x"}, keys, Watchlist(POLICY), PARTITIONS, create_keys_ahead=True)
    asyncio.run(table.prepare(["new-1", "new-2", "old"]))
    assert sorted(p.name for p in keys.root.glob("*.key")) == ["new-1.key", "new-2.key"]
    on_disk = DataKeys(keys.root, keys._bus_key).get("new-1")
    (keys.root / "new-1.key").rename(tmp_path / "away")  # the loop's store does not need it
    assert keys.create("new-1") == on_disk  # the same key, not a second one
    (tmp_path / "away").rename(keys.root / "new-1.key")
    table.store("new-2", RequestState(request_id="new-2"))
    assert decode_state(table.table["new-2"], DataKeys(keys.root, keys._bus_key)).request_id


def test_a_batchs_finished_requests_are_handed_to_the_finisher_together() -> None:
    """Two requests finished in one batch go to the finisher in one call (one hand-over to its
    threads and export process for the batch, not one per request), before the sends."""
    calls: list[list[str]] = []
    sent: list[Any] = []

    async def finish_all(finished: list[tuple[RequestState, Effects]]) -> list[list[Path]]:
        calls.append([state.request_id for state, _ in finished])
        assert not sent  # the documents are on disk before any status points at them
        return [[] for _ in finished]

    shell = SimpleNamespace(
        finisher=SimpleNamespace(
            save_outcomes=lambda effects: None, finish_all=finish_all, mailer=None
        ),
        sender=SimpleNamespace(effects=lambda e, pending: sent.append(e), wait=_no_wait),
    )
    finished = [(RequestState(request_id=r), Effects(finished=True)) for r in ("a", "b")]
    effects = [e for _, e in finished]

    async def carry_out() -> None:
        await asyncio.wait_for(Orchestrator._carry_out(shell, effects, finished), 30)  # type: ignore[arg-type]

    asyncio.run(carry_out())
    assert calls == [["a", "b"]] and sent == [effects]


async def _no_wait(pending: list[Any]) -> None:
    return None
