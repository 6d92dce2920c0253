"""The signed deletion certificate: build it from a finished erasure, sign, verify, render.

The body is canonicalised per RFC 8785 (JCS) and signed with Ed25519, so anyone holding the
issuer's public key (JWKS from `dsr keys export-jwks`) can verify it offline. It carries no
personal data: the subject appears only as a salted SHA-256 of the identifier values.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from orchestrator.artifacts.keys import KeyStore, KeyStoreError
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import OutcomeStatus, RequestType, Subject
from schemas.primitives.encoding import b64url, b64url_decode

CERTIFICATE_VERSION = 1
ALG = "EdDSA"
MIN_SALT_BYTES = 16
_REDACTED = "[redacted: contained a subject identifier]"
_REQUIRED = ("certificate_version", "request_id", "request_type", "dates", "systems", "status")


_log = logging.getLogger("dsr.certificate")


class CertificateError(Exception):
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
    def issued_at(self) -> str | None:
        """When the certificate was issued (ISO 8601)."""
        value = self.certificate.get("issued_at")
        return str(value) if value is not None else None


def subject_hash(subject: Subject, salt: bytes) -> str:
    """Salted SHA-256 (hex) over the sorted normalised identifier values, newline-joined."""
    values = sorted({i.value for i in subject.identifiers})
    return hashlib.sha256(salt + "\n".join(values).encode("utf-8")).hexdigest()


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
    """The certificate body for a finished erasure request (unsigned, no personal data)."""
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
    if len(salt) < MIN_SALT_BYTES:
        raise CertificateError(
            f"the subject-hash salt is {len(salt)} bytes; "
            f"use at least {MIN_SALT_BYTES} random bytes"
        )
    titles = register_titles or {}
    # Free text (reasons, evidence) is typed by people and connectors: scrub any identifier
    # value that slipped in, so the certificate never carries the subject's identifiers.
    secrets = [i.value.lower() for i in request.subject.identifiers if i.value]

    def scrub(text: str | None) -> str | None:
        if text is None:
            return None
        return _REDACTED if any(s in text.lower() for s in secrets) else text

    systems: dict[str, Any] = {}
    totals = {"deleted": 0, "anonymised": 0, "retained": 0}
    for name in sorted(state.systems):
        progress = state.systems[name]
        evidence = [{"kind": e.kind, "value": scrub(e.value)} for e in progress.evidence]
        retained = [
            {
                "collection": r.collection,
                "count": r.count,
                "legal_basis": scrub(r.legal_basis),
                "reason": scrub(r.reason),
                "until": _iso(r.until),
            }
            for r in progress.retained
        ]
        entry = {
            "title": titles.get(name, name),
            "status": str(progress.status),
            "deleted": progress.counts.deleted,
            "anonymised": progress.counts.anonymised,
            "not_found": progress.status == OutcomeStatus.NOT_FOUND,
            "retained": retained,
            "manual_completion": any(e.kind == "manual_confirmation" for e in progress.evidence),
            "evidence": evidence,
            "reason": scrub(progress.reason),
        }
        totals["deleted"] += progress.counts.deleted
        totals["anonymised"] += progress.counts.anonymised
        totals["retained"] += sum(r.count for r in progress.retained)
        systems[name] = entry
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
        "subject_hash": {"alg": "sha256-salted", "value": subject_hash(request.subject, salt)},
        "status": state.status.value,
        "reason": scrub(state.reason),
        "totals": totals,
        "systems": systems,
    }


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
    signed = parse_signed(document)
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
    # Only after the signature holds: a signed but incomplete body is an issuer bug.
    body_missing = [k for k in _REQUIRED if k not in certificate]
    if body_missing:
        raise CertificateError(f"the certificate lacks required fields: {', '.join(body_missing)}")
    if certificate["certificate_version"] != CERTIFICATE_VERSION:
        raise CertificateError(
            f"certificate version {certificate['certificate_version']!r} is not supported "
            f"(this tool reads version {CERTIFICATE_VERSION}); upgrade dsr"
        )
    return VerifiedCertificate(certificate=certificate, kid=kid)


# ---------------------------------------------------------------------------------------------
# Human-readable rendering

_LABELS: dict[str, dict[str, str]] = {
    "nl": {
        "title": "Verwijderingscertificaat",
        "intro": "Dit certificaat beschrijft wat er met uw gegevens is gebeurd na uw verzoek "
        "om verwijdering (art. 17 AVG). Het bevat geen persoonsgegevens.",
        "request": "Verzoek",
        "issuer": "Uitgever",
        "issued": "Uitgegeven",
        "received": "Ontvangen",
        "verified": "Identiteit geverifieerd",
        "completed": "Afgerond",
        "deadline": "Uiterste termijn",
        "status": "Status",
        "reason": "Toelichting",
        "subject": "Betrokkene (gezouten hash)",
        "system": "Systeem",
        "deleted": "Verwijderd",
        "anonymised": "Geanonimiseerd",
        "not_found": "Geen gegevens gevonden",
        "yes": "ja",
        "no": "nee",
        "retained": "Bewaard",
        "collection": "Verzameling",
        "count": "Aantal",
        "legal_basis": "Wettelijke grondslag",
        "until": "Bewaard tot",
        "manual": "Handmatig afgerond",
        "evidence": "Bewijs",
        "none": "geen",
        "verify": "Hoe controleert u dit certificaat?",
        "verify_text": "Het certificaat is digitaal ondertekend (Ed25519). Haal de publieke "
        "sleutels van de uitgever op (JWKS) en voer uit:",
        "signature": "Ondertekend met sleutel",
    },
    "en": {
        "title": "Deletion certificate",
        "intro": "This certificate describes what happened to your data after your erasure "
        "request (Art. 17 GDPR). It contains no personal data.",
        "request": "Request",
        "issuer": "Issuer",
        "issued": "Issued",
        "received": "Received",
        "verified": "Identity verified",
        "completed": "Completed",
        "deadline": "Deadline",
        "status": "Status",
        "reason": "Note",
        "subject": "Data subject (salted hash)",
        "system": "System",
        "deleted": "Deleted",
        "anonymised": "Anonymised",
        "not_found": "No data found",
        "yes": "yes",
        "no": "no",
        "retained": "Retained",
        "collection": "Collection",
        "count": "Count",
        "legal_basis": "Legal basis",
        "until": "Retained until",
        "manual": "Completed manually",
        "evidence": "Evidence",
        "none": "none",
        "verify": "How to verify this certificate",
        "verify_text": "The certificate is digitally signed (Ed25519). Obtain the issuer's "
        "public keys (JWKS) and run:",
        "signature": "Signed with key",
    },
}


def render_html(certificate: dict[str, Any], language: Literal["nl", "en"] = "nl") -> str:
    """The certificate as a standalone HTML page in Dutch or English (everything escaped)."""
    if language not in _LABELS:
        raise CertificateError(f"language {language!r} is not supported; use 'nl' or 'en'")
    t = _LABELS[language]
    kid: str | None = None
    if "certificate" in certificate and "signature" in certificate:
        kid = str(certificate["signature"].get("kid"))
        certificate = certificate["certificate"]

    def e(value: Any) -> str:
        return html.escape("" if value is None else str(value), quote=True)

    def row(label: str, value: Any) -> str:
        return f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>"

    dates = certificate.get("dates", {})
    subject = certificate.get("subject_hash", {})
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{e(language)}"><head><meta charset="utf-8">',
        f"<title>{e(t['title'])} {e(certificate.get('request_id'))}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}"
        "code{word-break:break-all}</style></head><body>",
        f"<h1>{e(t['title'])}</h1>",
        f"<p>{e(t['intro'])}</p>",
        "<table>",
        row(t["request"], certificate.get("request_id")),
        row(t["issuer"], certificate.get("issuer")),
        row(t["issued"], certificate.get("issued_at")),
        row(t["received"], dates.get("received")),
        row(t["verified"], dates.get("verified")),
        row(t["completed"], dates.get("completed")),
        row(t["deadline"], dates.get("deadline")),
        row(t["status"], certificate.get("status")),
    ]
    if certificate.get("reason"):
        out.append(row(t["reason"], certificate["reason"]))
    out.append(row(t["subject"], subject.get("value")))
    out.append("</table>")
    for name, system in certificate.get("systems", {}).items():
        out.append(f"<h2>{e(system.get('title') or name)} <small>({e(name)})</small></h2>")
        out.append("<table>")
        out.append(row(t["status"], system.get("status")))
        out.append(row(t["deleted"], system.get("deleted")))
        out.append(row(t["anonymised"], system.get("anonymised")))
        out.append(row(t["not_found"], t["yes"] if system.get("not_found") else t["no"]))
        out.append(row(t["manual"], t["yes"] if system.get("manual_completion") else t["no"]))
        if system.get("reason"):
            out.append(row(t["reason"], system["reason"]))
        evidence = system.get("evidence") or []
        text = "; ".join(f"{ev.get('kind')}: {ev.get('value')}" for ev in evidence)
        out.append(row(t["evidence"], text or t["none"]))
        out.append("</table>")
        retained = system.get("retained") or []
        if retained:
            out.append(f"<h3>{e(t['retained'])}</h3><table>")
            out.append(
                "<tr>"
                + "".join(
                    f"<th>{e(t[k])}</th>"
                    for k in ("collection", "count", "legal_basis", "reason", "until")
                )
                + "</tr>"
            )
            for item in retained:
                cells = (item.get(k) for k in ("collection", "count", "legal_basis", "reason"))
                out.append(
                    "<tr>"
                    + "".join(f"<td>{e(c)}</td>" for c in cells)
                    + f"<td>{e(item.get('until') or '-')}</td></tr>"
                )
            out.append("</table>")
    out += [
        f"<h2>{e(t['verify'])}</h2>",
        f"<p>{e(t['verify_text'])}</p>",
        "<pre><code>dsr verify certificate.json --key issuer-jwks.json</code></pre>",
    ]
    if kid:
        out.append(f"<p>{e(t['signature'])}: <code>{e(kid)}</code></p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


class CertificateIssuer:
    """Signs and writes the certificate of every finished erasure request.

    The signing key and the subject-hash salt live in the key store directory. If either is
    missing on first use it is created (and logged), so a fresh installation issues
    certificates from the first request; back the directory up, and publish the public keys
    with `dsr keys export-jwks`.
    """

    def __init__(self, keys_dir: Path, issuer: str, register_titles: dict[str, str]) -> None:
        self.store = KeyStore(keys_dir)
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

    def _signing_key(self) -> tuple[str, Any]:
        try:
            return self.store.active()
        except KeyStoreError:
            info = self.store.create()
            _log.warning(
                "created signing key %s in %s; back it up and publish the public key with "
                "'dsr keys export-jwks'",
                info.kid,
                self.store.root,
            )
            return self.store.active()

    def issue(self, state: RequestState, directory: Path) -> Path:
        """Write `<request>.json` (signed) and `<request>.nl.html` / `.en.html`; return the JSON."""
        body = build_certificate(
            state, salt=self._salt_bytes(), issuer=self.issuer, register_titles=self.titles
        )
        kid, key = self._signing_key()
        signed = sign_certificate(body, key, kid)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{state.request_id}.json"
        path.write_bytes(dump_signed(signed))
        for language in ("nl", "en"):
            html_path = directory / f"{state.request_id}.{language}.html"
            html_path.write_text(render_html(body, language), encoding="utf-8")
        return path
