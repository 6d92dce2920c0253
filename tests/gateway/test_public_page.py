"""The request page for the public: a real intake process on the session broker, real SMTP.

The gateway runs on its own event loop in a thread; the tests talk HTTP to it (httpx), read
the confirmation e-mails from an aiosmtpd server and the requests topic from the broker.
Each test posts from its own client address (the gateway trusts 127.0.0.1 as a proxy, so
`X-Forwarded-For` picks the address), so the per-IP limit of one test does not touch another.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller

from orchestrator.gateway.pending import Confirmed, PendingSubmissions, Submission, Waiting
from orchestrator.gateway.public import FormStamp, page_texts, preferred_language
from orchestrator.gateway.server import Gateway
from orchestrator.gateway.settings import IntakeSettings
from orchestrator.intake.publishers import IssuedKey, create_publisher
from orchestrator.runtime.broker import free_port
from orchestrator.runtime.config import Settings
from schemas.envelope import Envelope
from schemas.events import RequestSubmitted, VerificationMethod
from schemas.gateway import IntakeRecorded
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import INTAKE_PUBLISHER
from schemas.topics import INTAKE, REQUEST_EVENT_TYPES, REQUESTS
from tests.e2e.conftest import read_topic
from tests.orchestrator.test_delivery import Inbox

CONTROLLER = "Voorbeeld Webwinkel B.V."
PRIVACY_STATEMENT = "https://webwinkel.example/privacyverklaring"
CONTACT = "privacy@webwinkel.example"
KNOWN = "known.subject@example.nl"
FORM_SECRET = "public-page-tests-form-secret-0123456789"
#: Stamps as if the form was shown this long ago (past the 2 s a person needs at least).
SHOWN_AGO = 10.0
_addresses = itertools.count(10)


def register_document(tone: str = "u") -> dict[str, Any]:
    """A register with a controller and one system holding `KNOWN`."""
    return {
        "controller": {
            "name": CONTROLLER,
            "contact": CONTACT,
            "privacy_statement": PRIVACY_STATEMENT,
            "tone": tone,
        },
        "systems": [
            {
                "name": "crm",
                "kind": "crm",
                "connector": "memory",
                "settings": {"records": [{"collection": "contacts", "data": {"email": KNOWN}}]},
                "data_categories": ["email address"],
                "purposes": ["customer relationship management"],
                "legal_basis": ["contract"],
                "profiling": "none",
                "retention": "2 years",
            }
        ],
    }


class RefusingInbox(Inbox):
    """Keeps what it receives; refuses recipients at `refused.example` (550)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        """The messages sent to `address`."""
        return [m for rcpt, m in self.messages if address in rcpt]


class ServedPage:
    """An intake process serving the page on its own event loop in a thread."""

    def __init__(self, gateway: Gateway, inbox: RefusingInbox) -> None:
        self.gateway = gateway
        self.inbox = inbox
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.gateway.url

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self.gateway.start())
        end = time.monotonic() + 30
        while httpx.get(f"{self.url}/readyz").status_code != 200:
            assert time.monotonic() < end, "the intake process did not become ready"
            time.sleep(0.1)

    def stop(self) -> None:
        self.run(self.gateway.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def page_settings(
    kafka: KafkaSettings, root: Path, smtp_port: int | None, tone: str = "u"
) -> Settings:
    """Settings of an intake process whose SMTP server is aiosmtpd on `smtp_port`."""
    register = root / "register.yaml"
    register.write_text(yaml.safe_dump(register_document(tone)))
    smtp: dict[str, Any] = (
        {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_starttls": False}
        if smtp_port
        else {}
    )
    return Settings(
        register_file=register,
        data_dir=root / "data",
        kafka=kafka,
        smtp_from="privacy@webwinkel.example",
        **smtp,
    )


def intake_signer(root: Path) -> IssuedKey:
    """The intake component's key (it may claim an e-mail confirmation: see public.py)."""
    return create_publisher(
        root / "publisher-keys.yaml", INTAKE_PUBLISHER, events=list(REQUEST_EVENT_TYPES)
    )


@contextmanager
def mail_server() -> Iterator[tuple[RefusingInbox, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    inbox, port = RefusingInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@contextmanager
def serving(
    kafka: KafkaSettings, root: Path, *, smtp: bool = True, **env: str
) -> Iterator[ServedPage]:
    """A running intake process with the page, an aiosmtpd server and `DSR_PUBLIC_*` `env`."""
    variables = {
        "DSR_PUBLIC_FORM_SECRET": FORM_SECRET,
        "DSR_PUBLIC_TRUSTED_PROXIES": "127.0.0.1",
        "DSR_PUBLIC_MESSAGES_TO": "officer@webwinkel.example",
        **env,
    }
    with pytest.MonkeyPatch.context() as patch, mail_server() as (inbox, port):
        for name, value in variables.items():
            patch.setenv(name, value)
        settings = page_settings(kafka, root, port if smtp else None)
        gateway = Gateway(settings, IntakeSettings(port=0), signer=intake_signer(root).signer())
        served = ServedPage(gateway, inbox)
        served.start()
        try:
            yield served
        finally:
            served.stop()


@pytest.fixture(scope="module")
def page(
    kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedPage]:
    """The page on the session broker, with real SMTP."""
    with serving(kafka_settings, tmp_path_factory.mktemp("public-page")) as served:
        yield served


# -- helpers ---------------------------------------------------------------------------------


def new_ip() -> str:
    """A client address no other submission in this run came from."""
    n = next(_addresses)
    return f"203.0.{n // 250}.{n % 250 + 1}"


def stamp(ago: float = SHOWN_AGO) -> str:
    """A form stamp as the page signs it, for a form shown `ago` seconds ago."""
    return FormStamp(FORM_SECRET.encode(), 2.0, 7200.0).issue(time.time() - ago)


def submit(
    served: ServedPage, *, ip: str | None = None, lang: str = "nl", **fields: str
) -> httpx.Response:
    """POST the form as a browser would (fields not given: the defaults below)."""
    form = {"right": "objection", "email": "", "phone": "", "customer_number": "",
            "message": "", "website": "", "stamp": stamp(), **fields}  # fmt: skip
    headers = {"X-Forwarded-For": ip or new_ip()}
    return httpx.post(f"{served.url}/{lang}/request", data=form, headers=headers, timeout=30)


def unique_address(tag: str = "subject") -> str:
    return f"{tag}.{uuid.uuid4().hex[:10]}@example.nl"


def link_in(message: Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    found = re.search(r"(http://\S+/confirm/\S+)", payload.decode())
    assert found, "the confirmation e-mail holds no link"
    return found.group(1)


def submitted(kafka: KafkaSettings, **match: str) -> list[tuple[Any, Envelope]]:
    """The RequestSubmitted events on the requests topic whose subject has the given e-mail
    (`email=`) or whose id is `request_id=`."""
    found = []
    for record, envelope in read_topic(kafka, REQUESTS.name, timeout=10):
        if envelope is None or not isinstance(envelope.body, RequestSubmitted):
            continue
        body = envelope.body
        if match.get("request_id") in (None, body.request_id) and match.get("email") in (
            None,
            body.subject.first("email"),
        ):
            found.append((record, envelope))
    return found


def request_id_in(html: str) -> str:
    found = re.search(r"\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b", html)
    assert found, "no request number on the page"
    return found.group(1)


# -- the page ---------------------------------------------------------------------------------


def test_root_sends_the_browser_to_its_language(page: ServedPage) -> None:
    for header, target in (("en-GB,en;q=0.9,nl;q=0.8", "en/"), ("nl-NL", "nl/"), ("de", "nl/")):
        response = httpx.get(f"{page.url}/", headers={"Accept-Language": header})
        assert (response.status_code, response.headers["Location"]) == (303, target)
    assert preferred_language("fr;q=0.9, en;q=0.5, nl;q=0.7") == "nl"


def test_form_is_plain_html_without_script_naming_the_controller(page: ServedPage) -> None:
    for lang, email_label in (("nl", "Uw e-mailadres"), ("en", "Your e-mail address")):
        response = httpx.get(f"{page.url}/{lang}/")
        html = response.text
        assert response.status_code == 200
        assert "script-src 'none'" in response.headers["Content-Security-Policy"]
        assert "<script" not in html.lower()
        assert f'<html lang="{lang}">' in html
        assert CONTROLLER in html and f'href="{PRIVACY_STATEMENT}"' in html
        assert f'<label for="email">{email_label}</label>' in html
        assert html.count('type="radio" name="right"') == 6  # rectification: by e-mail
        assert CONTACT in html  # where to ask for a rectification
        assert "<fieldset" in html and "<legend>" in html
    css = httpx.get(f"{page.url}/assets/public.css")
    assert ".trap { display: none; }" in css.text


def test_errors_name_the_field_next_to_it(page: ServedPage) -> None:
    response = submit(page, right="", email="", phone="12")
    assert response.status_code == 400
    html = response.text
    assert 'id="right-error">Kies welk recht u wilt gebruiken.' in html
    assert 'id="email-error"' in html and "Vul uw e-mailadres in." in html
    assert 'id="phone-error"' in html and 'aria-invalid="true"' in html
    bsn = submit(page, email=unique_address(), customer_number="123456782")
    assert bsn.status_code == 400 and "burgerservicenummer (BSN) in: dat mogen" in bsn.text


def test_request_is_published_only_after_the_confirm_click(
    page: ServedPage, kafka_settings: KafkaSettings
) -> None:
    address = unique_address()
    answer = submit(page, right="objection", email=address, phone="+31 6 1234 5678",
                    message="Geen reclame meer graag.")  # fmt: skip
    assert answer.status_code == 200 and "Kijk in uw e-mail" in answer.text
    [mail] = page.inbox.to(address)
    assert CONTROLLER in mail["Subject"]
    link = link_in(mail)

    confirm_page = httpx.get(link)  # what a mail scanner does: publishes nothing
    assert confirm_page.status_code == 200 and "Ja, ik bevestig mijn verzoek" in confirm_page.text
    assert submitted(kafka_settings, email=address) == []

    confirmed = httpx.post(link)
    assert confirmed.status_code == 200 and "Uw verzoek is ontvangen" in confirmed.text
    rid = request_id_in(confirmed.text)
    [(_, envelope)] = submitted(kafka_settings, request_id=rid)
    request = envelope.body
    assert isinstance(request, RequestSubmitted)
    assert envelope.source == "public-page" and request.requested_by == "public-page"
    assert request.subject.first("email") == address
    assert request.verification.method == VerificationMethod.EMAIL_CONFIRMATION
    assert request.type == "objection" and request.language == "nl"
    # An objection proceeds on the e-mail confirmation (the default policy).
    assert "zonder verdere stappen" in confirmed.text
    recorded = page.gateway.accepted.get(rid)
    assert isinstance(recorded, IntakeRecorded) and recorded.channel == "public_page"
    [officer] = page.inbox.to("officer@webwinkel.example")
    assert rid in officer["Subject"]

    again = httpx.post(link)
    assert again.status_code == 200 and "al bevestigd" in again.text and rid in again.text
    assert len(submitted(kafka_settings, request_id=rid)) == 1
    intake = [e for _, e in read_topic(kafka_settings, INTAKE.name) if e is not None]
    assert [e.body.request_id for e in intake].count(rid) == 1


def test_access_waits_for_the_verification_the_policy_asks(page: ServedPage) -> None:
    address = unique_address()
    submit(page, right="access", email=address, lang="en")
    [mail] = page.inbox.to(address)
    confirmed = httpx.post(link_in(mail))
    assert confirmed.status_code == 200
    assert "we must be sure it is you" in confirmed.text


def test_without_the_click_nothing_is_published(
    page: ServedPage, kafka_settings: KafkaSettings
) -> None:
    address = unique_address()
    assert submit(page, right="erasure", email=address).status_code == 200
    assert len(page.inbox.to(address)) == 1
    assert submitted(kafka_settings, email=address) == []
    pending = page.gateway.settings.data_dir / "intake" / "pending"
    for path in pending.iterdir():  # kept sealed, readable by nobody without the link
        assert address not in path.read_text()
        assert path.stat().st_mode & 0o777 == 0o600


def test_known_and_unknown_addresses_get_the_same_answer(page: ServedPage) -> None:
    ip = new_ip()
    known = submit(page, email=KNOWN, ip=ip)
    unknown = submit(page, email=unique_address("nobody"), ip=ip)
    refused = submit(page, email="someone@refused.example", ip=ip)  # SMTP says 550
    assert known.status_code == unknown.status_code == refused.status_code == 200
    assert known.content == unknown.content == refused.content
    assert page.inbox.to("someone@refused.example") == []


def test_sixth_submission_per_minute_from_one_ip_is_refused(page: ServedPage) -> None:
    ip = new_ip()
    answers = [submit(page, email=unique_address(), ip=ip) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert "Even wachten" in answers[-1].text and int(answers[-1].headers["Retry-After"]) >= 1
    assert submit(page, email=unique_address(), ip=new_ip()).status_code == 200


def test_one_address_gets_at_most_three_confirmation_mails_an_hour(page: ServedPage) -> None:
    address = unique_address()
    answers = [submit(page, email=address) for _ in range(4)]
    assert len({a.content for a in answers}) == 1  # the limit shows in nothing
    assert len(page.inbox.to(address)) == 3


def test_honeypot_filled_sends_nothing(page: ServedPage) -> None:
    address = unique_address()
    trapped = submit(page, email=address, website="https://spam.example")
    too_fast = submit(page, email=address, stamp=stamp(ago=0.5))
    honest = submit(page, email=unique_address())
    assert trapped.content == too_fast.content == honest.content
    assert page.inbox.to(address) == []


def test_an_old_or_forged_form_is_shown_again(page: ServedPage) -> None:
    address = unique_address()
    old = submit(page, email=address, stamp=stamp(ago=3 * 3600))
    forged = submit(page, email=address, stamp="1700000000000.forged")
    for answer in (old, forged):
        assert answer.status_code == 400 and "Het formulier stond te lang open" in answer.text
        assert f'value="{address}"' in answer.text  # what was typed is kept
    assert page.inbox.to(address) == []


def test_a_wrong_or_altered_link_publishes_nothing(page: ServedPage) -> None:
    address = unique_address()
    submit(page, email=address)
    link = link_in(page.inbox.to(address)[0])
    altered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    for wrong in (altered, f"{page.url}/nl/confirm/..%2F..%2Fetc", f"{page.url}/nl/confirm/x"):
        assert httpx.post(wrong).status_code == 404


def test_no_personal_data_in_logs(
    page: ServedPage, kafka_settings: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # INFO: aiokafka's producer logs every value it sends at DEBUG (a library's debug aid).
    caplog.set_level(logging.INFO)
    address, phone, customer = unique_address("logs"), "+31612345679", "KL-99817"
    submit(page, email=address, phone=phone, customer_number=customer, message="mijn adres")
    httpx.post(link_in(page.inbox.to(address)[0]))
    submit(page, email="logs@refused.example")
    # Not the test's own SMTP server (the subject's mailbox) nor its HTTP client (the browser).
    theirs = ("mail.log", "httpx", "httpcore")
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name not in theirs)
    assert "waits for its e-mail confirmation" in logged
    for secret in (address, phone, customer, "mijn adres", "logs@refused.example", "/confirm/"):
        assert secret not in logged


def test_without_smtp_the_page_says_where_to_write(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = page_settings(kafka_settings, tmp_path, None)
    gateway = Gateway(settings, IntakeSettings(port=0), signer=intake_signer(tmp_path).signer())

    async def fetch() -> tuple[int, str]:
        async with TestClient(TestServer(gateway.app())) as client:
            response = await client.get("/en/")
            return response.status, await response.text()

    status, html = asyncio.run(fetch())
    assert status == 503 and CONTACT in html and "<form" not in html


# -- parts ------------------------------------------------------------------------------------


def test_pending_submission_opens_only_with_its_token(tmp_path: Path) -> None:
    pending = PendingSubmissions(tmp_path, timedelta(hours=24))
    request = RequestSubmitted.model_validate(
        {
            "request_id": "r-1",
            "type": "objection",
            "received_at": datetime.now(UTC),
            "subject": {"identifiers": [{"type": "email", "value": KNOWN}]},
            "requested_by": "public-page",
        }
    )
    token = pending.add(Submission(request=request))
    entry = pending.get(token)
    assert isinstance(entry, Waiting) and entry.submission.request == request
    name, key = token.split(".")
    assert pending.get(f"{name}.{key[::-1]}") is None  # another key opens nothing
    assert pending.claim(token) and not pending.claim(token)  # of two clicks, one wins
    pending.confirmed(token, "r-1")
    assert pending.get(token) == Confirmed("r-1")
    assert KNOWN not in "".join(p.read_text() for p in tmp_path.iterdir())
    later = datetime.now(UTC) + timedelta(hours=25)
    assert pending.get(token, now=later) is None
    assert pending.sweep(now=later) == 1 and list(tmp_path.iterdir()) == []


def test_texts_exist_in_both_languages_and_both_tones() -> None:
    def keys(texts: dict[str, Any], prefix: str = "") -> set[str]:
        found: set[str] = set()
        for key, value in texts.items():
            found |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return found

    assert keys(page_texts("nl")) == keys(page_texts("en")) == keys(page_texts("nl", "je"))
    assert page_texts("nl", "je")["email"] == "Je e-mailadres"
