"""The request page for the public: `/`, `/nl/`, `/en/`, served by the intake process.

Plain HTML from Jinja2 templates (`templates/form.html`, `page.html`, texts in
`templates/public.texts.yaml`), no script at all (CSP `script-src 'none'`): it works in any
browser, with JavaScript off, and with a screen reader (labels, fieldsets with legends, errors
next to their fields and summarised at the top).

The flow (Art. 12(2) GDPR: the controller facilitates the exercise of the rights; Art. 12(6):
it may confirm the identity where it has reasonable doubts):

1. `GET /{lang}/`: choose the right, give the e-mail address (and optionally phone number and
   customer number). The controller's name and privacy statement come from the register.
2. `POST /{lang}/request`: checked; on errors the form comes back (400) naming each field. A
   valid submission waits, sealed, in `orchestrator.gateway.pending` (never in Kafka), and a
   confirmation e-mail with a link goes to the address. The answer is **the same page** whatever
   happens next: known or unknown address, mail sent or not, per-address limit reached,
   honeypot filled: nobody learns from it whether an address is ours (no enumeration).
3. `GET /{lang}/confirm/{token}` shows a button (a GET never publishes: mail scanners follow
   links); `POST` publishes the `RequestSubmitted` (source `public-page`), recorded in
   `dsr.intake.v1`. A second click says "already confirmed" and publishes nothing.

What the click proves: the requester controls the address. The request carries
`verification: {verified: true, method: email_confirmation}`; the orchestrator's verification
policy (`orchestrator.lifecycle.verification`) decides what that is enough for: by default an
objection (Art. 21) or a consent withdrawal (Art. 7(3)) proceeds on it, while access, erasure,
portability and restriction keep waiting for a method the policy accepts (the subject is asked
by letter). The intake's publisher key needs `dsr.request.identity_verified.v1` in the
publisher keys file for this (`orchestrator.intake.publishers.check_claims`).

Rectification is not offered: `RequestSubmitted.changes` are applied field by field by the
connectors, and a free text ("my address is wrong") is not a field change; the page tells the
subject where to write instead, so an officer turns it into changes.

Abuse protection, instead of a third-party CAPTCHA (which would send the visitor's data to a
third party): a limit per client address and one per e-mail address (`DSR_PUBLIC_*`), a
honeypot field hidden by CSS, and a signed form timestamp (HMAC) that refuses forms sent
faster than a person types or older than two hours. The client address is the peer's, or,
from a trusted proxy only (`DSR_PUBLIC_TRUSTED_PROXIES`), the last `X-Forwarded-For` hop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import rfc8785
import yaml
from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.artifacts.delivery import DeliveryError, SmtpServer
from orchestrator.gateway.pending import Confirmed, PendingSubmissions, Submission, Waiting
from orchestrator.gateway.ratelimit import check_rule
from orchestrator.intake.client import PublishError
from schemas.events import (
    BSN_REFUSED,
    Identifier,
    IdentityVerification,
    RequestSubmitted,
    RequestType,
    Subject,
    VerificationMethod,
)
from schemas.gateway import IntakeRecorded
from schemas.primitives.encoding import b64url
from schemas.register import Controller, Language
from schemas.topics import INTAKE

if TYPE_CHECKING:
    from orchestrator.gateway.context import GatewayState

log = logging.getLogger("dsr.intake.public")

LANGUAGES: tuple[Language, ...] = ("nl", "en")
#: The CloudEvents source and `requested_by` of what the page publishes.
PUBLIC_PAGE = "public-page"
#: The rights the page offers, in this order (rectification: see the module docstring).
PAGE_RIGHTS: tuple[RequestType, ...] = (
    RequestType.ACCESS,
    RequestType.PORTABILITY,
    RequestType.ERASURE,
    RequestType.RESTRICTION,
    RequestType.OBJECTION,
    RequestType.CONSENT_WITHDRAWAL,
)
MAX_MESSAGE = 2000
MAX_CUSTOMER_NUMBER = 64
#: No script, no frames, forms only to ourselves.
CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_FIELDS = ("right", "email", "phone", "customer_number", "message", "website", "stamp")
_INFORMAL = "nl-je"


class PublicSettings(BaseSettings):
    """The request page's settings (`DSR_PUBLIC_*`)."""

    model_config = SettingsConfigDict(env_prefix="DSR_PUBLIC_", extra="ignore")

    enabled: bool = Field(True, description="Serve the request page at /, /nl/ and /en/.")
    per_ip: str = Field(
        "5/minute", description="Submissions allowed per client address; more: 429."
    )
    per_address: str = Field(
        "3/hour",
        description="Confirmation e-mails per e-mail address; more are silently not sent "
        "(the page answers the same, so it reveals nothing about the address).",
    )
    min_form_seconds: float = Field(
        2.0, ge=0, description="A form sent sooner after it was shown is taken for a robot."
    )
    max_form_seconds: float = Field(
        7200.0, gt=0, description="A form older than this is shown again to be re-sent."
    )
    pending_hours: float = Field(
        24.0, gt=0, le=72, description="How long a confirmation link works."
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For is believed (its last hop is the client); from anyone else it is "
        "ignored and the peer address counts.",
    )
    form_secret: SecretStr | None = Field(
        None,
        description="The key signing form timestamps (and hashing addresses for the limit). "
        "Default: random per process; with several replicas, set the same one in each.",
    )
    messages_to: str | None = Field(
        None,
        description="An officer's mailbox for the optional message field: sent there, with "
        "the request id, once the request is confirmed. Unset: the page has no message field.",
    )
    outbox: Path | None = Field(
        None,
        description="Local use only: without DSR_SMTP_HOST, write the page's e-mails as .eml "
        "files into this folder instead of sending them (`dsr up` sets DATA_DIR/outbox), so the "
        "page can be tried on a laptop. Ignored when an SMTP host is set.",
    )

    @field_validator("per_ip", "per_address")
    @classmethod
    def _rule(cls, rule: str) -> str:
        return check_rule(rule)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        _networks(value)
        return value

    def proxies(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The trusted proxies as networks (a bare address is a /32 or /128)."""
        return _networks(self.trusted_proxies)


def _networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    try:
        return [ipaddress.ip_network(p, strict=False) for p in parts]
    except ValueError:
        raise ValueError(
            "DSR_PUBLIC_TRUSTED_PROXIES must be comma-separated IP addresses or networks, "
            "e.g. '10.0.0.0/8,192.168.1.10'"
        ) from None


# -- the signed form timestamp -----------------------------------------------------------------

Stamp = Literal["ok", "too_fast", "expired", "invalid"]


class FormStamp:
    """When a form was shown, signed: `<milliseconds>.<HMAC-SHA256>`; checked on submission."""

    def __init__(self, secret: bytes, min_seconds: float, max_seconds: float) -> None:
        self._secret = secret
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds

    def _sign(self, millis: str) -> str:
        mac = hmac.new(self._secret, b"dsr.public-form.v1|" + millis.encode(), hashlib.sha256)
        return b64url(mac.digest())

    def issue(self, now: float | None = None) -> str:
        """A stamp for a form shown now."""
        millis = str(int((time.time() if now is None else now) * 1000))
        return f"{millis}.{self._sign(millis)}"

    def check(self, stamp: str, now: float | None = None) -> Stamp:
        """Whether a form with `stamp` may be accepted now."""
        millis, _, signature = stamp.partition(".")
        if not millis.isdigit() or len(millis) > 15:
            return "invalid"
        if not hmac.compare_digest(signature.encode(), self._sign(millis).encode()):
            return "invalid"
        age = (time.time() if now is None else now) - int(millis) / 1000
        if age < self.min_seconds:
            return "too_fast"
        return "expired" if age > self.max_seconds else "ok"


def client_address(
    request: web.Request, proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The client's address: the peer's, or the last X-Forwarded-For hop a trusted proxy
    added (what a client writes in that header itself is further left, and ignored)."""
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return request.remote or "unknown"
    if any(peer in network for network in proxies):
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        if hops[-1]:
            return hops[-1]
    return str(peer)


def preferred_language(accept_language: str) -> Language:
    """nl or en, whichever the browser prefers (RFC 9110 q-values); nl when it names neither."""
    best: tuple[float, Language] = (0.0, "nl")
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().split("-")[0].lower()
        quality = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        if primary in LANGUAGES and quality > best[0]:
            best = (quality, "nl" if primary == "nl" else "en")
    return best[1]


# -- texts and templates -------------------------------------------------------------------------


@cache
def _texts_file() -> dict[str, Any]:
    source = resources.files("orchestrator.gateway") / "templates" / "public.texts.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and set(data) == {*LANGUAGES, _INFORMAL}
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        is_group = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if is_group else value
    return merged


def page_texts(language: Language, tone: Literal["u", "je"] = "u") -> dict[str, Any]:
    """The page's texts in `language`; Dutch with `tone: je` takes the `nl-je` variants."""
    data = _texts_file()
    if language == "nl" and tone == "je":
        return _merge(data["nl"], data[_INFORMAL])
    return dict(data[language])


def _fill(text: str, **values: Any) -> str:
    """`| fill(name=...)`: a text's {placeholders} filled (the result is escaped as usual)."""
    return text.format(**values)


@cache
def environment() -> Environment:
    """The page's Jinja2 environment (autoescape for HTML, strict about missing names)."""
    env = Environment(
        loader=PackageLoader("orchestrator.gateway", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fill"] = _fill
    return env


def _address_key(secret: bytes, address: str) -> str:
    """The per-address limit's key: an HMAC of the address, never the address itself."""
    return hmac.new(secret, address.lower().encode(), hashlib.sha256).hexdigest()


def body_sha256(request: RequestSubmitted) -> str:
    """SHA-256 of the request's RFC 8785 canonical JSON (`IntakeRecorded.body_sha256`)."""
    return hashlib.sha256(rfc8785.dumps(request.model_dump(mode="json"))).hexdigest()


# -- the page ------------------------------------------------------------------------------------


class Outbox:
    """E-mails as .eml files in a folder (mode 0600), for trying the page without SMTP."""

    sender = "request-page@localhost"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, messages: Iterable[EmailMessage]) -> None:
        """Write each message to `<directory>/<time>-<random>.eml`."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for message in messages:
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}.eml"
            fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())


class PublicPage:
    """The request page's routes on one `GatewayState` (see the module docstring)."""

    def __init__(self, state: GatewayState, settings: PublicSettings | None = None) -> None:
        self.state = state
        self.settings = settings or PublicSettings.model_validate({})
        self.smtp: SmtpServer | Outbox | None = SmtpServer.from_settings(state.settings)
        if self.smtp is None and self.settings.outbox is not None:
            self.smtp = Outbox(self.settings.outbox)
        configured = self.settings.form_secret
        self._secret = (
            configured.get_secret_value().encode() if configured else secrets.token_bytes(32)
        )
        self.stamps = FormStamp(
            self._secret, self.settings.min_form_seconds, self.settings.max_form_seconds
        )
        self.pending = PendingSubmissions(
            state.settings.data_dir / "intake" / "pending",
            timedelta(hours=self.settings.pending_hours),
        )
        self.verification = state.settings.policy().verification
        self._proxies = self.settings.proxies()
        self._confirming = asyncio.Lock()
        self._css = (
            resources.files("orchestrator.gateway") / "templates" / "public.css"
        ).read_bytes()

    def routes(self) -> list[web.RouteDef]:
        """The page's routes."""
        lang = "{lang:nl|en}"
        return [
            web.get("/", self.index),
            web.get("/assets/public.css", self.stylesheet),
            web.get(f"/{lang}/", self.form),
            web.post(f"/{lang}/request", self.submit),
            web.get(f"/{lang}/confirm/{{token}}", self.confirm_page),
            web.post(f"/{lang}/confirm/{{token}}", self.confirm),
        ]

    # -- rendering --------------------------------------------------------------------------

    def _controller(self) -> Controller | None:
        return self.state.register.current().controller

    def _render(
        self, template: str, lang: Language, *, status: int = 200, depth: int = 1, **extra: Any
    ) -> web.Response:
        """A page in `lang`, in the register's tone, with the page's security headers.

        `depth`: how many folders below the root the page's URL is, for relative links (so
        the page also works when a proxy serves it under a path of the company's site).
        """
        controller = self._controller()
        t = page_texts(lang, controller.tone if controller else "u")
        context = {
            "lang": lang,
            "t": t,
            "root": "../" * depth,
            "controller_name": controller.name if controller else t["us"],
            "privacy_statement": controller.privacy_statement if controller else None,
            "contact": controller.contact if controller else None,
            "languages": [{"code": c, "name": page_texts(c)["language_name"]} for c in LANGUAGES],
            **extra,
        }
        html = environment().get_template(template).render(context)
        response = web.Response(text=html, status=status, content_type="text/html")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Language"] = lang
        return response

    def _page(
        self, lang: Language, name: str, *, status: int = 200, depth: int = 1, **values: Any
    ) -> web.Response:
        """One of the plain pages: `t[name].title` and its paragraphs, filled with `values`."""
        controller = self._controller()
        texts = page_texts(lang, controller.tone if controller else "u")[name]
        keys = values.pop("paragraphs", ["body"])
        paragraphs = [texts[k].format(**values) for k in keys]
        button = values.pop("button", None)
        back = values.pop("back", False)
        return self._render(
            "page.html", lang, status=status, depth=depth, page=texts,
            paragraphs=paragraphs, button=button, back=back,
        )  # fmt: skip

    def _form(
        self,
        lang: Language,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
    ) -> web.Response:
        anchors = {"right": f"right-{PAGE_RIGHTS[0].value}", "form": "email"}
        return self._render(
            "form.html", lang, status=400 if errors else 200,
            stamp=self.stamps.issue(), rights=[r.value for r in PAGE_RIGHTS],
            values={name: (values or {}).get(name, "") for name in _FIELDS},
            errors=errors or {}, anchors={**{f: f for f in _FIELDS}, **anchors},
            with_message=bool(self.settings.messages_to),
        )  # fmt: skip

    def _unavailable(self, lang: Language) -> web.Response:
        controller = self._controller()
        contact = controller.contact if controller else None
        if contact:
            return self._page(lang, "unavailable", status=503, contact=contact)
        return self._page(lang, "unavailable", status=503, paragraphs=["body_no_contact"])

    def _sent(self, lang: Language) -> web.Response:
        """The one answer to every submission that passed the checks (see the module doc)."""
        return self._page(
            lang, "sent", paragraphs=["body", "no_mail"], hours=self._hours(), back=True
        )

    def _hours(self) -> str:
        return f"{self.settings.pending_hours:g}"

    # -- routes -----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        """`/`: to `/nl/` or `/en/`, as the browser prefers."""
        lang = preferred_language(request.headers.get("Accept-Language", ""))
        raise web.HTTPSeeOther(f"{lang}/", headers={"Vary": "Accept-Language"})

    async def stylesheet(self, request: web.Request) -> web.Response:
        """The page's only style sheet (the honeypot is hidden by it)."""
        return web.Response(
            body=self._css,
            content_type="text/css",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def form(self, request: web.Request) -> web.Response:
        """The form, empty."""
        lang = _lang(request)
        if self.smtp is None:
            return self._unavailable(lang)
        return self._form(lang)

    async def submit(self, request: web.Request) -> web.Response:
        """A submission: limits, robot checks, validation, then the confirmation e-mail."""
        lang = _lang(request)
        if self.smtp is None:
            return self._unavailable(lang)
        wait = self.state.limits.hit(
            self.settings.per_ip, PUBLIC_PAGE, "ip", client_address(request, self._proxies)
        )
        if wait is not None:
            response = self._page(lang, "too_many", status=429, back=True)
            response.headers["Retry-After"] = str(int(wait))
            return response
        posted = await request.post()
        fields = {name: _text(posted.get(name)) for name in _FIELDS}
        stamp = self.stamps.check(fields["stamp"])
        if fields["website"] or stamp == "too_fast":
            # A robot, most likely: it is told what a person is told, and nothing is sent.
            log.info("a submission was dropped (%s)", "honeypot" if fields["website"] else stamp)
            return self._sent(lang)
        if stamp != "ok":
            errors = {"form": page_texts(lang, self._tone())["errors"]["form_expired"]}
            return self._form(lang, fields, errors)
        errors, submission = self._validate(lang, fields)
        if submission is None:
            return self._form(lang, fields, errors)
        await self._accept(lang, submission)
        return self._sent(lang)

    def _tone(self) -> Literal["u", "je"]:
        controller = self._controller()
        return controller.tone if controller else "u"

    def _validate(
        self, lang: Language, fields: dict[str, str]
    ) -> tuple[dict[str, str], Submission | None]:
        """Field errors (in `lang`, by field), or the submission the fields make."""
        words = page_texts(lang, self._tone())["errors"]
        errors: dict[str, str] = {}
        if fields["right"] not in {r.value for r in PAGE_RIGHTS}:
            errors["right"] = words["right_missing"]
        identifiers: list[Identifier] = []
        given = (
            ("email", "email", "email_invalid"),
            ("phone", "phone", "phone_invalid"),
            ("customer_number", "customer_id", "customer_number_invalid"),
        )
        for name, identifier_type, invalid in given:
            value = fields[name].strip()
            if not value:
                if name == "email":
                    errors[name] = words["email_missing"]
                continue
            if len(value) > (MAX_CUSTOMER_NUMBER if name == "customer_number" else 320):
                errors[name] = words[invalid]
                continue
            try:
                identifiers.append(Identifier(type=identifier_type, value=value))
            except ValidationError as exc:
                refused = any(e["type"] == BSN_REFUSED for e in exc.errors())
                errors[name] = words["bsn" if refused else invalid]
        message = fields["message"].strip() if self.settings.messages_to else ""
        if len(message) > MAX_MESSAGE:
            errors["message"] = words["message_long"]
        if errors:
            return errors, None
        request = RequestSubmitted(
            request_id=str(uuid.uuid4()),
            type=RequestType(fields["right"]),
            subject=Subject(identifiers=identifiers),
            language=lang,
            # The request is received now (Art. 12(3) GDPR counts from receipt); the click
            # only confirms it, so a late click does not move the deadline later.
            received_at=datetime.now(UTC),
            requested_by=PUBLIC_PAGE,
        )
        return {}, Submission(request=request, message=message or None)

    async def _accept(self, lang: Language, submission: Submission) -> None:
        """Keep the submission and mail the link; failures are logged, never shown."""
        assert self.smtp is not None
        address = submission.request.subject.first("email") or ""
        key = _address_key(self._secret, address)
        if self.state.limits.hit(self.settings.per_address, PUBLIC_PAGE, "address", key):
            log.info("a confirmation e-mail was not sent: its address reached %s",
                     self.settings.per_address)  # fmt: skip
            return
        token = await asyncio.to_thread(self.pending.add, submission)
        link = f"{self.state.public_url}/{lang}/confirm/{token}"
        message = self._confirmation_mail(lang, address, submission.request.type, link)
        try:
            await asyncio.to_thread(self.smtp.send, [message])
        except DeliveryError as exc:  # its message names no address
            log.warning("a confirmation e-mail could not be sent (%s)", exc)
            await asyncio.to_thread(self.pending.discard, token)
            return
        log.info("a %s request waits for its e-mail confirmation", submission.request.type)

    def _mail(self, to: str, subject: str, body: str) -> EmailMessage:
        assert self.smtp is not None
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.smtp.sender.partition("@")[2] or None)
        message.set_content(body)
        return message

    def _confirmation_mail(
        self, lang: Language, address: str, right: RequestType, link: str
    ) -> EmailMessage:
        t = page_texts(lang, self._tone())
        controller = self._controller()
        values = {
            "name": controller.name if controller else t["us"],
            "right": t["rights"][right.value]["label"],
            "link": link,
            "hours": self._hours(),
        }
        return self._mail(
            address, t["mail"]["subject"].format(**values), t["mail"]["body"].format(**values)
        )

    async def confirm_page(self, request: web.Request) -> web.Response:
        """The link from the e-mail: a button, nothing published yet."""
        lang = _lang(request)
        entry = await asyncio.to_thread(self.pending.get, request.match_info["token"])
        if entry is None:
            return self._link_invalid(lang)
        if isinstance(entry, Confirmed):
            return self._page(lang, "already", depth=2, rid=entry.request_id)
        t = page_texts(lang, self._tone())
        right = t["rights"][entry.submission.request.type.value]["label"]
        button = {"action": request.match_info["token"], "label": t["confirm"]["button"]}
        return self._page(lang, "confirm", depth=2, right=right, button=button)

    def _link_invalid(self, lang: Language) -> web.Response:
        return self._page(lang, "link_invalid", status=404, depth=2, hours=self._hours(), back=True)

    async def confirm(self, request: web.Request) -> web.Response:
        """The click: publish the request once (a second click publishes nothing)."""
        lang = _lang(request)
        token = request.match_info["token"]
        async with self._confirming:
            entry = await asyncio.to_thread(self.pending.get, token)
            if entry is None:
                return self._link_invalid(lang)
            if isinstance(entry, Confirmed):
                return self._page(lang, "already", depth=2, rid=entry.request_id)
            rid = entry.submission.request.request_id
            if self.state.accepted.get(rid) is not None or not self.pending.claim(token):
                # Published already (a crash before the link was marked), or being published
                # by another replica's click.
                return self._page(lang, "already", depth=2, rid=rid)
            published = await self._publish(entry)
            if not published:
                self.pending.release(token)
                return self._page(lang, "not_received", status=503, depth=2)
            await asyncio.to_thread(self.pending.confirmed, token, rid)
        await self._forward_message(lang, entry.submission)
        right = entry.submission.request.type
        verified = self.verification.accepts(right, VerificationMethod.EMAIL_CONFIRMATION)
        return self._page(
            lang, "confirmed", depth=2, rid=rid,
            paragraphs=["number", "channel" if verified else "verify", "deadline"],
        )  # fmt: skip

    async def _publish(self, entry: Waiting) -> bool:
        """Publish the confirmed request, then record it; False when Kafka did not take it."""
        now = datetime.now(UTC)
        confirmed = IdentityVerification(
            verified=True,
            method=VerificationMethod.EMAIL_CONFIRMATION,
            verified_at=now,
            verified_by=PUBLIC_PAGE,
        )
        request = entry.submission.request.model_copy(update={"verification": confirmed})
        try:
            await self.state.bus.publish(request, source=PUBLIC_PAGE)
        except PublishError as exc:
            log.warning("request %s was not published: %s", request.request_id, exc)
            return False
        recorded = IntakeRecorded(
            request_id=request.request_id,
            channel="public_page",
            publisher=PUBLIC_PAGE,
            body_sha256=body_sha256(request),
            accepted_at=now,
        )
        try:
            await self.state.accepted.record(recorded)
        except PublishError as exc:
            # Published: the orchestrator has it. The record only answers repeated API calls.
            log.warning("request %s was published but not recorded in %s: %s",
                        request.request_id, INTAKE.name, exc)  # fmt: skip
        log.info("request %s published from the request page", request.request_id)
        return True

    async def _forward_message(self, lang: Language, submission: Submission) -> None:
        """The optional message goes to the officers' mailbox, only once confirmed."""
        to = self.settings.messages_to
        if not (submission.message and to and self.smtp):
            return
        t = page_texts(lang)["officer_mail"]
        rid = submission.request.request_id
        mail = self._mail(
            to, t["subject"].format(rid=rid), t["body"].format(rid=rid, message=submission.message)
        )
        try:
            await asyncio.to_thread(self.smtp.send, [mail])
        except DeliveryError as exc:
            log.warning("the message with request %s could not be forwarded (%s)", rid, exc)

    async def sweep_forever(self, every: float = 600.0) -> None:
        """Remove expired submissions now and then (background task of the intake)."""
        while True:
            try:
                removed = await asyncio.to_thread(self.pending.sweep)
                if removed:
                    log.info("%d expired submission(s) removed", removed)
            except OSError as exc:
                log.warning("sweeping the pending submissions failed (%s)", type(exc).__name__)
            await asyncio.sleep(every)


def _lang(request: web.Request) -> Language:
    return "en" if request.match_info.get("lang") == "en" else "nl"


def _text(value: object) -> str:
    """A posted field as text (a file upload in a text field counts as empty)."""
    return value if isinstance(value, str) else ""


def setup(app: web.Application, state: GatewayState) -> None:
    """Add the request page's routes (unless `DSR_PUBLIC_ENABLED=false`) and its sweep."""
    settings = PublicSettings.model_validate({})
    if not settings.enabled:
        return
    page = PublicPage(state, settings)
    if page.smtp is None:
        log.warning("the request page cannot send confirmation e-mails: set DSR_SMTP_HOST; "
                    "until then it shows where to write instead")  # fmt: skip
    app.add_routes(page.routes())
    state.background.append(page.sweep_forever)


__all__ = [
    "CSP",
    "PAGE_RIGHTS",
    "PUBLIC_PAGE",
    "FormStamp",
    "PublicPage",
    "PublicSettings",
    "client_address",
    "page_texts",
    "preferred_language",
    "setup",
]
