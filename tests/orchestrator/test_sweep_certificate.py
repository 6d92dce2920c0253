"""The signed sweep certificate: contents, signature, tampering, no identifiers, nl/en pages,
and `dsr verify` on it (issue 15, "Sweep certificates")."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.artifacts.certificate import (
    CertificateError,
    build_certificate,
    dump_signed,
    sign_certificate,
    verify_certificate,
)
from orchestrator.artifacts.keys import KeyStore
from orchestrator.artifacts.sweep_certificate import (
    SweepCertificateIssuer,
    build_sweep_certificate,
    render_sweep_html,
    verify_any_certificate,
    verify_sweep_certificate,
)
from orchestrator.cli.keys import verify
from schemas.events import RetainedItem
from schemas.register import Controller
from schemas.sweeps import (
    CountedFrom,
    SweepCount,
    SweepRule,
    SweepStatus,
    SweepStatusChanged,
    SweepTrigger,
)
from tests.orchestrator.test_documents import _text
from tests.orchestrator.test_language import _english

REQUESTED = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
APPROVED = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
FINISHED = datetime(2026, 11, 30, 9, 16, tzinfo=UTC)
CONTROLLER = Controller(name="Webwinkel B.V.", contact="privacy@webwinkel.example")
#: What a careless connector might write in a reason; no certificate may carry it.
LEAKED_EMAIL = "jan.jansen@example.nl"


def completed_sweep(**changes: object) -> SweepStatusChanged:
    """A completed sweep of the shop's database: orders deleted, invoices partly kept."""
    values: dict[str, object] = {
        "sweep_id": "sweep-shop-202611300200",
        "system": "shop",
        "sequence": 5,
        "status": SweepStatus.COMPLETED,
        "previous_status": SweepStatus.SWEEPING,
        "trigger": SweepTrigger.SCHEDULE,
        "rules": [
            SweepRule(
                collection="orders",
                date_field="created_at",
                cutoff=date(2024, 11, 30),
                period="2 years",
                counted_from=CountedFrom.LAST_ACTIVITY,
            ),
            SweepRule(
                collection="chats",
                date_field="updated_at",
                cutoff=date(2026, 6, 3),
                period="180 days",
                counted_from=CountedFrom.CREATED,
                action="anonymise",
                fields=["name", "email"],
            ),
        ],
        "dry_run_counts": [
            SweepCount(collection="orders", expired=12),
            SweepCount(collection="chats", expired=4),
        ],
        "counts": [
            SweepCount(collection="orders", expired=12, deleted=9, kept=3),
            SweepCount(collection="chats", expired=4, anonymised=4),
        ],
        "retained": [
            RetainedItem(
                collection="orders",
                count=3,
                legal_basis="artikel 52 AWR (fiscale bewaarplicht, 7 jaar)",
                reason=f"kept under a legal retention duty: invoices (asked by {LEAKED_EMAIL})",
                until=date(2031, 12, 31),
            )
        ],
        "requested_by": "scheduler",
        "requested_at": REQUESTED,
        "approved_by": "officer-anna",
        "approved_at": APPROVED,
        "finished_at": FINISHED,
        "changed_at": FINISHED,
    }
    return SweepStatusChanged.model_validate(values | changes)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


@pytest.fixture
def issued(tmp_path: Path, store: KeyStore) -> Path:
    issuer = SweepCertificateIssuer(
        store.root, "Webwinkel B.V.", CONTROLLER, titles={"shop": "Webwinkel (bestellingen)"}
    )
    return issuer.issue(completed_sweep(), tmp_path / "certificates")


def test_art_5_1_e_sweep_certificate_states_rule_cutoff_and_counts_per_collection() -> None:
    """Storage limitation (Art. 5(1)(e) GDPR) shown, as accountability asks (Art. 5(2)): per
    collection the rule in words, what it counts from, the date field, the cutoff, and what had
    expired, was deleted, anonymised or kept; who started and who approved, and when."""
    body = build_sweep_certificate(completed_sweep(), issuer="Webwinkel B.V.", issued_at=FINISHED)
    assert body["kind"] == "sweep"
    assert body["certificate_version"] == 1
    assert body["sweep_id"] == "sweep-shop-202611300200"
    assert body["system"] == {"name": "shop", "title": "shop"}
    assert body["trigger"] == "schedule"
    assert (body["requested_by"], body["approved_by"]) == ("scheduler", "officer-anna")
    assert body["dates"] == {
        "requested": REQUESTED.isoformat(),
        "approved": APPROVED.isoformat(),
        "finished": FINISHED.isoformat(),
    }
    orders, chats = body["collections"]
    assert orders == {
        "collection": "orders",
        "rule": "2 years after the last activity (created_at)",
        "period": "2 years",
        "counted_from": "last_activity",
        "date_field": "created_at",
        "cutoff": "2024-11-30",
        "action": "delete",
        "fields": [],
        "dry_run_expired": 12,
        "expired": 12,
        "deleted": 9,
        "anonymised": 0,
        "kept": 3,
    }
    assert (chats["action"], chats["fields"], chats["anonymised"]) == (
        "anonymise",
        ["name", "email"],
        4,
    )
    assert body["totals"] == {"expired": 16, "deleted": 9, "anonymised": 4, "kept": 3}


def test_art_17_3_b_sweep_certificate_lists_kept_records_with_legal_basis_and_until() -> None:
    """What a legal duty keeps (Art. 17(3)(b) GDPR, e.g. Art. 52 AWR) is listed with its legal
    basis and until when."""
    body = build_sweep_certificate(completed_sweep(), issuer="x", issued_at=FINISHED)
    [kept] = body["retained"]
    assert kept["collection"] == "orders"
    assert kept["count"] == 3
    assert kept["legal_basis"] == "artikel 52 AWR (fiscale bewaarplicht, 7 jaar)"
    assert kept["until"] == "2031-12-31"


def test_sweep_certificate_carries_no_identifiers(issued: Path) -> None:
    """Sweeps work on dates: an identifier a connector let slip into free text is masked in the
    signed body and in both pages."""
    for path in [issued, issued.with_suffix(".nl.html"), issued.with_suffix(".en.html")]:
        assert LEAKED_EMAIL not in path.read_text(encoding="utf-8"), path.name


def test_only_a_completed_sweep_gets_a_certificate() -> None:
    for status in (SweepStatus.AWAITING_APPROVAL, SweepStatus.FAILED, SweepStatus.NOTHING_EXPIRED):
        waiting = completed_sweep(
            status=status, reason="x" if status == SweepStatus.FAILED else None
        )
        with pytest.raises(CertificateError, match="completed sweeps only"):
            build_sweep_certificate(waiting, issuer="x", issued_at=FINISHED)


def test_issuer_writes_signed_json_and_both_pages_with_the_deletion_keys(
    issued: Path, store: KeyStore
) -> None:
    assert issued.name == "sweep-shop-202611300200.json"
    assert {p.name for p in issued.parent.iterdir()} == {
        "sweep-shop-202611300200.json",
        "sweep-shop-202611300200.nl.html",
        "sweep-shop-202611300200.en.html",
    }
    # The same key store and signature format as deletion certificates.
    result = verify_sweep_certificate(issued.read_bytes(), store.public_keys())
    assert result.kind == "sweep"
    assert result.kid in store.public_keys()
    document = json.loads(issued.read_text())
    assert set(document) == {"certificate", "signature"}
    assert document["signature"]["alg"] == "EdDSA"
    assert document["certificate"]["system"]["title"] == "Webwinkel (bestellingen)"
    assert document["certificate"]["issued_at"] == FINISHED.isoformat()


def test_one_changed_count_fails(issued: Path, store: KeyStore) -> None:
    signed = issued.read_bytes()
    tampered = signed.replace(b'"deleted": 9', b'"deleted": 90', 1)
    assert tampered != signed
    with pytest.raises(CertificateError, match="changed after signing"):
        verify_sweep_certificate(tampered, store.public_keys())


def test_flipping_any_single_byte_fails(issued: Path, store: KeyStore) -> None:
    signed, public = issued.read_bytes(), store.public_keys()
    for position in range(len(signed)):
        damaged = bytearray(signed)
        damaged[position] ^= 0x01
        with pytest.raises(CertificateError) as info:
            verify_any_certificate(bytes(damaged), public)
        assert str(info.value), f"empty message at byte {position}"


def test_kinds_are_not_confused(issued: Path, store: KeyStore, tmp_path: Path) -> None:
    """A sweep certificate is no deletion certificate, and a deletion certificate is no sweep's;
    `verify_any_certificate` takes both."""
    from tests.orchestrator.test_certificate import SALT, _state

    public = store.public_keys()
    with pytest.raises(CertificateError, match="lacks required fields"):
        verify_certificate(issued.read_bytes(), public)
    kid, key = store.active()
    deletion = dump_signed(
        sign_certificate(build_certificate(_state(), salt=SALT, issuer="x"), key, kid)
    )
    with pytest.raises(CertificateError, match="lacks required fields"):
        verify_sweep_certificate(deletion, public)
    assert verify_any_certificate(deletion, public).kind == "deletion"
    assert verify_any_certificate(issued.read_bytes(), public).kind == "sweep"


@pytest.mark.parametrize("language", ["nl", "en"])
def test_pages_state_the_counts_dates_written_out_and_the_contact(
    issued: Path, language: str
) -> None:
    page = issued.with_suffix(f".{language}.html").read_text(encoding="utf-8")
    text = _text(page)
    assert f'<html lang="{language}">' in page
    assert 'data-collection="orders"' in page
    assert "privacy@webwinkel.example" in text
    assert "Webwinkel (bestellingen)" in text
    expected = {
        "nl": [
            "30 november 2026",
            "30 november 2024",
            "2 jaar na de laatste activiteit",
            "180 dagen na het aanmaken",
            "31 december 2031",
            "artikel 52 AWR",
        ],
        "en": [
            "30 November 2026",
            "30 November 2024",
            "2 years after the last activity",
            "180 days after creation",
            "31 December 2031",
            "Article 17(3)(b) GDPR",
        ],
    }[language]
    for words in expected:
        assert words in text, words


def test_dutch_page_is_fully_dutch(issued: Path) -> None:
    """No engine words or English labels reach a Dutch reader (the list of issue 14)."""
    text = _text(issued.with_suffix(".nl.html").read_text(encoding="utf-8"))
    assert _english(text) == []
    assert "opslagbeperking" in text


def test_informal_tone_and_a_sweep_without_approval() -> None:
    """`controller.tone: je` addresses the reader informally; a sweep the register lets run
    without approval says so instead of leaving the approver blank."""
    body = build_sweep_certificate(
        completed_sweep(approved_by=None, approved_at=None), issuer="x", issued_at=FINISHED
    )
    informal = CONTROLLER.model_copy(update={"tone": "je"})
    text = _text(render_sweep_html(body, "nl", informal))
    assert "Hoe controleer je dit certificaat?" in text
    assert "niet nodig" in text


def test_dsr_verify_accepts_a_sweep_certificate_and_rejects_a_flipped_byte(
    issued: Path, store: KeyStore, tmp_path: Path
) -> None:
    runner = CliRunner()
    ok = runner.invoke(verify, [str(issued), "--dir", str(store.root)])
    assert ok.exit_code == 0, ok.output
    assert "valid: sweep certificate for sweep sweep-shop-202611300200 (system shop)" in ok.output
    damaged = bytearray(issued.read_bytes())
    position = damaged.index(b'"deleted": 9') + len(b'"deleted": ')
    damaged[position] ^= 0x01  # 9 -> 8
    flipped = tmp_path / "flipped.json"
    flipped.write_bytes(bytes(damaged))
    bad = runner.invoke(verify, [str(flipped), "--dir", str(store.root)])
    assert bad.exit_code != 0
    assert "invalid" in bad.output and "changed after signing" in bad.output


def test_for_register_names_the_system_and_says_the_duty_in_the_documents_language(
    tmp_path: Path, store: KeyStore
) -> None:
    """The register gives the system's title and the duty's reason in both languages: the Dutch
    page says why records were kept in Dutch, not in the connector's English."""
    from orchestrator.artifacts.register_export import load_for_export
    from orchestrator.runtime.demo import sql_register_path

    register = load_for_export(sql_register_path(), {})
    issuer = SweepCertificateIssuer.for_register(store.root, "Demo Webwinkel B.V.", register)
    kept = RetainedItem(
        collection="orders",
        count=3,
        legal_basis="Art. 52 AWR; Art. 2:10 BW",
        reason="the order administration is part of the fiscal records",
        until=date(2031, 12, 31),
    )
    path = issuer.issue(completed_sweep(system="orders", retained=[kept]), tmp_path / "sweeps")
    dutch = _text(path.with_suffix(".nl.html").read_text(encoding="utf-8"))
    assert "Orderadministratie" in dutch
    assert "de orderadministratie hoort bij de fiscale administratie" in dutch
    assert "in het Engels" not in dutch
    assert _english(dutch) == []
    english = _text(path.with_suffix(".en.html").read_text(encoding="utf-8"))
    assert "the order administration is part of the fiscal records" in english


@pytest.mark.browser
def test_pages_render_in_chromium_and_are_saved_as_screenshots(issued: Path) -> None:
    """Both pages as a reader sees them: the counts table and the kept records visible, dates
    written out, no identifier; screenshots in test-artifacts/documents/."""
    from tests.browser import artifacts_dir, chromium

    out = artifacts_dir() / "documents"
    out.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for language, until in (("nl", "31 december 2031"), ("en", "31 December 2031")):
            page.goto(issued.with_suffix(f".{language}.html").resolve().as_uri())
            assert page.locator("h1").first.is_visible()
            orders = page.locator('tr[data-collection="orders"]')
            assert orders.is_visible()
            assert orders.locator("[data-deleted]").inner_text() == "9"
            assert orders.locator("[data-kept]").inner_text() == "3"
            assert until in page.locator("[data-retained]").inner_text()
            assert LEAKED_EMAIL not in page.locator("body").inner_text()
            shot = out / f"sweep_certificate-{language}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000, language
    assert errors == []
