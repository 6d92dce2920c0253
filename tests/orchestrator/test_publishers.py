"""`dsr publishers`: keys issued, rotated and retired; what the orchestrator then accepts."""

from __future__ import annotations

import asyncio
import stat
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.intake.publishers import (
    PermissionedVerifier,
    claims_verified_identity,
    create_publisher,
    local_publisher,
    rotate_publisher,
)
from schemas import events as ev
from schemas.envelope import TYPE_OF, EnvelopeError, decode, encode
from schemas.events import IdentityVerified, VerificationMethod
from schemas.primitives.signing import PublisherKeyError, RequestSigner, RequestVerifier
from schemas.topics import DEFAULT_PUBLISHER_EVENTS, REQUEST_EVENT_TYPES, REQUESTS
from tests.schemas.conftest import NOW, REQUEST_ID, request_submitted
from tests.security import conftest as security

#: The running system of tests/security (a submit-only `web-form` publisher among its keys).
secure = security.secure

SUBMITTED, IDENTITY_VERIFIED = "dsr.request.submitted.v1", "dsr.request.identity_verified.v1"


def _unverified() -> ev.RequestSubmitted:
    return request_submitted(verification=ev.IdentityVerification())


def _refusal(keys_file: Path, signer: RequestSigner, body: object = None) -> EnvelopeError | None:
    """Why the orchestrator's check refuses `body` signed by `signer`, or None if it accepts."""
    message = signer.sign(encode(body or _unverified(), source="tests"))  # type: ignore[arg-type]
    try:
        decode(
            message.value,
            message.headers,
            key=message.key,
            expect=REQUESTS.events,
            verify=PermissionedVerifier(keys_file),
        )
    except EnvelopeError as exc:
        return exc
    return None


def _accepts(keys_file: Path, signer: RequestSigner, body: object = None) -> bool:
    return _refusal(keys_file, signer, body) is None


def _dsr(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("flag", ["--ed25519", "--hmac"])
def test_create_rotate_retire_list(tmp_path: Path, flag: str) -> None:
    keys_file = tmp_path / "conf" / "publisher-keys.yaml"
    out = _dsr("publishers", "create", "web-form", flag, "--keys-file", str(keys_file))
    assert "DSR_PUBLISHER_ID=web-form" in out and "DSR_PUBLISHER_KEY_FILE=" in out
    env = dict(line.strip().split("=", 1) for line in out.splitlines() if line.startswith("  DSR_"))
    first = RequestSigner.from_env(env)
    assert first is not None
    key_file = Path(env["DSR_PUBLISHER_KEY_FILE"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _accepts(keys_file, first)
    text = keys_file.read_text()
    assert key_file.read_text().strip() not in text  # the private part stays out of the file

    rotated = _dsr("publishers", "rotate", "web-form", "--keys-file", str(keys_file))
    env2 = dict(
        line.strip().split("=", 1) for line in rotated.splitlines() if line.startswith("  DSR_")
    )
    second = RequestSigner.from_env(env2)
    assert second is not None and second.key.algorithm == first.key.algorithm
    assert _accepts(keys_file, first) and _accepts(keys_file, second)  # both during rotation

    listed = _dsr("publishers", "list", "--keys-file", str(keys_file))
    assert "web-form: submit only (the default)" in listed
    assert first.key_id in listed and second.key_id in listed

    _dsr("publishers", "retire", "web-form", first.key_id, "--keys-file", str(keys_file))
    assert not _accepts(keys_file, first) and _accepts(keys_file, second)


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    runner = CliRunner()
    _dsr("publishers", "create", "desk", "--keys-file", str(keys_file))
    again = runner.invoke(main, ["publishers", "create", "desk", "--keys-file", str(keys_file)])
    assert again.exit_code != 0 and "dsr publishers rotate desk" in again.output
    missing = runner.invoke(main, ["publishers", "rotate", "nobody", "--keys-file", str(keys_file)])
    assert missing.exit_code != 0 and "dsr publishers create nobody" in missing.output
    (kid,) = [k for p, k in RequestVerifier(keys_file).keys.keys]
    last = runner.invoke(main, ["publishers", "retire", "desk", kid, "--keys-file", str(keys_file)])
    assert last.exit_code != 0 and "last key" in last.output
    unknown = runner.invoke(
        main, ["publishers", "retire", "desk", "nope", "--keys-file", str(keys_file)]
    )
    assert unknown.exit_code != 0 and f"its keys: {kid}" in unknown.output
    empty = runner.invoke(main, ["publishers", "list", "--keys-file", str(tmp_path / "none")])
    assert empty.exit_code != 0 and "cannot read" in empty.output


def test_a_publisher_restricted_to_submitting(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    issued = create_publisher(
        keys_file, "web-form", events=["dsr.request.submitted.v1"], out_dir=tmp_path / "private"
    )
    assert issued.key_file.parent == tmp_path / "private"
    signer = issued.signer()
    assert _accepts(keys_file, signer)
    assert not _accepts(keys_file, signer, request_submitted())  # claims a verified identity
    verified = IdentityVerified(
        request_id=REQUEST_ID, method=VerificationMethod.ID_DOCUMENT, verified_at=NOW
    )
    assert not _accepts(keys_file, signer, verified)
    data = yaml.safe_load(keys_file.read_text())
    assert data["publishers"][0]["events"] == ["dsr.request.submitted.v1"]


def test_a_private_key_file_is_never_overwritten(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    issued = create_publisher(keys_file, "a")
    before = issued.key_file.read_bytes()
    with pytest.raises(PublisherKeyError, match="exists already"):
        create_publisher(keys_file, "b", key_file_name=issued.key_file.name)
    assert issued.key_file.read_bytes() == before
    assert [p["id"] for p in yaml.safe_load(keys_file.read_text())["publishers"]] == ["a"]


def test_keys_file_with_env_secrets_can_be_edited_without_them(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(
        "publishers:\n  - id: portal\n    keys:\n"
        "      - {algorithm: hmac-sha256, id: p1, secret: '${PORTAL_SECRET_NOT_SET_HERE}'}\n"
    )
    rotate_publisher(keys_file, "portal", "ed25519")
    assert len(yaml.safe_load(keys_file.read_text())["publishers"][0]["keys"]) == 2


def test_local_publisher_is_created_once(tmp_path: Path) -> None:
    first = local_publisher(tmp_path / "publishers")
    second = local_publisher(tmp_path / "publishers")
    assert first == second
    assert _accepts(first.keys_file, second.signer())
    first.keys_file.unlink()  # half gone: made again
    third = local_publisher(tmp_path / "publishers")
    assert third.key_id != first.key_id and _accepts(third.keys_file, third.signer())


# -- least privilege -----------------------------------------------------------------------------


def _one_of_each(request_id: str = REQUEST_ID) -> dict[str, object]:
    """A valid event of every request event type but the submission, by type."""
    from schemas import sweeps

    sweep_id = "sweep-crm-20260501"
    bodies: list[object] = [
        IdentityVerified(
            request_id=request_id, method=VerificationMethod.ID_DOCUMENT, verified_at=NOW
        ),
        ev.DeadlineExtended(
            request_id=request_id,
            months=2,
            reason="many systems, a complex request",
            extended_at=NOW,
            extended_by="o-1",
        ),
        ev.DecisionRecorded(
            request_id=request_id,
            decision=ev.DecisionKind.REFUSE,
            reason_code="manifestly_unfounded",
            decided_by="o-1",
            decided_at=NOW,
        ),
        ev.DeliveryRecorded(
            request_id=request_id,
            channel=ev.DeliveryChannel.POST,
            delivered_by="o-1",
            delivered_at=NOW,
        ),
        sweeps.SweepRequested(
            sweep_id=sweep_id,
            system="crm",
            dry_run=True,
            trigger=sweeps.SweepTrigger.MANUAL,
            requested_by="o-1",
            requested_at=NOW,
        ),
        sweeps.SweepApproved(sweep_id=sweep_id, approved_by="o-1", approved_at=NOW),
    ]
    return {TYPE_OF[type(b)]: b for b in bodies}  # type: ignore[index]


def test_a_publisher_without_events_may_only_submit(tmp_path: Path) -> None:
    """Least privilege (Art. 25(2), 32(1)(b) GDPR): a key that may submit requests cannot also
    verify identities, extend deadlines, decide, deliver or sweep."""
    assert DEFAULT_PUBLISHER_EVENTS == (SUBMITTED,)
    keys_file = tmp_path / "keys.yaml"
    signer = create_publisher(keys_file, "web-form").signer()
    assert _accepts(keys_file, signer)
    others = _one_of_each()
    assert set(others) == set(REQUEST_EVENT_TYPES) - {SUBMITTED}
    for ce_type, body in others.items():
        refusal = _refusal(keys_file, signer, body)
        assert refusal is not None and refusal.stage == "signature", ce_type
        assert f"publisher 'web-form' may not publish {ce_type}" in str(refusal)


def test_each_step_needs_its_own_permission(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    extend = "dsr.request.deadline_extended.v1"
    signer = create_publisher(keys_file, "desk", events=[SUBMITTED, extend]).signer()
    for ce_type, body in _one_of_each().items():
        assert _accepts(keys_file, signer, body) == (ce_type == extend), ce_type


def test_art_12_6_verified_submission_needs_the_identity_verification_permission(
    tmp_path: Path,
) -> None:
    """Art. 12(6) GDPR, EDPB Guidelines 01/2022 section 3.3: identity is established by the
    controller's own procedure; a submit-only publisher's `verified: true` is refused at stage
    'signature', naming the permission, and not decoded into a request."""
    keys_file = tmp_path / "keys.yaml"
    web_form = create_publisher(keys_file, "web-form").signer()
    portal = create_publisher(keys_file, "portal", events=[SUBMITTED, IDENTITY_VERIFIED])
    refusal = _refusal(keys_file, web_form, request_submitted())
    assert refusal is not None and refusal.stage == "signature"
    assert "verification.verified" in str(refusal) and IDENTITY_VERIFIED in str(refusal)
    assert refusal.ce_type == SUBMITTED
    assert "example" not in str(refusal)  # nothing of the subject in the reason
    assert _accepts(keys_file, web_form, _unverified())
    assert _accepts(keys_file, portal.signer(), request_submitted())


def test_verified_claim_is_read_like_the_body_in_both_content_modes() -> None:
    """The claim is read from the (authentic) bytes as `decode` reads the body: binary mode
    (the data is the value) or structured mode (the whole event is the value)."""
    import json

    from schemas.envelope import STRUCTURED, RawEvent

    binary = encode(request_submitted(), source="tests")
    headers = {k: v.decode() for k, v in binary.headers}
    attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
    assert claims_verified_identity(RawEvent(attributes, binary.key, binary.value, headers))
    whole = json.dumps({**attributes, "data": json.loads(binary.value)}).encode()
    structured = RawEvent(attributes, binary.key, whole, {"content-type": STRUCTURED})
    assert claims_verified_identity(structured)
    plain = encode(_unverified(), source="tests")
    assert not claims_verified_identity(RawEvent(attributes, plain.key, plain.value, headers))
    broken = RawEvent(attributes, plain.key, b"{not json", headers)
    assert not claims_verified_identity(broken)  # `decode` refuses it at stage 'body'


def test_unsigned_events_in_the_trusted_test_mode_pass(tmp_path: Path) -> None:
    message = encode(request_submitted(), source="tests")
    envelope = decode(
        message.value,
        message.headers,
        key=message.key,
        expect=REQUESTS.events,
        verify=PermissionedVerifier(None, allow_unsigned=True),
    )
    assert envelope.body.verification.verified  # type: ignore[union-attr]


def test_the_local_publisher_may_do_what_the_cli_does(tmp_path: Path) -> None:
    local = local_publisher(tmp_path / "publishers")
    signer = local.signer()
    assert _accepts(local.keys_file, signer, request_submitted())
    for ce_type, body in _one_of_each().items():
        assert _accepts(local.keys_file, signer, body), ce_type


# -- on the real broker --------------------------------------------------------------------------


@pytest.mark.broker
def test_a_web_form_publisher_cannot_publish_a_verified_submission_or_a_decision(
    secure: security.SecureSystem,
) -> None:
    """A submit-only web form's verified submission and its decision are dead-lettered at
    stage 'signature' and nothing is fanned out; its unverified submission is taken in (and
    waits for a verification, Art. 12(6) GDPR)."""
    tag = uuid.uuid4().hex[:8]
    claimed = security.new_request(f"wf-verified-{tag}")  # verification.verified: true
    decision = ev.DecisionRecorded(
        request_id=f"wf-decision-{tag}",
        decision=ev.DecisionKind.REFUSE,
        reason_code="manifestly_unfounded",
        decided_by="o-1",
        decided_at=NOW,
    )
    plain = security.new_request(f"wf-plain-{tag}", verified=False)
    bodies = (claimed, decision, plain)
    records = [security.Raw.of(security.signed(secure.web_form, body)) for body in bodies]
    landed = asyncio.run(security.produce(secure.kafka, records))
    observed = security.observe(
        secure.kafka,
        lambda o: all(c in o.dead_letters for c in landed[:2]) and plain.request_id in o.statuses,
    )
    verified_letter, decision_letter = (observed.dead_letters.get(c) for c in landed[:2])
    assert verified_letter is not None and decision_letter is not None
    assert (verified_letter.stage, decision_letter.stage) == ("signature", "signature")
    assert "verification.verified" in verified_letter.reason
    assert IDENTITY_VERIFIED in verified_letter.reason
    assert "may not publish dsr.request.decision_recorded.v1" in decision_letter.reason
    for letter in (verified_letter, decision_letter):
        assert security.SUBJECT_EMAIL not in letter.reason
    assert claimed.request_id not in observed.statuses
    assert claimed.request_id not in observed.tasks
    waiting = observed.statuses[plain.request_id].status
    assert waiting == ev.RequestStatus.AWAITING_VERIFICATION
    secure.assert_alive()
