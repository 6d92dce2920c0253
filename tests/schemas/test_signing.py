"""Publisher signatures on request events: canonical form, keys file, every way to be refused."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import EnvelopeError, KafkaMessage, decode, encode, header_dict
from schemas.events import IdentityVerified, VerificationMethod
from schemas.primitives.signing import (
    SIGNATURE_HEADER,
    PublisherKeyError,
    RequestSigner,
    RequestVerifier,
    canonical_form,
    ed25519_key_id,
    hmac_key_id,
    load_publisher_keys,
    parse_publisher_keys,
    parse_signature,
)
from schemas.topics import REQUESTS
from tests.schemas.conftest import NOW, REQUEST_ID, request_submitted

SECRET = "0123456789abcdef0123456789abcdef"
NEW_SECRET = "fedcba9876543210fedcba9876543210"
EMAIL = "jan@example.nl"  # in every sample request: must never show up in a reason
WEB_FORM_KEY = Ed25519PrivateKey.generate()
PORTAL_KEY = Ed25519PrivateKey.generate()


def _pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.splitlines())


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    """web-form: Ed25519, may only submit; desk: two HMAC keys (file and environment)."""
    (tmp_path / "desk.secret").write_text(SECRET + "\n")
    (tmp_path / "portal.pem").write_text(_pem(PORTAL_KEY))
    path = tmp_path / "publisher-keys.yaml"
    path.write_text(
        "publishers:\n"
        "  - id: web-form\n"
        "    events: [dsr.request.submitted.v1]\n"
        "    keys:\n"
        "      - algorithm: ed25519\n"
        "        public_key: |\n" + _indent(_pem(WEB_FORM_KEY), 10) + "  - id: desk\n"
        "    keys:\n"
        "      - algorithm: hmac-sha256\n"
        "        secret_file: desk.secret\n"
        "      - algorithm: hmac-sha256\n"
        "        id: desk-2026\n"
        "        secret: ${TEST_DESK_SECRET}\n"
        "  - id: portal\n"
        "    keys:\n"
        "      - algorithm: ed25519\n"
        "        public_key_file: portal.pem\n"
    )
    return path


ENV = {"TEST_DESK_SECRET": NEW_SECRET}


@pytest.fixture
def verifier(keys_file: Path) -> RequestVerifier:
    return RequestVerifier(keys_file, env=ENV, reload_seconds=0)


WEB_FORM = RequestSigner.from_private_key("web-form", WEB_FORM_KEY)
DESK = RequestSigner.from_secret("desk", SECRET)
DESK_2026 = RequestSigner.from_secret("desk", NEW_SECRET, key_id="desk-2026")
PORTAL = RequestSigner.from_private_key("portal", PORTAL_KEY)


def submitted(request_id: str = REQUEST_ID) -> KafkaMessage:
    return encode(request_submitted(request_id=request_id), source="web-form", time=NOW)


def verified(request_id: str = REQUEST_ID) -> KafkaMessage:
    body = IdentityVerified(
        request_id=request_id, method=VerificationMethod.IN_PERSON, verified_at=NOW
    )
    return encode(body, source="web-form", time=NOW)


def _decode(message: KafkaMessage, verifier: RequestVerifier) -> object:
    return decode(
        message.value, message.headers, key=message.key, expect=REQUESTS.events, verify=verifier
    )


def _reject(message: KafkaMessage, verifier: RequestVerifier) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        _decode(message, verifier)
    error = caught.value
    assert EMAIL not in str(error)
    return error


def _header(message: KafkaMessage, name: str, value: bytes | None) -> KafkaMessage:
    headers = [(k, v) for k, v in message.headers if k != name]
    if value is not None:
        headers.append((name, value))
    return KafkaMessage(message.key, message.value, headers)


def _signature(message: KafkaMessage) -> bytes:
    return dict(message.headers)[SIGNATURE_HEADER]


# -- the format other implementations follow ------------------------------------------------------


def test_canonical_form_and_hmac_are_what_the_docs_and_openssl_give() -> None:
    value = b'{"request_id":"web-2026-000123"}'
    data = canonical_form(
        algorithm="hmac-sha256",
        publisher="web-form",
        key_id="k1",
        ce_type="dsr.request.submitted.v1",
        ce_id="evt-1",
        ce_source="web-form",
        ce_time="2026-03-10T12:00:00Z",
        key="web-2026-000123",
        value=value,
    )
    assert data == (
        b"dsr-signature-v1\nhmac-sha256\nweb-form\nk1\ndsr.request.submitted.v1\nevt-1\n"
        b"web-form\n2026-03-10T12:00:00Z\nweb-2026-000123\n"
        b"19bc0de50123b60b812be057f467851b465edeadbd6bf6b43ff7e8654176ff59\n"
    )
    # Computed with `printf '%s\n' ... | openssl dgst -sha256 -mac HMAC -macopt key:SECRET`.
    signer = RequestSigner.from_secret("web-form", SECRET, key_id="k1")
    assert (
        base64.b64encode(signer.key.sign(data)) == b"kcjaOqKUPmf76wticG+uIQ0ZoXQbH4vKnztj3raaBno="
    )
    assert hmac_key_id(SECRET.encode()) == "hmac-T-j2UgBLs2toYCE8"


def test_header_format() -> None:
    message = WEB_FORM.sign(submitted())
    header = header_dict(message.headers)[SIGNATURE_HEADER]
    assert header.startswith(f"v1;alg=ed25519;publisher=web-form;kid={WEB_FORM.key_id};sig=")
    parsed = parse_signature(header)
    assert (parsed.algorithm, parsed.publisher, parsed.key_id) == (
        "ed25519",
        "web-form",
        ed25519_key_id(WEB_FORM_KEY.public_key()),
    )
    assert len(parsed.value) == 64 and parsed.header() == header


def test_a_line_break_cannot_be_signed() -> None:
    message = encode(request_submitted(), source="web\nform")
    with pytest.raises(ValueError, match="ce_source contains a line break"):
        DESK.sign(message)
    with pytest.raises(ValueError, match="keyed by its request id"):
        DESK.sign(KafkaMessage(None, message.value, message.headers))


# -- accepted -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signer", [WEB_FORM, DESK, DESK_2026, PORTAL], ids=["ed25519", "hmac", "hmac-env", "pem-file"]
)
def test_signed_request_is_accepted(signer: RequestSigner, verifier: RequestVerifier) -> None:
    envelope = _decode(signer.sign(submitted()), verifier)
    assert envelope.body == request_submitted()  # type: ignore[attr-defined]


def test_rotation_two_keys_then_one(keys_file: Path, verifier: RequestVerifier) -> None:
    _decode(DESK.sign(submitted()), verifier)
    _decode(DESK_2026.sign(submitted()), verifier)
    text = keys_file.read_text()
    keys_file.write_text(
        text.replace("      - algorithm: hmac-sha256\n        secret_file: desk.secret\n", "")
    )
    os.utime(keys_file, ns=(1, 1))  # a different stamp even within one clock tick
    error = _reject(DESK.sign(submitted()), verifier)
    assert f"publisher 'desk' has no key {DESK.key_id!r}" in str(error)
    assert "its keys: desk-2026" in str(error)
    _decode(DESK_2026.sign(submitted()), verifier)


def test_an_invalid_edit_keeps_the_last_valid_keys(
    keys_file: Path, verifier: RequestVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    keys_file.write_text("publishers: [{id: desk}]\n")
    _decode(DESK.sign(submitted()), verifier)
    assert "keeping the last valid keys" in caplog.text


# -- refused --------------------------------------------------------------------------------------


def _other_secret(m: KafkaMessage) -> KafkaMessage:
    # The right publisher and key id, signed with another secret: a forgery.
    return RequestSigner.from_secret("desk", "x" * 32, key_id=DESK.key_id).sign(m)


def _random_signature(m: KafkaMessage) -> KafkaMessage:
    sig = base64.b64encode(os.urandom(32)).decode()
    return _header(
        m,
        SIGNATURE_HEADER,
        f"v1;alg=hmac-sha256;publisher=desk;kid={DESK.key_id};sig={sig}".encode(),
    )


def _body_byte_changed(m: KafkaMessage) -> KafkaMessage:
    signed = DESK.sign(m)
    value = signed.value.replace(b"jan@example.nl", b"jan@example.nm")  # still a valid body
    return KafkaMessage(signed.key, value, signed.headers)


def _moved_to_identity_verified(m: KafkaMessage) -> KafkaMessage:
    other = verified()
    return _header(other, SIGNATURE_HEADER, _signature(DESK.sign(m)))


def _moved_to_another_request(m: KafkaMessage) -> KafkaMessage:
    other = submitted("web-2026-000999")
    return _header(other, SIGNATURE_HEADER, _signature(DESK.sign(m)))


def _attribute_changed(name: str, value: bytes | None) -> Callable[[KafkaMessage], KafkaMessage]:
    return lambda m: _header(DESK.sign(m), name, value)


def _unkeyed(m: KafkaMessage) -> KafkaMessage:
    signed = DESK.sign(m)
    return KafkaMessage(None, signed.value, signed.headers)


REFUSALS: dict[str, tuple[Callable[[KafkaMessage], KafkaMessage], str]] = {
    "unsigned": (lambda m: m, "request event is not signed"),
    "forged-signature": (_random_signature, "does not verify"),
    "wrong-key": (_other_secret, "does not verify"),
    "unknown-publisher": (
        lambda m: RequestSigner.from_secret("mallory", SECRET).sign(m),
        "unknown publisher 'mallory'",
    ),
    "unknown-key": (
        lambda m: RequestSigner.from_secret("desk", SECRET, key_id="old-key").sign(m),
        "publisher 'desk' has no key 'old-key'",
    ),
    "algorithm-mismatch": (
        lambda m: RequestSigner.from_secret("portal", SECRET, key_id=PORTAL.key_id).sign(m),
        "is an ed25519 key, but the signature says hmac-sha256",
    ),
    "body-altered-one-byte": (_body_byte_changed, "does not verify"),
    "replayed-onto-identity-verified": (_moved_to_identity_verified, "does not verify"),
    "replayed-onto-another-request": (_moved_to_another_request, "does not verify"),
    "ce_id-changed": (_attribute_changed("ce_id", b"evt-2"), "does not verify"),
    "ce_source-changed": (_attribute_changed("ce_source", b"portal"), "does not verify"),
    "ce_time-changed": (_attribute_changed("ce_time", b"2026-03-11T12:00:00Z"), "does not verify"),
    "ce_time-removed": (_attribute_changed("ce_time", None), "does not verify"),
    "unkeyed": (_unkeyed, "must be keyed by its request id"),
    "publisher-not-allowed-this-type": (
        lambda m: WEB_FORM.sign(verified()),
        "publisher 'web-form' may not publish dsr.request.identity_verified.v1",
    ),
    "not-v1": (_attribute_changed(SIGNATURE_HEADER, b"v2;alg=x"), "does not start with 'v1'"),
    "garbled": (_attribute_changed(SIGNATURE_HEADER, b"v1;alg"), "header is not v1;alg=ALG"),
    "unknown-algorithm": (
        _attribute_changed(SIGNATURE_HEADER, b"v1;alg=rsa;publisher=a;kid=b;sig=AAAA"),
        "unknown algorithm",
    ),
    "bad-publisher-id": (
        _attribute_changed(SIGNATURE_HEADER, b"v1;alg=ed25519;publisher=a b;kid=b;sig=AAAA"),
        "outside [A-Za-z0-9._-]",
    ),
    "signature-not-base64": (
        _attribute_changed(SIGNATURE_HEADER, b"v1;alg=ed25519;publisher=a;kid=b;sig=**"),
        "not base64",
    ),
    "signature-wrong-length": (
        _attribute_changed(SIGNATURE_HEADER, b"v1;alg=ed25519;publisher=a;kid=b;sig=AAAA"),
        "wrong length",
    ),
    "huge-header": (_attribute_changed(SIGNATURE_HEADER, b"v1;" + b"x" * 100_000), "longer than"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_with_the_reason(case: str, verifier: RequestVerifier) -> None:
    tamper, reason = REFUSALS[case]
    error = _reject(tamper(submitted()), verifier)
    assert error.stage == "signature", str(error)
    assert reason in str(error)
    assert len(str(error)) < 400


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.data())
def test_any_changed_byte_of_the_value_is_refused(data: st.DataObject) -> None:
    verifier = RequestVerifier(None, allow_unsigned=True)
    document = {
        "publishers": [{"id": "desk", "keys": [{"algorithm": "hmac-sha256", "secret": "${S}"}]}]
    }
    verifier.keys = parse_publisher_keys(
        document, base_dir=Path(), source="test", env={"S": SECRET}
    )
    message = DESK.sign(submitted())
    position = data.draw(st.integers(0, len(message.value) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != message.value[position]))
    value = message.value[:position] + bytes([byte]) + message.value[position + 1 :]
    with pytest.raises(EnvelopeError) as caught:
        _decode(KafkaMessage(message.key, value, message.headers), verifier)
    assert caught.value.stage == "signature"


def test_the_signature_is_checked_before_the_body(verifier: RequestVerifier) -> None:
    bad = encode(request_submitted(), source="web-form", time=NOW)
    value = bad.value.replace(b'"access"', b'"teleport"')
    unsigned = KafkaMessage(bad.key, value, bad.headers)
    assert _reject(unsigned, verifier).stage == "signature"  # not parsed at all
    signed = DESK.sign(unsigned)
    error = _reject(signed, verifier)
    assert error.stage == "body" and "type" in str(error) and "teleport" not in str(error)


# -- permissive mode and missing configuration ----------------------------------------------------


def test_no_keys_refuses_to_start_with_the_fix() -> None:
    with pytest.raises(PublisherKeyError) as caught:
        RequestVerifier(None)
    assert "DSR_PUBLISHER_KEYS is not set" in str(caught.value)
    assert "dsr publishers create" in str(caught.value)
    assert "DSR_ALLOW_UNSIGNED_REQUESTS=true" in str(caught.value)


def test_allow_unsigned_lets_unsigned_in_but_still_checks_signatures(
    keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    permissive = RequestVerifier(keys_file, allow_unsigned=True, env=ENV)
    assert "request events WITHOUT a signature are accepted" in caplog.text
    _decode(submitted(), permissive)
    _decode(DESK.sign(submitted()), permissive)
    assert "does not verify" in str(_reject(_other_secret(submitted()), permissive))
    bare = RequestVerifier(None, allow_unsigned=True)
    _decode(submitted(), bare)
    assert "unknown publisher 'desk'" in str(_reject(DESK.sign(submitted()), bare))


# -- the keys file --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("publishers: [{id: a, keys: []}]", "keys: List should have at least 1 item"),
        ("publishers: [{id: 'a b', keys: [{algorithm: ed25519}]}]", "id: String should match"),
        ("publishers: [{id: a, keys: [{algorithm: rsa}]}]", "algorithm: Input should be"),
        (
            "publishers: [{id: a, keys: [{algorithm: hmac-sha256, secret: literally-secret}]}]",
            "must be an environment reference",
        ),
        (
            "publishers: [{id: a, keys: [{algorithm: hmac-sha256, secret: '${UNSET_VAR}'}]}]",
            "environment variable UNSET_VAR is not set",
        ),
        (
            "publishers: [{id: a, keys: [{algorithm: hmac-sha256, secret: '${SHORT}'}]}]",
            "at least 32 characters",
        ),
        (
            "publishers: [{id: a, keys: [{algorithm: hmac-sha256, public_key: x}]}]",
            "public_key does not belong to an hmac-sha256 key",
        ),
        ("publishers: [{id: a, keys: [{algorithm: ed25519}]}]", "needs exactly one of"),
        ("publishers: [{id: a, keys: [{algorithm: ed25519, public_key: nope}]}]", "not a PEM"),
        (
            "publishers: [{id: a, keys: [{algorithm: ed25519, public_key_file: missing.pem}]}]",
            "cannot read",
        ),
        (
            "publishers: [{id: a, events: [dsr.request.status_changed.v1],"
            " keys: [{algorithm: hmac-sha256, secret: '${LONG}'}]}]",
            "are not event types a publisher signs",
        ),
        (
            "publishers: [{id: a, keys: [{algorithm: hmac-sha256, secret: '${LONG}'}]},"
            " {id: a, keys: [{algorithm: hmac-sha256, secret: '${LONG}'}]}]",
            "publisher 'a' is listed twice",
        ),
        (
            "publishers: [{id: a, keys: [{algorithm: hmac-sha256, secret: '${LONG}'},"
            " {algorithm: hmac-sha256, secret: '${LONG}'}]}]",
            "is used twice",
        ),
        ("publishers: [", "not valid YAML"),
    ],
)
def test_keys_file_errors_name_the_file_and_the_fix(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(PublisherKeyError) as caught:
        load_publisher_keys(path, env={"SHORT": "too-short", "LONG": "l" * 40})
    assert error in str(caught.value)
    assert str(path) in str(caught.value)
    assert "literally-secret" not in str(caught.value)


def test_missing_keys_file(tmp_path: Path) -> None:
    with pytest.raises(PublisherKeyError, match=r"DSR_PUBLISHER_KEYS.*cannot read"):
        RequestVerifier(tmp_path / "nope.yaml")


# -- the publisher's configuration ----------------------------------------------------------------


def test_signer_from_env(tmp_path: Path) -> None:
    assert RequestSigner.from_env({}) is None
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        WEB_FORM_KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signer = RequestSigner.from_env(
        {"DSR_PUBLISHER_ID": "web-form", "DSR_PUBLISHER_KEY_FILE": str(pem)}
    )
    assert signer is not None and signer.key_id == WEB_FORM.key_id
    secret = RequestSigner.from_env({"DSR_PUBLISHER_ID": "desk", "DSR_PUBLISHER_SECRET": SECRET})
    assert secret is not None and secret.key_id == DESK.key_id
    with_id = RequestSigner.from_env(
        {"DSR_PUBLISHER_ID": "desk", "DSR_PUBLISHER_SECRET": SECRET, "DSR_PUBLISHER_KEY_ID": "k9"}
    )
    assert with_id is not None and with_id.key_id == "k9"
    for partial in (
        {"DSR_PUBLISHER_ID": "desk"},
        {"DSR_PUBLISHER_SECRET": SECRET},
        {"DSR_PUBLISHER_ID": "d", "DSR_PUBLISHER_SECRET": SECRET, "DSR_PUBLISHER_KEY_FILE": "f"},
    ):
        with pytest.raises(PublisherKeyError, match="DSR_PUBLISHER_ID and exactly one"):
            RequestSigner.from_env(partial)
    with pytest.raises(PublisherKeyError, match="at least 32 characters"):
        RequestSigner.from_env({"DSR_PUBLISHER_ID": "d", "DSR_PUBLISHER_SECRET": "short"})
    with pytest.raises(PublisherKeyError, match="publisher id 'a b' is not valid"):
        RequestSigner.from_secret("a b", SECRET)


def test_signing_replaces_an_earlier_signature(verifier: RequestVerifier) -> None:
    twice = DESK_2026.sign(DESK.sign(submitted()))
    assert [k for k, _ in twice.headers].count(SIGNATURE_HEADER) == 1
    _decode(twice, verifier)


def test_verifying_key_repr_hides_the_secret(verifier: RequestVerifier) -> None:
    key = verifier.keys.keys[("desk", DESK.key_id)]
    assert SECRET not in repr(key) and SECRET not in repr(replace(key))
    assert SECRET not in repr(DESK.key)


def test_time_is_bound_as_sent(verifier: RequestVerifier) -> None:
    # The same instant written another way is another event: the text is signed, not the time.
    message = DESK.sign(
        encode(request_submitted(), source="web-form", time=datetime(2026, 3, 10, 12, tzinfo=UTC))
    )
    _decode(message, verifier)
    other = _header(message, "ce_time", b"2026-03-10T12:00:00+00:00")
    assert _reject(other, verifier).stage == "signature"
