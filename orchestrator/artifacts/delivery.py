"""Delivering the answer to the subject by e-mail over SMTP, and the one-time download codes.

Art. 12(3) GDPR: a request is answered when the subject has the answer; Art. 12(1) allows
"electronic means". A finished request's letters go to the requester (`answer_address`): for a
request by the subject, to the subject's e-mail identifier, as attachments. A parent, guardian or
representative has no e-mail address in the request, and the subject's own address is not
theirs: those answers are not e-mailed but left to the officer (post, ZIVVER, in person: `dsr
deliver`), the request saying why (`ForSomeoneElse`). An access or portability request's
export is not attached but linked: an expiring signed link (`orchestrator.artifacts.downloads`,
at most a day) to a page that asks for a one-time code, sent in a second, separate e-mail.
Whoever reads one e-mail alone gets nothing.
Art. 32 GDPR (security of processing) is why: an export is everything the controller holds.

The code: 8 random digits (`secrets`), stored only as a SHA-256 hash beside the request id in
the data dir (nothing personal), valid as long as the link, single use, compared in constant
time, and void after `MAX_ATTEMPTS` wrong tries (a rate limit that holds across processes).

The messages name the request id and hold no personal data beyond the address they go to and
the letters themselves. Addresses never reach a log line or an error: SMTP errors are reported
by class and reply code only (their text can echo the recipient).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import smtplib
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from orchestrator.artifacts.downloads import Downloads
from orchestrator.lifecycle.delivery import ORCHESTRATOR, awaits_delivery, delivered_now
from orchestrator.lifecycle.reducer import RequestState
from orchestrator.runtime.config import Settings
from schemas.errors import DsrError
from schemas.events import (
    DeliveryChannel,
    DeliveryRecorded,
    IdentifierType,
    RequesterKind,
    RequestStatus,
    RequestType,
)
from schemas.primitives.files import atomic_write
from schemas.primitives.sealing import DataKeys

log = logging.getLogger("dsr.orchestrator")

#: Wrong codes after which a code is void (the subject asks the controller for a new link).
MAX_ATTEMPTS = 5
_CODE_DIGITS = 8
_LINKED = (RequestType.ACCESS, RequestType.PORTABILITY)
#: The subject's download page, served by the dashboard (`orchestrator.dashboard.delivery_routes`).
SUBJECT_PAGE = "/subject/download/"

_TEXTS = {
    "nl": {
        "subject": "Uw verzoek {rid}: ons antwoord",
        "body": "Hierbij ons antwoord op uw verzoek {rid}; de brieven zitten in de bijlage.\n",
        "link": (
            "\nUw gegevens kunt u downloaden tot {until} (UTC):\n{url}\n\nDe pagina vraagt een "
            "eenmalige code; die ontvangt u in een aparte e-mail.\n"
        ),
        "code_subject": "Uw verzoek {rid}: eenmalige code",
        "code_body": (
            "Uw eenmalige code voor de download bij verzoek {rid}: {code}\n\nDe code is geldig "
            "tot {until} (UTC) en werkt één keer. Deel hem met niemand.\n"
        ),
    },
    "en": {
        "subject": "Your request {rid}: our answer",
        "body": "Please find our answer to your request {rid}; the letters are attached.\n",
        "link": (
            "\nYou can download your data until {until} (UTC):\n{url}\n\nThe page asks for a "
            "one-time code, which you receive in a separate e-mail.\n"
        ),
        "code_subject": "Your request {rid}: one-time code",
        "code_body": (
            "Your one-time code for the download of request {rid}: {code}\n\nThe code is valid "
            "until {until} (UTC) and works once. Do not share it.\n"
        ),
    },
}


class DeliveryError(DsrError):
    """The answer could not be e-mailed; the message names no address."""


class ForSomeoneElse(DeliveryError):
    """The request was made on the subject's behalf: its answer is not e-mailed to the subject."""


class CodeRefused(DsrError):
    """A one-time code was not accepted; the message says why (never the code)."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how delivery e-mails are sent (DSR_SMTP_*)."""

    host: str
    port: int
    sender: str
    starttls: bool = True
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpServer | None:
        """The SMTP server of these settings; None when e-mail delivery is off (no host)."""
        if not settings.smtp_host:
            return None
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_from,
            settings.smtp_starttls,
            settings.smtp_username,
            password,
        )

    def send(self, messages: Iterable[EmailMessage]) -> None:
        """Send the messages over one connection, in order; `DeliveryError` when it fails."""
        try:
            with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                for message in messages:
                    smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {type(exc).__name__}, reply {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as exc:
            # SMTPRecipientsRefused's text holds the address: class only.
            raise DeliveryError(f"SMTP {type(exc).__name__}") from None


class DownloadCodes:
    """One-time codes for subjects' download links: issue, and redeem once (see module doc)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "delivery-codes"

    def issue(self, request_id: str, expires_at: datetime) -> str:
        """A new code for a request's download (replacing any earlier one)."""
        code = "".join(secrets.choice("0123456789") for _ in range(_CODE_DIGITS))
        self._write(
            request_id,
            {"sha256": _digest(code), "expires_at": expires_at.isoformat(), "attempts": 0},
        )
        return code

    def redeem(self, request_id: str, code: str, *, now: datetime | None = None) -> None:
        """Accept `code` once; `CodeRefused` if wrong, used, expired or tried too often."""
        path = self._path(request_id)
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            raise CodeRefused("no code is valid for this link; ask us for a new one") from None
        if entry.get("used"):
            raise CodeRefused("this code was already used; ask us for a new link")
        if entry["attempts"] >= MAX_ATTEMPTS:
            raise CodeRefused("too many wrong codes; this link is blocked: ask us for a new one")
        if (now or datetime.now(UTC)) >= datetime.fromisoformat(entry["expires_at"]):
            raise CodeRefused("the code has expired; ask us for a new link")
        if not hmac.compare_digest(_digest(code.strip()), entry["sha256"]):
            entry["attempts"] += 1
            self._write(request_id, entry)
            left = MAX_ATTEMPTS - entry["attempts"]
            raise CodeRefused(f"that code is not right ({left} tries left)")
        entry["used"] = True
        self._write(request_id, entry)

    def _path(self, request_id: str) -> Path:
        return self.root / f"{request_id}.json"

    def _write(self, request_id: str, entry: dict[str, object]) -> None:
        """Atomically: a half-written entry must not unblock or void a code."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump(entry, out)
        os.replace(name, self._path(request_id))


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def answer_address(state: RequestState) -> str | None:
    """The e-mail address the answer goes to: the requester's; None when none is known.

    For a request by the subject that is the subject's first e-mail identifier. A parent,
    guardian or representative gets the letters (Art. 12(1) GDPR; EDPB Guidelines 01/2022 on
    the right of access, requests via third parties) but the request holds no address of
    theirs, so `ForSomeoneElse`: the subject's address is the wrong recipient, and the export
    goes only to whom the mandate allows.
    """
    request = state.request
    if request is None:
        return None
    if request.requester.kind != RequesterKind.SELF:
        who = request.requester.kind.value.replace("_", " ")
        raise ForSomeoneElse(
            f"the request was made by a {who}; the answer goes to them and the request holds no "
            "e-mail address of theirs, so it is not e-mailed to the subject"
        )
    addresses = request.subject.values(IdentifierType.EMAIL)
    return addresses[0] if addresses else None


class Mailer:
    """E-mails a finished request's answer to the requester (`deliver`)."""

    def __init__(self, settings: Settings, server: SmtpServer, downloads: Downloads) -> None:
        self.server = server
        self.downloads = downloads
        self.codes = DownloadCodes(settings.data_dir)
        #: One marker per request whose answer went out: a batch processed again (a restart, a
        #: rebalance) records the same delivery instead of mailing the subject a second time.
        self.sent = settings.data_dir / "delivery-sent"
        self.base_url = settings.public_url.rstrip("/")
        self.link_ttl = timedelta(hours=settings.delivery_link_hours)

    async def deliver(
        self, state: RequestState, documents: Iterable[Path]
    ) -> DeliveryRecorded | None:
        """E-mail the answer; the delivery to record, or None when there is nowhere to send it.

        Raises `DeliveryError` when sending fails or must not happen (`ForSomeoneElse`): the
        request stays undelivered and says why."""
        if not awaits_delivery(state.status, state.delivery):
            return None
        address = answer_address(state)
        if address is None:
            return None
        marker = self.sent / f"{state.request_id}.json"
        if marker.exists():  # mailed already: record that delivery again, mail nothing
            return DeliveryRecorded.model_validate_json(marker.read_bytes())
        messages = self.compose(state, address, list(documents), now=datetime.now(UTC))
        await asyncio.to_thread(self.server.send, messages)
        log.info("request %s: answer e-mailed (%d messages)", state.request_id, len(messages))
        event = delivered_now(state.request_id, DeliveryChannel.EMAIL, ORCHESTRATOR)
        self.sent.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, event.model_dump_json().encode())
        return event

    def compose(
        self, state: RequestState, address: str, documents: list[Path], *, now: datetime
    ) -> list[EmailMessage]:
        """The answer (letters attached, the export linked) and, apart, the link's code."""
        request = state.request
        assert request is not None
        texts, rid = _TEXTS[request.language], state.request_id
        body = texts["body"].format(rid=rid)
        code_message = None
        if request.type in _LINKED and state.status != RequestStatus.REFUSED:
            until = now + self.link_ttl
            token = self.downloads.make_token(rid, "export", self.link_ttl, now=now)
            url = f"{self.base_url}{SUBJECT_PAGE}{token}"
            stamp = f"{until:%Y-%m-%d %H:%M}"
            body += texts["link"].format(url=url, until=stamp)
            code = self.codes.issue(rid, until)
            code_message = self._message(
                address,
                texts["code_subject"].format(rid=rid),
                texts["code_body"].format(rid=rid, code=code, until=stamp),
            )
        answer = self._message(address, texts["subject"].format(rid=rid), body)
        for path in documents:
            answer.add_attachment(
                path.read_bytes(), maintype="text", subtype="html", filename=path.name
            )
        return [answer] if code_message is None else [answer, code_message]

    def _message(self, address: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.server.sender
        message["To"] = address
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.server.sender.partition("@")[2] or None)
        message.set_content(body)
        return message


def mailer(settings: Settings, keys: DataKeys) -> Mailer | None:
    """The mailer of these settings; None when e-mail delivery is off (no DSR_SMTP_HOST)."""
    server = SmtpServer.from_settings(settings)
    if server is None:
        return None
    downloads = Downloads(settings.data_dir, settings.key_store_dir(), keys)
    return Mailer(settings, server, downloads)


__all__ = [
    "MAX_ATTEMPTS",
    "SUBJECT_PAGE",
    "CodeRefused",
    "DeliveryError",
    "DownloadCodes",
    "ForSomeoneElse",
    "Mailer",
    "SmtpServer",
    "answer_address",
    "mailer",
]
