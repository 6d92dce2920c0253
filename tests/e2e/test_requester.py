"""A request made for someone else, end to end: a representative with a mandate reference asks,
the letters go to the representative ("on behalf of" the subject), and the status events carry
the requester's kind only: no name, no mandate reference (EDPB Guidelines 01/2022 on the right
of access, requests made via third parties; Art. 12(1) GDPR).

The reminder of the ID request is proved here too, but without a broker: the reminder falls due
whole days after the ID request (`DSR_REMINDER_AFTER_DAYS`, counted from when the orchestrator
asked, not from `received_at`), so a running stack would have to wait days. The test drives the
same lifecycle and the same `Finisher` the orchestrator's timer uses, with a clock moved on.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.fanout.finish import Finisher
from orchestrator.lifecycle.reducer import Context, submit, tick
from orchestrator.runtime import demo
from orchestrator.runtime.config import load_settings
from schemas.events import (
    Requester,
    RequesterKind,
    RequestStatus,
    StatusTrigger,
)
from schemas.primitives.sealing import DataKeys
from schemas.register import load_register
from schemas.topics import STATUS
from tests.e2e.conftest import System, read_topic
from tests.e2e.test_decisions import verified
from tests.e2e.test_pipeline import ANNA, new_request
from tests.orchestrator.test_documents import _text

ON_BEHALF_NL = "U hebt dit verzoek gedaan namens degene om wie het gaat"


def _representative() -> Requester:
    """A lawyer with a mandate; the reference is unique so that a leak is found anywhere."""
    mandate = f"dms://mandates/2026/{uuid.uuid4().hex[:12]}"
    return Requester(kind=RequesterKind.REPRESENTATIVE, mandate_ref=mandate)


def _no_requester_details(running: System, request_id: str, requester: Requester) -> None:
    """Every status event of the request names the requester's kind, and nothing more."""
    assert requester.mandate_ref is not None
    mandate = requester.mandate_ref.encode()
    found = 0
    for record, envelope in read_topic(running.kafka, STATUS.name):
        assert mandate not in record.value  # type: ignore[attr-defined]
        body = envelope.body if envelope else None
        if getattr(body, "request_id", None) == request_id:
            found += 1
            assert body.requester_kind == RequesterKind.REPRESENTATIVE  # type: ignore[union-attr]
            assert ANNA not in body.model_dump_json()  # type: ignore[union-attr]
    assert found >= 2
    logs = "".join(p.read_text(errors="replace") for p in running.log_dir.glob("*"))
    assert requester.mandate_ref not in logs


@pytest.mark.broker
def test_representative_with_mandate_objection_completes_and_the_letter_is_theirs(
    running: System,
) -> None:
    """Art. 21(3) GDPR on the channel alone; the confirmation goes to the representative."""
    requester = _representative()
    request = new_request("objection", ANNA, verified=False, scope=["mailing"], requester=requester)
    with running.publisher() as publisher:
        publisher.publish(request)
    final = running.wait_final(request.request_id)
    assert final.status == RequestStatus.COMPLETED
    assert final.requester_kind == RequesterKind.REPRESENTATIVE
    letter = running.data_dir / "documents" / request.request_id / "confirmation.nl.html"
    page = letter.read_text()
    assert 'data-requester="representative"' in page and ON_BEHALF_NL in _text(page)
    assert ANNA not in page and str(requester.mandate_ref) not in page
    _no_requester_details(running, request.request_id, requester)


@pytest.mark.broker
def test_representative_access_gets_the_id_request_addressed_to_them_then_completes(
    running: System,
) -> None:
    """EDPB 01/2022: the controller must be sure the third party may act for the subject; the
    ID request goes to the representative, the export concerns the subject."""
    requester = _representative()
    request = new_request(
        "access", ANNA, verified=False, scope=["crm"], requester=requester, language="en"
    )
    with running.publisher() as publisher:
        publisher.publish(request)
        view = running.wait_for(
            request.request_id, lambda s: s.status == RequestStatus.AWAITING_VERIFICATION
        )
        waiting = view.history[request.request_id][-1]
        assert waiting.artifact is not None and waiting.artifact.endswith("id_request.en.html")
        page = Path(waiting.artifact).read_text()
        assert 'data-requester="representative"' in page
        assert "on behalf of the person it is about" in _text(page)
        assert ANNA not in page and str(requester.mandate_ref) not in page
        publisher.verify_identity(verified(request.request_id))
    final = running.wait_final(request.request_id)
    assert final.status == RequestStatus.COMPLETED and final.systems["crm"].counts.found > 0
    _no_requester_details(running, request.request_id, requester)


def test_art_12_6_reminder_letter_goes_out_once_the_reminder_time_passes(tmp_path: Path) -> None:
    """Art. 12(6) GDPR and EDPB 01/2022: the subject was asked for what confirms the identity
    and sent nothing; after DSR_REMINDER_AFTER_DAYS the timer's tick asks for the `reminder`
    letter and the Finisher writes it (to the representative who asked), with the status event
    pointing at it. Without a broker: see the module docstring."""
    settings = load_settings(data_dir=tmp_path / "data", reminder_after_days=3)
    register = load_register(demo.sql_register_path(), env={"DSR_DEMO_DIR": str(tmp_path)})
    finisher = Finisher(settings, register, DataKeys(tmp_path / "dek", os.urandom(32)))
    systems = tuple(s.name for s in register.systems)
    policy = settings.policy()

    def at(now: datetime) -> Context:
        return Context(systems=systems, policy=policy, now=now)

    requester = _representative()
    request = new_request("erasure", ANNA, verified=False, scope=["crm"], requester=requester)
    asked = datetime.now(UTC)
    state, effects = submit(None, request, at(asked))
    assert state is not None and effects.notices == ["id_request"]
    finisher.notices(state, effects)

    early = asked + timedelta(days=3) - timedelta(seconds=1)
    _, nothing = tick(
        state.model_copy(deep=True), Context(systems=systems, policy=policy, now=early)
    )
    assert nothing.notices == []
    due = asked + timedelta(days=3)
    state, effects = tick(state, at(due))
    assert effects.notices == ["reminder"]
    finisher.notices(state, effects)
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.REMINDED
    assert status.status == RequestStatus.AWAITING_VERIFICATION
    letter = Path(status.artifact or "")
    assert letter.name == "reminder.nl.html" and letter.parent.name == request.request_id
    page = letter.read_text()
    assert "data-reminder" in page and "Herinnering" in _text(page)
    assert 'data-requester="representative"' in page and ANNA not in page
    # once only
    _, again = tick(state, at(due + timedelta(days=5)))
    assert again.notices == []
