"""Delivery end to end (Art. 12(3) GDPR): real broker, real SMTP server (aiosmtpd on loopback),
the dashboard's subject page. A completed access request is e-mailed (letter + link, and the
one-time code apart), the link streams the export only with the code, and a completed request
that cannot be delivered by e-mail turns overdue."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import pytest
import yaml

from orchestrator.intake.client import RequestPublisher
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from orchestrator.status.view import StatusView, read_status
from schemas.events import (
    DeliveryChannel,
    Identifier,
    RequestStatus,
    StatusTrigger,
    Subject,
)
from tests.e2e.test_pipeline import new_request
from tests.e2e.test_shredding import EMAIL, _register
from tests.orchestrator.test_delivery import Inbox, free_port, smtp_server

pytestmark = pytest.mark.broker


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


def _text(message: Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def _post(url: str, code: str) -> tuple[int, bytes]:
    data = urllib.parse.urlencode({"code": code}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_art_12_3_answer_delivered_by_email_and_export_only_with_the_code(
    tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, smtp_port = inbox
    register = tmp_path / "register.yaml"
    register.write_text(yaml.safe_dump(_register()))
    dashboard_port = free_port()
    settings = Settings(
        register_file=register,
        data_dir=tmp_path / "data",
        tick_interval_seconds=0.5,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_from="privacy@example.nl",
        smtp_starttls=False,
        public_url=f"http://127.0.0.1:{dashboard_port}",
        dashboard_port=dashboard_port,
    )
    access = new_request("access", EMAIL, scope=None)
    # Nowhere to e-mail it (no e-mail identifier), received 40 days ago: done, not delivered.
    undeliverable = new_request(
        "access",
        EMAIL,
        scope=None,
        subject=Subject(identifiers=[Identifier(type="customer_id", value="C-77")]),
        received_at=datetime.now(UTC) - timedelta(days=40),
    )
    ids = [access.request_id, undeliverable.request_id]
    with Stack(settings, log_dir=tmp_path / "logs", dashboard=True) as stack:
        assert stack.local_publisher is not None
        signer = stack.local_publisher.signer()
        with RequestPublisher(stack.settings.kafka, source="tests", signer=signer) as publisher:
            publisher.publish(access)
            publisher.publish(undeliverable)

        def settled(view: StatusView) -> bool:
            stack.check()
            a, u = (view.get(r) for r in ids)
            # The undeliverable one is overdue from its start: wait for it to complete too.
            done = u is not None and u.status == RequestStatus.COMPLETED and u.overdue
            return bool(a and a.status == RequestStatus.DELIVERED and done)

        view = asyncio.run(read_status(stack.settings.kafka, until=settled, timeout=90))
        delivered = view.get(access.request_id)
        assert delivered is not None and delivered.trigger == StatusTrigger.DELIVERED
        assert delivered.delivery_channel == DeliveryChannel.EMAIL and delivered.delivered_at
        assert delivered.previous_status == RequestStatus.COMPLETED and not delivered.overdue
        assert EMAIL not in delivered.model_dump_json()
        late = view.get(undeliverable.request_id)
        assert late is not None and late.status == RequestStatus.COMPLETED and late.overdue

        # Two e-mails to the subject: the answer with the link, the code apart.
        [(to1, answer), (to2, code_mail)] = handler.messages
        assert to1 == to2 == [EMAIL]
        body, code_text = _text(answer), _text(code_mail)
        [link] = [w for w in body.split() if w.startswith(settings.public_url)]
        [code] = [w for w in code_text.split() if w.isdigit() and len(w) == 8]
        assert code not in body and link not in code_text

        with urllib.request.urlopen(link, timeout=30) as page:
            assert page.status == 200 and b'name="code"' in page.read()
        wrong = "00000000" if code != "00000000" else "11111111"
        status, content = _post(link, wrong)
        assert status == 403 and not content.startswith(b"PK")
        status, content = _post(link, code)
        assert status == 200 and content.startswith(b"PK")  # the export, decrypted: a ZIP
        status, _ = _post(link, code)
        assert status == 403  # single use
        stack.check()

    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*"))
    assert logs and EMAIL not in logs and code not in logs
