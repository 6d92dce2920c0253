"""Identity verification per right on the real broker: an unverified objection goes through on
the channel alone; an unverified erasure gets the ID-request letter at once and fans out only
after an `IdentityVerified` (Art. 7(3), 12(6), 21 GDPR)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.events import (
    IdentityVerified,
    OutcomeStatus,
    RequestStatus,
    StatusTrigger,
    TaskDispatched,
    VerificationMethod,
)
from schemas.topics import TASKS
from tests.e2e.conftest import System, read_topic
from tests.e2e.test_pipeline import ANNA, new_request
from tests.orchestrator.test_documents import _text

pytestmark = pytest.mark.broker

#: Nobody in the demo systems: an erasure for this address deletes nothing other tests need.
DORA = "dora.verification@example.nl"


def _tasks(running: System, request_id: str) -> list[TaskDispatched]:
    return [
        e.body
        for _, e in read_topic(running.kafka, TASKS.name)
        if e is not None and isinstance(e.body, TaskDispatched) and e.body.request_id == request_id
    ]


def test_art_21_unverified_objection_on_the_mailing_system_completes_without_an_id_step(
    running: System,
) -> None:
    request = new_request("objection", ANNA, verified=False, scope=["mailing"])
    with running.publisher() as publisher:
        publisher.publish(request)
    view = running.wait_for(request.request_id, lambda s: s.status.is_final)
    history = view.history[request.request_id]
    assert history[-1].status == RequestStatus.COMPLETED
    assert history[-1].systems["mailing"].status == OutcomeStatus.COMPLETED
    assert RequestStatus.AWAITING_VERIFICATION not in {e.status for e in history}
    letters = running.data_dir / "documents" / request.request_id
    assert not (letters / "id_request.nl.html").exists()


def test_art_12_6_unverified_erasure_gets_the_id_request_and_waits_for_verification(
    running: System,
) -> None:
    request = new_request("erasure", DORA, verified=False, scope=["mailing", "crm"])
    with running.publisher() as publisher:
        publisher.publish(request)
        view = running.wait_for(
            request.request_id, lambda s: s.status == RequestStatus.AWAITING_VERIFICATION
        )
        waiting = view.history[request.request_id][-1]
        # The letter is on disk before the status event that points at it.
        assert waiting.artifact is not None
        letter = Path(waiting.artifact)
        assert letter == running.data_dir / "documents" / request.request_id / "id_request.nl.html"
        text = _text(letter.read_text())
        for word in ("KopieID", "BSN", "MRZ", "pasfoto", "vernietigen wij de kopie"):
            assert word in text
        assert DORA not in letter.read_text()
        time.sleep(2)  # give a wrongly eager orchestrator time to fan out
        assert _tasks(running, request.request_id) == []

        # A method the policy does not accept for erasure does not count.
        publisher.verify_identity(
            IdentityVerified(
                request_id=request.request_id,
                method=VerificationMethod.EMAIL_CONFIRMATION,
                verified_at=datetime.now(UTC),
            )
        )
        view = running.wait_for(
            request.request_id, lambda s: s.trigger == StatusTrigger.VERIFICATION_REJECTED
        )
        rejected = view.history[request.request_id][-1]
        assert rejected.status == RequestStatus.AWAITING_VERIFICATION
        assert rejected.reason and "does not count" in rejected.reason
        assert _tasks(running, request.request_id) == []

        checked = datetime.now(UTC)
        publisher.verify_identity(
            IdentityVerified(
                request_id=request.request_id,
                method=VerificationMethod.ID_DOCUMENT,
                verified_at=checked,
                verified_by="privacy-officer",
                copy_destroyed_at=checked,
            )
        )
    final = running.wait_final(request.request_id)
    assert final.status == RequestStatus.COMPLETED and final.verified_at is not None
    assert {t.system for t in _tasks(running, request.request_id)} == {"mailing", "crm"}
