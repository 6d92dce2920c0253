"""The signed deletion certificate: contents, signature, tampering, privacy, rendering, CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import rfc8785
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from orchestrator.artifacts.certificate import (
    CertificateError,
    build_certificate,
    canonical,
    dump_signed,
    render_html,
    sign_certificate,
    subject_hash,
    verify_certificate,
)
from orchestrator.artifacts.keys import KeyStore
from orchestrator.cli.keys import keys, verify
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import (
    Counts,
    Evidence,
    Identifier,
    IdentityVerification,
    OutcomeStatus,
    RequestStatus,
    RequestSubmitted,
    RequestType,
    RetainedItem,
    Subject,
    SystemProgress,
    VerificationMethod,
)
from schemas.primitives.encoding import ed25519_key_id as key_id

RECEIVED = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FINISHED = datetime(2026, 2, 3, 16, 0, tzinfo=UTC)
SALT = b"0123456789abcdef-test-salt"
EMAIL = "Jan.Jansen@Example.NL"
PHONE = "+31 6 1234 5678"
CUSTOMER = "CUST-98765"
# The identifiers as given and as normalised: none may appear in any output.
SECRETS = [EMAIL, EMAIL.lower(), PHONE, "+31612345678", CUSTOMER, "Jan", "Jansen"]


def _state(request_type: RequestType = RequestType.ERASURE) -> RequestState:
    request = RequestSubmitted(
        request_id="req-2026-0001",
        type=request_type,
        subject=Subject(
            identifiers=[
                Identifier(type="email", value=EMAIL),
                Identifier(type="phone", value=PHONE),
                Identifier(type="customer_id", value=CUSTOMER),
            ]
        ),
        received_at=RECEIVED,
        verification=IdentityVerification(
            verified=True, method=VerificationMethod.ID_DOCUMENT, verified_at=RECEIVED
        ),
        requested_by="web-form",
    )
    return RequestState(
        request_id=request.request_id,
        request=request,
        status=RequestStatus.COMPLETED,
        deadline=datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
        verified_at=RECEIVED + timedelta(hours=1),
        finished_at=FINISHED,
        systems={
            "crm": SystemProgress(
                status=OutcomeStatus.COMPLETED,
                counts=Counts(found=3, deleted=3),
                evidence=[Evidence(kind="vendor_job_id", value="hs-job-4711")],
            ),
            "mailing": SystemProgress(status=OutcomeStatus.NOT_FOUND),
            "shop": SystemProgress(
                status=OutcomeStatus.RETAINED,
                counts=Counts(found=14, deleted=2, anonymised=4, retained=8),
                retained=[
                    RetainedItem(
                        collection="invoices",
                        count=8,
                        legal_basis="Art. 52 AWR (fiscal retention, 7 years)",
                        reason="invoices must be kept for the tax authority",
                        until=date(2033, 1, 31),
                    )
                ],
                reason="invoices kept under fiscal retention",
            ),
            "legacy_erp": SystemProgress(
                status=OutcomeStatus.COMPLETED,
                counts=Counts(deleted=1),
                evidence=[
                    Evidence(kind="manual_confirmation", value="ticket OPS-1234, rows removed"),
                    # Free text that leaks an identifier must be scrubbed.
                    Evidence(kind="note", value=f"removed account of {EMAIL.lower()}"),
                ],
            ),
        },
    )


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def body() -> dict:
    return build_certificate(
        _state(), salt=SALT, issuer="Example B.V.", register_titles={"crm": "HubSpot CRM"}
    )


@pytest.fixture
def signed(body: dict, key: Ed25519PrivateKey) -> bytes:
    return dump_signed(sign_certificate(body, key, key_id(key.public_key())))


def _keys(key: Ed25519PrivateKey) -> dict:
    return {key_id(key.public_key()): key.public_key()}


def test_contents(body: dict) -> None:
    assert body["certificate_version"] == 1
    assert body["request_id"] == "req-2026-0001"
    assert body["request_type"] == "erasure"
    assert body["dates"] == {
        "received": "2026-01-31T09:30:00+00:00",
        "verified": "2026-01-31T10:30:00+00:00",
        "completed": "2026-02-03T16:00:00+00:00",
        "deadline": "2026-02-28T23:59:00+00:00",
    }
    assert body["status"] == "completed"
    systems = body["systems"]
    assert systems["crm"]["title"] == "HubSpot CRM"
    assert systems["crm"]["deleted"] == 3
    assert systems["crm"]["evidence"] == [{"kind": "vendor_job_id", "value": "hs-job-4711"}]
    assert systems["mailing"]["not_found"] is True
    assert systems["mailing"]["deleted"] == 0
    shop = systems["shop"]
    assert (shop["deleted"], shop["anonymised"]) == (2, 4)
    assert shop["retained"] == [
        {
            "collection": "invoices",
            "count": 8,
            "legal_basis": "Art. 52 AWR (fiscal retention, 7 years)",
            "reason": "invoices must be kept for the tax authority",
            "until": "2033-01-31",
        }
    ]
    erp = systems["legacy_erp"]
    assert erp["manual_completion"] is True
    assert {"kind": "manual_confirmation", "value": "ticket OPS-1234, rows removed"} in erp[
        "evidence"
    ]
    assert body["totals"] == {"deleted": 6, "anonymised": 4, "retained": 8}


def test_subject_hash_is_keyed_and_order_independent(body: dict) -> None:
    """The same identifiers in another order hash alike; another deployment's key does not."""
    state = _state()
    assert state.request is not None
    expected = subject_hash(state.request.subject, SALT)
    assert body["subject_hash"] == {"alg": "hmac-sha256", "value": expected}
    assert len(expected) == 64
    reordered = Subject(identifiers=list(reversed(state.request.subject.identifiers)))
    assert subject_hash(reordered, SALT) == expected
    assert subject_hash(reordered, SALT + b"x") != expected


def test_subject_hash_is_an_hmac_over_length_prefixed_typed_identifiers() -> None:
    """Pinned against an independent computation: label, then each identifier as type and value,
    each with its 4-byte big-endian UTF-8 length, sorted; HMAC-SHA256 keyed with the secret."""
    import hashlib
    import hmac

    def field(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(4, "big") + data

    subject = _subject(("phone", "+31612345678"), ("email", "jan@example.nl"))
    items = sorted(
        field(t) + field(v) for t, v in (("email", "jan@example.nl"), ("phone", "+31612345678"))
    )
    message = field("dsr-subject-hash-v1") + b"".join(items)
    assert subject_hash(subject, SALT) == hmac.new(SALT, message, hashlib.sha256).hexdigest()
    assert subject_hash(subject, SALT) != hashlib.sha256(SALT + message).hexdigest()


def test_subject_hash_separates_identifier_boundaries() -> None:
    """`["a\\nb"]` and `["a", "b"]` were one hash when values were newline-joined."""
    one = _subject(("customer_id", "a\nb"))
    two = _subject(("customer_id", "a"), ("customer_id", "b"))
    assert subject_hash(one, SALT) != subject_hash(two, SALT)


def test_subject_hash_separates_identifier_types() -> None:
    """An e-mail address and a phone number with the same text are different subjects."""
    text = "0612345678@example.nl"
    as_email = Subject.model_construct(identifiers=[Identifier(type="email", value=text)])
    as_phone = Subject.model_construct(
        identifiers=[Identifier.model_construct(type="phone", value=text)]
    )
    assert subject_hash(as_email, SALT) != subject_hash(as_phone, SALT)
    customer = _subject(("customer_id", "12345"))
    account = _subject(("account_id", "12345"))
    assert subject_hash(customer, SALT) != subject_hash(account, SALT)


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 15])
def test_art_4_5_subject_hash_cannot_be_computed_without_the_secret(key: bytes) -> None:
    """Pseudonymisation needs its additional information kept apart (Art. 4(5) GDPR; EDPB
    Guidelines 01/2025: a MAC with a secret key): no or a too-short key computes nothing."""
    with pytest.raises(CertificateError, match="at least 16"):
        subject_hash(_subject(("email", "jan@example.nl")), key)


def _subject(*identifiers: tuple[str, str]) -> Subject:
    return Subject(identifiers=[Identifier(type=t, value=v) for t, v in identifiers])


def test_refuses_non_erasure_unfinished_and_short_salt() -> None:
    with pytest.raises(CertificateError, match="erasure requests only"):
        build_certificate(_state(RequestType.ACCESS), salt=SALT, issuer="x", register_titles=None)
    unfinished = _state().model_copy(update={"status": RequestStatus.IN_PROGRESS})
    with pytest.raises(CertificateError, match="not finished"):
        build_certificate(unfinished, salt=SALT, issuer="x", register_titles=None)
    with pytest.raises(CertificateError, match="at least 16"):
        build_certificate(_state(), salt=b"short", issuer="x", register_titles=None)


def test_verify_accepts(signed: bytes, key: Ed25519PrivateKey) -> None:
    result = verify_certificate(signed, _keys(key))
    assert result.request_id == "req-2026-0001"
    assert result.kid == key_id(key.public_key())
    assert result.issued_at == "2026-02-03T16:00:00+00:00"


def test_one_changed_value_fails_with_clear_message(signed: bytes, key: Ed25519PrivateKey) -> None:
    tampered = signed.replace(b'"deleted": 3', b'"deleted": 4', 1)
    assert tampered != signed
    with pytest.raises(CertificateError, match="the certificate was changed after signing"):
        verify_certificate(tampered, _keys(key))


def test_flipping_any_single_byte_fails(signed: bytes, key: Ed25519PrivateKey) -> None:
    public = _keys(key)
    for position in range(len(signed)):
        damaged = bytearray(signed)
        damaged[position] ^= 0x01
        with pytest.raises(CertificateError) as info:
            verify_certificate(bytes(damaged), public)
        assert str(info.value), f"empty message at byte {position}"


def test_other_key_fails_with_clear_message(signed: bytes) -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(CertificateError, match="not among the keys given") as info:
        verify_certificate(signed, _keys(other))
    assert "dsr keys export-jwks" in str(info.value)
    # Same kid, other key: the signature check itself must fail.
    kid = json.loads(signed)["signature"]["kid"]
    with pytest.raises(CertificateError, match="signed with another key"):
        verify_certificate(signed, {kid: other.public_key()})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not an object"),
        (b'{"certificate": {}}', "missing signature"),
        (b'{"certificate": {}, "signature": {"alg": "EdDSA"}}', "lacks kid, value"),
    ],
)
def test_malformed_documents(document: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        verify_certificate(document, {})


def test_wrong_alg(signed: bytes, key: Ed25519PrivateKey) -> None:
    document = json.loads(signed)
    document["signature"]["alg"] = "RS256"
    with pytest.raises(CertificateError, match="only 'EdDSA'"):
        verify_certificate(json.dumps(document).encode(), _keys(key))


def test_canonical_form_is_stable(signed: bytes, body: dict) -> None:
    once = canonical(body)
    assert once == rfc8785.dumps(json.loads(once))
    assert canonical(json.loads(signed)["certificate"]) == once
    # The same state gives the same bytes.
    again = build_certificate(
        _state(), salt=SALT, issuer="Example B.V.", register_titles={"crm": "HubSpot CRM"}
    )
    assert canonical(again) == once


@pytest.mark.parametrize("language", ["nl", "en"])
def test_no_identifiers_anywhere(signed: bytes, language: str) -> None:
    document = json.loads(signed)
    rendered = render_html(document, language)  # type: ignore[arg-type]
    for text in (signed.decode(), rendered):
        lowered = text.lower()
        for secret in SECRETS:
            # As a whole word: the name "Jan" is not leaked by the month "januari".
            whole = rf"(?<!\w){re.escape(secret.lower())}(?!\w)"
            assert not re.search(whole, lowered), f"identifier leaked: {secret!r}"
    assert "[redacted: contained a subject identifier]" in signed.decode()


def test_render_html(body: dict) -> None:
    nl = render_html(body, "nl")
    en = render_html(body, "en")
    assert "Verwijderingscertificaat" in nl and "Bewaard tot" in nl
    assert "Deletion certificate" in en and "Retained until" in en
    for page in (nl, en):
        assert "2033-01-31" in page
        assert "Art. 52 AWR (fiscal retention, 7 years)" in page
        assert "hs-job-4711" in page
        assert "dsr verify" in page
        # Four systems, the remedies (data was kept) and the verification section.
        assert page.count("<h2>") == 6 and "data-remedies" in page


def test_render_html_escapes() -> None:
    state = _state()
    crm = state.systems["crm"].model_copy(
        update={"evidence": [Evidence(kind="vendor_job_id", value="<script>x</script>")]}
    )
    state.systems["crm"] = crm
    page = render_html(build_certificate(state, salt=SALT, issuer="A&B", register_titles=None))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page and "A&amp;B" in page


# -- CLI ------------------------------------------------------------------------------------


def test_cli_create_export_verify(tmp_path: Path, body: dict) -> None:
    runner = CliRunner()
    store_dir = tmp_path / "keys"
    created = runner.invoke(keys, ["create", "--dir", str(store_dir)])
    assert created.exit_code == 0, created.output
    again = runner.invoke(keys, ["create", "--dir", str(store_dir)])
    assert again.exit_code == 1 and "dsr keys rotate" in again.output

    kid, private = KeyStore(store_dir).active()
    cert = tmp_path / "cert.json"
    cert.write_bytes(dump_signed(sign_certificate(body, private, kid)))

    ok = runner.invoke(verify, [str(cert), "--dir", str(store_dir)])
    assert ok.exit_code == 0, ok.output
    assert f"valid: certificate for request req-2026-0001 signed by key {kid} on" in ok.output

    jwks_file = tmp_path / "issuer-jwks.json"
    exported = runner.invoke(
        keys, ["export-jwks", "--dir", str(store_dir), "--out", str(jwks_file)]
    )
    assert exported.exit_code == 0, exported.output
    ok_jwks = runner.invoke(verify, [str(cert), "--key", str(jwks_file)])
    assert ok_jwks.exit_code == 0, ok_jwks.output

    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(cert.read_bytes().replace(b'"deleted": 3', b'"deleted": 0', 1))
    bad = runner.invoke(verify, [str(tampered), "--key", str(jwks_file)])
    assert bad.exit_code == 1
    assert "the certificate was changed after signing" in bad.output


def test_cli_verify_with_rotated_and_foreign_keys(tmp_path: Path, body: dict) -> None:
    runner = CliRunner()
    store = KeyStore(tmp_path / "keys")
    store.create()
    old_kid, old_private = store.active()
    cert = tmp_path / "cert.json"
    cert.write_bytes(dump_signed(sign_certificate(body, old_private, old_kid)))
    assert runner.invoke(keys, ["rotate", "--dir", str(store.root)]).exit_code == 0
    listed = runner.invoke(keys, ["list", "--dir", str(store.root)])
    assert f"{old_kid}" in listed.output and "verify-only" in listed.output
    # Certificates signed before a rotation still verify.
    assert runner.invoke(verify, [str(cert), "--dir", str(store.root)]).exit_code == 0

    foreign = KeyStore(tmp_path / "other")
    foreign.create()
    foreign_jwks = tmp_path / "other.json"
    foreign_jwks.write_text(json.dumps(foreign.export_jwks()))
    bad = runner.invoke(verify, [str(cert), "--key", str(foreign_jwks)])
    assert bad.exit_code == 1
    assert "not among the keys given" in bad.output


def test_cli_verify_empty_store(tmp_path: Path, signed: bytes) -> None:
    cert = tmp_path / "cert.json"
    cert.write_bytes(signed)
    result = CliRunner().invoke(verify, [str(cert), "--dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "--key" in result.output


# -- per collection, the hash described truthfully, the controller's contact (issue 14) ---------


def _freshdesk_state() -> RequestState:
    """Freshdesk's hard delete of a contact takes its tickets and conversations along; the
    connector itemises them per collection (`connectors.vendors.base.erased_per_collection`)."""
    state = _state()
    state.systems["support"] = SystemProgress(
        status=OutcomeStatus.COMPLETED,
        counts=Counts(found=9, deleted=9),
        evidence=[
            Evidence(kind="contacts_deleted", value="1"),
            Evidence(kind="tickets_deleted", value="3"),
            Evidence(kind="conversations_deleted", value="5"),
            Evidence(kind="freshdesk_hard_delete", value="contact 42: 204"),
        ],
    )
    state.systems["chat"] = SystemProgress(
        status=OutcomeStatus.COMPLETED,
        counts=Counts(deleted=1),
        evidence=[
            Evidence(kind="conversation_parts_redacted", value="2"),
            Evidence(kind="conversations_removed", value="1"),
            Evidence(kind="contacts_deleted", value="1"),
        ],
    )
    return state


def test_art_17_1_certificate_states_what_was_erased_per_collection() -> None:
    """What an erasure removed is stated per collection, records a vendor removed along with
    their parent included (Art. 17(1), accountability of Art. 5(2) GDPR)."""
    body = build_certificate(_freshdesk_state(), salt=SALT, issuer="Example B.V.")
    support = body["systems"]["support"]
    assert support["collections"] == [
        {"collection": "contacts", "action": "deleted", "count": 1},
        {"collection": "tickets", "action": "deleted", "count": 3},
        {"collection": "conversations", "action": "deleted", "count": 5},
    ]
    # The per-collection items are in the table, not repeated as evidence; the rest stays.
    assert support["evidence"] == [{"kind": "freshdesk_hard_delete", "value": "contact 42: 204"}]
    rows = body["systems"]["chat"]["collections"]
    chat = {(c["collection"], c["action"]): c["count"] for c in rows}
    assert chat == {
        ("conversation_parts", "redacted"): 2,
        ("conversations", "removed"): 1,
        ("contacts", "deleted"): 1,
    }
    assert body["systems"]["crm"]["collections"] == []  # totals only: no rows invented
    page = render_html(body, "nl")
    table = page.split('<table data-collections="support">')[1].split("</table>")[0]
    for collection, count in (("contacts", 1), ("tickets", 3), ("conversations", 5)):
        row = table.split(f'data-collection="{collection}"')[1].split("</tr>")[0]
        assert f"<td>{count}</td>" in row and "verwijderd" in row
    assert "onleesbaar gemaakt" in page
    assert "redacted" in render_html(body, "en").split('data-collections="chat"')[1]


def test_art_4_5_the_subject_hash_is_described_as_pseudonymised_personal_data(body: dict) -> None:
    """The keyed hash lets whoever holds the identifiers and the secret key attribute the
    certificate to the subject: pseudonymised personal data (Art. 4(5) and recital 26 GDPR),
    never called "no personal data"; the reader learns it needs the key and links nowhere else."""
    nl, en = render_html(body, "nl"), render_html(body, "en")
    assert "gepseudonimiseerd persoonsgegeven" in nl and "overweging 26" in nl
    assert "geheime sleutel" in nl and "andere organisatie" in nl
    assert "pseudonymised personal data" in en and "recital 26" in en
    assert "secret key" in en and "another organisation" in en
    for page in (nl, en):
        assert "HMAC-SHA-256" in page
        lowered = page.lower()
        assert "no personal data" not in lowered and "geen persoonsgegevens" not in lowered


def test_art_12_certificate_gives_the_controllers_contact(body: dict) -> None:
    from schemas.register import Controller

    controller = Controller(name="Example B.V.", contact="privacy@example.nl")
    page = render_html(body, "nl", controller)
    row = page.split("<tr data-contact>")[1].split("</tr>")[0]
    assert "Example B.V." in row and "privacy@example.nl" in row
    assert "data-contact" not in render_html(body, "nl")  # no controller known: no row


def test_certificate_names_collections_and_retention_reasons_in_its_language() -> None:
    """A Dutch certificate is Dutch throughout: collections by their titles for people
    (connectors.metadata) and the register's retention reasons in the document's language."""
    from schemas.register import LocalText

    body = build_certificate(_freshdesk_state(), salt=SALT, issuer="Example B.V.")
    headings = {("support", "tickets"): LocalText(nl="Supportvragen", en="Support questions")}
    reasons = {("support", "invoices"): LocalText(nl="fiscale bewaarplicht", en="fiscal duty")}
    body["systems"]["support"]["retained"] = [
        {"collection": "invoices", "count": 2, "legal_basis": "Art. 47 AWR",
         "reason": "fiscal duty", "until": "2032-12-31"}
    ]  # fmt: skip
    nl = render_html(body, "nl", None, reasons, headings)
    en = render_html(body, "en", None, reasons, headings)
    assert "Supportvragen" in nl and "Support questions" in en
    kept_nl = nl.split("Art. 47 AWR")[1].split("</tr>")[0]
    assert "fiscale bewaarplicht" in kept_nl and "fiscal duty" not in kept_nl
    assert "fiscal duty" in en.split("Art. 47 AWR")[1].split("</tr>")[0]
