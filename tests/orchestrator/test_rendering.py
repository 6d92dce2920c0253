"""The subject's documents, rendered in a real browser (headless Debian Chromium).

Each page is opened from disk as the subject would open it, checked for what must be visible,
and saved as a screenshot in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from orchestrator.artifacts import letters as documents
from orchestrator.artifacts.certificate import CertificateIssuer
from orchestrator.artifacts.export import write_export
from schemas.events import Counts, OutcomeStatus, RequestStatus, RequestType, SystemProgress
from tests.browser import artifacts_dir, chromium
from tests.orchestrator import test_certificate, test_documents, test_export

pytestmark = pytest.mark.browser


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
    for name, kind, state in (
        ("refusal-nl", "refusal", refused),
        ("confirmation-en", "confirmation", confirmed),
        ("missing-nl", "missing", partial),
    ):
        pages[name] = documents.write(kind, state, register, tmp_path / "letters", now=now)  # type: ignore[arg-type]
    return pages


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
                assert "invoices" in body and "2033-01-31" in body  # the retained item
                assert test_certificate.EMAIL.lower() not in body.lower()
            shot = out / f"{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000, name  # a real rendering, not a blank page
        assert errors == []
