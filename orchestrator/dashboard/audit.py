"""The dashboard's audit log: who did what, when, to which request or sweep.

Every download, decision, verification, delivery, extension, task completion and sweep step
taken in the dashboard is appended as one JSON line to `<data dir>/audit/dashboard.jsonl`::

    {"at": "2026-05-01T09:30:00+00:00", "who": "a.jansen", "action": "download",
     "request_id": "req-...", "detail": {"document": "letter"}}

Accountability (Art. 5(2) GDPR) and the logging of access (Art. 32(1)(b) GDPR): the log names
the officer, never the data subject; `detail` holds only fixed vocabulary (document names,
decision kinds, outcomes, system names), never free text such as evidence or reasons. The
file is opened for appending only (O_APPEND, mode 0600): lines are added, never rewritten.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

log = logging.getLogger("dsr.dashboard.audit")

AuditAction = Literal[
    "download",
    "decision",
    "verification",
    "extension",
    "delivery",
    "task_completion",
    "sweep_requested",
    "sweep_approved",
]


class AuditEntry(BaseModel):
    """One line of the audit log."""

    at: datetime
    who: str = Field(description="The officer (staff id or user name), never the subject.")
    action: AuditAction
    request_id: str | None = None
    sweep_id: str | None = None
    detail: dict[str, str] = Field(default_factory=dict)


class AuditPage(BaseModel):
    """What `GET /api/audit` answers: the newest entries, oldest first."""

    entries: list[AuditEntry]


class AuditLog:
    """Append-only JSON lines; thread-safe (handlers write from worker threads too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AuditLog:
        """The dashboard's audit log in the data directory."""
        return cls(data_dir / "audit" / "dashboard.jsonl")

    def record(
        self,
        who: str,
        action: AuditAction,
        *,
        request_id: str | None = None,
        sweep_id: str | None = None,
        **detail: str,
    ) -> AuditEntry:
        """Append one entry (flushed and fsynced before returning)."""
        entry = AuditEntry(
            at=datetime.now(UTC),
            who=who,
            action=action,
            request_id=request_id,
            sweep_id=sweep_id,
            detail=detail,
        )
        line = (entry.model_dump_json(exclude_none=True) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def read(
        self,
        *,
        request_id: str | None = None,
        sweep_id: str | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """The last `limit` entries (oldest first), for one request or sweep if given."""
        found: deque[AuditEntry] = deque(maxlen=limit)
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return []
        with handle:
            for number, raw in enumerate(handle, 1):
                try:
                    entry = AuditEntry.model_validate(json.loads(raw))
                except ValueError:
                    log.error("audit log %s: line %d is not an entry; skipped", self.path, number)
                    continue
                if request_id is not None and entry.request_id != request_id:
                    continue
                if sweep_id is not None and entry.sweep_id != sweep_id:
                    continue
                found.append(entry)
        return list(found)


__all__ = ["AuditAction", "AuditEntry", "AuditLog", "AuditPage"]
