"""Event body models: normalisation, cross-field rules, and error messages free of personal data."""

from __future__ import annotations

import base64
from datetime import datetime
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ValidationError

from schemas.envelope import dead_letter_for, describe_validation_error
from schemas.events import (
    DeadLetter,
    FieldChange,
    Identifier,
    IdentityVerification,
    OutcomeStatus,
    RequestStatus,
    RequestType,
    Subject,
    SystemProgress,
    TaskOutcome,
    VerificationMethod,
)
from tests.schemas.conftest import NOW, REQUEST_ID, all_samples, request_submitted

SECRET = "Geheim.Persoon"


def _message(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    """What we would log or put in a dead letter: never pydantic's str(), which echoes input."""
    return describe_validation_error(exc.value)


# --- identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Jan@Example.NL", "jan@example.nl"),
        ("  JAN.de.Vries+dsr@Voorbeeld.nl \t", "jan.de.vries+dsr@voorbeeld.nl"),
    ],
)
def test_email_is_trimmed_and_lower_cased(raw: str, normalised: str) -> None:
    assert Identifier(type="email", value=raw).value == normalised


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("+31 6 1234 5678", "+31612345678"),
        ("06-12345678", "0612345678"),
        ("(020) 123.45.67", "0201234567"),
        (" +44 20 7946 0958 ", "+442079460958"),
    ],
)
def test_phone_is_stripped_of_separators(raw: str, normalised: str) -> None:
    assert Identifier(type="phone", value=raw).value == normalised


@pytest.mark.parametrize(
    ("identifier_type", "raw"),
    [
        ("email", f"{SECRET}-at-example.nl"),
        ("email", f"{SECRET}@example"),
        ("email", f"{SECRET} @example.nl"),
        ("email", "   "),
        ("phone", f"{SECRET}06"),
        ("phone", "12345"),
        ("phone", "+31 6 1234 5678 9012 3"),
        ("phone", "++31612345678"),
    ],
)
def test_invalid_identifier_names_the_type_never_the_value(identifier_type: str, raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Identifier(type=identifier_type, value=raw)
    message = _message(caught)
    assert f"identifier of type '{identifier_type}'" in message
    assert SECRET not in message
    if raw.strip():
        assert raw.strip() not in message


def test_other_identifier_types_are_trimmed_but_kept_as_given() -> None:
    assert Identifier(type="customer_id", value=" CUST-0042 ").value == "CUST-0042"
    assert Identifier(type="loyalty_card", value="AbC").value == "AbC"


def test_blank_identifier_of_another_type_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        Identifier(type="customer_id", value="   ")
    assert "identifier of type 'customer_id' is empty" in _message(caught)


@pytest.mark.parametrize("identifier_type", ["Email", "e-mail", "1phone", "", "x" * 41])
def test_identifier_type_is_lower_snake_case(identifier_type: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Identifier(type=identifier_type, value="x")
    assert "type" in _message(caught)


def test_identifier_value_length_is_bounded() -> None:
    with pytest.raises(ValidationError):
        Identifier(type="customer_id", value="")
    with pytest.raises(ValidationError):
        Identifier(type="customer_id", value="x" * 321)


def test_subject_lookups() -> None:
    subject = Subject(
        identifiers=[
            Identifier(type="email", value="A@example.nl"),
            Identifier(type="phone", value="0612345678"),
            Identifier(type="email", value="b@example.nl"),
        ]
    )
    assert subject.values("email") == ["a@example.nl", "b@example.nl"]
    assert subject.first("phone") == "0612345678"
    assert subject.first("customer_id") is None
    assert subject.values("customer_id") == []


@pytest.mark.parametrize("count", [0, 21])
def test_subject_needs_one_to_twenty_identifiers(count: int) -> None:
    with pytest.raises(ValidationError):
        Subject(identifiers=[Identifier(type="customer_id", value=str(i)) for i in range(count)])


# --- requests -------------------------------------------------------------------------------


def test_request_defaults() -> None:
    request = request_submitted(verification=IdentityVerification())
    assert request.jurisdiction == "NL"
    assert request.language == "nl"
    assert request.verification.verified is False
    assert request.changes is None and request.scope is None


def test_rectification_needs_changes() -> None:
    empty: list[FieldChange] = []
    for changes in (None, empty):
        with pytest.raises(ValidationError) as caught:
            request_submitted(type=RequestType.RECTIFICATION, changes=changes)
        assert "rectification request needs 'changes'" in _message(caught)
    request = request_submitted(
        type=RequestType.RECTIFICATION, changes=[FieldChange(field="phone", value="0612345678")]
    )
    assert request.changes is not None and request.changes[0].system is None


@pytest.mark.parametrize("request_type", [t for t in RequestType if t != RequestType.RECTIFICATION])
def test_changes_only_on_rectification(request_type: RequestType) -> None:
    with pytest.raises(ValidationError) as caught:
        request_submitted(type=request_type, changes=[FieldChange(field="name", value="X")])
    assert "only allowed on rectification" in _message(caught)


def test_scope_must_not_repeat_a_system() -> None:
    assert request_submitted(scope=["crm", "mailing"]).scope == ["crm", "mailing"]
    with pytest.raises(ValidationError) as caught:
        request_submitted(scope=["crm", "crm"])
    assert "scope lists a system twice" in _message(caught)
    with pytest.raises(ValidationError):
        request_submitted(scope=["CRM"])


@pytest.mark.parametrize("request_id", ["", "-leading-dash", "with space", "ä", "x" * 129])
def test_request_id_pattern(request_id: str) -> None:
    with pytest.raises(ValidationError) as caught:
        request_submitted(request_id=request_id)
    assert "request_id" in _message(caught)


@pytest.mark.parametrize("request_id", ["web-2026-000123", "A", "portal:42", "x" * 128, "a.b_c"])
def test_valid_request_ids(request_id: str) -> None:
    assert request_submitted(request_id=request_id).request_id == request_id


def test_times_must_carry_a_timezone() -> None:
    with pytest.raises(ValidationError) as caught:
        request_submitted(received_at=datetime(2026, 3, 10, 12, 0))
    assert "received_at" in _message(caught)


def test_verified_identity_needs_a_method() -> None:
    with pytest.raises(ValidationError) as caught:
        IdentityVerification(verified=True)
    assert "needs a method" in _message(caught)
    verification = IdentityVerification(
        verified=True, method=VerificationMethod.IN_PERSON, verified_at=NOW
    )
    assert verification.method == VerificationMethod.IN_PERSON


def test_models_are_strict_and_immutable() -> None:
    with pytest.raises(ValidationError) as caught:
        request_submitted(unexpected="x")
    assert "unexpected: Extra inputs are not permitted" in _message(caught)
    request = request_submitted()
    with pytest.raises(ValidationError):
        request.request_id = "other"


@pytest.mark.parametrize("body", all_samples().values(), ids=list(all_samples()))
def test_json_round_trip(body: BaseModel) -> None:
    assert type(body).model_validate_json(body.model_dump_json()) == body


# --- outcomes -------------------------------------------------------------------------------


def _outcome(**changes: object) -> TaskOutcome:
    data: dict[str, object] = {
        "request_id": REQUEST_ID,
        "task_id": f"{REQUEST_ID}:crm",
        "system": "crm",
        "action": RequestType.ERASURE,
        "status": OutcomeStatus.COMPLETED,
        "completed_at": NOW,
    }
    data.update(changes)
    return TaskOutcome.model_validate(data)


@pytest.mark.parametrize("status", [OutcomeStatus.FAILED, OutcomeStatus.RETAINED])
def test_failed_and_retained_outcomes_need_a_reason(status: OutcomeStatus) -> None:
    with pytest.raises(ValidationError) as caught:
        _outcome(status=status)
    assert f"status '{status.value}' needs a reason" in _message(caught)
    assert _outcome(status=status, reason="vendor API returned 500").reason


def test_manual_action_needs_instructions() -> None:
    with pytest.raises(ValidationError) as caught:
        _outcome(status=OutcomeStatus.MANUAL_ACTION_REQUIRED)
    assert "needs instructions" in _message(caught)
    outcome = _outcome(
        status=OutcomeStatus.MANUAL_ACTION_REQUIRED, instructions="Delete the contact by hand."
    )
    assert outcome.instructions


def test_outcome_defaults() -> None:
    outcome = _outcome(status=OutcomeStatus.NOT_FOUND)
    assert outcome.counts.found == 0
    assert (outcome.records, outcome.retained, outcome.evidence) == ([], [], [])
    assert outcome.attempt == 1 and outcome.retryable is False


def test_counts_are_never_negative() -> None:
    with pytest.raises(ValidationError):
        _outcome(counts={"deleted": -1})


def test_system_progress_statuses() -> None:
    for status in ("pending", "dispatched", *OutcomeStatus):
        assert SystemProgress(status=status).status == status
    with pytest.raises(ValidationError):
        SystemProgress(status="done")  # type: ignore[arg-type]


def test_final_statuses() -> None:
    final = {s for s in RequestStatus if s.is_final}
    assert final == {
        RequestStatus.COMPLETED,
        RequestStatus.PARTIALLY_COMPLETED,
        RequestStatus.FAILED,
        RequestStatus.REFUSED,
        RequestStatus.DELIVERED,
    }


# --- dead letters ---------------------------------------------------------------------------


def _letter(key: bytes | None, value: bytes | None = b"\x00\xffraw") -> DeadLetter:
    record = SimpleNamespace(
        topic="dsr.requests.v1",
        partition=2,
        offset=41,
        key=key,
        value=value,
        headers=[("ce_type", b"dsr.request.submitted.v1")],
    )
    return dead_letter_for(
        record,  # type: ignore[arg-type]
        stage="body",
        reason="dsr.request.submitted.v1: type: Input should be 'access', ...",
        ce_type="dsr.request.submitted.v1",
    )


def test_dead_letter_keeps_the_original_value_unchanged() -> None:
    letter = _letter(REQUEST_ID.encode())
    assert base64.b64decode(letter.value_base64) == b"\x00\xffraw"
    assert letter.key == REQUEST_ID
    assert (letter.source_topic, letter.partition, letter.offset) == ("dsr.requests.v1", 2, 41)
    assert letter.failed_at.tzinfo is not None
    assert _letter(None, None).value_base64 == ""


def test_dead_letter_key_is_dropped_when_absent_or_too_long() -> None:
    assert _letter(None).key is None
    assert _letter(b"").key is None
    assert _letter(b"k" * 257).key is None
    assert _letter(b"k" * 256).key == "k" * 256
    assert _letter(b"\xffkey").key == "\ufffdkey"


def test_dead_letter_stage_is_one_of_three() -> None:
    with pytest.raises(ValidationError):
        _letter(None).model_validate({**_letter(None).model_dump(), "stage": "other"})
