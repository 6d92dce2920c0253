"""The signed deletion certificate: build it from a finished erasure, sign, verify, render.

The body is canonicalised per RFC 8785 (JCS) and signed with Ed25519, so anyone holding the
issuer's public key (JWKS from `dsr keys export-jwks`) can verify it offline. It carries no raw
personal data: the subject appears only as a keyed hash (HMAC-SHA256, `subject_hash`) of the
typed identifiers, keyed with the deployment's secret. That hash is pseudonymised personal data,
not anonymous data (Art. 4(5) and recital 26 GDPR: whoever holds the identifiers and the secret
can attribute it), and the certificate says so to its reader.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from orchestrator.artifacts.keys import KeyStore, KeyStoreError
from orchestrator.artifacts.render import LANGUAGES, Language, render_document
from orchestrator.lifecycle.reducer import RequestState
from schemas.errors import DsrError
from schemas.events import (
    OutcomeStatus,
    RequestStatus,
    RequestSubmitted,
    RequestType,
    Subject,
    SystemProgress,
)
from schemas.primitives.encoding import b64url, b64url_decode
from schemas.register import Controller, Text, localize

CERTIFICATE_VERSION = 1
ALG = "EdDSA"
MIN_SALT_BYTES = 16
#: The subject hash's `alg` in the certificate body. Certificates issued before issue 16 say
#: `sha256-salted` (SHA-256 of the salt and the newline-joined values); they stay valid as signed
#: documents, and the body's shape and `certificate_version` did not change.
SUBJECT_HASH_ALG = "hmac-sha256"
#: Domain separation: the key serves this hash only, and a future encoding gets a new label.
SUBJECT_HASH_LABEL = "dsr-subject-hash-v1"
_REDACTED = "[redacted: contained a subject identifier]"
#: Evidence kinds `<collection>_<action>` with a count, as connectors itemise an erasure
#: (`connectors.vendors.base.erased_per_collection`), by the action the certificate names.
_COLLECTION_ACTIONS = ("deleted", "anonymised", "redacted", "removed")
#: The fields every deletion certificate body has (a sweep certificate has its own).
REQUIRED_FIELDS = (
    "certificate_version",
    "request_id",
    "request_type",
    "dates",
    "systems",
    "status",
)


_log = logging.getLogger("dsr.certificate")


class CertificateError(DsrError):
    """A certificate cannot be built or does not verify; the message says what and why."""


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    """A certificate whose signature checked out."""

    certificate: dict[str, Any]
    kid: str

    @property
    def request_id(self) -> str:
        """The request the certificate is about."""
        return str(self.certificate["request_id"])

    @property
    def kind(self) -> str:
        """'sweep' for a retention sweep's certificate, else 'deletion' (an erasure's)."""
        return str(self.certificate.get("kind", "deletion"))

    @property
    def issued_at(self) -> str | None:
        """When the certificate was issued (ISO 8601)."""
        value = self.certificate.get("issued_at")
        return str(value) if value is not None else None


def subject_hash(subject: Subject, key: bytes) -> str:
    """HMAC-SHA256 (hex), keyed with the deployment's secret, over the typed identifiers.

    Each identifier is encoded as its type and its value, each prefixed with its length in
    UTF-8 bytes; the encodings are deduplicated, sorted and concatenated after a fixed label.
    So the order the publisher listed them in does not matter, while `["a\\nb"]` and
    `["a", "b"]`, or an e-mail address and a phone number with the same text, hash apart.
    Whoever holds the key and a person's identifiers can confirm a certificate is about that
    person; without the key the hash cannot be computed, so a list of candidate e-mail
    addresses cannot be tested against it, and another deployment (another key) gives the same
    person another hash. The key is required: a missing or short one raises CertificateError.
    A message authentication code keyed with a secret kept apart is the pseudonymisation that
    EDPB Guidelines 01/2025 on pseudonymisation describe (the key is the "pseudonymisation
    secret" of Art. 4(5) GDPR); a plain hash of guessable identifiers is not.
    """
    if len(key) < MIN_SALT_BYTES:
        raise CertificateError(
            f"the subject-hash key is {len(key)} bytes; use at least {MIN_SALT_BYTES} random "
            "bytes (the key store's subject-salt file)"
        )
    encoded = sorted({_typed(i.type, i.value) for i in subject.identifiers})
    message = _length_prefixed(SUBJECT_HASH_LABEL) + b"".join(encoded)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _typed(kind: str, value: str) -> bytes:
    """One identifier as its length-prefixed type followed by its length-prefixed value."""
    return _length_prefixed(kind) + _length_prefixed(value)


def _length_prefixed(text: str) -> bytes:
    """The UTF-8 bytes of `text` after their length as 4 bytes, big-endian."""
    data = text.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def build_certificate(
    state: RequestState,
    *,
    salt: bytes,
    issuer: str,
    register_titles: dict[str, str] | None = None,
    issued_at: datetime | None = None,
) -> dict[str, Any]:
    """The certificate body for a finished erasure request (unsigned, no raw personal data)."""
    request, status = _finished_erasure(state)
    titles = register_titles or {}
    scrub = _scrubber(request.subject)
    systems: dict[str, Any] = {}
    totals = {"deleted": 0, "anonymised": 0, "retained": 0}
    for name in sorted(state.systems):
        progress = state.systems[name]
        systems[name] = _system_entry(progress, titles.get(name, name), scrub)
        totals["deleted"] += progress.counts.deleted
        totals["anonymised"] += progress.counts.anonymised
        totals["retained"] += sum(r.count for r in progress.retained)
    completed = state.finished_at
    return {
        "certificate_version": CERTIFICATE_VERSION,
        "issuer": issuer,
        "issued_at": _iso(issued_at or completed or datetime.now(UTC)),
        "request_id": state.request_id,
        "request_type": request.type.value,
        "jurisdiction": request.jurisdiction,
        "language": request.language,
        "dates": {
            "received": _iso(request.received_at),
            "verified": _iso(state.verified_at),
            "completed": _iso(completed),
            "deadline": _iso(state.deadline),
        },
        "subject_hash": {"alg": SUBJECT_HASH_ALG, "value": subject_hash(request.subject, salt)},
        "status": status.value,
        "reason": scrub(state.reason),
        "totals": totals,
        "systems": systems,
    }


def _finished_erasure(state: RequestState) -> tuple[RequestSubmitted, RequestStatus]:
    """The request and final status of a finished erasure; CertificateError for anything else."""
    request = state.request
    if request is None:
        raise CertificateError(f"request {state.request_id!r}: the state has no request body")
    if request.type != RequestType.ERASURE:
        raise CertificateError(
            f"request {state.request_id!r} is a {request.type.value} request; "
            "deletion certificates are issued for erasure requests only"
        )
    if not state.is_final or state.status is None:
        raise CertificateError(
            f"request {state.request_id!r} is not finished (status {state.status}); "
            "issue the certificate once it has a final status"
        )
    return request, state.status


def _scrubber(subject: Subject) -> Callable[[str | None], str | None]:
    """Free text (reasons, evidence) is typed by people and connectors: this replaces any text
    holding one of the subject's identifier values, so the certificate never carries them."""
    values = [i.value.lower() for i in subject.identifiers if i.value]

    def scrub(text: str | None) -> str | None:
        if text is None:
            return None
        return _REDACTED if any(v in text.lower() for v in values) else text

    return scrub


def _system_entry(
    progress: SystemProgress, title: str, scrub: Callable[[str | None], str | None]
) -> dict[str, Any]:
    """What one system did, as the certificate states it; a system on legal hold says so."""
    entry = {
        "title": title,
        "status": str(progress.status),
        "deleted": progress.counts.deleted,
        "anonymised": progress.counts.anonymised,
        "not_found": progress.status == OutcomeStatus.NOT_FOUND,
        "retained": [
            {
                "collection": r.collection,
                "count": r.count,
                "legal_basis": scrub(r.legal_basis),
                "reason": scrub(r.reason),
                "until": _iso(r.until),
            }
            for r in progress.retained
        ],
        "manual_completion": any(e.kind == "manual_confirmation" for e in progress.evidence),
        "collections": per_collection(progress),
        "evidence": [
            {"kind": e.kind, "value": scrub(e.value)}
            for e in progress.evidence
            if _collection_action(e.kind, e.value) is None
        ],
        "reason": scrub(progress.reason),
    }
    if progress.decision == "legal_hold" and progress.retained:
        # Art. 17(3)(e) GDPR: kept for legal claims; `orchestrator.lifecycle.decisions`.
        hold = progress.retained[0]
        entry["legal_hold"] = {
            "held": True,
            "legal_basis": hold.legal_basis,
            "reason": hold.reason,
            "review_date": _iso(hold.until),
        }
    return entry


def per_collection(progress: SystemProgress) -> list[dict[str, Any]]:
    """What the erasure did in each collection of one system, from the connector's evidence.

    A certificate states what was erased, collection by collection, records a vendor removed
    along with their parent included (Freshdesk's hard delete of a contact takes its tickets and
    conversations): Art. 17(1) and the accountability of Art. 5(2) GDPR. A connector that
    reports totals only gives no rows; its counts stand in the system's table.
    """
    rows: dict[tuple[str, str], int] = {}
    for item in progress.evidence:
        found = _collection_action(item.kind, item.value)
        if found is not None:
            collection, action = found
            rows[(collection, action)] = rows.get((collection, action), 0) + int(item.value)
    return [
        {"collection": collection, "action": action, "count": count}
        for (collection, action), count in rows.items()
    ]


def _collection_action(kind: str, value: str) -> tuple[str, str] | None:
    """(collection, action) of an evidence item `<collection>_<action>: <count>`, else None."""
    collection, _, action = kind.rpartition("_")
    if collection and action in _COLLECTION_ACTIONS and value.isdigit():
        return collection, action
    return None


def canonical(certificate: dict[str, Any]) -> bytes:
    """The RFC 8785 canonical bytes that are signed."""
    try:
        return rfc8785.dumps(certificate)
    except Exception as exc:  # rfc8785 raises its own types for floats, bad keys, etc.
        raise CertificateError(f"the certificate cannot be canonicalised: {exc}") from None


def sign_certificate(
    certificate: dict[str, Any], private_key: Ed25519PrivateKey, kid: str
) -> dict[str, Any]:
    """The signed document: certificate plus an Ed25519 signature over its canonical bytes."""
    signature = private_key.sign(canonical(certificate))
    return {
        "certificate": certificate,
        "signature": {"alg": ALG, "kid": kid, "value": b64url(signature)},
    }


def dump_signed(document: dict[str, Any]) -> bytes:
    """The signed file's bytes (pretty JSON; verification re-canonicalises, so layout is free)."""
    return (json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise CertificateError(f"the certificate file has the field {key!r} twice")
        seen[key] = value
    return seen


def parse_signed(document: dict[str, Any] | bytes | str) -> dict[str, Any]:
    """A signed document from bytes or a dict, with clear errors for malformed input."""
    if isinstance(document, dict):
        return document
    try:
        text = document.decode("utf-8") if isinstance(document, bytes) else document
        parsed = json.loads(text, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise CertificateError("the certificate file is not UTF-8 text; it is damaged") from None
    except json.JSONDecodeError as exc:
        raise CertificateError(
            f"the certificate file is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); it is damaged or not a certificate"
        ) from None
    if not isinstance(parsed, dict):
        raise CertificateError("the certificate file is JSON but not an object; not a certificate")
    return parsed


def verify_certificate(
    document: dict[str, Any] | bytes | str, public_keys: dict[str, Ed25519PublicKey]
) -> VerifiedCertificate:
    """Check a signed certificate against the given public keys; raise CertificateError if not."""
    verified = verify_signed(document, public_keys)
    check_body(verified.certificate, REQUIRED_FIELDS)
    return verified


def verify_signed(
    document: dict[str, Any] | bytes | str, public_keys: dict[str, Ed25519PublicKey]
) -> VerifiedCertificate:
    """Check the signature of any signed certificate (deletion or sweep), not its body's fields;
    raise CertificateError if it does not hold."""
    certificate, signature = _signed_parts(parse_signed(document))
    kid = signature["kid"]
    key = public_keys.get(kid)
    if key is None:
        known = ", ".join(sorted(public_keys)) or "none"
        raise CertificateError(
            f"signed with key {kid!r} which is not among the keys given (known: {known}); "
            "export the issuer's keys with `dsr keys export-jwks`"
        )
    try:
        raw = b64url_decode(signature["value"])
    except ValueError:
        raise CertificateError(
            "the signature value is not valid base64url; the file is damaged"
        ) from None
    try:
        key.verify(raw, canonical(certificate))
    except InvalidSignature:
        raise CertificateError(
            "the signature does not match: the certificate was changed after signing, "
            "or it was signed with another key"
        ) from None
    return VerifiedCertificate(certificate=certificate, kid=kid)


def _signed_parts(signed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The certificate body and its signature, checked for shape (not yet for validity)."""
    missing = [k for k in ("certificate", "signature") if k not in signed]
    if missing:
        raise CertificateError(
            f"not a signed certificate: missing {', '.join(missing)} "
            "(expected {'certificate': {...}, 'signature': {...}})"
        )
    extra = sorted(set(signed) - {"certificate", "signature"})
    if extra:
        raise CertificateError(f"unexpected top-level fields {extra}; only the signed parts belong")
    certificate, signature = signed["certificate"], signed["signature"]
    if not isinstance(certificate, dict) or not isinstance(signature, dict):
        raise CertificateError("'certificate' and 'signature' must both be JSON objects")
    sig_missing = [k for k in ("alg", "kid", "value") if not isinstance(signature.get(k), str)]
    if sig_missing:
        raise CertificateError(f"the signature lacks {', '.join(sig_missing)} (text fields)")
    if set(signature) - {"alg", "kid", "value"}:
        raise CertificateError("the signature has unexpected fields; only alg, kid, value belong")
    if signature["alg"] != ALG:
        raise CertificateError(
            f"the signature algorithm is {signature['alg']!r}; only {ALG!r} (Ed25519) is accepted"
        )
    return certificate, signature


def check_body(certificate: dict[str, Any], required: tuple[str, ...]) -> None:
    """A verified body has the `required` fields and a version this tool reads.

    Checked only after the signature holds: a signed but incomplete body is an issuer bug."""
    body_missing = [k for k in required if k not in certificate]
    if body_missing:
        raise CertificateError(f"the certificate lacks required fields: {', '.join(body_missing)}")
    if certificate["certificate_version"] != CERTIFICATE_VERSION:
        raise CertificateError(
            f"certificate version {certificate['certificate_version']!r} is not supported "
            f"(this tool reads version {CERTIFICATE_VERSION}); upgrade dsr"
        )


def render_html(
    certificate: dict[str, Any],
    language: Language = "nl",
    controller: Controller | None = None,
    reasons: Mapping[tuple[str, str], Text] | None = None,
    headings: Mapping[tuple[str, str], Text] | None = None,
) -> str:
    """The certificate (signed document or bare body) as a standalone HTML page in Dutch or
    English (`templates/certificate.html`, everything escaped); when data was kept, with the
    remedies and the `controller`'s contact (Art. 12(4) GDPR), in the controller's tone.

    `reasons` are the register's retention reasons per (system, collection): a connector reports
    a kept collection's reason in one language, and the document says it in its own. `headings`
    are the collections' titles for people (`connectors.metadata`), in the same way."""
    certificate, kid = body_to_render(certificate, language)
    return render_document(
        "certificate",
        language,
        certificate=certificate,
        kid=kid,
        controller=controller,
        keeps_data=_keeps_data(certificate),
        reasons=_localized(reasons, language),
        headings=_localized(headings, language),
    )


def body_to_render(certificate: dict[str, Any], language: str) -> tuple[dict[str, Any], str | None]:
    """The body of a signed document (or a bare body) and the key id that signed it, for a
    page in `language`, which must be one the documents are written in."""
    if language not in LANGUAGES:
        raise CertificateError(f"language {language!r} is not supported; use 'nl' or 'en'")
    if "certificate" in certificate and "signature" in certificate:
        return certificate["certificate"], str(certificate["signature"].get("kid"))
    return certificate, None


def _localized(texts: Mapping[tuple[str, str], Text] | None, language: Language) -> dict[str, str]:
    """Per "system/collection", the text in `language`."""
    return {
        f"{system}/{name}": localize(text, language)
        for (system, name), text in (texts or {}).items()
    }


def _keeps_data(certificate: dict[str, Any]) -> bool:
    """Whether the erasure left data behind: not completed, or a system kept or held some."""
    systems = certificate.get("systems", {}).values()
    return certificate.get("status") != RequestStatus.COMPLETED.value or any(
        s.get("retained") or s.get("legal_hold") or s.get("status") == OutcomeStatus.FAILED.value
        for s in systems
    )


def signing_key(store: KeyStore) -> tuple[str, Ed25519PrivateKey]:
    """The store's active signing key; on first use it is created (and logged), so a fresh
    installation issues certificates from the first request or sweep."""
    try:
        return store.active()
    except KeyStoreError:
        info = store.create()
        _log.warning(
            "created signing key %s in %s; back it up and publish the public key with "
            "'dsr keys export-jwks'",
            info.kid,
            store.root,
        )
        return store.active()


class CertificateIssuer:
    """Signs and writes the certificate of every finished erasure request.

    The signing key and the subject-hash salt live in the key store directory. If either is
    missing on first use it is created (and logged), so a fresh installation issues
    certificates from the first request; back the directory up, and publish the public keys
    with `dsr keys export-jwks`.
    """

    def __init__(
        self,
        keys_dir: Path,
        issuer: str,
        register_titles: dict[str, str],
        controller: Controller | None = None,
        reasons: Mapping[tuple[str, str], Text] | None = None,
        headings: Mapping[tuple[str, str], Text] | None = None,
    ) -> None:
        self.store = KeyStore(keys_dir)
        self.controller = controller
        self.reasons = dict(reasons or {})
        self.headings = dict(headings or {})
        self.issuer = issuer
        self.titles = register_titles
        self._salt: bytes | None = None

    def _salt_bytes(self) -> bytes:
        if self._salt is None:
            path = self.store.root / "subject-salt"
            if not path.exists():
                self.store.root.mkdir(parents=True, exist_ok=True)
                path.write_bytes(secrets.token_bytes(32))
                path.chmod(0o600)
                _log.warning("created the subject-hash salt in %s; back it up", path)
            self._salt = path.read_bytes()
        return self._salt

    def issue(self, state: RequestState, directory: Path) -> Path:
        """Write `<request>.json` (signed) and `<request>.nl.html` / `.en.html`; return the JSON."""
        body = build_certificate(
            state, salt=self._salt_bytes(), issuer=self.issuer, register_titles=self.titles
        )
        kid, key = signing_key(self.store)
        signed = sign_certificate(body, key, kid)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{state.request_id}.json"
        path.write_bytes(dump_signed(signed))
        for language in ("nl", "en"):
            html_path = directory / f"{state.request_id}.{language}.html"
            html_path.write_text(
                render_html(body, language, self.controller, self.reasons), encoding="utf-8"
            )
        return path
