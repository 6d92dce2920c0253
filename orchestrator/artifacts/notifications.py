"""Telling recipients of a rectification, erasure or restriction (Art. 19 GDPR).

Art. 19 GDPR: "The controller shall communicate any rectification or erasure of personal data or
restriction of processing carried out in accordance with Article 16, Article 17(1) and Article
18 to each recipient to whom the personal data have been disclosed, unless this proves
impossible or involves disproportionate effort. The controller shall inform the data subject
about those recipients if the data subject requests it."

Who is told (`select`, a pure function): once a rectification, erasure or restriction request
finishes (not refused), every system that carried it out (`acted`), and then

- each such system's **processor**, told by the request itself: its connector carried it out;
- each **recipient** of the register (`Register.recipients`) whose `systems` meet the systems
  that acted, or that is tied to no system. Its `notify` says how: `system` (told by that
  system's own task: notified when that system completed), `email` (an e-mail in the request's
  language, `templates/recipient_notice.html`), or `instructions` / nothing (a person must do it).

Whoever cannot be told automatically is **to be told by hand**: a task `REQUEST_ID/recipient:NAME`
that `dsr tasks list` shows and `dsr tasks complete` records (`complete`). These tasks live in
the data dir beside the result, not on the status topic: the request is final by then, and the
lifecycle's tasks are per system. A failed e-mail (after retries) and an e-mail recipient
without SMTP configured become such a task, with the address to write to.

Exactly once: each request has a ledger (`notifications/REQUEST_ID.json`) written before and
after every e-mail. A request finished again (a restart before its result was written) mails
nobody who was mailed already; an e-mail whose sending was interrupted (marked `sending`) is
not sent again but becomes a task to check with the recipient, so nobody is mailed twice.

The notice names the subject by the request's identifiers: a lawful disclosure to the
recipient, who needs them to find the person. They never reach a log line or an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from orchestrator.artifacts.delivery import DeliveryError, SmtpServer
from orchestrator.artifacts.render import render_document, texts
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.lifecycle.reducer import RequestState
from schemas.errors import DsrError
from schemas.events import FieldChange, OutcomeStatus, RequestStatus, RequestType, SystemProgress
from schemas.primitives.files import atomic_write
from schemas.register import Language, Recipient, RecipientCategory, Register, localize

log = logging.getLogger("dsr.orchestrator")

#: The rights whose execution is communicated to recipients (Art. 16, 17(1) and 18 GDPR).
NOTIFIED = frozenset({RequestType.RECTIFICATION, RequestType.ERASURE, RequestType.RESTRICTION})
#: The prefix of a recipient's task name: REQUEST_ID/recipient:NAME.
TASK_PREFIX = "recipient:"
#: Staff read instructions in the CLI and the dashboard, which are in English.
_STAFF_LANGUAGE: Language = "en"

Way = Literal["request", "system", "email", "manual"]
State = Literal["notified", "sending", "to_notify"]


class NotificationError(DsrError, ValueError):
    """A recipient task cannot be completed; the message names the task and what to do."""


class RecipientNotice(BaseModel):
    """One recipient of one request: how it is (to be) told, and whether it has been."""

    model_config = ConfigDict(extra="forbid")

    name: str
    category: RecipientCategory
    way: Way = Field(
        description="request: told by the request (its processor carried it out); system: by "
        "that system's task; email: an e-mail; manual: a person must tell it."
    )
    systems: list[str] = Field(default_factory=list, description="The systems it concerns.")
    status: State
    notified_at: datetime | None = None
    email: str | None = Field(
        default=None, description="The recipient's address (not the subject's)."
    )
    instructions: str | None = Field(
        default=None, description="For staff: what to do, and why by hand."
    )
    evidence: str | None = None
    completed_by: str | None = None


def acted(state: RequestState) -> list[str]:
    """The systems that carried out the request: completed, or kept some but changed the rest."""
    return [name for name, progress in sorted(state.systems.items()) if _acted(progress)]


def _acted(progress: SystemProgress) -> bool:
    if progress.status == OutcomeStatus.COMPLETED:
        return True
    counts = progress.counts
    changed = counts.deleted + counts.anonymised + counts.updated + counts.suppressed
    return progress.status == OutcomeStatus.RETAINED and changed > 0


def select(state: RequestState, register: Register) -> list[RecipientNotice]:
    """Everyone to tell of this request's rectification, erasure or restriction (Art. 19), as
    not yet notified unless the request itself told them; empty for other rights and refusals."""
    request = state.request
    if request is None or request.type not in NOTIFIED or state.status == RequestStatus.REFUSED:
        return []
    done = acted(state)
    if not done:
        return []
    known = set(register.names)
    notices: dict[str, RecipientNotice] = {}
    for name in done:
        system = register.get(name) if name in known else None
        if system is None or system.processor is None:
            continue
        processor = system.processor.name
        entry = notices.setdefault(
            processor,
            RecipientNotice(
                name=processor,
                category=RecipientCategory.PROCESSOR,
                way="request",
                status="notified",
                notified_at=state.systems[name].updated_at or state.finished_at,
            ),
        )
        entry.systems.append(name)
    for recipient in register.recipients:
        concerned = [n for n in done if n in recipient.systems]
        if recipient.systems and not concerned:
            continue
        notices.setdefault(recipient.name, _recipient_notice(recipient, concerned, state))
    return list(notices.values())


def _recipient_notice(
    recipient: Recipient, concerned: list[str], state: RequestState
) -> RecipientNotice:
    """How one register recipient is told: by a system, by e-mail, or by hand."""
    base = RecipientNotice(
        name=recipient.name,
        category=recipient.category,
        way="manual",
        systems=concerned,
        status="to_notify",
    )
    how = recipient.notify
    if how is not None and how.system is not None:
        progress = state.systems.get(how.system)
        if progress is not None and _acted(progress):
            at = progress.updated_at or state.finished_at
            return base.model_copy(
                update={"way": "system", "status": "notified", "notified_at": at}
            )
        return base.model_copy(
            update={
                "instructions": f"system {how.system} did not carry out this request; tell "
                f"{recipient.name} by hand",
            }
        )
    if how is not None and how.email is not None:
        return base.model_copy(update={"way": "email", "email": how.email})
    if how is not None and how.instructions is not None:
        return base.model_copy(update={"instructions": localize(how.instructions, _STAFF_LANGUAGE)})
    return base.model_copy(
        update={"instructions": "the register says no way to notify it: tell it by hand"}
    )


def changes_for(state: RequestState, notice: RecipientNotice) -> list[FieldChange]:
    """A rectification's changes that concern this recipient (all, for one tied to no system)."""
    request = state.request
    if request is None or not request.changes:
        return []
    return [
        c
        for c in request.changes
        if c.system is None or not notice.systems or c.system in notice.systems
    ]


def render_notice(
    state: RequestState, register: Register, notice: RecipientNotice, *, now: datetime
) -> str:
    """The e-mail to a recipient in the request's language: what was done, for whom."""
    request = state.request
    assert request is not None
    words = texts("recipient_notice")[request.language]["identifiers"]
    identifiers = [(words.get(i.type, i.type), i.value) for i in request.subject.identifiers]
    changes = [(c.field, _shown(c.value)) for c in changes_for(state, notice)]
    return render_document(
        "recipient_notice",
        request.language,
        tone="u",  # the reader is an organisation, addressed formally whatever the subject's tone
        state=state,
        request=request,
        recipient=notice,
        controller=register.controller,
        identifiers=identifiers,
        changes=changes,
        now=now,
    )


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class Ledger:
    """Per request, whom was told how and when (`notifications/REQUEST_ID.json`)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "notifications"

    def path(self, request_id: str) -> Path:
        """Where one request's notices are kept."""
        return self.root / f"{request_id}.json"

    def load(self, request_id: str) -> dict[str, RecipientNotice]:
        """A request's notices by recipient name (empty when none were recorded)."""
        try:
            data = json.loads(self.path(request_id).read_text())
            return {n["name"]: RecipientNotice.model_validate(n) for n in data["recipients"]}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            # Never guess: an unreadable ledger could mean mails were sent. Keep it, stop here.
            raise NotificationError(
                f"the notification ledger of request {request_id} cannot be read "
                f"({type(exc).__name__}); check {self.path(request_id)}"
            ) from None

    def save(self, request_id: str, notices: Iterable[RecipientNotice]) -> None:
        """Write a request's notices atomically."""
        data = {
            "request_id": request_id,
            "recipients": [n.model_dump(mode="json") for n in notices],
        }
        atomic_write(self.path(request_id), json.dumps(data, indent=2, ensure_ascii=False))

    def requests(self) -> list[str]:
        """Every request with a ledger."""
        return sorted(p.stem for p in self.root.glob("*.json")) if self.root.is_dir() else []


class Notifier:
    """Tells a finished request's recipients (`notify`), each once."""

    def __init__(
        self,
        data_dir: Path,
        server: SmtpServer | None,
        *,
        attempts: int = 3,
        wait_seconds: float = 2.0,
    ) -> None:
        self.ledger = Ledger(data_dir)
        self.server = server
        self.attempts = attempts
        self.wait_seconds = wait_seconds

    async def notify(
        self, state: RequestState, register: Register, *, now: datetime | None = None
    ) -> list[RecipientNotice]:
        """Tell everyone `select` names who has not been told yet; the notices as recorded.

        Never raises for a recipient: what cannot be sent becomes a task to do by hand."""
        rid = state.request_id
        recorded = self.ledger.load(rid)
        for notice in recorded.values():
            if notice.status == "sending":  # interrupted mid-send: it may have arrived
                notice.status = "to_notify"
                notice.instructions = (
                    f"an e-mail to {notice.email} may have been sent before a restart; check with "
                    "the recipient before writing again"
                )
        for notice in select(state, register):
            recorded.setdefault(notice.name, notice)
        self.ledger.save(rid, recorded.values())
        for notice in recorded.values():
            if (
                notice.way == "email"
                and notice.status == "to_notify"
                and notice.instructions is None
            ):
                await self._mail(state, register, notice, recorded, now or datetime.now(UTC))
        told = sum(1 for n in recorded.values() if n.status == "notified")
        log.info("request %s: %d of %d recipients notified (Art. 19)", rid, told, len(recorded))
        return list(recorded.values())

    async def _mail(
        self,
        state: RequestState,
        register: Register,
        notice: RecipientNotice,
        recorded: dict[str, RecipientNotice],
        now: datetime,
    ) -> None:
        """E-mail one recipient; on failure (or without SMTP) it becomes a task by hand."""
        assert notice.email is not None
        if self.server is None:
            notice.instructions = f"no SMTP server is configured: write to {notice.email}"
            self.ledger.save(state.request_id, recorded.values())
            return
        message = self._message(state, register, notice, now)
        notice.status = "sending"
        self.ledger.save(state.request_id, recorded.values())
        try:
            await self._send(message)
        except DeliveryError as exc:  # names no address (see SmtpServer.send)
            log.warning("request %s: a recipient could not be e-mailed: %s", state.request_id, exc)
            notice.status = "to_notify"
            notice.instructions = f"the e-mail could not be sent ({exc}): write to {notice.email}"
        else:
            notice.status = "notified"
            notice.notified_at = datetime.now(UTC)
        self.ledger.save(state.request_id, recorded.values())

    async def _send(self, message: EmailMessage) -> None:
        assert self.server is not None
        server = self.server
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.wait_seconds, max=30),
            retry=retry_if_exception_type(DeliveryError),
            reraise=True,
        ):
            with attempt:
                await asyncio.to_thread(server.send, [message])

    def _message(
        self, state: RequestState, register: Register, notice: RecipientNotice, now: datetime
    ) -> EmailMessage:
        assert self.server is not None and state.request is not None and notice.email
        words = texts("recipient_notice")[state.request.language]
        what = words["subjects"][state.request.type.value]
        message = EmailMessage()
        message["From"] = self.server.sender
        message["To"] = notice.email
        message["Subject"] = words["subject"].format(rid=state.request_id, what=what)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.server.sender.partition("@")[2] or None)
        message.set_content(render_notice(state, register, notice, now=now), subtype="html")
        return message


def for_result(notices: Iterable[RecipientNotice]) -> list[dict[str, Any]]:
    """The result file lists the recipients: who was told, how and when, who still by hand."""
    return [n.model_dump(mode="json", exclude_none=True) for n in notices]


def add_to_result(result: Path, notices: Iterable[RecipientNotice]) -> None:
    """Rewrite the recipients in a result file already written (a recipient told by hand)."""
    data = json.loads(result.read_text())
    data["recipients"] = for_result(notices)
    atomic_write(result, json.dumps(data, indent=2, ensure_ascii=False))


def task_name(request_id: str, recipient: str) -> str:
    """A recipient task's id: REQUEST_ID/recipient:NAME."""
    return f"{request_id}/{TASK_PREFIX}{recipient}"


def open_tasks(data_dir: Path) -> list[tuple[str, RecipientNotice]]:
    """Every recipient still to be told by hand, as (task id, notice)."""
    ledger = Ledger(data_dir)
    return [
        (task_name(rid, notice.name), notice)
        for rid in ledger.requests()
        for notice in ledger.load(rid).values()
        if notice.status == "to_notify"
    ]


def complete(
    data_dir: Path,
    request_id: str,
    recipient: str,
    evidence: str,
    *,
    completed_by: str | None = None,
    now: datetime | None = None,
) -> RecipientNotice:
    """Record that a person told `recipient`; the result file is updated too."""
    task = task_name(request_id, recipient)
    evidence = evidence.strip()
    if not evidence:
        raise NotificationError(f"give evidence for {task}: how the recipient was told")
    ledger = Ledger(data_dir)
    notices = ledger.load(request_id)
    notice = notices.get(recipient)
    if notice is None:
        raise NotificationError(f"no task {task!r}: unknown request or recipient")
    if notice.status != "to_notify":
        raise NotificationError(
            f"task {task!r} is not waiting for a person (it is {notice.status})"
        )
    notice.status, notice.notified_at = "notified", now or datetime.now(UTC)
    notice.evidence, notice.completed_by = evidence, completed_by
    ledger.save(request_id, notices.values())
    result = ArtifactStore(data_dir).result_path(request_id)
    if result.exists():
        add_to_result(result, notices.values())
    return notice


__all__ = [
    "NOTIFIED",
    "TASK_PREFIX",
    "Ledger",
    "NotificationError",
    "Notifier",
    "RecipientNotice",
    "acted",
    "add_to_result",
    "changes_for",
    "complete",
    "for_result",
    "open_tasks",
    "render_notice",
    "select",
    "task_name",
]
