"""Officers' decisions (`DecisionRecorded`) in the lifecycle, without Kafka: every transition."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.artifacts import letters
from orchestrator.lifecycle import decisions
from orchestrator.lifecycle.reducer import (
    Effects,
    RequestState,
    apply,
    decide,
    final_status,
    record_decision,
    record_outcome,
    shredded,
    submit,
    verify,
)
from schemas.envelope import TYPE_OF
from schemas.events import (
    DecisionRecorded,
    IdentityVerified,
    OutcomeStatus,
    RequestStatus,
    RequestType,
    StatusTrigger,
    SystemProgress,
    VerificationMethod,
)
from schemas.primitives.signing import parse_publisher_keys
from schemas.topics import DEFAULT_PUBLISHER_EVENTS, REQUEST_EVENT_TYPES
from tests.orchestrator.test_documents import REGISTER
from tests.orchestrator.test_lifecycle import NOW, SYSTEMS, ctx, outcome, request

OFFICER = "officer-7"
EXPLANATION = "U heeft dit verzoek deze maand al twaalf keer ingediend."


def decision(kind: str, **fields: Any) -> DecisionRecorded:
    return DecisionRecorded.model_validate(
        {
            "request_id": "req-1",
            "decision": kind,
            "decided_by": OFFICER,
            "decided_at": NOW,
            **fields,
        }
    )


def hold(system: str = "crm", **fields: Any) -> DecisionRecorded:
    fields = {"hold_reason": "debt_collection", "review_date": date(2026, 9, 1), **fields}
    return decision("legal_hold", system=system, **fields)


def waiting(verified: bool = False, **policy: object) -> RequestState:
    """An erasure request not yet carried out (awaiting verification by default)."""
    state, _ = submit(None, request(verified=verified), ctx(**policy))
    assert state is not None
    return state


def running() -> RequestState:
    state = waiting(verified=True)
    assert state.status == RequestStatus.IN_PROGRESS
    return state


# --- the event ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"decision": "refuse"}, "needs 'reason_code'"),
        ({"decision": "refuse_system", "reason_code": "excessive"}, "needs 'system'"),
        ({"decision": "legal_hold", "system": "crm", "hold_reason": "dispute"}, "review_date"),
        ({"decision": "fee"}, "needs 'fee_eur'"),
        ({"decision": "approve", "reason_code": "excessive"}, "not allowed"),
        ({"decision": "refuse", "reason_code": "other"}, "needs an 'explanation'"),
        (
            {
                "decision": "legal_hold",
                "system": "crm",
                "hold_reason": "other_legal_claim",
                "review_date": "2027-01-01",
            },
            "needs an 'explanation'",
        ),
    ],
)
def test_decision_event_needs_the_fields_of_its_kind(fields: dict[str, Any], problem: str) -> None:
    fields = dict(fields)
    with pytest.raises(ValidationError, match=problem):
        decision(fields.pop("decision"), **fields)


# --- refuse (Art. 12(4), 12(5)(b), 12(6)/11(2), Art. 23 GDPR / Art. 41 UAVG) -------------------


@pytest.mark.parametrize(
    ("code", "article"),
    [
        ("manifestly_unfounded", "Art. 12(5)(b) GDPR"),
        ("excessive", "Art. 12(5)(b) GDPR"),
        ("identity_not_established", "Art. 12(6) and 11(2) GDPR"),
        ("statutory_exemption", "Art. 23 GDPR, Art. 41 UAVG"),
        ("other", "Art. 12(4) GDPR"),
    ],
)
def test_art_12_4_refusal_is_final_at_once_with_code_and_officer(code: str, article: str) -> None:
    state = waiting()
    event = decision("refuse", reason_code=code, explanation=EXPLANATION)
    new, effects = record_decision(state, event, ctx())
    assert new is not None and new.status == RequestStatus.REFUSED and effects.finished
    assert not effects.tasks and new.decisions == [event]
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.FINISHED and status.status == RequestStatus.REFUSED
    assert status.reason is not None
    assert code in status.reason and article in status.reason and OFFICER in status.reason
    # the free text is for the subject's letter, never for the status topic
    assert EXPLANATION not in status.model_dump_json()
    assert decisions.refusal(new.decisions) == event


def test_art_12_4_refusal_while_carried_out_stops_awaiting_outcomes() -> None:
    state = running()
    new, effects = record_decision(state, decision("refuse", reason_code="excessive"), ctx())
    assert new is not None and new.status == RequestStatus.REFUSED and effects.finished
    late, more = record_outcome(new, outcome("crm"), ctx())
    assert late is not None and late.status == RequestStatus.REFUSED and not more.statuses


def test_decision_on_unknown_or_final_request_is_dead_lettered() -> None:
    event = decision("refuse", reason_code="excessive")
    _, effects = record_decision(None, event, ctx())
    assert effects.dead_letter is not None and "no such request" in effects.dead_letter
    early = RequestState(request_id="req-1", early_verification=None)
    _, effects = record_decision(early, event, ctx())
    assert effects.dead_letter is not None and "no such request" in effects.dead_letter
    done, _ = record_decision(waiting(), event, ctx())
    assert done is not None
    other = decision("refuse", reason_code="manifestly_unfounded")
    _, effects = record_decision(done, other, ctx())
    assert effects.dead_letter is not None and "already final (refused)" in effects.dead_letter
    _, effects = record_decision(shredded(done, NOW), other, ctx())
    assert effects.dead_letter is not None


def test_redelivered_decision_changes_nothing() -> None:
    event = decision("refuse", reason_code="excessive")
    done, _ = record_decision(waiting(), event, ctx())
    again, effects = record_decision(done, event, ctx())
    assert again is done and not effects.changed and effects.dead_letter is None


def test_decide_dead_letters_a_refused_decision_and_goes_on() -> None:
    state = running()
    items = [
        ("a", decision("refuse_system", system="nope", reason_code="excessive")),
        ("b", outcome("crm")),
    ]
    result = decide(state, items, ctx)
    assert [item for item, _, _ in result.refused] == ["a"]
    assert "'nope' is not in its scope" in result.refused[0][1]
    assert result.state is not None and result.state.systems["crm"].status == "completed"


# --- refuse one system ------------------------------------------------------------------------


def test_art_12_4_refused_system_is_not_dispatched_and_answer_is_partial() -> None:
    state = waiting()
    event = decision("refuse_system", system="chat", reason_code="statutory_exemption")
    state, effects = record_decision(state, event, ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_VERIFICATION
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.DECIDED and "chat" in (status.reason or "")
    assert state.systems["chat"].decision == "refuse_system"
    verified = IdentityVerified(
        request_id="req-1", method=VerificationMethod.ID_DOCUMENT, verified_at=NOW
    )
    state, effects = verify(state, verified, ctx())
    assert sorted(t.system for t in effects.tasks) == sorted(set(SYSTEMS) - {"chat"})
    for name in SYSTEMS:
        if name != "chat":
            state, effects = record_outcome(state, outcome(name), ctx())
    assert state is not None and state.status == RequestStatus.PARTIALLY_COMPLETED
    assert state.reason is not None and state.reason.startswith("refused for chat: refused: ")
    assert "statutory_exemption" in state.reason


def last_system_refused(refused: str) -> tuple[RequestState | None, Effects]:
    """Every system but `refused` completed, then `refused` refused (excessive)."""
    state: RequestState | None = running()
    for name in SYSTEMS:
        if name != refused:
            state, _ = record_outcome(state, outcome(name), ctx())
    event = decision("refuse_system", system=refused, reason_code="excessive")
    return record_decision(state, event, ctx())


def test_art_12_4_refused_system_outcome_is_no_longer_awaited() -> None:
    state, effects = last_system_refused("support")
    assert state is not None and state.status == RequestStatus.PARTIALLY_COMPLETED
    assert effects.finished and "refused for support" in (state.reason or "")
    late, more = record_outcome(state, outcome("support"), ctx())
    assert late is not None and late.systems["support"].decision == "refuse_system"
    assert not more.changed


def test_refused_system_already_answered_or_unknown_is_dead_lettered() -> None:
    state, _ = record_outcome(running(), outcome("crm"), ctx())
    event = decision("refuse_system", system="crm", reason_code="excessive")
    _, effects = record_decision(state, event, ctx())
    assert effects.dead_letter is not None and "already answered" in effects.dead_letter


def test_every_system_refused_refuses_the_request() -> None:
    systems = {
        n: SystemProgress(
            status=OutcomeStatus.FAILED, reason="refused: x", decision="refuse_system"
        )
        for n in ("crm", "chat")
    }
    status, reason = final_status(systems)
    assert status == RequestStatus.REFUSED and reason is not None and "chat" in reason
    state = waiting(verified=True, approval_required=frozenset({RequestType.ERASURE}))
    for name in SYSTEMS:
        event = decision("refuse_system", system=name, reason_code="excessive")
        state, _ = record_decision(state, event, ctx(approval_required=frozenset({"erasure"})))
    assert state is not None and state.status == RequestStatus.AWAITING_APPROVAL
    state, effects = record_decision(
        state, decision("approve"), ctx(approval_required=frozenset({"erasure"}))
    )
    assert state is not None and state.status == RequestStatus.REFUSED and not effects.tasks


# --- legal hold (Art. 17(3)(e)) -----------------------------------------------------------------


def test_art_17_3_e_legal_hold_keeps_the_system_and_reports_it_held() -> None:
    state = waiting()
    state, effects = record_decision(state, hold("crm"), ctx())
    assert state is not None and effects.statuses[0].trigger == StatusTrigger.DECIDED
    verified = IdentityVerified(
        request_id="req-1", method=VerificationMethod.ID_DOCUMENT, verified_at=NOW
    )
    state, effects = verify(state, verified, ctx())
    assert "crm" not in {t.system for t in effects.tasks}
    for name in SYSTEMS:
        if name != "crm":
            state, _ = record_outcome(state, outcome(name), ctx())
    assert state is not None and state.status == RequestStatus.COMPLETED
    held = state.systems["crm"]
    assert held.status == OutcomeStatus.RETAINED and held.decision == "legal_hold"
    [item] = held.retained
    assert item.until == date(2026, 9, 1) and "17(3)(e)" in item.legal_basis
    assert item.reason == "legal hold: debt_collection"
    assert decisions.held_systems(state.systems, state.decisions) == {"crm": hold("crm")}


def test_art_17_3_e_legal_hold_only_for_erasure_before_dispatch_and_with_future_review() -> None:
    _, effects = record_decision(running(), hold("crm"), ctx())
    assert effects.dead_letter is not None and "already sent" in effects.dead_letter
    access, _ = submit(None, request(verified=False, type="access"), ctx())
    _, effects = record_decision(access, hold("crm"), ctx())
    assert effects.dead_letter is not None and "not to access" in effects.dead_letter
    past = hold("crm", review_date=NOW.date() - timedelta(days=1))
    _, effects = record_decision(waiting(), past, ctx())
    assert effects.dead_letter is not None and "not in the future" in effects.dead_letter


def test_art_17_3_e_status_events_carry_the_hold_code_not_the_explanation() -> None:
    event = hold("crm", hold_reason="other_legal_claim", explanation=EXPLANATION)
    _, effects = record_decision(waiting(), event, ctx())
    [status] = effects.statuses
    assert "other_legal_claim" in (status.reason or "") and "2026-09-01" in (status.reason or "")
    assert EXPLANATION not in status.model_dump_json()


# --- fee (Art. 12(5)(a)) and approval -----------------------------------------------------------


def test_art_12_5_a_fee_makes_the_request_wait_for_payment() -> None:
    state = waiting()
    state, effects = record_decision(state, decision("fee", fee_eur=25), ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_VERIFICATION
    assert "EUR 25" in (effects.statuses[0].reason or "")
    verified = IdentityVerified(
        request_id="req-1", method=VerificationMethod.ID_DOCUMENT, verified_at=NOW
    )
    state, effects = verify(state, verified, ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_FEE and not effects.tasks
    state, effects = record_decision(state, decision("fee_paid"), ctx())
    assert state is not None and state.status == RequestStatus.IN_PROGRESS
    assert len(effects.tasks) == len(SYSTEMS)
    assert effects.statuses[-1].trigger == StatusTrigger.DECIDED


def test_art_12_5_a_fee_on_an_approval_waiting_request_and_fee_rules() -> None:
    policy = {"approval_required": frozenset({RequestType.ERASURE})}
    state = waiting(verified=True, **policy)
    assert state.status == RequestStatus.AWAITING_APPROVAL
    state, _ = record_decision(state, decision("fee", fee_eur=10), ctx(**policy))
    assert state is not None and state.status == RequestStatus.AWAITING_FEE
    _, effects = record_decision(state, decision("fee", fee_eur=11), ctx(**policy))
    assert effects.dead_letter is not None and "once" in effects.dead_letter
    state, _ = record_decision(state, decision("fee_paid"), ctx(**policy))
    assert state is not None and state.status == RequestStatus.AWAITING_APPROVAL
    _, effects = record_decision(running(), decision("fee", fee_eur=10), ctx())
    assert effects.dead_letter is not None and "before the request" in effects.dead_letter
    _, effects = record_decision(running(), decision("fee_paid"), ctx())
    assert effects.dead_letter is not None and "no fee is pending" in effects.dead_letter


def test_approval_required_erasure_waits_for_approve() -> None:
    policy = {"approval_required": frozenset({RequestType.ERASURE})}
    state = waiting(verified=True, **policy)
    assert state.status == RequestStatus.AWAITING_APPROVAL
    state, effects = apply(state, decision("approve"), ctx(**policy))
    assert state is not None and state.status == RequestStatus.IN_PROGRESS
    assert len(effects.tasks) == len(SYSTEMS)
    assert OFFICER in (effects.statuses[-1].reason or "")
    _, effects = record_decision(state, decision("approve", decided_by="other"), ctx(**policy))
    assert effects.dead_letter is not None and "already approved" in effects.dead_letter


def test_approval_is_off_by_default_and_early_approval_is_recorded() -> None:
    assert running().status == RequestStatus.IN_PROGRESS
    state, effects = record_decision(waiting(), decision("approve"), ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_VERIFICATION
    assert effects.statuses[0].trigger == StatusTrigger.DECIDED
    assert decisions.approved(state.decisions)


# --- the letters (Art. 12(4): the reasons and the remedies, at once) ---------------------------


@pytest.mark.parametrize("language", ["nl", "en"])
@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("manifestly_unfounded", {"nl": "kennelijk ongegrond", "en": "manifestly unfounded"}),
        ("excessive", {"nl": "buitensporig", "en": "excessive"}),
        ("identity_not_established", {"nl": "artikel 11, lid 2", "en": "11(2)"}),
        ("statutory_exemption", {"nl": "artikel 41 UAVG", "en": "Article 41 UAVG"}),
        ("other", {"nl": "Om de volgende reden", "en": "For the following reason"}),
    ],
)
def test_art_12_4_refusal_letter_words_the_code_and_names_the_remedies(
    language: str, code: str, words: dict[str, str]
) -> None:
    state, _ = submit(None, request(verified=False, language=language), ctx())
    event = decision("refuse", reason_code=code, explanation=EXPLANATION)
    state, _ = record_decision(state, event, ctx())
    assert state is not None and letters.documents_for(state) == ["refusal"]
    page = letters.render("refusal", state, REGISTER, now=NOW)
    assert f'data-code="{code}"' in page and words[language] in page
    assert EXPLANATION in page  # the officer's explanation is for the subject
    assert letters.AP_COMPLAINT_URL in page and "35" in page  # AP complaint page, Art. 35 UAVG
    assert "p@example.nl" not in page and OFFICER not in page


def test_art_12_4_partial_answer_names_the_refused_system_and_why() -> None:
    state, _ = last_system_refused("chat")
    assert state is not None and letters.documents_for(state) == ["missing"]
    page = letters.render("missing", state, REGISTER, now=NOW)
    row = page.split('data-system="chat"')[1].split("</tr>")[0]
    assert 'data-refused="excessive"' in row and "Geweigerd" in row and "buitensporig" in row
    assert letters.AP_COMPLAINT_URL in page


@pytest.mark.parametrize(
    ("language", "words"), [("nl", "artikel 12, lid 5, onder a"), ("en", "Article\n    12(5)(a)")]
)
def test_art_12_5_a_fee_letter_goes_out_at_once_with_the_amount(language: str, words: str) -> None:
    """A fee decision asks for the fee letter at once: the amount, why (Art. 12(5)(a) GDPR),
    how to pay and the remedy; the request waits for payment."""
    state, _ = submit(None, request(verified=False, language=language), ctx())
    state, effects = record_decision(state, decision("fee", fee_eur=25), ctx())
    assert effects.notices == ["fee"]
    assert state is not None
    page = letters.render("fee", state, REGISTER, now=NOW)
    assert "data-fee" in page and "EUR 25" in page
    assert " ".join(words.split()) in " ".join(page.split())
    assert "p@example.nl" not in page and OFFICER not in page


# --- who may decide --------------------------------------------------------------------------


def test_only_publishers_listing_the_decision_type_may_decide(tmp_path: Path) -> None:
    decided = TYPE_OF[DecisionRecorded]
    assert decided in REQUEST_EVENT_TYPES and decided not in DEFAULT_PUBLISHER_EVENTS
    key = [{"algorithm": "hmac-sha256", "secret": "${DESK_SECRET}"}]
    document = {
        "publishers": [
            {"id": "web-form", "keys": key},
            {"id": "desk", "events": list(REQUEST_EVENT_TYPES), "keys": key},
        ]
    }
    keys = parse_publisher_keys(
        document, base_dir=tmp_path, source="keys.yaml", env={"DESK_SECRET": "s" * 32}
    )
    assert decided not in keys.events["web-form"]  # the default: everything but decisions
    assert "dsr.request.submitted.v1" in keys.events["web-form"]
    assert decided in keys.events["desk"]
