"""Exports written in a separate process, beside the orchestrator's event loop (issue 19)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.artifacts.bulk import BULK_NICENESS, usable_cpus
from orchestrator.artifacts.export import open_export
from orchestrator.fanout import exporter as exporter_module
from orchestrator.fanout.exporter import Exporter, ExportJob
from orchestrator.lifecycle.reducer import RequestState, record_outcome, submit
from orchestrator.runtime import demo
from schemas.events import Record, RecordsRef, TaskOutcome
from schemas.primitives.records import RecordStore, RecordStoreError
from schemas.primitives.sealing import DataKeyMissing, DataKeys, OneKey
from schemas.register import Register, load_register
from tests.orchestrator.test_lifecycle import EMAIL, SYSTEMS, ctx, outcome, request

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _finished(store: RecordStore) -> tuple[RequestState, dict[str, TaskOutcome]]:
    """An access request whose systems found records: two systems' in record files, the
    others' sealed in their references (small results)."""
    state, _ = submit(None, request(type="access"), ctx())
    outcomes: dict[str, TaskOutcome] = {}
    for n, system in enumerate(SYSTEMS):
        store.inline_bytes = 0 if n < 2 else 64 * 1024
        with store.writer("req-1", system, 1) as writer:
            writer.write(Record(collection="contacts", data={"email": EMAIL, "system": system}))
            ref = writer.commit()
        assert ref is not None and (ref.sealed is None) == (n < 2)
        done = outcome(system, action="access", records_ref=ref)
        outcomes[system] = done
        state, _ = record_outcome(state, done, ctx())
    assert state is not None and state.is_final
    return state, outcomes


@pytest.fixture
def setup(tmp_path: Path) -> tuple[DataKeys, RecordStore, Register]:
    keys = DataKeys(tmp_path / "dek", os.urandom(32))
    keys.create("req-1")
    store = RecordStore(tmp_path / "records", keys)
    register = load_register(demo.sql_register_path(), env={"DSR_DEMO_DIR": str(tmp_path)})
    return keys, store, register


def _job(store: RecordStore, keys: DataKeys, register: Register, path: Path) -> ExportJob:
    state, outcomes = _finished(store)
    return ExportJob(path, state, register, outcomes, keys.get("req-1"), False, NOW)


def _write(exporter: Exporter, path: Path, keys: DataKeys, register: Register) -> None:
    asyncio.run(exporter.write(_job(exporter.records, keys, register, path)))


def _members(path: Path, keys: DataKeys) -> dict[str, bytes]:
    data = b"".join(open_export(path, keys, "req-1"))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _broken(*args: object, **kwargs: object) -> None:
    raise AssertionError("the export ran in the orchestrator's own process")


def test_exports_are_written_in_an_export_process_not_on_the_orchestrators_interpreter(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The export process reads the record files and the inline records itself, with the one
    data key it is handed; this process's export code is never called."""
    keys, store, register = setup
    monkeypatch.setattr(exporter_module, "export_request", _broken)
    exporter = Exporter(store, processes=1)
    try:
        _write(exporter, tmp_path / "req-1.zip.enc", keys, register)
    finally:
        exporter.close()
    members = _members(tmp_path / "req-1.zip.enc", keys)
    assert "report.html" in members and "manifest.json" in members
    manifest = json.loads(members["manifest.json"])
    assert manifest["request_id"] == "req-1"
    exported = [name for name in members if name.startswith("data/")]
    for system in SYSTEMS:
        assert any(f"data/{system}/contacts.json" == name for name in exported), system
    contacts = json.loads(members[f"data/{SYSTEMS[0]}/contacts.json"])
    assert contacts == [{"email": EMAIL, "system": SYSTEMS[0]}]


def test_with_no_export_processes_the_export_is_written_in_a_thread(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys, store, register = setup
    monkeypatch.setattr(exporter_module, "export_request", _broken)
    with pytest.raises(AssertionError, match="own process"):
        _write(Exporter(store, processes=0), tmp_path / "a.zip.enc", keys, register)
    monkeypatch.undo()
    _write(Exporter(store, processes=0), tmp_path / "req-1.zip.enc", keys, register)
    assert "report.html" in _members(tmp_path / "req-1.zip.enc", keys)


def test_an_export_process_that_died_is_replaced_and_the_export_still_written(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys, store, register = setup
    exporter = Exporter(store, processes=1)
    try:
        _write(exporter, tmp_path / "first.zip.enc", keys, register)
        pool = exporter._pool
        assert pool is not None
        for pid in list(pool._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        _write(exporter, tmp_path / "req-1.zip.enc", keys, register)
        assert "report.html" in _members(tmp_path / "req-1.zip.enc", keys)
        assert "the export process died; trying again" in caplog.text
        assert exporter._pool is not pool
    finally:
        exporter.close()


@pytest.mark.parametrize("processes", [1, 2])
def test_a_batchs_exports_go_to_each_export_process_in_one_hand_over(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    processes: int,
) -> None:
    """`write_all`: five exports are handed over once per export process, not once each (a
    hand-over wakes threads on both sides and cost a small export more CPU than its pickling).
    Each export keeps its own outcome: one that cannot be written is named, in its place,
    and the others are written all the same."""
    keys, store, register = setup
    job = _job(store, keys, register, tmp_path / "out" / "0.zip.enc")
    jobs = [dataclasses.replace(job, path=tmp_path / "out" / f"{n}.zip.enc") for n in range(5)]
    jobs[3] = dataclasses.replace(jobs[3], key=os.urandom(32))  # another key: records sealed
    exporter = Exporter(store, processes=processes)
    handed: list[int] = []
    try:
        pool = exporter._started()
        submit = pool.submit

        def counted(work: Any, jobs: list[ExportJob], *args: Any) -> Any:
            handed.append(len(jobs))
            return submit(work, jobs, *args)

        monkeypatch.setattr(pool, "submit", counted)
        errors = asyncio.run(exporter.write_all(jobs))
    finally:
        exporter.close()
    assert sorted(handed) == ([5] if processes == 1 else [2, 3])
    assert [error is None for error in errors] == [True, True, True, False, True]
    assert "does not open (wrong key" in str(errors[3])
    assert not jobs[3].path.exists()
    for n in (0, 1, 2, 4):
        assert "report.html" in _members(jobs[n].path, keys)


def test_a_batchs_exports_are_on_disk_names_and_all_before_write_all_returns(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Art. 32(1)(b),(c) GDPR (integrity, and the answer available after an incident): a final
    status points at an export, so the export must survive a power cut once the status is out.
    Each export of a batch is synced under its final name (in a thread, while the next one is
    written), and then the folder it was renamed into: a new name is durable only once its
    directory is (fsync(2)). Recorded here in the order the syncs happen."""
    keys, store, register = setup
    job = _job(store, keys, register, tmp_path / "out" / "0.zip.enc")
    jobs = [dataclasses.replace(job, path=tmp_path / "out" / f"{n}.zip.enc") for n in range(3)]
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    errors = asyncio.run(Exporter(store, processes=0).write_all(jobs))
    assert errors == [None, None, None]
    exports = [str(j.path) for j in jobs]
    assert [s for s in synced if s.startswith(str(tmp_path / "out"))] == [
        *exports,
        str(tmp_path / "out"),
    ]


def test_an_export_process_holds_only_the_key_of_the_request_it_exports(tmp_path: Path) -> None:
    """Data minimisation inside our own processes (Art. 5(1)(c), 32 GDPR): a record reference
    of another request does not open in an export process handed one request's key."""
    keys = DataKeys(tmp_path / "dek", os.urandom(32))
    keys.create("req-1")
    keys.create("req-2")
    store = RecordStore(tmp_path / "records", keys)
    with store.writer("req-2", "crm", 1) as writer:
        writer.write(Record(collection="contacts", data={"email": EMAIL}))
        ref = writer.commit()
    assert ref is not None
    one = OneKey("req-1", keys.get("req-1"))
    with pytest.raises(DataKeyMissing):
        one.get("req-2")
    child_store = RecordStore(tmp_path / "records", one)
    with pytest.raises(RecordStoreError, match="cannot be opened"):
        list(child_store.read(ref, "req-2"))


_ORPHAN = """
import asyncio, os, sys, time
from pathlib import Path
from orchestrator.fanout.exporter import Exporter, ExportJob
from schemas.primitives.records import RecordStore
from schemas.primitives.sealing import DataKeys

exporter = Exporter(RecordStore(Path(sys.argv[1]), DataKeys(Path(sys.argv[2]), os.urandom(32))), 1)
print(exporter._started().submit(os.getpid).result(), flush=True)
time.sleep(120)
"""


def test_export_processes_do_not_outlive_an_orchestrator_killed_outright(tmp_path: Path) -> None:
    """kill -9 gives the orchestrator no chance to stop its export process: the child notices
    its parent is gone and exits, instead of lingering (with a data key in its memory)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN, str(tmp_path / "records"), str(tmp_path / "dek")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert child != parent.pid and _alive(child)
    finally:
        parent.kill()
        parent.wait(10)
    deadline = time.monotonic() + 15
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _megabytes_kept_after_freeing(megabytes: int) -> int:
    """In the process it runs in: how much of a buffer just freed stays resident (Linux)."""

    def resident() -> int:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")

    before = resident()
    buffer = b"x" * (megabytes << 20)  # every page touched
    del buffer
    return (resident() - before) >> 20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads Linux's /proc")
def test_an_export_process_keeps_freed_buffers_for_reuse(
    setup: tuple[DataKeys, RecordStore, Register],
) -> None:
    """An export frees a ~1 MiB buffer per chunk; the export process keeps such memory for the
    next chunk instead of returning it to the kernel and faulting it in again (glibc's mmap and
    trim thresholds raised; `bench/export.py`: 57 -> 64 MB/s). An 8 MiB buffer freed in the
    export process stays resident; in a process left as glibc starts it, it is unmapped."""
    _, store, _ = setup
    exporter = Exporter(store, 1)
    try:
        kept = exporter._started().submit(_megabytes_kept_after_freeing, 8).result(timeout=60)
    finally:
        exporter.close()
    assert kept >= 6
    untuned = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.orchestrator.test_exporter import _megabytes_kept_after_freeing as kept;"
            "print(kept(8))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(untuned.stdout) <= 1


class _FoundNoting(exporter_module._Found):
    """Notes which process reads each system's records (a file beside the record store); with
    `fail` ("crm: raise" or "crm: die"), does that to crm's records in a spooling process."""

    fail = ""

    def __call__(self, system: str) -> Iterable[Record]:
        (self.root.parent / f"read.{system}.{os.getpid()}").touch()
        spooling_process = os.environ.get("DSR_TEST_PARENT") != str(os.getpid())
        if spooling_process and system == "crm" and self.fail == "raise":
            raise RecordStoreError("record file req-1/crm does not match its reference")
        if spooling_process and system == "crm" and self.fail == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(system)


class _FoundRaising(_FoundNoting):
    fail = "raise"


class _FoundDying(_FoundNoting):
    fail = "die"


def _readers(tmp_path: Path) -> dict[str, set[int]]:
    readers: dict[str, set[int]] = {}
    for mark in tmp_path.glob("read.*"):
        _, system, pid = mark.name.split(".")
        readers.setdefault(system, set()).add(int(pid))
    return readers


def test_a_large_exports_systems_are_spooled_side_by_side_in_spooling_processes(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spooling is the Python part of an export (parse, redact, encode): with spooling
    processes each system's records are read and spooled in one of them, and the archive is
    the same, member for member, as one written in a single process."""
    keys, store, register = setup
    monkeypatch.setattr(exporter_module, "_Found", _FoundNoting)
    monkeypatch.setenv("DSR_TEST_PARENT", str(os.getpid()))
    job = _job(store, keys, register, tmp_path / "out" / "side-by-side.zip.enc")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as spoolers:
        exporter_module.export_request(job, store, spoolers)
    readers = _readers(tmp_path)
    assert set(readers) == set(SYSTEMS)
    assert all(os.getpid() not in pids for pids in readers.values())
    for mark in tmp_path.glob("read.*"):
        mark.unlink()
    alone = tmp_path / "out" / "alone.zip.enc"
    exporter_module.export_request(dataclasses.replace(job, path=alone), store)
    assert set(_readers(tmp_path)) == set(SYSTEMS)
    assert _members(job.path, keys) == _members(alone, keys)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "alone.zip.enc", "side-by-side.zip.enc"
    ]  # fmt: skip


def test_an_export_is_spooled_side_by_side_only_when_large_and_a_core_is_spare(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Record files of 16 MiB or more in all, over two systems or more, on two CPUs or more;
    the spooling processes run at the bulk work's nice value, below the orchestrator's."""
    keys, store, register = setup
    job = _job(store, keys, register, tmp_path / "req-1.zip.enc")
    files = {s: o for s, o in job.outcomes.items() if o.records_ref and not o.records_ref.sealed}
    assert len(files) == 2

    def sized(*sizes: int) -> ExportJob:
        outcomes = {
            system: outcome.model_copy(
                update={"records_ref": outcome.records_ref.model_copy(update={"size": size})}
            )
            for (system, outcome), size in zip(files.items(), sizes, strict=False)
            if outcome.records_ref is not None
        }
        return dataclasses.replace(job, outcomes=outcomes)

    monkeypatch.setattr(exporter_module, "usable_cpus", lambda: 2)
    try:
        spoolers = exporter_module._spooling_processes(sized(8 << 20, 8 << 20))
        assert spoolers is not None
        if sys.platform == "linux":  # below the orchestrator's priority
            niceness = spoolers.submit(os.getpriority, os.PRIO_PROCESS, 0).result(timeout=60)
            assert niceness >= BULK_NICENESS > os.getpriority(os.PRIO_PROCESS, 0)
        assert exporter_module._spooling_processes(sized(8 << 20, (8 << 20) - 1)) is None
        assert exporter_module._spooling_processes(sized(64 << 20)) is None  # one system
        monkeypatch.setattr(exporter_module, "usable_cpus", lambda: 1)
        assert exporter_module._spooling_processes(sized(64 << 20, 64 << 20)) is None
    finally:
        exporter_module._discard_spoolers()


def test_a_system_failing_in_a_spooling_process_fails_the_export_and_leaves_nothing(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """crm's record file fails its check in a spooling process: the export fails with that
    error (no personal data in it), and no archive, partial file or spool is left."""
    keys, store, register = setup
    monkeypatch.setattr(exporter_module, "_Found", _FoundRaising)
    monkeypatch.setenv("DSR_TEST_PARENT", str(os.getpid()))
    job = _job(store, keys, register, tmp_path / "out" / "req-1.zip.enc")
    with (
        ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as spoolers,
        pytest.raises(RecordStoreError, match="does not match") as failure,
    ):
        exporter_module.export_request(job, store, spoolers)
    assert EMAIL not in str(failure.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_spooling_process_that_died_leaves_the_export_to_be_spooled_in_the_export_process(
    setup: tuple[DataKeys, RecordStore, Register],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spooling process killed mid-export breaks its pool: the export process spools that
    export itself (it is still written, whole), and the next large export gets fresh ones."""
    keys, store, register = setup
    monkeypatch.setattr(exporter_module, "_Found", _FoundDying)
    monkeypatch.setenv("DSR_TEST_PARENT", str(os.getpid()))
    monkeypatch.setattr(exporter_module, "SPOOL_PROCESSES_FROM_BYTES", 0)
    monkeypatch.setattr(exporter_module, "usable_cpus", lambda: 2)
    job = _job(store, keys, register, tmp_path / "out" / "req-1.zip.enc")
    try:
        exporter_module._export_in_child(job, store.root)
        assert exporter_module._spoolers is None  # the broken pool is gone
    finally:
        exporter_module._discard_spoolers()
    assert "a spooling process died" in caplog.text
    assert os.getpid() in _readers(tmp_path)["crm"]
    members = _members(job.path, keys)
    for system in SYSTEMS:
        assert json.loads(members[f"data/{system}/contacts.json"]) == [
            {"email": EMAIL, "system": system}
        ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["req-1.zip.enc"]


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", 64), ("200000 100000\n", 2), ("150000 100000\n", 1), (None, 64)],
)
def test_spooling_processes_stay_within_the_containers_cpu_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str | None, expected: int
) -> None:
    """On a 64-CPU node, an orchestrator pod limited to 2 CPUs (cgroup v2 `cpu.max`) counts 2
    (1 for 1.5: no spooling processes); without a limit, or a file to read it from, 64."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    own = tmp_path / "cgroup"
    own.write_text("0::/kubepods/pod1/orchestrator\n")
    group = tmp_path / "fs" / "kubepods" / "pod1" / "orchestrator"
    group.mkdir(parents=True)
    if cpu_max is not None:
        (group / "cpu.max").write_text(cpu_max)
    assert usable_cpus(tmp_path / "fs", own) == expected


def _pid(pause: float) -> int:
    time.sleep(pause)
    return os.getpid()


def _start_spooling_processes() -> list[int]:
    """In an export process: its spooling processes started as by a large export (two
    systems' record files of 16 MiB); the pids of the export process and of those."""
    exporter_module.usable_cpus = lambda: 2  # type: ignore[assignment]  # a one-CPU machine too
    state, _ = submit(None, request(type="access"), ctx())
    outcomes = {
        system: outcome(
            system,
            action="access",
            records_ref=RecordsRef(
                path=f"req-1/{system}.1.f.jsonl", sha256="0" * 64, size=16 << 20, count=1
            ),
        )
        for system in SYSTEMS[:2]
    }
    job = ExportJob(Path("unused"), state, None, outcomes, os.urandom(32), False, NOW)  # type: ignore[arg-type]
    spoolers = exporter_module._spooling_processes(job)
    assert spoolers is not None
    return [os.getpid(), *sorted(set(spoolers.map(_pid, [0.3] * 4)))]


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_closing_the_exporter_stops_the_spooling_processes_too(
    setup: tuple[DataKeys, RecordStore, Register],
) -> None:
    """An export process ends by joining its child processes: its spooling processes are
    stopped first, so the orchestrator's `Exporter.close()` returns (it waited forever before)
    and no spooling process is left running with a data key in its memory."""
    _, store, _ = setup
    exporter = Exporter(store, 1)
    pids = exporter._started().submit(_start_spooling_processes).result(timeout=60)
    assert len(pids) == 3  # the export process and two spooling processes
    closing = threading.Thread(target=exporter.close, daemon=True)
    closing.start()
    closing.join(timeout=30)
    try:
        assert not closing.is_alive()
        assert all(_gone(pid, within=10) for pid in pids)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
