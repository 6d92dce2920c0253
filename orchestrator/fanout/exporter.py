"""Exports are written in a separate process, so the orchestrator's event loop keeps the GIL.

An export is CPU work from end to end: records parsed and checked, shaped, redacted, written
as JSON and CSV, deflated, hashed and sealed, plus the Art. 15 report. In a thread it shares
the interpreter with the event loop: measured under `bench/pipeline.py`, the exports of small
requests took about a third of the orchestrator's interpreter time, which capped the pipeline
at one core; and a gigabyte export holds the loop back, in slices, for as long as it runs.

`Exporter` hands exports to a pool of `DSR_EXPORT_PROCESSES` worker processes (default 1; 0
writes them in a thread, as before): a batch's exports in one piece per process
(`write_all`), since every hand-over wakes threads on both sides. The parent opens what needs
its keys and state: each request's kept outcomes and its data key. The child gets, per export,
the request's state, the register, the outcomes and that one data key, and reads the record
store itself (sealed files and inline records, `schemas.primitives.records`); nothing else of
the orchestrator's is in it. It syncs each export in a thread while it writes the next, and
returns once all of them and their folder are on disk (`_Syncs`). Processes are spawned, not
forked: the orchestrator runs threads (Faust's, aiokafka's).

A large export is spooled side by side (`_spooling_processes`): each system's records are
read, redacted and encoded into sealed spool files in a spooling process, a child of the export
process, while the export process writes the archive from them in system order.

A child that dies (killed, out of memory) breaks the pool: the export is tried once more in a
fresh pool, then it fails like any other export, as the request's problem, not the worker's.
An orchestrator killed outright (kill -9) cannot stop its children: each one watches its parent
and exits within a second of it going, so none is left behind holding a data key.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import multiprocessing.util
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from orchestrator.artifacts.attachments import AttachedFiles
from orchestrator.artifacts.bulk import lower_priority, usable_cpus
from orchestrator.artifacts.export import ExportSummary, write_export
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import Record, TaskOutcome
from schemas.primitives.records import RecordStore, RecordStoreError
from schemas.primitives.sealing import OneKey, SealingError, sync_folder
from schemas.register import Register

log = logging.getLogger("dsr.orchestrator")

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ExportJob:
    """One request's export: everything it is written from (picklable, for the export
    process): the state, the register, the kept outcomes and the request's data key."""

    path: Path
    state: RequestState
    register: Register
    outcomes: dict[str, TaskOutcome]
    key: bytes
    portability: bool
    generated_at: datetime


@dataclass(frozen=True)
class _Found:
    """A request's records per system, from its kept outcomes: inline, or read from the
    record store with the request's key alone. Picklable, for the spooling processes."""

    root: Path
    request_id: str
    key: bytes
    outcomes: dict[str, TaskOutcome]

    def __call__(self, system: str) -> Iterable[Record]:
        outcome = self.outcomes.get(system)
        if outcome is None:
            return []
        if outcome.records_ref is not None:
            store = RecordStore(self.root, OneKey(self.request_id, self.key))
            return store.read(outcome.records_ref, self.request_id)
        return outcome.records


def export_request(
    job: ExportJob,
    records: RecordStore,
    spoolers: Executor | None = None,
    *,
    durable: bool = True,
) -> ExportSummary:
    """Write one request's sealed export from its kept outcomes (in this process; its systems
    spooled in `spoolers` when given; not synced to disk with `durable` False)."""
    request_id = job.state.request_id
    return write_export(
        job.path,
        job.state,
        job.register,
        _Found(records.root, request_id, job.key, job.outcomes),
        generated_at=job.generated_at,
        portability=job.portability,
        key=job.key,
        attachments=AttachedFiles(records, request_id, job.outcomes.get),
        spoolers=spoolers,
        durable=durable,
    )


#: Record files of at least this many bytes in all, over two systems or more, are spooled side
#: by side in spooling processes (an export process's own children); smaller exports (nearly
#: all) are spooled in the export process, where handing them over would cost more.
SPOOL_PROCESSES_FROM_BYTES = 16 << 20
#: Spooling processes at most (and no more than this process may run on CPUs).
_MAX_SPOOLERS = 4
_spoolers: ProcessPoolExecutor | None = None


def _spooling_processes(job: ExportJob) -> Executor | None:
    """The export process's spooling processes (started on first use, then kept), for an
    export large enough to gain from them on a machine with a core to spare; else None."""
    global _spoolers
    sizes = [o.records_ref.size for o in job.outcomes.values() if o.records_ref is not None]
    if len(sizes) < 2 or sum(sizes) < SPOOL_PROCESSES_FROM_BYTES:
        return None
    workers = min(usable_cpus(), _MAX_SPOOLERS)
    if workers < 2:
        return None
    if _spoolers is None:
        _spoolers = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_spooler,
        )
        # An export process ends by joining its child processes, before the interpreter's
        # exit hooks would stop this pool: stopped first, or the export process (and the
        # orchestrator closing it) would wait on them forever. Before the pool's own queues
        # are closed too (their finalizers run at priority 10), or the stop never arrives.
        multiprocessing.util.Finalize(None, _stop_spoolers, exitpriority=100)
    return _spoolers


def _start_spooler() -> None:
    """In a spooling process, at start: as an export process, at the priority of a large
    export's bulk work (`BULK_NICENESS`, below the orchestrator's)."""
    lower_priority()
    _start_child()


#: How often an export process checks that the orchestrator that started it still runs.
_PARENT_CHECK_SECONDS = 1.0


#: glibc's `mallopt` parameters, and the values an export process sets (`tune_allocator`).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 16 << 20
_TRIM_THRESHOLD = 64 << 20


def tune_allocator() -> bool:
    """Let freed export buffers be reused rather than handed back to the kernel (glibc only).

    An export allocates and frees a buffer of about 1 MiB for every chunk it spools, seals and
    deflates. glibc serves such sizes with a fresh `mmap` (its threshold starts at 128 KiB) and
    returns freed heap tops past 128 KiB to the kernel, so each new buffer is page-faulted and
    zeroed again. Raising both thresholds (to 16 and 64 MiB) keeps that memory for reuse:
    measured with `bench/export.py`, 57 -> 64 MB/s, peak RSS +3 MB. Returns False where the
    C library has no `mallopt` (musl, macOS), which changes nothing but the speed.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def _start_child() -> None:
    """In an export process, at start: its allocator tuned for exports; and a watch on the
    orchestrator that started it."""
    tune_allocator()
    _watch_parent()


def _watch_parent() -> None:
    """In an export process, at start: exit as soon as the orchestrator that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="dsr-parent-watch", daemon=True).start()


_EXPORT_ERRORS = (RecordStoreError, SealingError, OSError)


def _export_all_in_child(jobs: list[ExportJob], record_dir: Path) -> list[str | None]:
    """In an export process: exports, one after the other; for each, None or the text of its
    own error (records, seals, disk). Any other error is a bug: raised.

    Each export is synced to disk in a thread while the next one is written, and the folders
    they were renamed into once at the end (`_Syncs`), all before this returns: before any
    status event can point at them. Synced in line, an export's `fsync` was about a third of
    its time in the export process under `bench/pipeline.py`, and the orchestrator waits on
    every export of its batch.
    """
    errors: list[str | None] = []
    with _Syncs() as syncs:
        for job in jobs:
            try:
                _export_in_child(job, record_dir, durable=False)
            except _EXPORT_ERRORS as exc:
                errors.append(str(exc))
            else:
                errors.append(None)
                syncs.add(len(errors) - 1, job.path)
    for n, error in syncs.failed.items():
        errors[n] = error
        jobs[n].path.unlink(missing_ok=True)  # not on disk for sure: no export at all
    return errors


class _Syncs:
    """Files synced to disk in a thread as they are handed in (`fsync` waits on the disk
    without the GIL), and their folders once when the block ends, which waits for all."""

    def __init__(self) -> None:
        self.failed: dict[int, str] = {}
        self._synced: list[tuple[int, Path]] = []
        self._queue: queue.SimpleQueue[tuple[int, Path] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="dsr-export-sync", daemon=True)

    def __enter__(self) -> _Syncs:
        self._thread.start()
        return self

    def add(self, n: int, path: Path) -> None:
        """Sync file number `n` (its failure is kept as `failed[n]`)."""
        self._queue.put((n, path))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            n, path = item
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.failed[n] = f"the export could not be synced to disk: {exc.strerror}"
            else:
                self._synced.append(item)

    def __exit__(self, *exc_info: object) -> None:
        self._queue.put(None)
        self._thread.join()
        # Renamed into place: the new names are durable once their folders are (fsync(2)).
        for folder in {path.parent for _, path in self._synced}:
            try:
                sync_folder(folder)
            except OSError as exc:
                for n, path in self._synced:
                    if path.parent == folder:
                        self.failed[n] = f"the export could not be synced to disk: {exc.strerror}"


def _export_in_child(job: ExportJob, record_dir: Path, durable: bool = True) -> None:
    """In an export process: the record store opened with this request's key alone; a large
    export's systems spooled side by side in spooling processes."""
    store = RecordStore(record_dir, OneKey(job.state.request_id, job.key))
    request_id = job.state.request_id
    try:
        spoolers = _spooling_processes(job)
    except OSError as exc:  # no process to be had: spooled here, one system after another
        log.warning("request %s: no spooling process (%s)", request_id, exc)
        spoolers = None
    try:
        export_request(job, store, spoolers, durable=durable)
    except BrokenProcessPool:
        # A spooling process died (killed, out of memory): this export is spooled here, and
        # the next large one gets fresh spooling processes. Not raised as such: to the
        # orchestrator a broken pool means its export process died.
        _discard_spoolers()
        log.warning("request %s: a spooling process died; spooling here", request_id)
        export_request(job, store, None, durable=durable)


def _discard_spoolers() -> None:
    global _spoolers
    pool, _spoolers = _spoolers, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _stop_spoolers() -> None:
    """At the export process's exit: its spooling processes stopped and waited for."""
    global _spoolers
    pool, _spoolers = _spoolers, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


class Exporter:
    """Writes exports in `processes` worker processes (0: in a thread of this process)."""

    def __init__(self, records: RecordStore, processes: int) -> None:
        self.records = records
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    async def write(self, job: ExportJob) -> None:
        """Write one export; errors of the export itself (records, seals, disk) propagate."""
        await self._run(_export_in_child, job, [job])

    async def write_all(self, jobs: Sequence[ExportJob]) -> list[str | None]:
        """Write these exports; for each, None or why it failed (records, seals, disk).

        Handed to the export processes in one piece per process, not one per export: each
        hand-over wakes a feeder thread, the process and a result thread, and for a small
        export that cost more CPU than a tenth of its writing (`bench/pipeline.py`).
        """
        processes = max(1, self.processes)
        shares = [list(jobs[n::processes]) for n in range(min(processes, len(jobs)))]
        results = await asyncio.gather(
            *(self._run(_export_all_in_child, share, share) for share in shares)
        )
        errors: list[str | None] = [None] * len(jobs)
        for n, result in enumerate(results):
            errors[n::processes] = result
        return errors

    async def _run(self, work: Callable[[_T, Path], _R], arg: _T, jobs: list[ExportJob]) -> _R:
        """`work(arg, record folder)` in the export process (in a thread with 0 processes)."""
        if self.processes <= 0:
            return await asyncio.to_thread(work, arg, self.records.root)
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._started()
            try:
                return await loop.run_in_executor(pool, work, arg, self.records.root)
            except BrokenProcessPool:
                # A child died under these exports or another one: start afresh, try once more.
                self._discard(pool)
                if attempt == 2:
                    raise OSError(
                        "the export process died twice while writing this export"
                    ) from None
                for job in jobs:
                    log.warning(
                        "request %s: the export process died; trying again", job.state.request_id
                    )
        raise AssertionError("unreachable")

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child,
            )
        return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the export processes (after the exports in progress)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


__all__ = ["ExportJob", "Exporter", "export_request", "tune_allocator"]
