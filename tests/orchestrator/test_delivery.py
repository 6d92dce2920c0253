"""Delivery of the answer (Art. 12(3) GDPR): the `delivered` state, e-mail over SMTP, codes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from orchestrator.artifacts.delivery import (
    MAX_ATTEMPTS,
    CodeRefused,
    DeliveryError,
    DownloadCodes,
    Mailer,
    SmtpServer,
)
from orchestrator.artifacts.downloads import Downloads
from orchestrator.lifecycle.reducer import (
    RequestState,
    apply,
    deliver,
    delivery_failed,
    next_check,
    record_decision,
    record_outcome,
    submit,
    tick,
)
from orchestrator.lifecycle.state import encode_state, watch_view
from orchestrator.runtime.config import Settings
from schemas.events import (
    DeliveryChannel,
    DeliveryRecorded,
    OutcomeStatus,
    RequestStatus,
    StatusTrigger,
)
from schemas.primitives.sealing import DataKeys
from schemas.topics import DECISION_EVENT_TYPES, DEFAULT_PUBLISHER_EVENTS
from tests.orchestrator.test_decisions import decision
from tests.orchestrator.test_lifecycle import EMAIL, NOW, SYSTEMS, ctx, outcome, request

LATE = NOW + timedelta(days=40)  # past the one-month deadline


def answered(
    kind: str = "erasure", status: OutcomeStatus = OutcomeStatus.COMPLETED
) -> RequestState:
    """A request whose systems are all done (so it is final), not yet delivered."""
    state, _ = submit(None, request(type=kind), ctx())
    for system in SYSTEMS:
        state, _ = record_outcome(state, outcome(system, status, action=kind, reason="gone"), ctx())
    assert state is not None and state.is_final
    return state


def delivery(channel: str = "post", at: datetime = NOW) -> DeliveryRecorded:
    return DeliveryRecorded(
        request_id="req-1",
        channel=DeliveryChannel(channel),
        delivered_by="officer-7",
        delivered_at=at,
    )


# -- the lifecycle ------------------------------------------------------------------------------


def test_art_12_3_request_is_answered_when_delivered() -> None:
    """Art. 12(3) GDPR: information is provided to the subject within one month; the request
    counts as answered when delivered, and a delivered request is never overdue."""
    state = answered()
    assert state.status == RequestStatus.COMPLETED
    state, effects = deliver(state, delivery(), ctx())
    assert state is not None and state.status == RequestStatus.DELIVERED
    assert state.answered_as == RequestStatus.COMPLETED and state.is_final
    [event] = effects.statuses
    assert event.trigger == StatusTrigger.DELIVERED
    assert event.previous_status == RequestStatus.COMPLETED
    assert event.delivered_at == NOW and event.delivery_channel == DeliveryChannel.POST
    assert "via post" in (event.reason or "") and "officer-7" in (event.reason or "")
    # The deadline is met: after it, nothing happens and no flag is raised.
    later, effects = tick(state, ctx(LATE))
    assert not effects.statuses and next_check(later, ctx().policy) is None


def test_art_12_3_completed_but_undelivered_request_turns_overdue() -> None:
    """Art. 12(3) GDPR: the deadline runs until the subject has the answer; systems being done
    does not stop it."""
    state = answered()
    when = next_check(state, ctx().policy)
    assert when is not None and when < LATE  # still watched
    state, effects = tick(state, ctx(LATE))
    [event] = effects.statuses
    assert event.trigger == StatusTrigger.OVERDUE and event.overdue
    assert event.status == RequestStatus.COMPLETED
    assert state.overdue_sent
    # Delivered late: recorded as delivered, the overdue flag drops (the breach is in the log).
    state, effects = deliver(state, delivery(at=LATE), ctx(LATE))
    assert state is not None and not effects.statuses[0].overdue


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (OutcomeStatus.COMPLETED, RequestStatus.COMPLETED),
        (OutcomeStatus.RETAINED, RequestStatus.COMPLETED),
    ],
)
def test_art_12_3_each_answer_awaits_delivery(status: OutcomeStatus, final: RequestStatus) -> None:
    """Completed, partially completed and refused requests all wait for delivery."""
    state = answered(status=status)
    assert state.status == final
    state, _ = deliver(state, delivery("zivver"), ctx())
    assert state is not None and state.status == RequestStatus.DELIVERED


def test_art_12_4_refusal_is_delivered_too() -> None:
    """Art. 12(4) GDPR: a refusal (with reasons and remedies) must reach the subject as well."""
    state, _ = submit(None, request(), ctx())
    state, _ = record_decision(state, decision("refuse", reason_code="excessive"), ctx())
    assert state is not None and state.status == RequestStatus.REFUSED
    _, effects = tick(state, ctx(LATE))
    assert [s.trigger for s in effects.statuses] == [StatusTrigger.OVERDUE]
    state, _ = deliver(state, delivery("in_person"), ctx())
    assert state is not None and state.answered_as == RequestStatus.REFUSED


def test_delivery_before_there_is_an_answer_is_dead_lettered() -> None:
    state, _ = submit(None, request(), ctx())
    state, effects = deliver(state, delivery(), ctx())
    assert effects.dead_letter and "no answer to deliver yet (status in_progress)" in (
        effects.dead_letter
    )
    assert state is not None and state.status == RequestStatus.IN_PROGRESS
    _, effects = deliver(None, delivery(), ctx())
    assert effects.dead_letter and "no such request" in effects.dead_letter


def test_a_failed_request_has_no_answer_to_deliver() -> None:
    state = answered(status=OutcomeStatus.FAILED)
    assert state.status == RequestStatus.FAILED
    _, effects = deliver(state, delivery(), ctx())
    assert effects.dead_letter and "status failed" in effects.dead_letter


def test_a_request_is_delivered_once_and_a_redelivery_changes_nothing() -> None:
    state, _ = deliver(answered(), delivery(), ctx())
    again, effects = apply(state, delivery(), ctx())
    assert again == state and not effects.changed and effects.dead_letter is None
    _, effects = apply(state, delivery("email"), ctx())
    assert effects.dead_letter and "already delivered (post" in effects.dead_letter


def test_delivery_status_events_name_no_address() -> None:
    _, effects = deliver(answered(), delivery("email"), ctx())
    assert EMAIL not in effects.statuses[0].model_dump_json()
    failed = delivery_failed(answered(), "SMTP SMTPRecipientsRefused", ctx())
    [event] = failed.statuses
    assert event.trigger == StatusTrigger.DELIVERY_FAILED and event.status == "completed"
    assert "dsr deliver" in (event.reason or "") and EMAIL not in event.model_dump_json()


def test_the_timer_opens_answered_states_until_they_are_flagged(tmp_path: Path) -> None:
    keys = DataKeys(tmp_path, os.urandom(32))
    state = answered()
    assert json.loads(encode_state(state, keys))["awaits_delivery"] is True
    assert watch_view(encode_state(state, keys), keys).request is not None  # opened
    delivered, _ = deliver(state.model_copy(deep=True), delivery(), ctx())
    assert delivered is not None
    assert watch_view(encode_state(delivered, keys), keys).request is None  # a stub
    flagged, _ = tick(state, ctx(LATE))
    assert json.loads(encode_state(flagged, keys))["awaits_delivery"] is False


def test_only_publishers_allowed_to_decide_may_record_a_delivery() -> None:
    assert "dsr.request.delivery_recorded.v1" in DECISION_EVENT_TYPES
    assert "dsr.request.delivery_recorded.v1" not in DEFAULT_PUBLISHER_EVENTS


# -- one-time codes -----------------------------------------------------------------------------


def test_a_one_time_code_works_once(tmp_path: Path) -> None:
    codes = DownloadCodes(tmp_path)
    code = codes.issue("req-1", NOW + timedelta(hours=1))
    assert len(code) == 8 and code.isdigit()
    stored = (tmp_path / "delivery-codes" / "req-1.json").read_text()
    assert code not in stored  # only its hash
    codes.redeem("req-1", code, now=NOW)
    with pytest.raises(CodeRefused, match="already used"):
        codes.redeem("req-1", code, now=NOW)


def test_a_one_time_code_expires(tmp_path: Path) -> None:
    codes = DownloadCodes(tmp_path)
    code = codes.issue("req-1", NOW + timedelta(hours=1))
    with pytest.raises(CodeRefused, match="expired"):
        codes.redeem("req-1", code, now=NOW + timedelta(hours=1))


def test_wrong_codes_are_rate_limited(tmp_path: Path) -> None:
    codes = DownloadCodes(tmp_path)
    code = codes.issue("req-1", NOW + timedelta(hours=1))
    wrong = "0" * 8 if code != "0" * 8 else "1" * 8
    for left in range(MAX_ATTEMPTS - 1, -1, -1):
        with pytest.raises(CodeRefused, match=f"{left} tries left") as refused:
            codes.redeem("req-1", wrong, now=NOW)
        assert wrong not in str(refused.value)
    with pytest.raises(CodeRefused, match="too many wrong codes"):
        codes.redeem("req-1", code, now=NOW)  # even the right one, now
    with pytest.raises(CodeRefused, match="no code"):
        codes.redeem("req-2", code, now=NOW)


# -- e-mail over SMTP ---------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives."""
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


def _mailer(tmp_path: Path, port: int) -> Mailer:
    settings = Settings(
        data_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="privacy@example.nl",
        smtp_starttls=False,
        public_url="https://privacy.example.nl/",
    )
    server = SmtpServer.from_settings(settings)
    assert server is not None
    keys = DataKeys(tmp_path / "dek", os.urandom(32))
    return Mailer(settings, server, Downloads(tmp_path, tmp_path / "keys", keys))


def _body(message: Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def test_access_answer_is_mailed_with_a_link_and_the_code_apart(
    tmp_path: Path, inbox: tuple[Inbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = inbox
    mailer = _mailer(tmp_path, port)
    letter = tmp_path / "req-1-missing.html"
    letter.write_text("<p>letter</p>")

    caplog.set_level(logging.DEBUG)
    event = asyncio.run(mailer.deliver(answered("access"), [letter]))
    assert event is not None and event.channel == DeliveryChannel.EMAIL
    [(to1, answer), (to2, code_mail)] = handler.messages
    assert to1 == to2 == [EMAIL]
    body, code_body = _body(answer), _body(code_mail)
    assert "https://privacy.example.nl/subject/download/" in body
    assert [p.get_filename() for p in answer.walk() if p.get_filename()] == [letter.name]
    code = next(w.rstrip(".") for w in code_body.split() if w.isdigit() and len(w) == 8)
    assert code not in body and "/subject/download/" not in code_body
    token = body.split("/subject/download/")[1].split()[0]
    assert mailer.downloads.check_token(token).request_id == "req-1"
    mailer.codes.redeem("req-1", code)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.")]
    assert ours and not any(EMAIL in line for line in ours)  # (the test server logs it)


def test_an_erasure_answer_has_no_link_and_no_code(
    tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox

    asyncio.run(_mailer(tmp_path, port).deliver(answered(), []))
    [(_, answer)] = handler.messages
    assert "/subject/download/" not in _body(answer)
    assert not (tmp_path / "delivery-codes").exists()


def test_nothing_is_mailed_without_an_email_identifier_or_once_delivered(
    tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox

    mailer = _mailer(tmp_path, port)
    delivered, _ = deliver(answered(), delivery(), ctx())
    assert delivered is not None
    assert asyncio.run(mailer.deliver(delivered, [])) is None
    assert handler.messages == []


def test_smtp_errors_name_no_address(tmp_path: Path) -> None:
    server = SmtpServer("127.0.0.1", free_port(), "privacy@example.nl", starttls=False)
    with pytest.raises(DeliveryError) as failed:
        server.send([])
    assert "ConnectionRefusedError" in str(failed.value)


def test_email_delivery_is_off_without_a_host_and_needs_a_from_address(tmp_path: Path) -> None:
    assert SmtpServer.from_settings(Settings(data_dir=tmp_path)) is None
    with pytest.raises(ValueError, match="DSR_SMTP_FROM"):
        Settings(data_dir=tmp_path, smtp_host="mail.example.nl")


def test_an_answer_processed_twice_is_mailed_once(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    """At-least-once processing (a restart, a rebalance under load) must not mail the subject
    twice: the second time the same delivery is recorded and nothing is sent."""
    handler, port = inbox
    first = asyncio.run(_mailer(tmp_path, port).deliver(answered(), []))
    again = asyncio.run(_mailer(tmp_path, port).deliver(answered(), []))
    assert len(handler.messages) == 1
    assert first is not None and again == first
    assert EMAIL not in (tmp_path / "delivery-sent" / "req-1.json").read_text()
