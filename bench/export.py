"""Benchmark: assemble a synthetic access export of a given size; peak RSS and MB/s as JSON.

The production path, end to end: records (about 1 KB of JSON each, over three systems and a
few collections; mixed text, numbers, dates, addresses and ids drawn from a seeded generator,
so the data compresses about as well as a real support desk's, not trivially) are generated on
the fly and written to the record store as a connector worker
does (`RecordStore.writer`, sealed with the request's data key), then streamed back, checked,
into the sealed export ZIP as the orchestrator does (`write_export` over `RecordStore.read`).
The baseline is a plain copy of the
same record files in the same process; throughput is reported as a ratio to it. The run happens
in a fresh subprocess so its peak RSS (ru_maxrss) belongs to the benchmark alone.

    python bench/export.py             # 1 GB of record JSON
    python bench/export.py --mb 200    # a quick run
    python bench/export.py --mb 200 --levels 0,1,2,3 # deflate level vs MB/s vs ratio
    python bench/export.py --mb 200 --beside-loop     # event-loop lag: thread vs export process

Levels (ISA-L), 200 MB, 2 shared cores, `--levels 0,1,2,3,3,2,1,0` (both passes); the ratio is
JSON and CSV members to the sealed ZIP. Since members are deflated in a thread beside the next
system's spooling, deflate time shows: level 3 was the slowest in both passes (here and at
100 MB), level 1 the fastest, so the export uses level 1, for archives 4.6 % larger than level
3's. (An earlier table, deflate on the main thread, showed no difference and chose level 3.)
stdlib zlib on the same data: level 6 (the old default) 34-43 MB/s at 2.61-2.7.

    level   MB/s (pass 1, 2)   ratio
        0   71.3  67.6         2.11
        1   71.6  70.4         2.38
        2   71.1  69.1         2.45
        3   68.9  66.3         2.49
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("crm", "support", "mailing")
_LETTERS = "abcdefghijklmnopqrstuvwxyz" + "eeeeaaaiioonnrrsstt"


class _Corpus:
    """Seeded, cheap, not trivially compressible record data: a Zipf-like vocabulary of
    pseudo-words for text, plus numbers, dates, e-mail addresses and ids."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        rng = self._rng
        words = ["".join(rng.choices(_LETTERS, k=rng.randint(2, 11))) for _ in range(6000)]
        self._words = words
        self._weights = [1 / (rank + 1) for rank in range(len(words))]
        self._cum = list(itertools.accumulate(self._weights))

    def text(self, n: int) -> str:
        """`n` words of text with some punctuation and numbers in it."""
        rng = self._rng
        words = rng.choices(self._words, cum_weights=self._cum, k=n)
        for i in range(0, n, rng.randint(7, 15)):
            words[i] = words[i].capitalize() if rng.random() < 0.7 else str(rng.randint(1, 99999))
        return " ".join(words) + "."

    def record(self, i: int) -> dict[str, object]:
        """One record, about 1 KB of JSON."""
        rng = self._rng
        seconds = 1_500_000_000 + rng.randrange(300_000_000)
        when = datetime.fromtimestamp(seconds, UTC)
        return {
            "id": i,
            "uuid": f"{rng.getrandbits(128):032x}",
            "created_at": when.isoformat(),
            "updated_at": seconds * 1000 + rng.randrange(1000),
            "from": f"{rng.choice(self._words)}.{rng.choice(self._words)}@example.nl",
            "subject": self.text(rng.randint(3, 9)),
            "amount": round(rng.uniform(0, 5000), 2),
            "ip": ".".join(str(rng.randrange(256)) for _ in range(4)),
            "tags": rng.sample(self._words[:200], rng.randint(0, 4)),
            "body": self.text(rng.randint(90, 150)),
            "resolved": rng.random() < 0.5,
        }


def _register() -> dict[str, object]:
    """A register with the benchmark's systems."""
    return {
        "systems": [
            {
                "name": name,
                "kind": "other",
                "connector": "memory",
                "data_categories": ["name", "email", "messages"],
                "purposes": ["support"],
                "legal_basis": ["contract"],
                "profiling": "none",
                "retention": "2 years",
            }
            for name in SYSTEMS
        ]
    }


@dataclass
class _Stored:
    """A completed access request whose records are in a sealed record store."""

    state: Any
    register: Any
    keys: Any
    key: bytes
    store: Any
    refs: dict[str, Any]
    stored: int
    store_seconds: float


def _store(mb: int, out_dir: Path) -> _Stored:
    """Write `mb` MB of record JSON into a record store, as a connector worker does."""
    from orchestrator.lifecycle.reducer import RequestState
    from schemas.events import OutcomeStatus, Record, RequestStatus, SystemProgress
    from schemas.primitives.records import RecordStore
    from schemas.primitives.sealing import DataKeys
    from schemas.register import parse_register
    from tests import factories

    request = factories.request("bench-export", "bench@example.nl", requested_by="bench")
    state = RequestState(
        request_id=request.request_id,
        request=request,
        status=RequestStatus.COMPLETED,
        systems={s: SystemProgress(status=OutcomeStatus.COMPLETED) for s in SYSTEMS},
    )
    target = mb * 1_000_000 // len(SYSTEMS)

    def records(system: str) -> Iterator[Record]:
        corpus = _Corpus(SYSTEMS.index(system))
        produced = 0
        i = 0
        while produced < target:
            data = corpus.record(i)
            produced += len(json.dumps(data, ensure_ascii=False))  # the size as exported
            i += 1
            # One record in fifty is shared with someone else: redaction is on the path too.
            others = ["/from"] if i % 50 == 0 else []
            yield Record.model_construct(
                collection=("tickets", "messages", "notes")[i % 3], data=data, others=others
            )

    # Sealed at rest, as in production: record files and the export, with the request's key.
    keys = DataKeys(out_dir / "dek", os.urandom(32))
    key = keys.create(request.request_id)
    store = RecordStore(out_dir / "records", keys)
    start = time.perf_counter()
    refs = {}
    for system in SYSTEMS:
        with store.writer(request.request_id, system, 1) as writer:
            for record in records(system):
                writer.write(record)
            refs[system] = writer.commit()
    seconds = time.perf_counter() - start
    stored = sum(ref.size for ref in refs.values() if ref is not None)
    return _Stored(state, parse_register(_register()), keys, key, store, refs, stored, seconds)


def _job(setup: _Stored, out_dir: Path) -> Any:
    """The orchestrator's export job for the stored request: its outcomes point at the records."""
    from orchestrator.fanout.exporter import ExportJob
    from schemas.events import TaskOutcome

    request_id = setup.state.request_id
    outcomes = {
        system: TaskOutcome.model_validate(
            {
                "request_id": request_id,
                "task_id": f"{request_id}/{system}",
                "system": system,
                "action": "access",
                "attempt": 1,
                "status": "completed",
                "completed_at": datetime.now(UTC),
                "records_ref": ref,
            }
        )
        for system, ref in setup.refs.items()
    }
    return ExportJob(
        out_dir / "export.zip.enc",
        setup.state,
        setup.register,
        outcomes,
        setup.key,
        False,
        datetime.now(UTC),
    )


def _run(
    mb: int, out_dir: Path, level: int | None, profile: str | None, one_process: bool
) -> dict[str, object]:
    """The measured part, in this (fresh) process."""
    from orchestrator.artifacts import export
    from orchestrator.fanout.exporter import _spooling_processes, export_request, tune_allocator

    tune_allocator()  # as the orchestrator's export process does at its start

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    setup = _store(mb, out_dir)
    store, refs, stored = setup.store, setup.refs, setup.stored
    store_seconds = setup.store_seconds

    # Baseline: copying the same bytes, no parsing, hashing or compression.
    start = time.perf_counter()
    for ref in refs.values():
        assert ref is not None
        with store.path(ref).open("rb") as src, (out_dir / "copy.bin").open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    copy_seconds = time.perf_counter() - start

    if level is not None:  # the level table: the same run with another deflate level
        export._DEFLATE_LEVEL = level  # type: ignore[attr-defined]
    job = _job(setup, out_dir)
    # As the export process does it (`_export_in_child`): a large export's systems are spooled
    # side by side in spooling processes, started before the clock (an export process keeps them).
    spoolers = None if one_process else _spooling_processes(job)
    if spoolers is not None:
        list(spoolers.map(time.sleep, [0.2] * (os.cpu_count() or 1)))
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    summary = export_request(job, store, spoolers)
    seconds = time.perf_counter() - start
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    if spoolers is not None:
        spoolers.shutdown()  # so their peak RSS is counted (RUSAGE_CHILDREN)
    raw = sum(f.bytes for f in summary.files if f.path.endswith(".json"))
    copy_mb_s = stored / 1e6 / copy_seconds
    members = sum(f.bytes for f in summary.files)
    sealed = (out_dir / "export.zip.enc").stat().st_size
    return {
        "target_mb": mb,
        "deflate_level": getattr(export, "_DEFLATE_LEVEL", 6) if level is None else level,
        "records": summary.records,
        "record_store_mb": round(stored / 1e6, 1),
        "store_seconds": round(store_seconds, 1),
        "store_mb_per_s": round(stored / 1e6 / store_seconds, 1),
        "json_mb": round(raw / 1e6, 1),
        "all_members_mb": round(members / 1e6, 1),
        "zip_mb": round(sealed / 1e6, 1),
        "compression_ratio": round(members / sealed, 2),  # members (JSON and CSV) : sealed ZIP
        "export_seconds": round(seconds, 1),
        "export_mb_per_s": round(raw / 1e6 / seconds, 1),
        "baseline_copy_mb_per_s": round(copy_mb_s, 1),
        "export_vs_copy_ratio": round(raw / 1e6 / seconds / copy_mb_s, 4),
        "peak_rss_mb_before": round(before / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "spooled_in_spooling_processes": spoolers is not None,
        "peak_rss_mb_per_spooling_process": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
    }


#: `--beside-loop`: the loop wakes every `_TICK` seconds and does `_TICK_WORK` CPU seconds of
#: its own work (a loop that never sleeps starves a thread doing I/O: each GIL hand-back waits
#: a switch interval, and the export crawls).
_TICK = 0.005
_TICK_WORK = 0.001


def _beside_loop(mb: int, out_dir: Path, processes: int) -> dict[str, object]:
    """An event loop waking every 5 ms for 1 ms of its own CPU work while the orchestrator's
    `Exporter` writes the export with `processes` export processes (0: in a thread, sharing the
    interpreter): how late the loop wakes is what requests in flight would wait."""
    from orchestrator.fanout.exporter import Exporter

    setup = _store(mb, out_dir)
    job = _job(setup, out_dir)
    exporter = Exporter(setup.store, processes)
    if processes:
        exporter._started().submit(int).result()  # spawned before the clock starts

    async def measure() -> tuple[list[float], float]:
        lags: list[float] = []
        done = asyncio.Event()

        async def tick() -> None:
            while not done.is_set():
                start = time.perf_counter()
                await asyncio.sleep(_TICK)
                lags.append(time.perf_counter() - start - _TICK)
                busy = time.thread_time() + _TICK_WORK  # the loop's own work: decisions, sends
                while time.thread_time() < busy:
                    pass

        ticker = asyncio.create_task(tick())
        start = time.perf_counter()
        await exporter.write(job)
        seconds = time.perf_counter() - start
        done.set()
        await ticker
        return lags, seconds

    try:
        lags, seconds = asyncio.run(measure())
    finally:
        exporter.close()
    lags.sort()
    return {
        "export_processes": processes,
        "mb": mb,
        "export_seconds": round(seconds, 1),
        "ticks": len(lags),
        "loop_lag_p50_ms": round(lags[len(lags) // 2] * 1000, 1),
        "loop_lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1000, 1),
        "loop_lag_max_ms": round(lags[-1] * 1000, 1),
    }


def main() -> None:
    """Run the export in a fresh process (one per deflate level asked for); print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1000, help="MB of record JSON (default 1000)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: temp)")
    parser.add_argument("--levels", default="", help="deflate levels to compare, e.g. 1,3,6")
    parser.add_argument("--level", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help="with --child: cProfile the export into this file")
    parser.add_argument(
        "--beside-loop",
        action="store_true",
        help="event-loop lag while the export is written in a thread vs the export process",
    )
    parser.add_argument("--processes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="spool every system in the export process (no spooling processes), to compare",
    )
    args = parser.parse_args()
    if args.child:
        if args.beside_loop:
            print(json.dumps(_beside_loop(args.mb, args.dir, args.processes)))
        else:
            print(json.dumps(_run(args.mb, args.dir, args.level, args.profile, args.one_process)))
        return
    if args.beside_loop:
        runs = [
            _child(args.mb, args.dir, None, ["--beside-loop", "--processes", str(n)])
            for n in (0, 1)
        ]
        print(json.dumps(runs, indent=2))
        return
    levels = [int(n) for n in args.levels.split(",") if n] or [None]
    extra = ["--one-process"] if args.one_process else []
    results = [_child(args.mb, args.dir, level, extra) for level in levels]
    if len(results) == 1:
        print(json.dumps(results[0], indent=2))
        return
    print(f"{'level':>5} {'MB/s':>7} {'vs copy':>8} {'ratio':>6} {'RSS MB':>7}")
    for r in results:
        print(
            f"{r['deflate_level']:>5} {r['export_mb_per_s']:>7} {r['export_vs_copy_ratio']:>8}"
            f" {r['compression_ratio']:>6} {r['peak_rss_mb']:>7}"
        )


def _child(
    mb: int, where: Path | None, level: int | None, extra: list[str] | None = None
) -> dict[str, object]:
    """One measured run in a fresh process, so its peak RSS (ru_maxrss) is its own."""
    with tempfile.TemporaryDirectory(dir=where, prefix="dsr-export-bench-") as tmp:
        # As a module from the repository root, so the child finds the shared test factories.
        cmd = [sys.executable, "-m", "bench.export", "--child", "--mb", str(mb), "--dir", tmp]
        if level is not None:
            cmd += ["--level", str(level)]
        cmd += extra or []
        result = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


if __name__ == "__main__":
    main()
