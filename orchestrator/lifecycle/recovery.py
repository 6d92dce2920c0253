"""What was in flight: an index of open requests on disk, for when the broker's log is lost.

The embedded broker keeps its log in memory. If it stops, every topic is gone: the requests,
the tasks, and the orchestrator's own state (its Faust table lives in a changelog topic). The
orchestrator therefore keeps, on disk, the ids and statuses of the requests open in the
partitions it owns (`DATA_DIR/state/open/<partition>.json`, no personal data), and `dsr up`
reports exactly which requests were affected when the broker goes away.

Why they are reported and not re-driven: re-driving needs each request's body, which holds the
subject's identifiers. Those live only in Kafka (and, for tasks, sealed), never in a file of
ours, by design. The publisher still has them, and request ids are idempotency keys: re-sending
the listed requests is safe and completes them. With a real, replicated Kafka cluster none of
this applies: the log survives a broker restart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from schemas.primitives.files import atomic_write


def open_dir(data_dir: Path) -> Path:
    """Where the open-request index lives."""
    return data_dir / "state" / "open"


def write_open(data_dir: Path, partition: int, requests: dict[str, str]) -> None:
    """The open requests of one partition (id -> status), replacing the previous list."""
    body = {
        "partition": partition,
        "written_at": datetime.now(UTC).isoformat(),
        "requests": dict(sorted(requests.items())),
    }
    atomic_write(open_dir(data_dir) / f"{partition}.json", json.dumps(body, indent=1).encode())


def open_requests(data_dir: Path) -> dict[str, str]:
    """Every request the index lists as open and that has no result file yet."""
    found: dict[str, str] = {}
    for path in sorted(open_dir(data_dir).glob("*.json")):
        try:
            found.update(json.loads(path.read_text()).get("requests", {}))
        except (OSError, ValueError):
            continue  # a torn file cannot happen (atomic writes); an unreadable one is skipped
    results = data_dir / "results"
    return {r: s for r, s in found.items() if not (results / f"{r}.json").exists()}


def broker_lost_message(data_dir: Path, code: int | None) -> str:
    """What `dsr up` says when the embedded broker stops: what was lost and what to do."""
    lost = open_requests(data_dir)
    head = (
        f"the embedded Kafka broker stopped (exit code {code}). It keeps its log in memory "
        "only, so every topic is gone"
    )
    if not lost:
        return head + "; no request was in progress. Start again with 'dsr up'."
    listed = "\n  ".join(f"{r} ({s})" for r, s in sorted(lost.items()))
    return (
        f"{head}, with these {len(lost)} requests in progress:\n  {listed}\n"
        "Start again with 'dsr up' and re-send them from their source (same request ids: "
        "re-sending is safe). Their bodies hold the subject's identifiers and are kept only "
        "in Kafka, never on disk, so they cannot be re-driven from here. For a log that "
        "survives restarts, use a real Kafka cluster (DSR_KAFKA_BOOTSTRAP)."
    )


__all__ = ["broker_lost_message", "open_dir", "open_requests", "write_open"]
