"""The record store: records leave Kafka; the reference proves the file intact."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest

from connectors.base import Connector, ConnectorError, Result
from connectors.execute import perform
from connectors.sql import SQLConnector
from schemas.events import (
    Identifier,
    OutcomeStatus,
    Record,
    RequestType,
    Subject,
    TaskDispatched,
)
from schemas.primitives.records import RecordSink, RecordStore, RecordStoreError
from schemas.primitives.sealing import DataKeys

SUBJECT = Subject(identifiers=[Identifier(type="email", value="noor@example.nl")])


def _store(root: Path, inline_bytes: int = 0) -> RecordStore:
    """A record store whose requests r-1, r-2 and req-1 have data keys; by default every
    result goes to a file (`inline_bytes=0`)."""
    keys = DataKeys(root.parent / f"{root.name}-dek", os.urandom(32))
    for request_id in ("r-1", "r-2", "req-1"):
        keys.create(request_id)
    return RecordStore(root, keys, inline_bytes=inline_bytes)


def _records(n: int) -> list[Record]:
    return [
        Record(collection="orders" if i % 3 else "contacts", data={"id": i, "note": "é" * 3})
        for i in range(n)
    ]


def _write(store: RecordStore, records: Sequence[Record], request_id: str = "r-1"):  # type: ignore[no-untyped-def]
    with store.writer(request_id, "crm", 1) as writer:
        for record in records:
            writer.write(record)
        return writer.commit()


def test_round_trip_with_counts_per_collection(tmp_path: Path) -> None:
    store = _store(tmp_path)
    records = _records(10)
    ref = _write(store, records)
    assert ref is not None
    assert ref.count == 10 and ref.collections == {"contacts": 4, "orders": 6}
    # Size and hash are of the plaintext; the file itself is sealed.
    assert ref.size == sum(len(r.model_dump_json().encode()) + 1 for r in records)
    assert len(ref.sha256) == 64 and b"orders" not in store.path(ref).read_bytes()
    assert list(store.read(ref, "r-1")) == records
    assert not list(tmp_path.rglob(".tmp-*"))


def test_one_flipped_byte_is_detected(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ref = _write(store, _records(5))
    assert ref is not None
    path = store.path(ref)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RecordStoreError, match="does not open"):
        list(store.read(ref, "r-1"))
    # A reference that claims more than the file holds is caught by the plaintext check.
    _write(store, _records(5))
    fresh = _write(store, _records(5))
    assert fresh is not None
    bigger = fresh.model_copy(update={"count": 6})
    with pytest.raises(RecordStoreError, match="does not match its reference"):
        list(store.read(bigger, "r-1"))


def test_a_file_is_read_only_for_its_own_request(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ref = _write(store, _records(3), request_id="r-1")
    assert ref is not None
    with pytest.raises(RecordStoreError, match="does not belong to request 'r-2'"):
        list(store.read(ref, "r-2"))
    # Moved into another request's folder, it does not open with that request's key.
    moved = store.root / "r-2" / "crm.1.moved.jsonl"
    moved.parent.mkdir()
    store.path(ref).rename(moved)
    with pytest.raises(RecordStoreError, match="does not open"):
        list(store.read(ref.model_copy(update={"path": "r-2/crm.1.moved.jsonl"}), "r-2"))


def test_missing_file_and_escaping_paths_are_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "store")
    ref = _write(store, _records(2))
    assert ref is not None
    store.discard("r-1")
    with pytest.raises(RecordStoreError, match="missing"):
        list(store.read(ref, "r-1"))
    evil = ref.model_copy(update={"path": "../../etc/passwd"})
    with pytest.raises(RecordStoreError, match="outside the record store"):
        store.path(evil)
    with pytest.raises(RecordStoreError):
        store.writer("../x", "crm", 1)


def test_empty_and_aborted_writes_leave_no_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert _write(store, []) is None
    with pytest.raises(RuntimeError), store.writer("r-2", "crm", 1) as writer:
        writer.write(_records(1)[0])
        raise RuntimeError("connector broke")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


class _Streaming(Connector):
    """Yields `n` records, or fails half-way."""

    capabilities: ClassVar[frozenset[RequestType]] = frozenset({RequestType.ACCESS})

    def __init__(self, n: int, fail: bool = False) -> None:
        super().__init__("crm")
        self.n, self.fail = n, fail

    async def export_into(self, subject: Subject, sink: RecordSink, *, portability: bool) -> Result:
        for record in _records(self.n):
            sink.write(record)
            if self.fail and record.data["id"] == self.n // 2:
                raise ConnectorError("the vendor API went away", retryable=True)
        return Result.completed() if self.n else Result.not_found()


def _task(attempt: int = 1) -> TaskDispatched:
    return TaskDispatched(
        request_id="req-1",
        task_id="req-1/crm",
        system="crm",
        action=RequestType.ACCESS,
        subject=SUBJECT,
        attempt=attempt,
        deadline=datetime(2030, 1, 1, tzinfo=UTC),
        dispatched_at=datetime.now(UTC),
    )


def test_perform_stores_records_and_sends_a_reference(tmp_path: Path) -> None:
    store = _store(tmp_path)
    outcome = asyncio.run(perform(_Streaming(7), _task(), store=store))
    assert outcome.status == OutcomeStatus.COMPLETED
    assert outcome.records == [] and outcome.records_ref is not None
    assert outcome.counts.found == 7 == outcome.records_ref.count
    assert len(list(store.read(outcome.records_ref, "req-1"))) == 7
    # The event stays small whatever the number of records.
    assert len(outcome.model_dump_json()) < 1000


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_small_result_travels_sealed_in_its_reference_without_a_file(tmp_path: Path) -> None:
    """Art. 32(1)(a) GDPR: records in the outcome event are encrypted with the request's data
    key, as a record file is; no file, folder or temporary file is created for them."""
    store = _store(tmp_path / "store", inline_bytes=4096)
    records = [Record(collection="contacts", data={"email": "noor@example.nl", "id": 1})]
    ref = _write(store, records)
    assert ref is not None and ref.sealed is not None
    assert not (tmp_path / "store").exists()
    assert "noor@example.nl" not in ref.model_dump_json()
    assert ref.count == 1 and ref.collections == {"contacts": 1}
    assert ref.size == len(records[0].model_dump_json()) + 1
    assert list(store.read(ref, "r-1")) == records
    # Removing the request's record files leaves nothing to miss: the records are in the ref.
    store.discard("r-1")
    assert list(store.read(ref, "r-1")) == records


def test_a_result_past_the_inline_limit_spills_into_a_sealed_file(tmp_path: Path) -> None:
    store = _store(tmp_path, inline_bytes=300)
    records = _records(12)  # ~50 bytes each: past 300 half-way
    ref = _write(store, records)
    assert ref is not None and ref.sealed is None
    assert store.path(ref).exists() and b"orders" not in store.path(ref).read_bytes()
    assert ref.count == 12 and list(store.read(ref, "r-1")) == records
    assert not list(tmp_path.rglob(".tmp-*"))
    # Exactly at the limit it still travels inline.
    exact = _write(store, records[:1], request_id="r-2")
    assert exact is not None and exact.sealed is not None
    at_limit = _store(tmp_path / "other", inline_bytes=exact.size)
    assert _write(at_limit, records[:1]).sealed is not None
    assert _write(at_limit, records[:2]).sealed is None


def test_inline_records_open_only_for_their_request_and_name_and_not_after_shredding(
    tmp_path: Path,
) -> None:
    """Bound like a file (`schemas.primitives.sealing.context`): not readable as another
    request's or another task's, not when altered, and never again once the request's data key
    is destroyed (crypto-shredding, Art. 17 GDPR)."""
    store = _store(tmp_path, inline_bytes=4096)
    ref = _write(store, _records(3))
    assert ref is not None and ref.sealed is not None
    with pytest.raises(RecordStoreError, match="does not belong to request 'r-2'"):
        list(store.read(ref, "r-2"))
    other_task = ref.model_copy(update={"path": ref.path.replace("crm.", "mail.")})
    with pytest.raises(RecordStoreError, match="cannot be opened"):
        list(store.read(other_task, "r-1"))
    elsewhere = ref.model_copy(update={"path": ref.path.replace("r-1/", "r-2/")})
    with pytest.raises(RecordStoreError, match="cannot be opened"):
        list(store.read(elsewhere, "r-2"))
    text = ref.sealed.ciphertext
    flipped = text[:5] + ("A" if text[5] != "A" else "B") + text[6:]
    altered = ref.model_copy(
        update={"sealed": ref.sealed.model_copy(update={"ciphertext": flipped})}
    )
    with pytest.raises(RecordStoreError, match="cannot be opened"):
        list(store.read(altered, "r-1"))
    more = ref.model_copy(update={"count": 4})
    with pytest.raises(RecordStoreError, match="does not match its reference"):
        list(store.read(more, "r-1"))
    store.keys.destroy("r-1")
    with pytest.raises(RecordStoreError, match="cannot be opened"):
        list(store.read(ref, "r-1"))


def test_perform_sends_a_small_result_inline_and_creates_no_file(tmp_path: Path) -> None:
    """Most subjects have a few records per system: no file to create, sync, rename and
    remove per task (issue 19). The event stays bounded: past the limit, a file."""
    store = _store(tmp_path / "store", inline_bytes=4096)
    outcome = asyncio.run(perform(_Streaming(7), _task(), store=store))
    assert outcome.status == OutcomeStatus.COMPLETED and outcome.records == []
    ref = outcome.records_ref
    assert ref is not None and ref.sealed is not None and ref.count == 7
    assert not (tmp_path / "store").exists()
    assert len(list(store.read(ref, "req-1"))) == 7
    large = asyncio.run(perform(_Streaming(500), _task(2), store=store))
    assert large.records_ref is not None and large.records_ref.sealed is None
    assert len(large.model_dump_json()) < 1000
    assert len(_files(tmp_path / "store")) == 1


def test_a_failure_half_way_leaves_nothing_behind(tmp_path: Path) -> None:
    store = _store(tmp_path)
    outcome = asyncio.run(perform(_Streaming(10, fail=True), _task(), store=store))
    assert outcome.status == OutcomeStatus.FAILED and outcome.retryable
    assert outcome.records_ref is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    none = asyncio.run(perform(_Streaming(0), _task(2), store=store))
    assert none.status == OutcomeStatus.NOT_FOUND and none.records_ref is None


def _peak_kib(db: Path, store: RecordStore, attempt: int) -> tuple[int, int]:
    connector = SQLConnector(
        "shop",
        {"url": f"sqlite:///{db}", "tables": [{"name": "events", "identity": {"email": "email"}}]},
    )

    async def run() -> tuple[int, int]:
        tracemalloc.start()
        outcome = await perform(connector, _task(attempt), store=store)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        await connector.aclose()
        assert outcome.records_ref is not None
        return outcome.records_ref.count, peak // 1024

    return asyncio.run(run())


def test_access_memory_is_flat_in_the_number_of_records(tmp_path: Path) -> None:
    """10x the rows, about the same peak memory: rows stream from the database to the file."""
    store = _store(tmp_path / "records")
    peaks = {}
    for rows in (3_000, 30_000):
        db = tmp_path / f"{rows}.db"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, email TEXT, payload TEXT)")
            conn.executemany(
                "INSERT INTO events (email, payload) VALUES (?, ?)",
                (("noor@example.nl", "x" * 200) for _ in range(rows)),
            )
        count, peaks[rows] = _peak_kib(db, store, attempt=rows)
        assert count == rows
    # Holding 30,000 records of 200+ bytes in memory would take well over 6 MB.
    assert peaks[30_000] < peaks[3_000] * 1.5 + 256, peaks
