"""Benchmark: assemble a synthetic access export of a given size; peak RSS and MB/s as JSON.

Records (about 1 KB of JSON each, spread over three systems and a few collections) are
generated on the fly and streamed through `write_export`. The run happens in a fresh
subprocess so its peak RSS (ru_maxrss) belongs to the export alone.

    python bench/export.py             # 1 GB of record JSON
    python bench/export.py --mb 200    # a quick run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

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
                "retention": "2 years",
            }
            for name in SYSTEMS
        ]
    }


def _run(mb: int, out_dir: Path) -> dict[str, object]:
    """The measured part, in this (fresh) process."""
    from orchestrator.export import write_export
    from orchestrator.lifecycle import RequestState
    from schemas.events import (
        Identifier,
        OutcomeStatus,
        Record,
        RequestStatus,
        RequestSubmitted,
        Subject,
        SystemProgress,
    )
    from schemas.register import parse_register

    now = datetime.now(UTC)
    request = RequestSubmitted(
        request_id="bench-export",
        type="access",
        subject=Subject(identifiers=[Identifier(type="email", value="bench@example.nl")]),
        received_at=now,
        requested_by="bench",
    )
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

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    summary = write_export(
        out_dir / "export.zip", state, parse_register(_register()), records, generated_at=now
    )
    seconds = time.perf_counter() - start
    raw = sum(f.bytes for f in summary.files if f.path.endswith(".json"))
    return {
        "target_mb": mb,
        "records": summary.records,
        "json_mb": round(raw / 1e6, 1),
        "all_members_mb": round(sum(f.bytes for f in summary.files) / 1e6, 1),
        "zip_mb": round((out_dir / "export.zip").stat().st_size / 1e6, 1),
        "seconds": round(seconds, 1),
        "mb_per_s": round(raw / 1e6 / seconds, 1),
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
        cmd = [sys.executable, __file__, "--child", "--mb", str(args.mb), "--dir", tmp]
        result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    print(json.dumps(json.loads(result.stdout), indent=2))


if __name__ == "__main__":
    main()
