"""Letters to the subject: refusal, what is missing, confirmation, extension notice."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from orchestrator.artifacts import letters as documents
from orchestrator.artifacts.export import AP_URL
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import (
    Counts,
    DeadlineExtended,
    Evidence,
    FieldChange,
    OutcomeStatus,
    RequestStatus,
    RequestSubmitted,
    RequestType,
    SystemProgress,
)
from schemas.register import parse_register
from tests import factories

RECEIVED = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)
EMAIL = "fatima.elamrani@example.nl"

REGISTER = parse_register(
    {
        "controller": {"name": "Webwinkel B.V.", "dpo": "fg@webwinkel.example"},
        "systems": [
            {
                "name": name,
                "title": title,
                "kind": "other",
                "connector": "memory",
                "data_categories": ["contact details"],
                "purposes": ["service"],
                "legal_basis": ["contract"],
                "profiling": "none",
                "retention": "1 year",
            }
            for name, title in [
                ("crm", "HubSpot CRM"),
                ("mailing", "ActiveCampaign"),
                ("archive", "Paper archive"),
            ]
        ],
    }
)


def _state(
    kind: RequestType, status: RequestStatus, language: str = "nl", **extra: object
) -> RequestState:
    plain = factories.request("req-77", EMAIL, received_at=RECEIVED, requested_by="web-form")
    rectify = kind == RequestType.RECTIFICATION
    changes = [FieldChange(field="city", value="Leiden")] if rectify else None
    request = RequestSubmitted.model_validate(
        plain.model_dump() | {"type": kind, "language": language, "changes": changes}
    )
    values: dict[str, object] = {
        "request_id": "req-77",
        "request": request,
        "status": status,
        "deadline": datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
        "finished_at": NOW,
        "systems": {
            "crm": SystemProgress(status=OutcomeStatus.COMPLETED, counts=Counts(updated=2)),
            "mailing": SystemProgress(status=OutcomeStatus.NOT_FOUND),
            "archive": SystemProgress(
                status=OutcomeStatus.COMPLETED,
                evidence=[Evidence(kind="manual_confirmation", value="corrected by hand")],
            ),
        },
    }
    return RequestState(**(values | extra))  # type: ignore[arg-type]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


@pytest.mark.parametrize(
    ("language", "heading", "complaint"),
    [
        ("nl", "Uw verzoek is geweigerd", "Autoriteit Persoonsgegevens"),
        ("en", "Your request has been refused", "Autoriteit Persoonsgegevens"),
    ],
)
def test_refusal_letter_gives_the_reason_in_the_request_language(
    language: str, heading: str, complaint: str
) -> None:
    reason = "identity not verified before the deadline"
    state = _state(RequestType.ERASURE, RequestStatus.REFUSED, language, reason=reason, systems={})
    assert documents.documents_for(state) == ["refusal"]
    page = documents.render("refusal", state, REGISTER, now=NOW)
    text = _text(page)
    assert f'lang="{language}"' in page
    assert heading in text and reason in text and complaint in text
    assert AP_URL in page and "req-77" in text and "Webwinkel B.V." in text
    assert EMAIL not in page


def test_partial_result_says_per_system_what_is_missing_and_why() -> None:
    systems = {
        "crm": SystemProgress(status=OutcomeStatus.COMPLETED, counts=Counts(found=4)),
        "mailing": SystemProgress(
            status=OutcomeStatus.FAILED, reason="credentials rejected by the vendor API"
        ),
        "archive": SystemProgress(
            status=OutcomeStatus.MANUAL_ACTION_REQUIRED,
            instructions="Search cabinet 3 for the subject's folder (staff only)",
        ),
    }
    state = _state(RequestType.ACCESS, RequestStatus.PARTIALLY_COMPLETED, "en", systems=systems)
    assert documents.documents_for(state) == ["missing"]
    page = documents.render("missing", state, REGISTER, now=NOW)
    rows = dict(re.findall(r'<tr data-system="(\w+)">(.*?)</tr>', page, re.S))
    assert set(rows) == {"crm", "mailing", "archive"}
    assert "4 records found" in rows["crm"] and "the request in this system" not in rows["crm"]
    assert "the request in this system" in rows["mailing"]
    assert (
        'data-reason-code="credentials_rejected"' in rows["mailing"]
    )  # translated, not the engine text
    assert "by hand" in rows["archive"]
    assert "cabinet" not in page  # staff instructions are not for the subject
    assert "Dutch Data Protection Authority" in _text(page)


@pytest.mark.parametrize(
    "kind",
    [
        RequestType.RECTIFICATION,
        RequestType.RESTRICTION,
        RequestType.OBJECTION,
        RequestType.CONSENT_WITHDRAWAL,
    ],
)
def test_confirmation_lists_what_each_system_did(kind: RequestType) -> None:
    state = _state(kind, RequestStatus.COMPLETED)
    assert documents.documents_for(state) == ["confirmation"]
    page = documents.render("confirmation", state, REGISTER, now=NOW)
    text = _text(page)
    assert "Bevestiging: uw verzoek is uitgevoerd" in text
    rows = dict(re.findall(r'<tr data-system="(\w+)">(.*?)</tr>', page, re.S))
    assert "2 gegevens gecorrigeerd" in rows["crm"]
    assert "Geen gegevens over u gevonden" in rows["mailing"]
    assert "Met de hand uitgevoerd" in rows["archive"]
    assert "HubSpot CRM" in text and EMAIL not in page


def test_completed_access_and_erasure_need_no_letter() -> None:
    for kind in (RequestType.ACCESS, RequestType.ERASURE):
        assert documents.documents_for(_state(kind, RequestStatus.COMPLETED)) == []


def test_extension_notice_gives_new_deadline_and_reason() -> None:
    original = datetime(2026, 2, 28, 23, 59, tzinfo=UTC)
    extension = DeadlineExtended(
        request_id="req-77",
        months=2,
        reason="many systems and a large volume of records",
        extended_at=NOW,
    )
    state = _state(
        RequestType.ACCESS,
        RequestStatus.IN_PROGRESS,
        "en",
        original_deadline=original,
        deadline=original + timedelta(days=59),
        extension=extension,
        finished_at=None,
    )
    text = _text(documents.render("extension", state, REGISTER, now=NOW))
    assert "The deadline for your request has been extended" in text
    assert "many systems and a large volume of records" in text
    assert "28 February 2026" in text and "28 April 2026" in text and "Article 12(3)" in text


def test_write_puts_the_letter_in_the_request_language(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = _state(RequestType.OBJECTION, RequestStatus.COMPLETED, "en")
    path = documents.write("confirmation", state, REGISTER, tmp_path, now=NOW)
    assert path == tmp_path / "req-77" / "confirmation.en.html"
    assert "Confirmation: your request has been carried out" in path.read_text()
