"""Benchmark: assemble a synthetic access export of a given size; peak RSS and MB/s as JSON.

The production path, end to end: records (about 1 KB of JSON each, over three systems and a
few collections) are generated on the fly and written to the record store as a connector worker
does (`RecordStore.writer`, sealed with the request's data key), then streamed back, checked,
into the sealed export ZIP as the orchestrator does (`write_export` over `RecordStore.read`).
The baseline is a plain copy of the
same record files in the same process; throughput is reported as a ratio to it. The run happens
in a fresh subprocess so its peak RSS (ru_maxrss) belongs to the benchmark alone.

    python bench/export.py             # 1 GB of record JSON
    python bench/export.py --mb 200    # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("crm", "support", "mailing")
_BODY = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 14


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


def _run(mb: int, out_dir: Path) -> dict[str, object]:
    """The measured part, in this (fresh) process."""
    from orchestrator.artifacts.export import write_export
    from orchestrator.lifecycle.reducer import RequestState
    from schemas.events import OutcomeStatus, Record, RequestStatus, SystemProgress
    from schemas.register import parse_register
    from tests import factories

    now = datetime.now(UTC)
    request = factories.request("bench-export", "bench@example.nl", requested_by="bench")
    state = RequestState(
        request_id=request.request_id,
        request=request,
        status=RequestStatus.COMPLETED,
        systems={s: SystemProgress(status=OutcomeStatus.COMPLETED) for s in SYSTEMS},
    )
    target = mb * 1_000_000 // len(SYSTEMS)

    def records(system: str) -> Iterator[Record]:
        produced = 0
        i = 0
        while produced < target:
            data = {
                "id": i,
                "created_at": "2024-01-01T12:00:00+00:00",
                "from": "bench@example.nl",
                "subject": f"ticket {i}",
                "tags": ["billing", "nl"],
                "body": _BODY,
            }
            produced += len(json.dumps(data))  # the record's size as exported
            i += 1
            yield Record.model_construct(
                collection=("tickets", "messages", "notes")[i % 3], data=data
            )

    from schemas.primitives.records import RecordStore
    from schemas.primitives.sealing import DataKeys

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
    store_seconds = time.perf_counter() - start
    stored = sum(ref.size for ref in refs.values() if ref is not None)

    # Baseline: copying the same bytes, no parsing, hashing or compression.
    start = time.perf_counter()
    for ref in refs.values():
        assert ref is not None
        with store.path(ref).open("rb") as src, (out_dir / "copy.bin").open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    copy_seconds = time.perf_counter() - start

    start = time.perf_counter()
    summary = write_export(
        out_dir / "export.zip.enc",
        state,
        parse_register(_register()),
        lambda system: store.read(refs[system], request.request_id),  # type: ignore[arg-type]
        generated_at=now,
        key=key,
    )
    seconds = time.perf_counter() - start
    raw = sum(f.bytes for f in summary.files if f.path.endswith(".json"))
    copy_mb_s = stored / 1e6 / copy_seconds
    return {
        "target_mb": mb,
        "records": summary.records,
        "record_store_mb": round(stored / 1e6, 1),
        "store_seconds": round(store_seconds, 1),
        "store_mb_per_s": round(stored / 1e6 / store_seconds, 1),
        "json_mb": round(raw / 1e6, 1),
        "all_members_mb": round(sum(f.bytes for f in summary.files) / 1e6, 1),
        "zip_mb": round((out_dir / "export.zip.enc").stat().st_size / 1e6, 1),
        "export_seconds": round(seconds, 1),
        "export_mb_per_s": round(raw / 1e6 / seconds, 1),
        "baseline_copy_mb_per_s": round(copy_mb_s, 1),
        "export_vs_copy_ratio": round(raw / 1e6 / seconds / copy_mb_s, 4),
        "peak_rss_mb_before": round(before / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    """Run the export in a fresh process and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1000, help="MB of record JSON (default 1000)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: temp)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_run(args.mb, args.dir)))
        return
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="dsr-export-bench-") as tmp:
        # As a module from the repository root, so the child finds the shared test factories.
        cmd = [sys.executable, "-m", "bench.export", "--child", "--mb", str(args.mb), "--dir", tmp]
        result = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    print(json.dumps(json.loads(result.stdout), indent=2))


if __name__ == "__main__":
    main()
