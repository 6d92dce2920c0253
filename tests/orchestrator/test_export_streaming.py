"""The export's fast path: one spool pass per collection, CSV as the csv module writes it,
ISA-L deflate that any unzip reads, records streamed from the record store."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator.artifacts import bulk, export
from orchestrator.artifacts.export import open_export, write_export
from orchestrator.artifacts.redaction import MARKERS
from schemas.events import Record
from schemas.primitives.records import RecordStore, RecordStoreError
from schemas.primitives.sealed_files import SealedWriter
from schemas.primitives.sealing import DataKeys, context, seal
from tests.orchestrator.test_export import NOW, make_state, register

_TRICKY = ["a", "é", ",", '"', "\r", "\n", " ", "\x00", "\t", "\\", "'", "💡", ";"]


def _random_cell(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.6:
        return "".join(rng.choices(_TRICKY, k=rng.randint(0, 6)))
    if kind < 0.7:
        return None
    if kind < 0.8:
        return rng.randint(-(10**20), 10**20)
    if kind < 0.9:
        return rng.uniform(-1e20, 1e20)
    return rng.choice([True, False, [1, 'a,"'], {"x": None}, float("nan"), float("-inf")])


def test_csv_rows_match_the_csv_module() -> None:
    """`_csv_row` writes the bytes `csv.writer` would: quoting, doubled quotes, line breaks
    in cells, a lone empty cell, numbers; 20,000 random rows of awkward text."""
    rng = random.Random(19)
    for _ in range(20_000):
        values = [_random_cell(rng) for _ in range(rng.randint(1, 4))]
        expected = io.StringIO(newline="")
        cells = [v if isinstance(v, str) else export._cell(v) for v in values]
        csv.writer(expected).writerow(cells)
        assert export._csv_row(values) == expected.getvalue(), values


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth > 3 or kind < 0.4:
        return _random_cell(rng) if rng.random() < 0.8 else "".join(rng.choices(_TRICKY, k=3))
    if kind < 0.7:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        "".join(rng.choices(_TRICKY, k=rng.randint(0, 4))): _random_json(rng, depth + 1)
        for _ in range(rng.randint(0, 4))
    }


def test_the_manifest_is_the_json_modules_indented_text() -> None:
    """`_pretty_json` (the manifest) writes the bytes of `json.dumps(value, indent=2,
    ensure_ascii=False)`: 20,000 random nested values of awkward text, numbers, empty lists and
    mappings. What pydantic-core cannot encode (a lone surrogate) fails as it did before."""
    rng = random.Random(23)
    for _ in range(20_000):
        value = _random_json(rng)
        if "nan" in repr(value) or "inf" in repr(value):
            continue  # NaN and infinities: the json module writes non-JSON; never in a manifest
        expected = json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8")
        assert export._pretty_json(value) == expected, value
    with pytest.raises(UnicodeEncodeError):
        export._pretty_json({"collection": "\ud800"})


def _old_csv(records: list[dict[str, Any]]) -> bytes:
    """The CSV as the export wrote it before the fast path: DictWriter over the union of keys."""
    fields = list(dict.fromkeys(k for r in records for k in r))
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fields, restval="")
    writer.writeheader()
    for record in records:
        writer.writerow({k: export._cell(v) for k, v in record.items()})
    return out.getvalue().encode("utf-8")


def test_csv_rows_spooled_before_a_new_key_get_its_empty_cell(tmp_path: Path) -> None:
    """A key first seen late (after several spool flushes) still has its column in every row,
    empty where a record lacks it, byte for byte what the csv module's DictWriter wrote."""
    rng = random.Random(7)
    n = 60_000  # a few spool flushes and sealed chunks before the late keys
    data = [
        {"id": i, "text": "".join(rng.choices(_TRICKY, k=8)), "ok": i % 3 == 0} for i in range(n)
    ]
    data[5]["early"] = 'x,"y"\r\nz'
    data[n - 3]["late"] = "regel 1\nregel 2"
    data[n - 1]["later"] = None

    def records(system: str) -> Iterator[Record]:
        if system == "crm":
            for row in data:
                yield Record.model_construct(collection="notes", data=row, others=[])

    out = tmp_path / "export.zip"
    write_export(out, make_state(), register(), records, generated_at=NOW)
    with zipfile.ZipFile(out) as archive:
        written = archive.read("data/crm/notes.csv")
        assert json.loads(archive.read("data/crm/notes.json")) == data
    assert written == _old_csv(data)
    rows = list(csv.reader(io.StringIO(written.decode("utf-8"), newline="")))
    assert {len(row) for row in rows} == {6}
    assert rows[0] == ["id", "text", "ok", "early", "late", "later"]


def test_members_are_deflated_so_any_unzip_reads_them(tmp_path: Path) -> None:
    """ISA-L writes the data members; the standard library inflates them and their CRCs hold."""
    out = tmp_path / "export.zip"
    write_export(out, make_state(), register(), _many_records, generated_at=NOW)
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None  # every member inflates and matches its CRC-32
        info = archive.getinfo("data/crm/tickets.json")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.compress_size < info.file_size / 2
        tickets = json.loads(archive.read("data/crm/tickets.json"))
    assert len(tickets) == 3000 and tickets[-1]["id"] == 2999


def _many_records(system: str) -> Iterator[Record]:
    if system == "crm":
        for i in range(3000):
            yield Record(collection="tickets", data={"id": i, "body": f"vraag {i} over factuur"})


def test_a_stray_python_value_does_not_abort_the_export(tmp_path: Path) -> None:
    """A connector that hands over a datetime or Decimal gets text, not a failed export."""

    def records(system: str) -> Iterator[Record]:
        if system == "crm":
            data = {"at": datetime(2026, 3, 1, tzinfo=UTC), "amount": Decimal("12.50")}
            yield Record.model_construct(collection="orders", data=data, others=[])

    out = tmp_path / "export.zip"
    write_export(out, make_state(), register(), records, generated_at=NOW)
    with zipfile.ZipFile(out) as archive:
        [order] = json.loads(archive.read("data/crm/orders.json"))
        rows = list(csv.DictReader(io.StringIO(archive.read("data/crm/orders.csv").decode())))
    assert order == {"at": "2026-03-01T00:00:00Z", "amount": "12.50"}
    assert rows == [{"at": '"2026-03-01T00:00:00Z"', "amount": '"12.50"'}]


def _store(
    tmp_path: Path, records: list[Record], inline_bytes: int = 0
) -> tuple[RecordStore, Any, bytes]:
    keys = DataKeys(tmp_path / "dek", os.urandom(32))
    key = keys.create("req-export-1")
    store = RecordStore(tmp_path / "records", keys, inline_bytes=inline_bytes)
    with store.writer("req-export-1", "crm", 1) as writer:
        for record in records:
            writer.write(record)
        ref = writer.commit()
    return store, ref, key


def test_art_15_4_redaction_holds_for_records_read_from_the_store(tmp_path: Path) -> None:
    """Art. 15(4) GDPR: a shared record streamed back from the sealed record store is redacted
    in the JSON and the CSV, like one handed over in memory."""
    shared = Record(
        collection="tickets",
        data={"id": 1, "cc": "jan@example.com", "body": "mijn vraag"},
        others=["/cc"],
    )
    own = Record(collection="tickets", data={"id": 2, "body": "nog een vraag"})
    store, ref, key = _store(tmp_path, [shared, own])
    out = tmp_path / "req-export-1.zip.enc"
    write_export(
        out,
        make_state(systems=("crm",)),
        register(),
        lambda system: store.read(ref, "req-export-1"),
        generated_at=NOW,
        key=key,
    )
    plain = b"".join(open_export(out, store.keys))
    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        everything = b"".join(archive.read(n) for n in archive.namelist())
        tickets = json.loads(archive.read("data/crm/tickets.json"))
    assert b"jan@example.com" not in everything
    assert tickets == [{"id": 1, "cc": MARKERS["nl"], "body": "mijn vraag"}, own.data]


@pytest.mark.parametrize("inline", [False, True], ids=["file", "inline"])
def test_a_record_file_with_an_invalid_line_fails_the_export_without_quoting_it(
    tmp_path: Path, inline: bool
) -> None:
    """The store's records are validated on the way in (one pydantic pass over the JSON);
    a bad line stops the export with the file and line number, never its content. The same
    for records that travelled sealed in their reference."""
    store, ref, key = _store(
        tmp_path, [Record(collection="c", data={"a": 1})], inline_bytes=4096 if inline else 0
    )
    # Not a JSON Pointer: the connector's writer would have refused it.
    line = b'{"collection":"c","data":{"a":1},"others":["geheim@example.nl"]}\n'
    digest = hashlib.sha256(line).hexdigest()
    bad = ref.model_copy(update={"size": len(line), "sha256": digest})
    if inline:
        assert ref.sealed is not None and not store.path(ref).exists()
        sealed_line = seal(key, line, context("records-inline", ref.path))
        bad = bad.model_copy(update={"sealed": sealed_line})
    else:
        with SealedWriter(store.path(ref), key, context("records", ref.path)) as sealed:
            sealed.write(line)
    with pytest.raises(RecordStoreError) as failure:
        write_export(
            tmp_path / "out.zip",
            make_state(systems=("crm",)),
            register(),
            lambda system: store.read(bad, "req-export-1"),
            generated_at=NOW,
        )
    assert "line 1" in str(failure.value) and "geheim" not in str(failure.value)
    assert not (tmp_path / "out.zip").exists()


def test_a_small_spool_stays_in_memory_and_a_large_one_is_sealed_on_disk(tmp_path: Path) -> None:
    """Most collections are small: no temporary directory or file at all; a large one is
    sealed on disk as it grows (never plain personal data in a temporary file), both read back
    whole, and the directory goes with the export."""
    from orchestrator.artifacts.export import _CHUNK, _SpoolDir, _SpoolFile

    with _SpoolDir(tmp_path) as spool_dir:
        small = _SpoolFile(spool_dir, os.urandom(32))
        small.write(b'{"email":"anna@example.nl"}')
        small.close()
        assert list(tmp_path.iterdir()) == []  # not even the directory
        assert small.reader().read() == b'{"email":"anna@example.nl"}'

        large = _SpoolFile(spool_dir, os.urandom(32))
        piece = b'{"email":"anna@example.nl","n":1},' * 1000
        times = _CHUNK // len(piece) + 2
        for _ in range(times):
            large.write(piece)
        large.close()
        [spooled] = [f for d in tmp_path.iterdir() for f in d.iterdir()]
        assert b"anna@example.nl" not in spooled.read_bytes()  # sealed
        with large.reader() as raw:
            assert raw.read() == piece * times
    assert list(tmp_path.iterdir()) == []


def _large(system: str, n: int = 2500) -> list[dict[str, Any]]:
    """More than a spool keeps in memory (about 1.3 MB of JSON): its spool goes to disk."""
    return [{"id": i, "system": system, "body": f"{system} {i} " + "tekst " * 80} for i in range(n)]


def test_a_large_system_is_written_while_the_next_one_is_spooled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing one system's members (deflate, hashing, sealing: C that lets go of the GIL)
    overlaps spooling the next system's records (Python), in system order. Proven by making
    crm's member writing wait for mailing's spooling to begin: written one after the other,
    that wait runs out; and the archive holds every record, in order, either way. The
    writing thread runs at the bulk work's nice value, below the caller's."""
    real = export._write_system
    mailing_started = threading.Event()
    overlapped: list[bool] = []
    niceness: list[int] = []

    def write_system(archive: zipfile.ZipFile, system: str, spools: list[Any], *more: Any) -> Any:
        if system == "crm":
            overlapped.append(mailing_started.wait(timeout=5))
            niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(archive, system, spools, *more)

    def records(system: str) -> Iterator[Record]:
        if system == "mailing":
            mailing_started.set()
        for row in _large(system) if system in {"crm", "mailing"} else []:
            yield Record.model_construct(collection="notes", data=row, others=[])

    monkeypatch.setattr(export, "_write_system", write_system)
    out = tmp_path / "export.zip"
    summary = write_export(out, make_state(), register(), records, generated_at=NOW)
    assert overlapped == [True]
    if sys.platform == "linux":  # bulk work below the orchestrator's priority (per thread)
        assert niceness[0] >= bulk.BULK_NICENESS > os.getpriority(os.PRIO_PROCESS, 0)
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        for system in ("crm", "mailing"):
            assert json.loads(archive.read(f"data/{system}/notes.json")) == _large(system)
        names = archive.namelist()
    assert names.index("data/crm/notes.csv") < names.index("data/mailing/notes.json")
    assert [f.path for f in summary.files][:4] == [
        "data/crm/notes.json", "data/crm/notes.csv", "data/mailing/notes.json",
        "data/mailing/notes.csv",
    ]  # fmt: skip


@pytest.mark.parametrize("failing", ["members", "next system"])
def test_a_failure_beside_a_member_being_written_fails_the_export_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Writing crm's members fails in its thread, or the next system's records fail while
    crm's members are still being written: the export raises that error, only after the
    thread is done with the archive, and leaves no archive, partial file or spool behind."""
    real = export._write_system

    def write_system(archive: zipfile.ZipFile, system: str, spools: list[Any], *more: Any) -> Any:
        if system == "crm" and failing == "members":
            raise OSError("disk full")
        time.sleep(0.3)  # still writing while the next system fails
        return real(archive, system, spools, *more)

    def records(system: str) -> Iterator[Record]:
        if system == "mailing" and failing == "next system":
            raise RuntimeError("connector file unreadable")
        for row in _large(system) if system == "crm" else []:
            yield Record.model_construct(collection="notes", data=row, others=[])

    monkeypatch.setattr(export, "_write_system", write_system)
    expected = OSError if failing == "members" else RuntimeError
    with pytest.raises(expected):
        write_export(tmp_path / "export.zip", make_state(), register(), records, generated_at=NOW)
    assert list(tmp_path.iterdir()) == []


def test_a_large_members_pieces_are_deflated_side_by_side_into_one_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writes of any size (a CSV row, 1 MiB spool pieces, more) become pieces of 1 MiB or more
    deflated in the deflate threads, joined in order into one raw deflate stream that the
    standard library inflates to exactly the bytes written; about as small as one stream."""
    real = export._deflate_piece
    threads: list[str] = []

    def deflate_piece(piece: bytes) -> bytes:
        threads.append(threading.current_thread().name)
        return real(piece)

    monkeypatch.setattr(export, "_deflate_piece", deflate_piece)
    rng = random.Random(5)
    words = ["".join(rng.choices("abcdefghij,\n", k=rng.randint(1, 9))) for _ in range(500)]
    writes = [
        " ".join(rng.choices(words, k=rng.choice([1, 40, 300_000]))).encode() for _ in range(60)
    ]
    data = b"".join(writes)
    with ThreadPoolExecutor(2, thread_name_prefix="deflate-test") as deflaters:
        stream = export._ParallelDeflate(deflaters)
        out = b"".join(stream.compress(piece) for piece in writes) + stream.flush()
    assert zlib.decompress(out, -zlib.MAX_WBITS) == data
    assert len(threads) > 10  # ~32 MB in pieces of 1 MiB or more (a write is not split)
    assert set(threads) <= {"deflate-test_0", "deflate-test_1"}
    single = export._deflater()
    assert len(out) < 1.01 * len(single.compress(data) + single.flush())
