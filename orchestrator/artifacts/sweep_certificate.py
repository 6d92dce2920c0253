"""Sweep certificates: signed proof of what a retention sweep removed (Art. 5(1)(e), 5(2) GDPR).

Storage limitation (Art. 5(1)(e) GDPR) asks that personal data be kept no longer than its
purposes need, and recital 39 that the controller sets time limits for erasure; accountability
(Art. 5(2)) asks that it can show it did. A sweep certificate is that evidence: signed like
deletion certificates (the same key store, the same signature format, `dsr verify`), listing per
collection the rule and its cutoff, what had expired, what was deleted or anonymised, and what
was kept under a legal duty (Art. 17(3)(b) GDPR, e.g. Art. 52 AWR for invoices) until when.
No identifiers: sweeps work on dates, and free text from connectors is masked besides.

API (the orchestrator calls `SweepCertificateIssuer.issue` when a deleting sweep completes):

- `build_sweep_certificate(status, *, issuer, issued_at) -> dict`: the unsigned body.
- `SweepCertificateIssuer(keys_dir, issuer, controller=None).issue(status, directory) -> Path`:
  writes `<sweep_id>.json` (signed) and `<sweep_id>.nl.html` / `.en.html`; returns the JSON.
- `verify_sweep_certificate(document, public_keys)` checks one; `verify_any_certificate` checks
  a deletion or a sweep certificate, whichever the file is (`dsr verify`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from orchestrator.artifacts.certificate import (
    CERTIFICATE_VERSION,
    REQUIRED_FIELDS,
    CertificateError,
    VerifiedCertificate,
    body_to_render,
    check_body,
    dump_signed,
    sign_certificate,
    signing_key,
    verify_signed,
)
from orchestrator.artifacts.keys import KeyStore
from orchestrator.artifacts.render import LANGUAGES, Language, render_document, texts_in
from orchestrator.status.masking import mask_identifiers
from schemas.primitives.files import atomic_write
from schemas.register import Controller, Register, Text, localize
from schemas.sweeps import SweepCount, SweepRule, SweepStatus, SweepStatusChanged

#: The `kind` a sweep certificate's body carries (a deletion certificate has none).
SWEEP_KIND = "sweep"
_REQUIRED = (
    "certificate_version",
    "kind",
    "sweep_id",
    "system",
    "dates",
    "collections",
    "status",
)
_PERIOD = re.compile(r"^\s*(\d+)\s*(year|month|week|day)s?\s*$", re.IGNORECASE)


def build_sweep_certificate(
    status: SweepStatusChanged,
    *,
    issuer: str,
    issued_at: datetime,
    title: str | None = None,
) -> dict[str, Any]:
    """The unsigned certificate body of a completed sweep; `title` is the system's display
    name in the register (default: its name)."""
    if status.status != SweepStatus.COMPLETED:
        raise CertificateError(
            f"sweep {status.sweep_id!r} is {status.status.value}; sweep certificates are "
            "issued for completed sweeps only"
        )
    collections = _collections(status.rules, status.counts, status.dry_run_counts)
    totals = {
        key: sum(c[key] for c in collections)
        for key in ("expired", "deleted", "anonymised", "kept")
    }
    return {
        "certificate_version": CERTIFICATE_VERSION,
        "kind": SWEEP_KIND,
        "issuer": issuer,
        "issued_at": issued_at.isoformat(),
        "sweep_id": status.sweep_id,
        "system": {"name": status.system, "title": title or status.system},
        "trigger": status.trigger.value,
        "status": status.status.value,
        "requested_by": status.requested_by,
        "approved_by": status.approved_by,
        "dates": {
            "requested": _iso(status.requested_at),
            "approved": _iso(status.approved_at),
            "finished": _iso(status.finished_at),
        },
        "totals": totals,
        "collections": collections,
        "retained": [
            {
                "collection": item.collection,
                "count": item.count,
                "legal_basis": mask_identifiers(item.legal_basis),
                "reason": mask_identifiers(item.reason) if item.reason else None,
                "until": _iso(item.until),
            }
            for item in status.retained
        ],
    }


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _collections(
    rules: list[SweepRule], counts: list[SweepCount], dry_run: list[SweepCount]
) -> list[dict[str, Any]]:
    """One entry per collection a rule names (or the connector counted), rule beside counts."""
    by_rule = {rule.collection: rule for rule in rules}
    by_count = {count.collection: count for count in counts}
    counted = {count.collection: count.expired for count in dry_run}
    names = list(by_rule) + [name for name in by_count if name not in by_rule]
    entries = []
    for name in names:
        rule, count = by_rule.get(name), by_count.get(name, SweepCount(collection=name))
        entries.append(
            {
                "collection": name,
                "rule": rule_in_words(rule) if rule else None,
                "period": rule.period if rule else None,
                "counted_from": rule.counted_from.value if rule else None,
                "date_field": rule.date_field if rule else None,
                "cutoff": _iso(rule.cutoff) if rule else None,
                "action": rule.action if rule else None,
                "fields": list(rule.fields) if rule else [],
                "dry_run_expired": counted.get(name),
                "expired": count.expired,
                "deleted": count.deleted,
                "anonymised": count.anonymised,
                "kept": count.kept,
            }
        )
    return entries


def rule_in_words(rule: SweepRule) -> str:
    """A sweep rule in English words ("2 years after creation (ordered_at)")."""
    return rule.describe()


def verify_sweep_certificate(
    document: dict[str, Any] | bytes | str, public_keys: dict[str, Ed25519PublicKey]
) -> VerifiedCertificate:
    """Check a signed sweep certificate; raise CertificateError if it does not hold."""
    verified = verify_signed(document, public_keys)
    _check_sweep_body(verified.certificate)
    return verified


def verify_any_certificate(
    document: dict[str, Any] | bytes | str, public_keys: dict[str, Ed25519PublicKey]
) -> VerifiedCertificate:
    """Check a signed deletion or sweep certificate, whichever the document is."""
    verified = verify_signed(document, public_keys)
    if verified.kind == SWEEP_KIND:
        _check_sweep_body(verified.certificate)
    else:
        check_body(verified.certificate, REQUIRED_FIELDS)
    return verified


def _check_sweep_body(certificate: dict[str, Any]) -> None:
    check_body(certificate, _REQUIRED)
    if certificate["kind"] != SWEEP_KIND:
        raise CertificateError(
            f"this is a {certificate['kind']!r} certificate, not a sweep certificate"
        )
    if not isinstance(certificate["system"], dict) or not isinstance(
        certificate["collections"], list
    ):
        raise CertificateError("the sweep certificate's system or collections are malformed")


def render_sweep_html(
    certificate: dict[str, Any],
    language: Language = "nl",
    controller: Controller | None = None,
    reasons: Mapping[str, Text] | None = None,
) -> str:
    """The sweep certificate (signed document or bare body) as a standalone HTML page in
    Dutch or English (`templates/sweep_certificate.html`, everything escaped), with the
    `controller`'s contact and every rule in the document's language.

    `reasons` are the register's reasons for its retention duties, by collection: a connector
    reports why it kept records in one language, and the document says it in its own."""
    certificate, kid = body_to_render(certificate, language)
    return render_document(
        "sweep_certificate",
        language,
        certificate=certificate,
        kid=kid,
        controller=controller,
        periods=_periods(certificate, language),
        reasons={name: localize(text, language) for name, text in (reasons or {}).items()},
    )


def _periods(certificate: dict[str, Any], language: Language) -> dict[str, str]:
    """Each collection's period in `language` ("180 dagen"), by collection."""
    units: Mapping[str, list[str]] = texts_in("sweep_certificate", language)["units"]
    return {
        str(entry.get("collection")): period_in_words(str(entry.get("period") or ""), units)
        for entry in certificate.get("collections") or []
    }


def period_in_words(period: str, units: Mapping[str, list[str]]) -> str:
    """A register period ("180 days") in the words of `units` (a texts file's `units`)."""
    match = _PERIOD.match(period)
    if not match:
        return period
    amount, unit = int(match.group(1)), match.group(2).lower()
    return f"{amount} {units[unit][0 if amount == 1 else 1]}"


class SweepCertificateIssuer:
    """Signs and writes sweep certificates with the deletion certificates' keys.

    The signing key lives in the key store directory; on first use it is created (and logged),
    as for deletion certificates. `titles` are the systems' display names by name, `reasons`
    the register's reasons for its retention duties by (system, collection); `for_register`
    takes both from the register.
    """

    def __init__(
        self,
        keys_dir: Path,
        issuer: str,
        controller: Controller | None = None,
        *,
        titles: Mapping[str, str] | None = None,
        reasons: Mapping[tuple[str, str], Text] | None = None,
    ) -> None:
        self.keys_dir = keys_dir
        self.issuer = issuer
        self.controller = controller
        self.titles = dict(titles or {})
        self.reasons = dict(reasons or {})
        self.store = KeyStore(keys_dir)

    @classmethod
    def for_register(
        cls, keys_dir: Path, issuer: str, register: Register
    ) -> SweepCertificateIssuer:
        """An issuer with the register's controller, system titles and duties' reasons."""
        return cls(
            keys_dir,
            issuer,
            register.controller,
            titles={s.name: s.display_name for s in register.systems},
            reasons={
                (s.name, rule.collection): rule.reason
                for s in register.systems
                for rule in s.retention_rules
                if rule.reason is not None
            },
        )

    def issue(self, status: SweepStatusChanged, directory: Path) -> Path:
        """Write `<sweep_id>.json` (signed) and its nl/en HTML; return the JSON's path."""
        issued_at = status.finished_at or status.changed_at
        body = build_sweep_certificate(
            status, issuer=self.issuer, issued_at=issued_at, title=self.titles.get(status.system)
        )
        reasons = {c: text for (s, c), text in self.reasons.items() if s == status.system}
        kid, key = signing_key(self.store)
        signed = sign_certificate(body, key, kid)
        # The pages first, the signed JSON last: once it exists, the certificate is whole.
        for language in LANGUAGES:
            html = render_sweep_html(signed, language, self.controller, reasons)
            atomic_write(directory / f"{status.sweep_id}.{language}.html", html)
        path = directory / f"{status.sweep_id}.json"
        atomic_write(path, dump_signed(signed))
        return path


__all__ = [
    "SWEEP_KIND",
    "SweepCertificateIssuer",
    "build_sweep_certificate",
    "period_in_words",
    "render_sweep_html",
    "rule_in_words",
    "verify_any_certificate",
    "verify_sweep_certificate",
]
