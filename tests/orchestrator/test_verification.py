"""Identity verification per right (Art. 7(3), 12(6), 21 GDPR): the policy, the lifecycle's use
of it, and the ID-request letter, without Kafka."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from orchestrator.artifacts import letters
from orchestrator.lifecycle.reducer import RequestState, decide, submit, tick, verify
from orchestrator.lifecycle.verification import VerificationPolicy
from orchestrator.runtime.config import ConfigError, load_settings
from schemas.events import (
    IdentityVerification,
    IdentityVerified,
    RequestStatus,
    RequestType,
    StatusTrigger,
    VerificationMethod,
)
from tests.orchestrator.test_documents import REGISTER, _text
from tests.orchestrator.test_lifecycle import EMAIL, NOW, SYSTEMS, ctx, request

_NEEDS_ID = (
    RequestType.ACCESS,
    RequestType.PORTABILITY,
    RequestType.ERASURE,
    RequestType.RECTIFICATION,
    RequestType.RESTRICTION,
)


def _unverified(kind: RequestType, **overrides: object) -> RequestState:
    changes = [{"field": "city", "value": "Leiden"}] if kind == RequestType.RECTIFICATION else None
    state, _ = submit(None, request(False, type=kind, changes=changes, **overrides), ctx())
    assert state is not None
    return state


def _verified(method: str, **extra: object) -> IdentityVerified:
    return IdentityVerified.model_validate(
        {"request_id": "req-1", "method": method, "verified_at": NOW, **extra}
    )


# ---------------------------------------------------------------------------------------------
# Rights that proceed on the channel alone


def test_art_21_unverified_objection_fans_out_at_once() -> None:
    """Art. 21(2)-(3) GDPR: an objection to direct marketing stops the processing; no ID step."""
    state, effects = submit(None, request(False, type="objection"), ctx())
    assert state is not None and state.status == RequestStatus.IN_PROGRESS
    assert [t.system for t in effects.tasks] == list(SYSTEMS)
    assert effects.notices == [] and state.id_requested_at is None
    assert state.verified_at is None  # nothing was verified: the channel sufficed


def test_art_7_3_unverified_consent_withdrawal_fans_out_at_once() -> None:
    """Art. 7(3) GDPR: withdrawing consent is as easy as giving it; no ID step."""
    state, effects = submit(None, request(False, type="consent_withdrawal"), ctx())
    assert state is not None and state.status == RequestStatus.IN_PROGRESS
    assert len(effects.tasks) == len(SYSTEMS) and effects.notices == []


def test_art_12_6_channel_rights_are_never_refused_for_identity_at_the_deadline() -> None:
    """Nothing waits for an ID, so the deadline refusal for an unverified request never hits."""
    state = _unverified(RequestType.OBJECTION)
    state, _ = tick(state, ctx(NOW + timedelta(days=40)))
    assert state.status != RequestStatus.REFUSED


# ---------------------------------------------------------------------------------------------
# Rights that need verification


@pytest.mark.parametrize("kind", _NEEDS_ID)
def test_art_12_6_unverified_request_waits_and_asks_for_id_at_once(kind: RequestType) -> None:
    """Access, portability, erasure, rectification, restriction wait; the ID request goes now."""
    changes = [{"field": "city", "value": "Leiden"}] if kind == RequestType.RECTIFICATION else None
    state, effects = submit(None, request(False, type=kind, changes=changes), ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_VERIFICATION
    assert effects.tasks == [] and effects.notices == ["id_request"]
    assert state.id_requested_at == NOW
    [status] = effects.statuses
    assert status.reason is not None and "id_document" in status.reason
    assert EMAIL not in status.model_dump_json()


def test_art_12_6_unverified_erasure_fans_out_only_after_accepted_verification() -> None:
    state = _unverified(RequestType.ERASURE)
    destroyed = NOW + timedelta(minutes=5)
    evidence = _verified("id_document", verified_by="officer-7", copy_destroyed_at=destroyed)
    state, effects = verify(state, evidence, ctx())
    assert len(effects.tasks) == len(SYSTEMS)
    assert effects.statuses[0].trigger == StatusTrigger.VERIFIED
    # The evidence is the record: method, who, when, when the copy went. Never the copy.
    assert state.verification == evidence and state.verified_at == NOW
    assert state.verification.copy_destroyed_at == destroyed


def test_art_12_6_verification_by_a_method_not_accepted_does_not_count() -> None:
    """An e-mail confirmation is not enough for an erasure by default: still waiting, and why."""
    state = _unverified(RequestType.ERASURE)
    weak = _verified("email_confirmation")
    state, effects = verify(state, weak, ctx())
    assert state.status == RequestStatus.AWAITING_VERIFICATION and effects.tasks == []
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.VERIFICATION_REJECTED
    assert status.status == RequestStatus.AWAITING_VERIFICATION
    assert status.reason is not None
    assert "'email_confirmation' does not count" in status.reason and "erasure" in status.reason
    assert state.verification is None and state.verified_at is None
    # The same event again (at-least-once delivery) is shown once.
    _, again = verify(state, weak, ctx())
    assert not again.changed
    # An accepted one afterwards counts.
    _, effects = verify(state, _verified("in_person"), ctx())
    assert len(effects.tasks) == len(SYSTEMS)


def test_art_12_6_request_carrying_a_method_not_accepted_waits_and_says_why() -> None:
    weak = IdentityVerification(
        verified=True, method=VerificationMethod.EMAIL_CONFIRMATION, verified_at=NOW
    )
    state, effects = submit(None, request(verification=weak, type="access"), ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_VERIFICATION
    assert effects.notices == ["id_request"] and effects.tasks == []
    assert "does not count for a request for access" in (effects.statuses[0].reason or "")


def test_art_12_6_early_verification_not_accepted_does_not_count() -> None:
    early, _ = verify(None, _verified("other"), ctx())
    state, effects = submit(early, request(False), ctx())
    assert state is not None and state.status == RequestStatus.AWAITING_VERIFICATION
    assert effects.notices == ["id_request"]


def test_art_12_6_verified_request_records_its_evidence() -> None:
    given = IdentityVerification(
        verified=True, method=VerificationMethod.ID_DOCUMENT, verified_by="officer-7"
    )
    state, _ = submit(None, request(verification=given), ctx())
    assert state is not None and state.status == RequestStatus.IN_PROGRESS
    assert state.verification is not None
    assert state.verification.method == VerificationMethod.ID_DOCUMENT
    assert state.verification.verified_by == "officer-7" and state.verified_at == NOW


def test_art_12_6_unverified_erasure_is_still_refused_at_the_deadline() -> None:
    state = _unverified(RequestType.ERASURE)
    state, effects = tick(state, ctx(NOW + timedelta(days=40)))
    assert state.status == RequestStatus.REFUSED and effects.finished


def test_a_batch_with_the_request_and_its_id_request_gives_one_notice() -> None:
    decision = decide(None, [(1, request(False)), (2, request(False))], ctx)
    assert decision.effects.notices == ["id_request"]


# ---------------------------------------------------------------------------------------------
# The policy and its configuration


def test_policy_defaults_follow_the_rights() -> None:
    policy = VerificationPolicy()
    assert not policy.needs_verification(RequestType.OBJECTION)
    assert not policy.needs_verification(RequestType.CONSENT_WITHDRAWAL)
    assert all(policy.needs_verification(kind) for kind in _NEEDS_ID)
    assert policy.accepted(RequestType.ERASURE) == (
        VerificationMethod.ID_DOCUMENT,
        VerificationMethod.AUTHENTICATED_SESSION,
        VerificationMethod.IN_PERSON,
    )
    assert VerificationPolicy.parse(policy.describe()) == policy


def test_policy_changes_only_the_rights_it_names() -> None:
    policy = VerificationPolicy.parse(" erasure = id_document , in_person ; restriction=channel ; ")
    assert policy.accepted(RequestType.ERASURE) == (
        VerificationMethod.ID_DOCUMENT,
        VerificationMethod.IN_PERSON,
    )
    assert not policy.needs_verification(RequestType.RESTRICTION)
    assert policy.accepted(RequestType.ACCESS) == VerificationPolicy().accepted(RequestType.ACCESS)
    state, effects = submit(None, request(False), ctx(verification=policy))
    assert state is not None and effects.notices == ["id_request"]
    _, effects = verify(state, _verified("authenticated_session"), ctx(verification=policy))
    assert effects.tasks == []  # not accepted for erasure under this policy


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("deletion=id_document", "unknown right 'deletion'; known rights: access"),
        ("erasure=passport", "erasure: unknown verification method 'passport'; known methods"),
        ("erasure", "is not 'right=method,method'"),
        ("erasure=", "erasure: give one or more methods"),
        ("erasure=channel,id_document", "'channel' alone"),
    ],
)
def test_verification_policy_config_errors_are_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, spec: str, message: str
) -> None:
    for name in list(os.environ):
        if name.startswith("DSR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DSR_VERIFICATION_POLICY", spec)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "DSR_VERIFICATION_POLICY: " in str(raised.value)
    assert message in str(raised.value)


def test_verification_policy_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DSR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DSR_VERIFICATION_POLICY", "objection=id_document")
    policy = load_settings().policy().verification
    assert policy.accepted(RequestType.OBJECTION) == (VerificationMethod.ID_DOCUMENT,)


# ---------------------------------------------------------------------------------------------
# The ID-request letter


@pytest.mark.parametrize("language", ["nl", "en"])
def test_id_request_letter_says_what_to_send_and_what_to_black_out(language: str) -> None:
    state = _unverified(RequestType.ERASURE, language=language)
    page = letters.render("id_request", state, REGISTER, now=NOW)
    text = _text(page)
    assert 'data-document="id_request"' in page
    for method in ("id_document", "authenticated_session", "in_person"):
        assert f'data-method="{method}"' in page
    assert 'data-method="email_confirmation"' not in page
    for word in ("KopieID", "BSN", "MRZ", "Rijksoverheid", "App Store"):
        assert word in text
    assert EMAIL not in page and "req-1" in text
    if language == "nl":
        assert "pasfoto" in text and "burgerservicenummer" in text
        assert "vernietigen wij de kopie" in text
        assert "verwijdering (artikel 17 AVG)" in text
    else:
        assert "passport photo" in text and "we destroy it" in text.lower()


def test_id_request_letter_names_only_the_methods_the_policy_accepts() -> None:
    state = _unverified(RequestType.ACCESS)
    policy = VerificationPolicy.parse("access=authenticated_session")
    page = letters.render("id_request", state, REGISTER, now=NOW, policy=policy)
    assert 'data-method="authenticated_session"' in page
    # No copy asked, so no copy instructions either (the AP enforced against needless copies).
    assert 'data-method="id_document"' not in page and "KopieID" not in page


def test_id_request_letter_is_written_in_the_request_language(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = _unverified(RequestType.ERASURE, language="en")
    path = letters.write("id_request", state, REGISTER, tmp_path, now=NOW)
    assert path == tmp_path / "req-1" / "id_request.en.html"
    assert "Please confirm your identity" in path.read_text()


def test_no_id_request_when_the_verification_comes_in_the_same_batch() -> None:
    decision = decide(None, [(1, request(False)), (2, _verified("id_document"))], ctx)
    assert decision.state is not None and decision.state.status == RequestStatus.IN_PROGRESS
    assert decision.effects.notices == []


def test_an_unknown_letter_kind_is_refused() -> None:
    assert letters.document_kind("id_request") == "id_request"
    with pytest.raises(ValueError, match="no letter of kind 'passport'"):
        letters.document_kind("passport")
