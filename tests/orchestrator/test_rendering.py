"""The subject's documents: the templates they come from, and the pages in a real browser.

Every document is a Jinja2 template with its texts beside it; values from requests, the
register and connectors are escaped. In the browser (headless Debian Chromium) each page is
opened from disk as the subject would open it, checked for what must be visible, and saved as a
screenshot in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest

from orchestrator.artifacts import letters as documents
from orchestrator.artifacts.certificate import CertificateIssuer, build_certificate, render_html
from orchestrator.artifacts.export import write_export
from orchestrator.artifacts.render import LANGUAGES, environment, texts
from orchestrator.artifacts.report import render_report
from orchestrator.lifecycle.reducer import submit
from schemas.events import (
    Counts,
    DecisionRecorded,
    Evidence,
    OutcomeStatus,
    RequestStatus,
    RequestType,
    SystemProgress,
)
from schemas.register import parse_register
from tests.browser import artifacts_dir, chromium
from tests.orchestrator import test_certificate, test_documents, test_export, test_lifecycle

HOSTILE = '<script>alert("x")</script>'
EXPLANATION = "U vroeg dit jaar al elf keer om inzage in dezelfde gegevens."
#: What the ID-request letter must show (the copy's blacked-out parts and the KopieID app).
ID_REQUEST_WORDS = {
    "nl": ("KopieID", "BSN", "MRZ", "pasfoto"),
    "en": ("KopieID", "BSN", "MRZ", "passport photo"),
}
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"


@pytest.mark.parametrize("document", ["report", "certificate", "letter"])
def test_every_document_has_its_texts_in_each_language(document: str) -> None:
    by_language = texts(document)  # checks that the languages have the same texts
    assert set(by_language) == set(LANGUAGES)
    assert all(by_language[language] for language in LANGUAGES)


def test_the_environment_escapes_and_fails_loudly_on_a_missing_text() -> None:
    template = environment().from_string("<p>{{ value }}</p>")
    assert template.render(value=HOSTILE) == f"<p>{ESCAPED}</p>"
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string("{{ t.nowhere }}").render(t={})


def _hostile_register() -> dict[str, object]:
    """The test export register with a script in a system's title and purposes."""
    register = dict(test_export.REGISTER)
    systems = [dict(s) for s in test_export.REGISTER["systems"]]
    systems[0] |= {"title": HOSTILE, "purposes": [HOSTILE]}
    return register | {"systems": systems}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_hostile_value_is_escaped_in_every_document(language: str) -> None:
    register = parse_register(_hostile_register())
    state = test_export.make_state(language)
    state.systems["crm"] = SystemProgress(status=OutcomeStatus.FAILED, reason=HOSTILE)
    report = render_report(
        state, register.systems, {}, language=language, generated_at=test_export.NOW
    )
    erased = test_certificate._state()
    erased.systems["crm"] = erased.systems["crm"].model_copy(
        update={"evidence": [Evidence(kind="vendor_job_id", value=HOSTILE)]}
    )
    body = build_certificate(
        erased, salt=test_certificate.SALT, issuer=HOSTILE, register_titles={"crm": HOSTILE}
    )
    certificate = render_html(body, language)  # type: ignore[arg-type]
    refused = test_documents._state(
        RequestType.ERASURE, RequestStatus.REFUSED, language, reason=HOSTILE, systems={}
    )
    missing = state.model_copy(update={"status": RequestStatus.PARTIALLY_COMPLETED})
    letters = [
        documents.render("refusal", refused, register, now=test_documents.NOW),
        documents.render("missing", missing, register, now=test_documents.NOW),
    ]
    for page in (report, certificate, *letters):
        assert "<script" not in page
        assert ESCAPED in page


def _pages(tmp_path: Path) -> dict[str, Path]:
    """Every kind of document the product hands out, written as the orchestrator writes them."""
    pages: dict[str, Path] = {}
    export = tmp_path / "export.zip"
    write_export(
        export,
        test_export.make_state("nl"),
        test_export.register(),
        test_export.sample_records,
        generated_at=test_export.NOW,
    )
    with zipfile.ZipFile(export) as archive:
        report = tmp_path / "report.html"
        report.write_bytes(archive.read("report.html"))
    pages["report-nl"] = report

    issuer = CertificateIssuer(tmp_path / "keys", "Voorbeeld B.V.", {"crm": "HubSpot CRM"})
    certificate = issuer.issue(test_certificate._state(), tmp_path / "certificates")
    pages["certificate-nl"] = certificate.with_suffix(".nl.html")
    pages["certificate-en"] = certificate.with_suffix(".en.html")

    register = test_documents.REGISTER
    now = test_documents.NOW
    refused = test_documents._state(
        RequestType.ERASURE,
        RequestStatus.REFUSED,
        reason="identity not verified before the deadline",
        systems={},
    )
    confirmed = test_documents._state(RequestType.OBJECTION, RequestStatus.COMPLETED, "en")
    partial = test_documents._state(
        RequestType.ACCESS,
        RequestStatus.PARTIALLY_COMPLETED,
        systems={
            "crm": SystemProgress(status=OutcomeStatus.COMPLETED, counts=Counts(found=4)),
            "mailing": SystemProgress(
                status=OutcomeStatus.FAILED, reason="credentials rejected by the vendor API"
            ),
        },
    )
    for language in LANGUAGES:  # an unverified erasure: the ID request at once
        waiting, _ = submit(
            None, test_lifecycle.request(False, language=language), test_lifecycle.ctx()
        )
        assert waiting is not None
        pages[f"id_request-{language}"] = documents.write(
            "id_request", waiting, register, tmp_path / f"letters-{language}", now=now
        )
    refused_by_officer = test_documents._state(
        RequestType.ACCESS,
        RequestStatus.REFUSED,
        systems={},
        decisions=[
            DecisionRecorded(
                request_id="req-77",
                decision="refuse",  # type: ignore[arg-type]
                reason_code="excessive",  # type: ignore[arg-type]
                explanation=EXPLANATION,
                decided_by="officer-42",
                decided_at=now - timedelta(hours=1),
            )
        ],
    )
    pages["refusal-excessive-nl"] = documents.write(
        "refusal", refused_by_officer, register, tmp_path / "letters-decided", now=now
    )
    for name, kind, state in (
        ("refusal-nl", "refusal", refused),
        ("confirmation-en", "confirmation", confirmed),
        ("missing-nl", "missing", partial),
    ):
        pages[name] = documents.write(kind, state, register, tmp_path / "letters", now=now)  # type: ignore[arg-type]
    return pages


@pytest.mark.browser
def test_documents_render_in_chromium_and_are_saved_as_screenshots(tmp_path: Path) -> None:
    pages = _pages(tmp_path)
    out = artifacts_dir() / "documents"
    out.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for name, path in pages.items():
            page.goto(path.resolve().as_uri())
            heading = page.locator("h1").first
            assert heading.is_visible(), name
            assert heading.inner_text().strip(), name
            if name.startswith("report"):
                # The summary first; the rights and remedies once, not per system.
                assert page.locator("[data-summary]").is_visible()
                assert page.locator("[data-rights]").count() == 1
                assert page.locator("[data-remedies]").count() == 1
                # Every Art. 15(1) item (a)-(h), visible, for every system.
                for system in ("crm", "mailing", "analytics"):
                    section = page.locator(f"section#system-{system}")
                    assert section.is_visible(), system
                    for item in "abcdefgh":
                        assert section.locator(f'[data-art15="{item}"]').is_visible(), (
                            system,
                            item,
                        )
            if name.startswith("certificate"):
                body = page.locator("body").inner_text()
                assert "invoices" in body  # the retained item, kept until a date written out
                assert "31 januari 2033" in body or "31 January 2033" in body
                assert test_certificate.EMAIL.lower() not in body.lower()
            if name.startswith("id_request"):
                _check_id_request(page, name.rsplit("-", 1)[1])
            if name == "refusal-excessive-nl":
                reason = page.locator('[data-reason="refusal"][data-code="excessive"]')
                assert reason.is_visible()
                assert "buitensporig" in reason.inner_text() and EXPLANATION in reason.inner_text()
                complaint = page.locator("[data-remedies]")
                assert complaint.is_visible() and "artikel 35" in complaint.inner_text()
            shot = out / f"{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000, name  # a real rendering, not a blank page
        assert errors == []


def _check_id_request(page: Any, language: str) -> None:
    """Art. 12(6) GDPR: the ID request names the accepted methods and, for a copy of an ID
    document, that the photo, MRZ, document number and BSN are blacked out (Art. 46 UAVG: the
    BSN only where a law allows its use), with the government's KopieID app; no identifier of
    the subject."""
    heading = page.locator('h1[data-document="id_request"]')
    assert heading.is_visible()
    redact = page.locator("[data-redact]")
    assert redact.is_visible() and page.locator("[data-kopieid]").is_visible()
    shown = redact.inner_text()
    for word in ID_REQUEST_WORDS[language]:
        assert word in shown, (language, word)
    assert page.locator('[data-method="id_document"]').is_visible()
    assert page.locator("[data-destroyed]").is_visible()
    assert test_lifecycle.EMAIL not in page.locator("body").inner_text()
