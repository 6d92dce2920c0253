"""Results on disk: each system's outcome as it arrives (`orchestrator.artifacts.outcomes`),
and one result file per request."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.artifacts.export import SEALED_SUFFIX
from orchestrator.artifacts.outcomes import OutcomeLog
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import RequestType, TaskOutcome
from schemas.primitives.files import atomic_write
from schemas.primitives.sealing import DataKeys

_WITH_RECORDS = frozenset({RequestType.ACCESS, RequestType.PORTABILITY})


class ArtifactStore:
    """A directory holding outcomes per request and the final result files.

    Outcomes are sealed with each request's data key: only a store given the `keys` keeps
    and reads them.
    """

    def __init__(self, root: Path, keys: DataKeys | None = None) -> None:
        self.root = Path(root)
        self._outcomes = OutcomeLog(self.root / "outcomes", keys) if keys is not None else None

    @property
    def outcomes(self) -> OutcomeLog:
        """The kept outcomes (needs the data keys)."""
        if self._outcomes is None:
            raise RuntimeError("this artifact store was made without the data keys")
        return self._outcomes

    def outcome_path(self, request_id: str) -> Path:
        """Where one request's outcomes are kept (`orchestrator.artifacts.outcomes`)."""
        return self.root / "outcomes" / f"{request_id}.log"

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
        """Keep an outcome (with its records); a re-delivery replaces it with the same content."""
        self.outcomes.append(outcome.request_id, [outcome])
        return self.outcome_path(outcome.request_id)

    def save_outcomes(self, request_id: str, outcomes: Sequence[TaskOutcome]) -> None:
        """Keep several outcomes of one request at once (one write)."""
        self.outcomes.append(request_id, outcomes)

    def discard_outcomes(self, request_id: str) -> None:
        """Remove a request's kept outcomes (shredding: records may be inline in them)."""
        self.outcomes.discard(request_id)

    def load_outcomes(self, request_id: str) -> dict[str, TaskOutcome]:
        """Every kept outcome of a request, by system."""
        return self.outcomes.load(request_id)

    def load_outcome(self, request_id: str, system: str) -> TaskOutcome | None:
        """A kept outcome, or None."""
        return self.load_outcomes(request_id).get(system)

    def write_result(
        self,
        state: RequestState,
        *,
        export_error: str | None = None,
        documents: Mapping[str, str] | None = None,
        recipients: Sequence[Mapping[str, Any]] | None = None,
        outcomes: Mapping[str, TaskOutcome] | None = None,
    ) -> Path:
        """Write the request's result: per-system outcomes and where its documents are, and
        (rectification, erasure, restriction) who was told of it (Art. 19 GDPR).

        The records themselves are only in the export; the result says how many per
        collection each system found (from `outcomes`, else from the kept ones).
        """
        request = state.request
        assert request is not None and state.status is not None
        systems: dict[str, Any] = {}
        if request.type in _WITH_RECORDS and outcomes is None:
            outcomes = self.load_outcomes(state.request_id)
        for name, progress in state.systems.items():
            entry = progress.model_dump(mode="json", exclude_none=True)
            if request.type in _WITH_RECORDS:
                entry["collections"] = _collections((outcomes or {}).get(name))
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
