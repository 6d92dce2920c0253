"""Officers' decisions end to end on the real broker: signed, allowed, and their letters at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.artifacts.letters import AP_COMPLAINT_URL
from orchestrator.intake.client import RequestPublisher
from orchestrator.intake.publishers import IssuedKey, create_publisher
from orchestrator.runtime import demo
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from schemas.events import (
    DeadLetter,
    DecisionRecorded,
    IdentityVerified,
    RequestStatus,
    RequestStatusChanged,
    StatusTrigger,
    VerificationMethod,
)
from schemas.topics import DEAD_LETTER, REQUEST_EVENT_TYPES
from tests.e2e.conftest import System, read_topic
from tests.e2e.test_pipeline import ANNA, new_request, rows_for
from tests.e2e.test_verification import _tasks

pytestmark = pytest.mark.broker

OFFICER = "officer-42"
EXPLANATION = "U vroeg dit jaar al elf keer om inzage in dezelfde gegevens."


@pytest.fixture(scope="module")
def officer(running: System, tmp_path_factory: pytest.TempPathFactory) -> IssuedKey:
    """A publisher allowed to decide: its `events` list the decision event type."""
    return create_publisher(
        running.signing.keys_file,
        f"officer-desk-{uuid.uuid4().hex[:6]}",
        out_dir=tmp_path_factory.mktemp("officer"),
        events=list(REQUEST_EVENT_TYPES),
    )


@pytest.fixture
def desk(running: System, officer: IssuedKey) -> Iterator[RequestPublisher]:
    with RequestPublisher(running.kafka, source="tests", signer=officer.signer()) as publisher:
        yield publisher


def decision(request_id: str, kind: str, **fields: Any) -> DecisionRecorded:
    return DecisionRecorded.model_validate(
        {
            "request_id": request_id,
            "decision": kind,
            "decided_by": OFFICER,
            "decided_at": datetime.now(UTC),
            **fields,
        }
    )


def waiting(running: System, scope: list[str], kind: str = "access") -> str:
    """Publish an unverified request and wait until it waits for verification."""
    request = new_request(kind, ANNA, verified=False, scope=scope)
    with running.publisher() as publisher:
        publisher.publish(request)
    awaiting = RequestStatus.AWAITING_VERIFICATION
    running.wait_for(request.request_id, lambda s: s.status == awaiting)
    return request.request_id


def verified(request_id: str) -> IdentityVerified:
    method = VerificationMethod.ID_DOCUMENT
    return IdentityVerified(request_id=request_id, method=method, verified_at=datetime.now(UTC))


def result_of(status: RequestStatusChanged) -> dict[str, Any]:
    assert status.artifact
    result: dict[str, Any] = json.loads(Path(status.artifact).read_text())
    return result


CODES = ["manifestly_unfounded", "excessive", "identity_not_established", "statutory_exemption"]


def test_art_12_4_refusal_gives_the_letter_at_once_for_each_reason_code(
    running: System, desk: RequestPublisher
) -> None:
    ids = {code: waiting(running, ["crm"]) for code in [*CODES, "other"]}
    for code, request_id in ids.items():
        desk.publish_decision(
            decision(request_id, "refuse", reason_code=code, explanation=EXPLANATION)
        )
    for code, request_id in ids.items():
        final = running.wait_final(request_id, timeout=30)
        assert final.status == RequestStatus.REFUSED and final.trigger == StatusTrigger.FINISHED
        assert final.reason and code in final.reason and OFFICER in final.reason
        assert EXPLANATION not in final.model_dump_json() and ANNA not in final.model_dump_json()
        # at once: weeks before the deadline, not by the deadline timer
        assert final.deadline - final.occurred_at > timedelta(days=20)
        letter = Path(result_of(final)["documents"]["refusal"]).read_text()
        assert f'data-code="{code}"' in letter and "Uw verzoek is geweigerd" in letter
        assert EXPLANATION in letter and AP_COMPLAINT_URL in letter and "artikel 35" in letter
        assert ANNA not in letter


def test_art_12_4_refusing_one_system_gives_a_partial_answer_naming_it(
    running: System, desk: RequestPublisher
) -> None:
    request_id = waiting(running, ["crm", "chat"])
    refuse = decision(request_id, "refuse_system", system="chat", reason_code="excessive")
    desk.publish_decision(refuse)
    running.wait_for(request_id, lambda s: s.systems["chat"].decision == "refuse_system")
    desk.verify_identity(verified(request_id))
    final = running.wait_final(request_id)
    assert final.status == RequestStatus.PARTIALLY_COMPLETED
    assert final.systems["crm"].status == "completed"
    assert final.reason and "refused for chat" in final.reason
    letter = Path(result_of(final)["documents"]["missing"]).read_text()
    row = letter.split('data-system="chat"')[1].split("</tr>")[0]
    assert 'data-refused="excessive"' in row and "buitensporig" in row
    assert AP_COMPLAINT_URL in letter and ANNA not in letter


def test_art_17_3_e_legal_hold_keeps_the_data_and_the_certificate_says_held(
    running: System, officer: IssuedKey
) -> None:
    before = rows_for(running.systems_dir, ANNA)["crm"]
    assert before > 0
    request_id = waiting(running, ["crm"], kind="erasure")
    review = date.today() + timedelta(days=180)
    env = {
        **os.environ,
        "DSR_KAFKA_BOOTSTRAP": running.kafka.require_bootstrap(),
        **officer.env(),
    }
    args = ["decide", "hold", request_id, "--system", "crm", "--reason", "debt_collection"]
    args += ["--review-date", review.isoformat(), "--by", OFFICER]
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    running.wait_for(request_id, lambda s: s.systems["crm"].decision == "legal_hold")
    with RequestPublisher(running.kafka, source="tests", signer=officer.signer()) as desk:
        desk.verify_identity(verified(request_id))
    final = running.wait_final(request_id)
    assert final.status == RequestStatus.COMPLETED
    assert final.systems["crm"].status == "retained"
    assert rows_for(running.systems_dir, ANNA)["crm"] == before  # kept, not erased
    signed = json.loads(Path(result_of(final)["certificate"]).read_text())
    hold = signed["certificate"]["systems"]["crm"]["legal_hold"]
    assert hold["held"] is True and hold["review_date"] == review.isoformat()
    assert hold["reason"] == "legal hold: debt_collection" and "17(3)(e)" in hold["legal_basis"]
    page = Path(result_of(final)["certificate"]).with_suffix(".nl.html").read_text()
    assert "data-legal-hold" in page and review.isoformat() in page


def test_decision_by_a_publisher_not_allowed_to_decide_is_dead_lettered(running: System) -> None:
    request_id = waiting(running, ["crm"])
    with running.publisher() as publisher:  # the default allow-list: no decisions
        publisher.publish_decision(decision(request_id, "refuse", reason_code="excessive"))
        publisher.publish_decision(decision(f"{request_id}-x", "approve"))

    def dead() -> list[DeadLetter]:
        found = []
        for _, envelope in read_topic(running.kafka, DEAD_LETTER.name):
            body = envelope.body if envelope else None
            if isinstance(body, DeadLetter) and body.key and body.key.startswith(request_id):
                found.append(body)
        return found

    letters = dead()
    assert len(letters) == 2
    for letter in letters:
        assert letter.stage == "signature" and "may not publish" in letter.reason
        assert "dsr.request.decision_recorded.v1" in letter.reason
    running.wait_for(request_id, lambda s: s.status == RequestStatus.AWAITING_VERIFICATION)


def test_art_12_5_a_fee_waits_and_proceeds_after_payment(
    running: System, desk: RequestPublisher
) -> None:
    """Art. 12(5)(a) GDPR: for a manifestly unfounded or excessive request the controller may
    "charge a reasonable fee taking into account the administrative costs"; nothing is carried
    out until the payment is confirmed (`fee_paid`), then the request goes on as any other."""
    request_id = waiting(running, ["crm"])
    desk.publish_decision(decision(request_id, "fee", fee_eur=15))
    view = running.wait_for(request_id, lambda s: s.trigger == StatusTrigger.DECIDED)
    charged = view.history[request_id][-1]
    assert charged.reason and "EUR 15" in charged.reason and "12(5)(a)" in charged.reason
    assert charged.reason.endswith(f"by {OFFICER}")
    desk.verify_identity(verified(request_id))
    running.wait_for(request_id, lambda s: s.status == RequestStatus.AWAITING_FEE)
    time.sleep(2)  # give a wrongly eager orchestrator time to fan out
    assert _tasks(running, request_id) == []
    running.wait_for(request_id, lambda s: s.status == RequestStatus.AWAITING_FEE)

    desk.publish_decision(decision(request_id, "fee_paid"))
    final = running.wait_final(request_id)
    assert final.status == RequestStatus.COMPLETED
    assert {t.system for t in _tasks(running, request_id)} == {"crm"}
    history = running.wait_for(request_id, lambda s: s.status.is_final).history[request_id]
    statuses = [e.status for e in history]
    assert statuses.index(RequestStatus.AWAITING_FEE) < statuses.index(RequestStatus.IN_PROGRESS)
    for event in history:
        assert ANNA not in event.model_dump_json()


def test_approval_required_erasure_waits_for_approve(tmp_path: Path) -> None:
    """DSR_APPROVAL_REQUIRED=erasure: a verified erasure is not carried out (and no data is
    erased) until an officer publishes `approve`; then it fans out and completes."""
    systems_dir = demo.seed(tmp_path / "systems")
    settings = Settings(
        register_file=demo.sql_register_path(),
        data_dir=tmp_path / "data",
        tick_interval_seconds=0.5,
        approval_required="erasure",
    )
    env = {"DSR_DEMO_DIR": str(systems_dir)}
    scope = ["crm", "mailing"]
    before = rows_for(systems_dir, ANNA)
    assert all(before[name] > 0 for name in scope)
    request = new_request("erasure", ANNA, scope=scope)  # verified: only the approval is missing
    request_id = request.request_id
    with Stack(settings, log_dir=tmp_path / "logs", extra_env=env) as stack:
        assert stack.local_publisher is not None  # it may decide
        system = System(
            stack,
            stack.settings.kafka,
            systems_dir,
            tmp_path / "data",
            tmp_path / "logs",
            tmp_path,
            stack.local_publisher,
        )
        with system.publisher() as publisher:
            publisher.publish(request)
            awaiting = RequestStatus.AWAITING_APPROVAL
            system.wait_for(request_id, lambda s: s.status == awaiting, timeout=90)
            time.sleep(2)  # give a wrongly eager orchestrator time to fan out
            assert _tasks(system, request_id) == []
            assert rows_for(systems_dir, ANNA) == before  # nothing erased yet
            system.wait_for(request_id, lambda s: s.status == awaiting)

            publisher.publish_decision(decision(request_id, "approve"))
        final = system.wait_final(request_id, timeout=90)
        assert final.status == RequestStatus.COMPLETED
        assert {t.system for t in _tasks(system, request_id)} == set(scope)
        history = system.wait_for(request_id, lambda s: s.status.is_final).history[request_id]
        approved = next(e for e in history if e.previous_status == awaiting)
        assert approved.trigger == StatusTrigger.DECIDED
        assert (
            approved.reason and approved.reason.startswith("approve") and OFFICER in approved.reason
        )
    after = rows_for(systems_dir, ANNA)
    assert all(after[name] == 0 for name in scope)
