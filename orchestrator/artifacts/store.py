"""Results on disk: each system's outcome as it arrives, and one result file per request."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.artifacts.export import SEALED_SUFFIX
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import RequestType, TaskOutcome
from schemas.primitives.files import atomic_write

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
        """Where the sealed export ZIP of an access or portability request is written
        (`orchestrator.artifacts.export.open_export` reads it)."""
        return self.root / "exports" / f"{request_id}{SEALED_SUFFIX}"

    def certificate_path(self, request_id: str) -> Path:
        """Where the signed deletion certificate of an erasure request is written."""
        return self.root / "certificates" / f"{request_id}.json"

    def save_outcome(self, outcome: TaskOutcome) -> Path:
        """Keep an outcome (with its records); a re-delivery overwrites it with the same content."""
        path = self.outcome_path(outcome.request_id, outcome.system)
        atomic_write(path, outcome.model_dump_json(indent=None).encode())
        return path

    def discard_outcomes(self, request_id: str) -> None:
        """Remove a request's kept outcomes (shredding: records may be inline in them)."""
        shutil.rmtree(self.root / "requests" / request_id / "outcomes", ignore_errors=True)

    def load_outcome(self, request_id: str, system: str) -> TaskOutcome | None:
        """A stored outcome, or None."""
        path = self.outcome_path(request_id, system)
        if not path.exists():
            return None
        return TaskOutcome.model_validate_json(path.read_bytes())

    def write_result(
        self,
        state: RequestState,
        *,
        export_error: str | None = None,
        documents: Mapping[str, str] | None = None,
        recipients: Sequence[Mapping[str, Any]] | None = None,
    ) -> Path:
        """Write the request's result: per-system outcomes and where its documents are, and
        (rectification, erasure, restriction) who was told of it (Art. 19 GDPR).

        The records themselves are only in the export; the result says how many per
        collection each system found.
        """
        request = state.request
        assert request is not None and state.status is not None
        systems: dict[str, Any] = {}
        for name, progress in state.systems.items():
            entry = progress.model_dump(mode="json", exclude_none=True)
            if request.type in _WITH_RECORDS:
                outcome = self.load_outcome(state.request_id, name)
                entry["collections"] = _collections(outcome)
            systems[name] = entry
        certificate = self.certificate_path(state.request_id)
        export = self.export_path(state.request_id)
        result: dict[str, Any] = {
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
            "export_error": export_error,
            "documents": dict(documents or {}),
        }
        if recipients is not None:
            result["recipients"] = list(recipients)
        path = self.result_path(state.request_id)
        atomic_write(path, json.dumps(result, indent=2, ensure_ascii=False).encode())
        return path


def _collections(outcome: TaskOutcome | None) -> dict[str, int]:
    if outcome is None:
        return {}
    if outcome.records_ref is not None:
        return dict(outcome.records_ref.collections)
    counts: dict[str, int] = {}
    for record in outcome.records:
        counts[record.collection] = counts.get(record.collection, 0) + 1
    return counts


__all__ = ["ArtifactStore"]
