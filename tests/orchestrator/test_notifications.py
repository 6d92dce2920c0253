"""Art. 19 GDPR: recipients are told of a rectification, erasure or restriction, each once, and
the subject is told who they are on request (`orchestrator.artifacts.notifications`)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.artifacts import letters
from orchestrator.artifacts.delivery import DeliveryError, SmtpServer
from orchestrator.artifacts.notifications import (
    Ledger,
    NotificationError,
    Notifier,
    RecipientNotice,
    add_to_result,
    complete,
    open_tasks,
    render_notice,
    select,
)
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import (
    Counts,
    FieldChange,
    OutcomeStatus,
    RequestStatus,
    RequestSubmitted,
    RequestType,
    SystemProgress,
)
from schemas.register import parse_register
from tests import factories
from tests.orchestrator.test_documents import _text
from tests.orchestrator.test_language import ENGLISH

EMAIL = "fatima.elamrani@example.nl"
NOW = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)
CARRIER = "privacy@bezorger.example"
_AGREEMENT = {"signed_on": "2024-03-01", "reference": "DPA archive #12"}


def system_entry(name: str, processor: str | None = None) -> dict[str, object]:
    """A register entry for a system (tests/e2e/test_recipients.py uses it too)."""
    system: dict[str, object] = {
        "name": name,
        "title": f"Systeem {name.upper()}",
        "kind": "other",
        "connector": "memory",
        "data_categories": ["contactgegevens"],
        "purposes": ["klantenservice"],
        "legal_basis": ["contract"],
        "profiling": "none",
        "retention": "1 jaar",
    }
    if processor:
        system["processor"] = {"name": processor, "agreement": _AGREEMENT}
    return system


def recipient_entry(
    name: str, category: str, systems: list[str], **notify: str
) -> dict[str, object]:
    """A register entry for a recipient, told as `notify` says."""
    entry: dict[str, object] = {
        "name": name,
        "category": category,
        "purpose": "levering",
        "data_categories": ["naam en adres"],
        "systems": systems,
    }
    if notify:
        entry["notify"] = notify
    return entry


REGISTER = parse_register(
    {
        "controller": {"name": "Webwinkel B.V.", "contact": "privacy@webwinkel.example"},
        "systems": [
            system_entry("crm", "HubSpot"),
            system_entry("shop"),
            system_entry("mailing", "ActiveCampaign"),
            system_entry("partner"),
        ],
        "recipients": [
            recipient_entry("Bezorger B.V.", "carrier", ["shop"], email=CARRIER),
            recipient_entry(
                "Belastingdienst", "tax_authority", [], instructions="Brief aan de inspecteur"
            ),
            recipient_entry("Zusterbedrijf B.V.", "group_company", ["crm"], system="partner"),
            recipient_entry("Accountant", "accountant", ["mailing"]),
        ],
    }
)


def _state(
    kind: RequestType = RequestType.ERASURE,
    status: RequestStatus = RequestStatus.COMPLETED,
    *,
    language: str = "nl",
    systems: dict[str, SystemProgress] | None = None,
    **fields: object,
) -> RequestState:
    plain = factories.request("req-19", EMAIL, received_at=NOW, requested_by="web-form")
    changes = None
    if kind == RequestType.RECTIFICATION:
        changes = [
            FieldChange(field="city", value="Leiden"),
            FieldChange(field="phone", value="+31612345678", system="crm"),
        ]
    request = RequestSubmitted.model_validate(
        plain.model_dump() | {"type": kind, "language": language, "changes": changes, **fields}
    )
    done = SystemProgress(status=OutcomeStatus.COMPLETED, counts=Counts(deleted=1), updated_at=NOW)
    return RequestState(
        request_id="req-19",
        request=request,
        status=status,
        finished_at=NOW,
        systems=systems or {name: done for name in ("crm", "shop", "mailing", "partner")},
    )


def _by_name(notices: list[RecipientNotice]) -> dict[str, RecipientNotice]:
    return {n.name: n for n in notices}


# -- who is told (selection) --------------------------------------------------------------------


def test_art_19_selection_names_processors_and_register_recipients() -> None:
    found = _by_name(select(_state(), REGISTER))
    assert set(found) == {
        "HubSpot",
        "ActiveCampaign",
        "Bezorger B.V.",
        "Belastingdienst",
        "Zusterbedrijf B.V.",
        "Accountant",
    }
    assert found["HubSpot"].way == "request" and found["HubSpot"].status == "notified"
    assert found["HubSpot"].systems == ["crm"] and found["HubSpot"].notified_at == NOW
    assert (
        found["Zusterbedrijf B.V."].way == "system"
        and found["Zusterbedrijf B.V."].status == "notified"
    )
    assert found["Bezorger B.V."].way == "email" and found["Bezorger B.V."].email == CARRIER
    assert found["Belastingdienst"].way == "manual"
    assert found["Belastingdienst"].instructions == "Brief aan de inspecteur"
    assert found["Accountant"].way == "manual" and found["Accountant"].instructions


@pytest.mark.parametrize(
    "kind", [RequestType.ACCESS, RequestType.OBJECTION, RequestType.PORTABILITY]
)
def test_art_19_access_and_objection_notify_nobody(kind: RequestType) -> None:
    assert select(_state(kind), REGISTER) == []


def test_art_19_refused_request_notifies_nobody() -> None:
    assert select(_state(status=RequestStatus.REFUSED), REGISTER) == []


def test_art_19_only_recipients_of_systems_that_acted() -> None:
    systems = {
        "crm": SystemProgress(status=OutcomeStatus.NOT_FOUND),
        "shop": SystemProgress(status=OutcomeStatus.COMPLETED, counts=Counts(deleted=2)),
        "mailing": SystemProgress(status=OutcomeStatus.FAILED, reason="server error"),
        # Kept everything: nothing was erased there, so nothing to communicate.
        "partner": SystemProgress(status=OutcomeStatus.RETAINED, counts=Counts(retained=3)),
    }
    found = _by_name(select(_state(systems=systems), REGISTER))
    # Tied to no system: told whenever anything was done.
    assert set(found) == {"Bezorger B.V.", "Belastingdienst"}


def test_art_19_recipient_told_by_a_system_that_did_not_act_is_a_manual_task() -> None:
    done = SystemProgress(status=OutcomeStatus.COMPLETED, counts=Counts(deleted=1))
    systems = {"crm": done, "partner": SystemProgress(status=OutcomeStatus.FAILED)}
    sister = _by_name(select(_state(systems=systems), REGISTER))["Zusterbedrijf B.V."]
    assert sister.way == "manual" and sister.status == "to_notify"
    assert sister.instructions and "partner" in sister.instructions


def test_art_19_partly_retained_system_counts_as_acted() -> None:
    systems = {
        "crm": SystemProgress(status=OutcomeStatus.RETAINED, counts=Counts(deleted=1, retained=1))
    }
    assert "HubSpot" in _by_name(select(_state(systems=systems), REGISTER))


# -- the notice -----------------------------------------------------------------------------------


def test_art_19_rectification_notice_names_the_change() -> None:
    state = _state(RequestType.RECTIFICATION)
    carrier = _by_name(select(state, REGISTER))["Bezorger B.V."]
    page = render_notice(state, REGISTER, carrier, now=NOW)
    rows = dict(re.findall(r'<tr data-field="(\w+)"><td>\w+</td><td>(.*?)</td></tr>', page))
    # The carrier receives the shop's data: the change meant for the CRM alone is not its business.
    assert rows == {"city": "Leiden"}
    text = _text(page)
    assert "rectificatie (artikel 16 AVG)" in text and "e-mailadres" in text and EMAIL in text
    assert "corrigeer ze dan ook bij u" in text and "20 februari 2026" in text
    assert not [w for w in ENGLISH if re.search(rf"\b{re.escape(w)}\b", text)]


def test_art_19_rectification_notice_for_a_recipient_of_every_system_has_every_change() -> None:
    state = _state(RequestType.RECTIFICATION, language="en")
    tax = _by_name(select(state, REGISTER))["Belastingdienst"]
    page = render_notice(state, REGISTER, tax, now=NOW)
    assert 'data-field="city"' in page and 'data-field="phone"' in page and "+31612345678" in page
    assert "rectification (Article 16 GDPR)" in _text(page)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (RequestType.ERASURE, "persoonsgegevens van de betrokkene gewist"),
        (RequestType.RESTRICTION, "worden bewaard, maar niet verder verwerkt"),
    ],
)
def test_art_19_notice_says_what_was_done(kind: RequestType, words: str) -> None:
    state = _state(kind)
    notice = _by_name(select(state, REGISTER))["Bezorger B.V."]
    page = render_notice(state, REGISTER, notice, now=NOW)
    assert words in _text(page) and "data-changes" not in page


# -- sending, exactly once ------------------------------------------------------------------------


class _Server(SmtpServer):
    """An SMTP server that records what it would send, failing the first `failures` times."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__("smtp.invalid", 25, "privacy@webwinkel.example", starttls=False)
        object.__setattr__(self, "sent", [])
        object.__setattr__(self, "failures", [failures])

    def send(self, messages):  # type: ignore[no-untyped-def,override]
        if self.failures[0]:  # type: ignore[attr-defined]
            self.failures[0] -= 1  # type: ignore[attr-defined]
            raise DeliveryError("SMTP SMTPServerDisconnected")
        self.sent.extend(messages)  # type: ignore[attr-defined]


def _notify(tmp_path: Path, server: SmtpServer | None, state: RequestState | None = None):  # type: ignore[no-untyped-def]
    notifier = Notifier(tmp_path, server, attempts=3, wait_seconds=0)
    return _by_name(asyncio.run(notifier.notify(state or _state(), REGISTER, now=NOW)))


def test_art_19_email_recipient_is_mailed_once_even_when_finished_again(tmp_path: Path) -> None:
    server = _Server()
    first = _notify(tmp_path, server)
    assert first["Bezorger B.V."].status == "notified" and first["Bezorger B.V."].notified_at
    [message] = server.sent  # type: ignore[attr-defined]
    assert message["To"] == CARRIER and "req-19" in message["Subject"]
    assert "wissing van persoonsgegevens" in message["Subject"]
    assert EMAIL in message.get_content()
    again = _notify(tmp_path, server)  # a restart re-finishes the request
    assert len(server.sent) == 1  # type: ignore[attr-defined]
    assert again["Bezorger B.V."] == first["Bezorger B.V."]


def test_art_19_failing_email_is_retried(tmp_path: Path) -> None:
    server = _Server(failures=2)
    found = _notify(tmp_path, server)
    assert found["Bezorger B.V."].status == "notified" and len(server.sent) == 1  # type: ignore[attr-defined]


def test_art_19_email_still_failing_becomes_a_manual_task_without_personal_data_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    found = _notify(tmp_path, _Server(failures=9))
    carrier = found["Bezorger B.V."]
    assert carrier.status == "to_notify" and carrier.instructions
    assert CARRIER in carrier.instructions and "SMTPServerDisconnected" in carrier.instructions
    assert EMAIL not in caplog.text and CARRIER not in caplog.text
    tasks = dict(open_tasks(tmp_path))
    assert "req-19/recipient:Bezorger B.V." in tasks


def test_art_19_without_smtp_email_recipients_become_manual_tasks(tmp_path: Path) -> None:
    carrier = _notify(tmp_path, None)["Bezorger B.V."]
    assert carrier.status == "to_notify" and carrier.instructions
    assert f"write to {CARRIER}" in carrier.instructions


def test_art_19_interrupted_send_is_not_repeated_but_checked_by_hand(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    notices = select(_state(), REGISTER)
    for notice in notices:
        if notice.way == "email":
            notice.status = "sending"  # the worker died between marking and confirming
    ledger.save("req-19", notices)
    server = _Server()
    carrier = _notify(tmp_path, server)["Bezorger B.V."]
    assert server.sent == []  # type: ignore[attr-defined]
    assert carrier.status == "to_notify" and "may have been sent" in (carrier.instructions or "")


def test_art_19_unreadable_ledger_is_an_error_naming_no_personal_data(tmp_path: Path) -> None:
    Ledger(tmp_path).path("req-19").parent.mkdir(parents=True)
    Ledger(tmp_path).path("req-19").write_text("{not json")
    with pytest.raises(NotificationError, match="req-19") as error:
        _notify(tmp_path, _Server())
    assert EMAIL not in str(error.value)


def test_art_19_result_lists_recipients_and_officer_completes_a_task(tmp_path: Path) -> None:
    _notify(tmp_path, None)
    result = tmp_path / "results" / "req-19.json"
    result.parent.mkdir()
    result.write_text(json.dumps({"request_id": "req-19"}))
    add_to_result(result, Ledger(tmp_path).load("req-19").values())
    listed = {r["name"]: r for r in json.loads(result.read_text())["recipients"]}
    assert listed["HubSpot"]["way"] == "request" and listed["HubSpot"]["status"] == "notified"
    assert listed["Belastingdienst"]["status"] == "to_notify"
    with pytest.raises(NotificationError, match="give evidence"):
        complete(tmp_path, "req-19", "Belastingdienst", " ")
    done = complete(tmp_path, "req-19", "Belastingdienst", "brief verstuurd", completed_by="fg-1")
    assert done.status == "notified" and done.completed_by == "fg-1"
    listed = {r["name"]: r for r in json.loads(result.read_text())["recipients"]}
    assert listed["Belastingdienst"]["status"] == "notified"
    assert listed["Belastingdienst"]["evidence"] == "brief verstuurd"
    assert "req-19/recipient:Belastingdienst" not in dict(open_tasks(tmp_path))
    with pytest.raises(NotificationError, match="not waiting"):
        complete(tmp_path, "req-19", "Belastingdienst", "again")
    with pytest.raises(NotificationError, match="unknown request or recipient"):
        complete(tmp_path, "req-19", "Nobody", "x")


# -- the subject told who the recipients are (Art. 19, second sentence) ---------------------------


#: The carrier's category and the section's heading, per language.
_NAMED = {
    "nl": ("vervoerder of bezorgdienst", "Ontvangers van uw gegevens"),
    "en": ("carrier or delivery service", "Recipients of your data"),
}


@pytest.mark.parametrize("language", sorted(_NAMED))
def test_art_19_subject_told_recipients_on_request(language: str) -> None:
    category, heading = _NAMED[language]
    state = _state(RequestType.RECTIFICATION, language=language, recipients_requested=True)
    page = letters.render("confirmation", state, REGISTER, now=NOW)
    rows = dict(
        re.findall(
            r'<tr data-recipient="([^"]+)" data-category="\w+"><td>[^<]*</td><td>([^<]*)</td>', page
        )
    )
    assert rows["Bezorger B.V."] == category
    assert set(rows) == {n.name for n in select(state, REGISTER)}
    text = _text(page)
    assert heading in text and CARRIER not in page and EMAIL not in page
    if language == "nl":
        assert not [w for w in ENGLISH if re.search(rf"\b{re.escape(w)}\b", text)]


def test_art_19_completed_erasure_gets_a_recipients_letter_only_when_asked() -> None:
    assert letters.documents_for(_state()) == []
    asked = _state(recipients_requested=True)
    assert letters.documents_for(asked) == ["recipients"]
    page = letters.render("recipients", asked, REGISTER, now=NOW)
    assert 'data-document="recipients"' in page and 'data-recipient="HubSpot"' in page
    assert "verwerker" in _text(page)


def test_art_19_letter_says_so_when_there_was_nobody_to_tell() -> None:
    register = parse_register({"systems": [system_entry("shop")]})
    state = _state(
        RequestType.RESTRICTION,
        systems={"shop": SystemProgress(status=OutcomeStatus.COMPLETED)},
        recipients_requested=True,
    )
    page = letters.render("confirmation", state, register, now=NOW)
    assert "aan geen enkele ontvanger verstrekt" in _text(page)


def test_art_19_letter_without_the_question_names_no_recipients() -> None:
    page = letters.render("confirmation", _state(RequestType.RECTIFICATION), REGISTER, now=NOW)
    assert "data-recipients" not in page


def test_art_19_dsr_tasks_complete_records_a_recipient_task(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from orchestrator.cli.tasks import tasks

    _notify(tmp_path, None)
    task = "req-19/recipient:Belastingdienst"
    args = ["complete", task, "--data-dir", str(tmp_path), "--evidence", "brief verstuurd"]
    done = CliRunner().invoke(tasks, args)
    assert done.exit_code == 0, done.output
    assert Ledger(tmp_path).load("req-19")["Belastingdienst"].status == "notified"
    again = CliRunner().invoke(tasks, args)
    assert again.exit_code != 0 and "not waiting" in again.output


def test_art_19_recipients_letter_follows_the_informal_tone() -> None:
    data = REGISTER.model_dump(mode="json", exclude_none=True)
    data["controller"]["tone"] = "je"
    register = parse_register(data)
    state = _state(recipients_requested=True)
    text = _text(letters.render("recipients", state, register, now=NOW))
    assert "Ontvangers van je gegevens" in text and "Je vroeg ons" in text
    assert not re.search(r"\b[Uu]w?\b", text)
