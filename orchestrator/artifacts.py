"""Results on disk: each system's outcome as it arrives, and one result file per request."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.lifecycle import RequestState
from schemas.events import RequestType, TaskOutcome

_WITH_RECORDS = frozenset({RequestType.ACCESS, RequestType.PORTABILITY})


class ArtifactStore:
    """A directory holding outcomes per request and the final result files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def outcome_path(self, request_id: str, system: str) -> Path:
        """Where one system's outcome for one request is kept."""
        return self.root / "requests" / request_id / "outcomes" / f"{system}.json"

    def result_path(self, request_id: str) -> Path:
        """Where the result of one request is written."""
        return self.root / "results" / f"{request_id}.json"

    def export_path(self, request_id: str) -> Path:
        """Where the export ZIP of an access or portability request is written."""
        return self.root / "exports" / f"{request_id}.zip"

    def save_outcome(self, outcome: TaskOutcome) -> Path:
        """Keep an outcome (with its records); a re-delivery overwrites it with the same content."""
        path = self.outcome_path(outcome.request_id, outcome.system)
        _atomic_write(path, outcome.model_dump_json(indent=None).encode())
        return path

    def load_outcome(self, request_id: str, system: str) -> TaskOutcome | None:
        """A stored outcome, or None."""
        path = self.outcome_path(request_id, system)
        if not path.exists():
            return None
        return TaskOutcome.model_validate_json(path.read_bytes())

    def write_result(self, state: RequestState) -> Path:
        """Write the request's result: per-system outcomes and, for access, the records."""
        request = state.request
        assert request is not None and state.status is not None
        systems: dict[str, Any] = {}
        for name, progress in state.systems.items():
            entry = progress.model_dump(mode="json", exclude_none=True)
            if request.type in _WITH_RECORDS:
                outcome = self.load_outcome(state.request_id, name)
                entry["records"] = (
                    [r.model_dump(mode="json") for r in outcome.records] if outcome else []
                )
            systems[name] = entry
        certificate = self.root / "certificates" / f"{state.request_id}.json"
        export = self.export_path(state.request_id)
        result = {
            "request_id": state.request_id,
            "type": request.type.value,
            "status": state.status.value,
            "reason": state.reason,
            "jurisdiction": request.jurisdiction,
            "language": request.language,
            "received_at": request.received_at.isoformat(),
            "verified_at": state.verified_at.isoformat() if state.verified_at else None,
            "deadline": state.deadline.isoformat() if state.deadline else None,
            "finished_at": state.finished_at.isoformat() if state.finished_at else None,
            "systems": systems,
            "certificate": str(certificate) if certificate.exists() else None,
            "export": str(export) if export.exists() else None,
        }
        path = self.result_path(state.request_id)
        _atomic_write(path, json.dumps(result, indent=2, ensure_ascii=False).encode())
        return path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["ArtifactStore"]
