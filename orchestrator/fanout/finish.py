"""Finishing a request: its outcomes on disk, then its export or certificate, the recipients
told (Art. 19), letters and result.

Everything here goes through `orchestrator.artifacts`; this module decides what a finished
request gets and in which order. Results are on disk before the status event announcing them
is sent, and a request finished again (a replay after a crash) gets the same files again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from connectors.metadata import collection_info
from orchestrator.artifacts import delivery, letters, notifications
from orchestrator.artifacts.certificate import CertificateIssuer
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.fanout.exporter import Exporter, ExportJob
from orchestrator.lifecycle.reducer import Effects, RequestState
from orchestrator.lifecycle.verification import VerificationPolicy
from orchestrator.runtime.config import Settings
from schemas.events import RequestStatus, RequestType, TaskOutcome
from schemas.primitives.records import RecordStoreError
from schemas.primitives.sealing import DataKeys, SealingError
from schemas.register import Register, WatchedRegister

log = logging.getLogger("dsr.orchestrator")

_EXPORTED = (RequestType.ACCESS, RequestType.PORTABILITY)
#: A register, or a register file that is re-read when it changes.
AnyRegister = Register | WatchedRegister


class Finisher:
    """Writes what a request leaves behind: outcomes, export, certificate, letters, result."""

    def __init__(
        self,
        settings: Settings,
        register: AnyRegister,
        keys: DataKeys,
        verification: VerificationPolicy | None = None,
    ) -> None:
        self.settings = settings
        self._register = register
        self.keys = keys
        self.records = settings.record_store(keys)
        self.exporter = Exporter(self.records, settings.export_processes)
        self.artifacts = ArtifactStore(settings.data_dir, keys)
        # The orchestrator passes the policy it parsed already; parsed here only when alone.
        self.verification = verification or settings.policy().verification
        self._certificates: CertificateIssuer | None = None
        self._certificate_lock = threading.Lock()
        #: E-mails answers to subjects; None when DSR_SMTP_HOST is unset (officers record it).
        self.mailer = delivery.mailer(settings, keys)
        #: Tells recipients of a rectification, erasure or restriction (Art. 19 GDPR).
        self.notifier = notifications.Notifier(
            settings.data_dir, delivery.SmtpServer.from_settings(settings)
        )
        #: Exported requests -> when their record files may go (see `discard_records`).
        self.exported: dict[str, float] = {}

    def register(self) -> Register:
        """The register as it is now (a watched register picks up edits)."""
        register = self._register
        return register.current() if isinstance(register, WatchedRegister) else register

    def save_outcomes(self, all_effects: Iterable[Effects]) -> None:
        """Keep each recorded outcome (with its records) for the export and the result: one
        append per request."""
        by_request: dict[str, list[TaskOutcome]] = {}
        for effects in all_effects:
            for outcome in effects.stored_outcomes:
                by_request.setdefault(outcome.request_id, []).append(outcome)
        for request_id, outcomes in by_request.items():
            self.artifacts.save_outcomes(request_id, outcomes)

    async def finish(self, state: RequestState, effects: Effects) -> list[Path]:
        """Write a finished request's documents (`finish_all` for one); returns its letters."""
        return (await self.finish_all([(state, effects)]))[0]

    async def finish_all(
        self, finished: Sequence[tuple[RequestState, Effects]]
    ) -> list[list[Path]]:
        """Write the documents of a batch's finished requests; each final status event then
        points at its request's result. Returns each request's letters (for delivery).

        Files are written in threads, and the exports in the export process
        (`orchestrator.fanout.exporter`): creating files can stall on a busy disk, an export is
        CPU work, and the event loop must go on meanwhile. The batch is handed over as a
        whole: one thread for the certificates and what the exports are written from, one
        call to the export process for every export, one thread for every letter and result.
        Each hand-over wakes threads and processes; per request, they cost more CPU than the
        work they carried for a small request (`bench/pipeline.py`).
        """
        answers = [_Answer.of(state, effects) for state, effects in finished]
        if any(a.certified or a.exported for a in answers):
            await asyncio.to_thread(self._before_exports, answers)
        await self._write_exports([a for a in answers if a.exported and a.export_error is None])
        notified = [a for a in answers if a.notified]
        notices = await asyncio.gather(*(self._notify(a.state) for a in notified))
        for answer, notice in zip(notified, notices, strict=True):
            answer.notices = notice
        written = await asyncio.to_thread(self._write_all_documents, answers)
        for answer, (_, path) in zip(answers, written, strict=True):
            if answer.exported and answer.export_error is None:
                # The export holds them now. Removed a little later, not at once: if this
                # worker dies before the final state reaches the table's changelog, the last
                # outcome is processed again and the export written again from the same files.
                self.exported[answer.state.request_id] = (
                    time.monotonic() + self.settings.record_grace_seconds
                )
            _point_at(answer.effects, path)
            log.info("request %s finished: %s", answer.state.request_id, answer.state.status)
        return [[Path(letter) for letter in documents.values()] for documents, _ in written]

    def _before_exports(self, answers: list[_Answer]) -> None:
        """In a thread: the certificates of erasures; the kept outcomes and data key of each
        export (a request whose inputs cannot be read gets its export error instead)."""
        for answer in answers:
            if answer.certified:
                self._issue_certificate(answer.state)
            elif answer.exported:
                request_id = answer.state.request_id
                try:
                    answer.outcomes, answer.key = self._export_inputs(request_id)
                except (RecordStoreError, SealingError, OSError) as exc:
                    answer.fail(exc)

    async def _write_exports(self, answers: list[_Answer]) -> None:
        """The export ZIPs (data per system and collection, manifest, Art. 15 report), written
        by the export process. An export that fails is its request's problem, not the
        worker's: the batch goes on."""
        if not answers:
            return
        now = datetime.now(UTC)
        register = self.register()
        jobs = [
            ExportJob(
                path=self.artifacts.export_path(a.state.request_id),
                state=a.state,
                register=register,
                outcomes=a.outcomes or {},
                key=a.key,
                portability=a.kind == RequestType.PORTABILITY,
                generated_at=now,
            )
            for a in answers
        ]
        try:
            errors = await self.exporter.write_all(jobs)
        except OSError as exc:  # the export process died twice under these exports
            errors = [str(exc)] * len(jobs)
        for answer, error in zip(answers, errors, strict=True):
            if error is not None:
                answer.fail(error)

    def _write_all_documents(self, answers: list[_Answer]) -> list[tuple[dict[str, str], Path]]:
        """In a thread: each request's letters and result file."""
        return [
            self._write_documents(a.state, a.export_error, a.notices, a.outcomes) for a in answers
        ]

    def _issue_certificate(self, state: RequestState) -> None:
        # One at a time: the first one creates the subject-hash salt and the signing key.
        with self._certificate_lock:
            self._certificate_issuer().issue(state, self.artifacts.root / "certificates")

    def _write_documents(
        self,
        state: RequestState,
        export_error: str | None,
        notices: list[notifications.RecipientNotice] | None,
        outcomes: dict[str, TaskOutcome] | None,
    ) -> tuple[dict[str, str], Path]:
        """The letters and the result file (the result names the letters)."""
        documents: dict[str, str] = {
            letter: str(self._write_letter(letter, state))
            for letter in letters.documents_for(state)
        }
        path = self.artifacts.write_result(
            state,
            export_error=export_error,
            documents=documents,
            recipients=None if notices is None else notifications.for_result(notices),
            outcomes=outcomes,
        )
        return documents, path

    async def _notify(self, state: RequestState) -> list[notifications.RecipientNotice] | None:
        """Tell the recipients (Art. 19); None for rights that tell nobody. A ledger that cannot
        be read is the request's problem, kept in the log, never the worker's."""
        kind = state.request.type if state.request is not None else None
        if kind not in notifications.NOTIFIED:
            return None
        try:
            return await self.notifier.notify(state, self.register())
        except notifications.NotificationError as exc:
            log.error("request %s: recipients not notified: %s", state.request_id, exc)
            return None

    def extension_notice(self, state: RequestState, effects: Effects) -> None:
        """Write the letter telling the subject of an extension (Art. 12(3)); its status event
        points at it."""
        _point_at(effects, self._write_letter("extension", state))

    def notices(self, state: RequestState, effects: Effects) -> None:
        """Write the letters the lifecycle asks for at once (`Effects.notices`, e.g. the ID
        request); the last status event points at the last one."""
        for kind in effects.notices:
            _point_at(effects, self._write_letter(letters.document_kind(kind), state))

    def discard_records(self, *, everything: bool = False) -> None:
        """Remove the record files of exported requests once their grace period is over (all of
        them after a clean stop, which has saved the table)."""
        self.remove_records(self.records_due(everything=everything))

    def records_due(self, *, everything: bool = False) -> list[str]:
        """The exported requests whose record files may go now (taken off the list)."""
        moment = time.monotonic()
        due = [r for r, when in self.exported.items() if everything or when <= moment]
        for request_id in due:
            del self.exported[request_id]
        return due

    def remove_records(self, request_ids: Iterable[str]) -> None:
        """Remove these requests' record files (safe in a thread)."""
        for request_id in request_ids:
            self.records.discard(request_id)

    def shred(self, request_id: str, effects: Effects) -> None:
        """Remove a shredded request's records and export; its status points at the result."""
        self.records.discard(request_id)
        self.exported.pop(request_id, None)
        self.artifacts.export_path(request_id).unlink(missing_ok=True)
        # A manual completion may carry its records inline, in the clear: they go too.
        self.artifacts.discard_outcomes(request_id)
        result = self.artifacts.result_path(request_id)
        if effects.statuses and result.exists():
            _point_at(effects, result)

    def _export_inputs(self, request_id: str) -> tuple[dict[str, TaskOutcome], bytes]:
        """The request's kept outcomes and its data key (file reads: in a thread)."""
        return self.artifacts.load_outcomes(request_id), self.keys.get(request_id)

    def close(self) -> None:
        """Stop the export processes."""
        self.exporter.close()

    def _write_letter(self, kind: letters.DocumentKind, state: RequestState) -> Path:
        """A letter to the subject in the request's language (`orchestrator.artifacts.letters`)."""
        directory = self.artifacts.root / "documents"
        return letters.write(
            kind,
            state,
            self.register(),
            directory,
            now=datetime.now(UTC),
            policy=self.verification,
        )

    def _certificate_issuer(self) -> CertificateIssuer:
        if self._certificates is None:
            register = self.register()
            keys_dir = self.settings.key_store_dir()
            issuer = register.controller.name if register.controller else self.settings.app_id
            titles = {s.name: s.display_name for s in register.systems}
            reasons = {
                (s.name, rule.collection): rule.reason
                for s in register.systems
                for rule in s.retention_rules
                if rule.reason is not None
            }
            headings = {
                (s.name, name): info.title
                for s in register.systems
                for name, info in collection_info(s).items()
                if info.title is not None
            }
            self._certificates = CertificateIssuer(
                keys_dir, issuer, titles, register.controller, reasons, headings
            )
        return self._certificates


@dataclass
class _Answer:
    """One finished request on its way to its documents."""

    state: RequestState
    effects: Effects
    kind: RequestType | None
    #: False for a refusal: it hands out no data and certifies no deletion, its letter is all.
    answered: bool
    outcomes: dict[str, TaskOutcome] | None = None
    key: bytes = b""
    export_error: str | None = None
    notices: list[notifications.RecipientNotice] | None = None

    @classmethod
    def of(cls, state: RequestState, effects: Effects) -> _Answer:
        kind = state.request.type if state.request is not None else None
        return cls(state, effects, kind, answered=state.status != RequestStatus.REFUSED)

    @property
    def certified(self) -> bool:
        return self.answered and self.kind == RequestType.ERASURE

    @property
    def exported(self) -> bool:
        return self.answered and self.kind in _EXPORTED

    @property
    def notified(self) -> bool:
        return self.answered and self.kind in notifications.NOTIFIED

    def fail(self, error: Exception | str) -> None:
        """The export could not be written: said in the result, logged without the data."""
        log.error("export of request %s failed: %s", self.state.request_id, error)
        self.export_error = f"the export could not be assembled: {error}"
        self.outcomes = None


def _point_at(effects: Effects, path: Path) -> None:
    """The last status event of `effects` names `path` as its artifact."""
    effects.statuses[-1] = effects.statuses[-1].model_copy(update={"artifact": str(path)})


__all__ = ["AnyRegister", "Finisher"]
