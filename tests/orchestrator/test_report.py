"""The Art. 15 report is intelligible and truthful (issue 14): a summary first, the rights and
remedies once, per system what the register states (purposes with their bases, recipients
beyond the processors, profiling), and per collection its title, a glossary and a listing with
dates written out in the document's language. Checked in the text and in Chromium."""

from __future__ import annotations

import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import jinja2
import pytest

from orchestrator.artifacts import report as report_module
from orchestrator.artifacts.digest import LISTING_LIMIT, CollectionDigest, ExportFile
from orchestrator.artifacts.register_export import load_for_export
from orchestrator.artifacts.render import AP_COMPLAINT_URL, environment
from orchestrator.artifacts.report import render_report
from orchestrator.lifecycle.reducer import RequestState
from orchestrator.runtime.demo import register_path
from schemas.events import OutcomeStatus, RequestStatus, SystemProgress
from schemas.register import Register, parse_register
from tests import factories
from tests.browser import chromium
from tests.orchestrator.test_documents import _text

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
AGREEMENT = {"signed_on": "2024-01-15", "reference": "VO-2024-01"}
SCORING = {
    "kind": "profiling",
    "logic": {"nl": "punten voor openen en klikken", "en": "points for opens and clicks"},
    "consequences": {
        "nl": "bepaalt hoe vaak de nieuwsbrief komt",
        "en": "decides how often you get e-mail",
    },
}


def _system(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "title": name.capitalize(),
        "kind": "crm",
        "connector": "memory",
        "processor": {"name": f"{name} Ltd.", "agreement": AGREEMENT},
        "data_categories": [{"nl": "naam", "en": "name"}],
        "purposes": [
            {"name": {"nl": "klantrelatie", "en": "customer relations"}, "legal_basis": "contract"}
        ],
        "profiling": "none",
        "retention": {"nl": "2 jaar", "en": "2 years"},
        "source": "the data subject",
        **extra,
    }


#: Five systems: one profiles, one has two purposes on two bases, one feeds a carrier; the tax
#: authority is tied to no system.
REGISTER: Register = parse_register(
    {
        "controller": {
            "name": "Webwinkel B.V.",
            "contact": "privacy@webwinkel.example",
            "dpo": "fg@webwinkel.example",
        },
        "recipients": [
            {
                "name": "PostNL",
                "category": "carrier",
                "purpose": {"nl": "bezorgen", "en": "delivery"},
                "data_categories": [{"nl": "adres", "en": "address"}],
                "systems": ["orders"],
            },
            {
                "name": "Belastingdienst",
                "category": "tax_authority",
                "purpose": {"nl": "belastingcontrole", "en": "tax audit"},
                "data_categories": [{"nl": "facturen", "en": "invoices"}],
            },
        ],
        "systems": [
            _system("crm"),
            _system(
                "mailing",
                kind="mailing",
                profiling=SCORING,
                purposes=[
                    {"name": {"nl": "nieuwsbrief", "en": "newsletter"}, "legal_basis": "consent"}
                ],
            ),
            _system(
                "orders",
                kind="database",
                processor=None,
                purposes=[
                    {"name": {"nl": "leveren", "en": "delivery"}, "legal_basis": "contract"},
                    {
                        "name": {"nl": "fiscale administratie", "en": "tax records"},
                        "legal_basis": "legal_obligation",
                    },
                ],
            ),
            _system("chat", kind="chat"),
            _system("support", kind="support_desk", connector="freshdesk"),
        ],
    }
)


def _state(language: str, **status: OutcomeStatus) -> RequestState:
    request = factories.request("req-report-1", "jan@example.nl", received_at=NOW)
    progress = {s.name: SystemProgress(status=OutcomeStatus.COMPLETED) for s in REGISTER.systems}
    progress |= {name: SystemProgress(status=value) for name, value in status.items()}
    return RequestState(
        request_id=request.request_id,
        request=request.model_copy(update={"language": language}),
        status=RequestStatus.COMPLETED,
        systems=progress,
    )


def _digest(system: str, collection: str, records: list[dict[str, Any]]) -> CollectionDigest:
    digest = CollectionDigest(system, collection)
    for record in records:
        when = record.get("created_at")
        digest.add(record, date.fromisoformat(when[:10]) if when else None)
    return digest


def _files(digests: dict[str, list[CollectionDigest]]) -> dict[str, list[ExportFile]]:
    """The JSON and CSV members the write path made for these digests."""
    return {
        system: [
            ExportFile(
                f"data/{system}/{d.collection}.{ext}", "0" * 64, d.count, 1, system, d.collection
            )
            for d in found
            for ext in ("json", "csv")
        ]
        for system, found in digests.items()
    }


def _digests() -> dict[str, list[CollectionDigest]]:
    tickets = [
        {"id": i, "subject": f"Vraag {i}", "created_at": f"2025-0{1 + i % 9}-1{i % 10}T09:30:00Z"}
        for i in range(LISTING_LIMIT + 10)
    ]
    return {
        "crm": [
            _digest(
                "crm",
                "contacts",
                [{"id": 1, "email": "jan@example.nl", "created_at": "2024-11-02"}],
            )
        ],
        "orders": [
            _digest(
                "orders",
                "orders",
                [
                    {
                        "id": 7,
                        "total": 12.5,
                        "paid": True,
                        "created_at": "2023-05-04T14:05:00+00:00",
                    },
                    {"id": 8, "total": 3.0, "paid": False, "address": {"city": "Utrecht"}},
                ],
            )
        ],
        "support": [_digest("support", "tickets", tickets)],
    }


def _render(
    state: RequestState, register: Register, digests: dict[str, list[CollectionDigest]]
) -> str:
    """The report as the write path renders it, in the request's language."""
    assert state.request is not None
    return render_report(
        state,
        register.systems,
        _files(digests),
        language=state.request.language,
        generated_at=NOW,
        controller=register.controller,
        digests=digests,
        register=register,
    )


def _report(language: str, register: Register = REGISTER, **status: OutcomeStatus) -> str:
    return _render(_state(language, **status), register, _digests())


def _section(report: str, system: str) -> str:
    match = re.search(rf'<section id="system-{system}">(.*?)</section>', report, re.S)
    assert match, system
    return match.group(1)


def _profiling(report: str, system: str) -> str:
    match = re.search(
        r'<div data-profiling="([a-z_]+)">(.*?)</div></dd>', _section(report, system), re.S
    )
    assert match, system
    return f"{match.group(1)}: {_text(match.group(2))}"


# ---------------------------------------------------------------------------------------------
# Art. 15(1)(h): automated decision-making and profiling as the register states it
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_15_1_h_profiling_per_system_as_the_register_says(language: str) -> None:
    """Art. 15(1)(h) GDPR: the existence of profiling and "meaningful information about the
    logic involved, as well as the significance and the envisaged consequences"; per system from
    `System.profiling`, never one sentence for all."""
    report = _report(language)
    mailing = _profiling(report, "mailing")
    logic, consequences = SCORING["logic"][language], SCORING["consequences"][language]  # type: ignore[index]
    assert mailing.startswith("profiling:") and logic in mailing and consequences in mailing
    assert {"nl": "profilering", "en": "profiling"}[language] in mailing.split(":", 1)[1]
    for other in ("crm", "orders", "chat", "support"):
        stated = _profiling(report, other)
        assert stated.startswith("none:") and logic not in stated, other
        assert {"nl": "geen geautomatiseerde", "en": "No automated"}[language] in stated


# ---------------------------------------------------------------------------------------------
# Art. 15(1)(c): recipients, not only processors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_15_1_c_recipients_beyond_processors_are_named(language: str) -> None:
    """Art. 15(1)(c) GDPR names "the recipients or categories of recipient"; the CJEU (C-154/21,
    Österreichische Post) holds the subject may know who they are: the carrier by name and
    category under the system it receives from, the tax authority (no system) once, linked."""
    report = _report(language)
    orders = _text(_section(report, "orders"))
    carrier = {"nl": "PostNL (vervoerder: bezorgen)", "en": "PostNL (carrier: delivery)"}
    assert carrier[language] in orders
    assert "PostNL" not in _text(_section(report, "crm"))
    assert 'href="#general-recipients"' in _section(report, "crm")
    general = report.split("data-general-recipients>")[1].split("</div>")[0]
    assert "Belastingdienst" in general and report.count('data-recipient="Belastingdienst"') == 1
    assert "crm Ltd." in _text(_section(report, "crm"))  # the processor stays named


# ---------------------------------------------------------------------------------------------
# Art. 15(1)(a): each purpose with its legal basis
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "pairs"),
    [
        (
            "nl",
            [
                "leveren: uitvoering van een overeenkomst (artikel 6, lid 1, onder b, AVG)",
                "fiscale administratie: een wettelijke plicht (artikel 6, lid 1, onder c, AVG)",
            ],
        ),
        (
            "en",
            [
                "delivery: performance of a contract (Article 6(1)(b) GDPR)",
                "tax records: a legal obligation (Article 6(1)(c) GDPR)",
            ],
        ),
    ],
)
def test_art_15_1_a_purposes_are_paired_with_their_legal_basis(
    language: str, pairs: list[str]
) -> None:
    """Art. 15(1)(a) GDPR (the purposes) read with Art. 6(1) and 13(1)(c): the subject sees
    which basis each purpose rests on, in words, not a list of bases beside a list of purposes."""
    orders = _text(_section(_report(language), "orders"))
    for pair in pairs:
        assert pair in orders


# ---------------------------------------------------------------------------------------------
# Art. 12(1), 15(3): the copy is intelligible
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "heading", "label"),
    [("nl", "Supportvragen", "Onderwerp"), ("en", "Support questions", "Subject")],
)
def test_art_12_1_collections_have_titles_and_a_glossary(
    language: str, heading: str, label: str
) -> None:
    """Art. 12(1) GDPR ("intelligible ... clear and plain language") and EDPB Guidelines 01/2022,
    5.2.3: a vendor's collection and field names are explained; the connector's metadata titles
    the collection and labels the columns, the raw name stays in the glossary."""
    support = _section(_report(language), "support")
    assert f"<h4>{heading}</h4>" in support
    glossary = support.split("data-glossary>")[1].split("</details>")[0]
    assert "<code>subject</code>" in glossary and label in glossary
    assert f"<th>{label}</th>" in support  # the listing's column header
    # Without metadata, the raw name is kept rather than invented.
    assert "<h4>contacts</h4>" in _section(_report(language), "crm")


@pytest.mark.parametrize(
    ("language", "written", "moment"),
    [
        ("nl", "2 november 2024", "4 mei 2023, 14:05 UTC"),
        ("en", "2 November 2024", "4 May 2023, 14:05 UTC"),
    ],
)
def test_art_12_1_dates_are_written_out_in_the_documents_language(
    language: str, written: str, moment: str
) -> None:
    """Art. 12(1) GDPR: ISO dates in the listing and summary are written out in the report's
    language (the ISO form stays in `<time datetime>` and in the JSON/CSV files)."""
    report = _report(language)
    text = _text(report)
    assert written in _text(_section(report, "crm"))
    assert moment in _text(_section(report, "orders"))
    assert re.search(r"\b\d{4}-\d{2}-\d{2}\b", text) is None
    yes = {"nl": "<td>ja</td>", "en": "<td>yes</td>"}[language]
    assert yes in _section(report, "orders") and "city: Utrecht" in _section(report, "orders")


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_15_3_a_cut_listing_says_where_the_rest_is(language: str) -> None:
    """Art. 15(3) GDPR: the copy is complete; the readable listing shows the first records and
    says that every record is in the JSON and CSV file, which it links."""
    support = _section(_report(language), "support")
    total = LISTING_LIMIT + 10
    note = {
        "nl": f"De eerste {LISTING_LIMIT} van {total}",
        "en": f"The first {LISTING_LIMIT} of {total}",
    }
    assert note[language] in _text(support)
    listing = support.split("data-listing>")[1].split("</table>")[0]
    assert listing.count("<tr><td>") == LISTING_LIMIT
    assert (
        'href="data/support/tickets.json"' in support
        and 'href="data/support/tickets.csv"' in support
    )


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_15_4_redacted_and_held_records_are_counted(language: str) -> None:
    """Art. 15(4) GDPR: the copy must not adversely affect others; the report says in how many
    records other people's data was withheld, and how many are held for an officer's review."""
    digests = _digests()
    digests["support"][0].redacted = 3
    digests["support"][0].held = 2
    report = _render(_state(language), REGISTER, digests)
    support = _text(_section(report, "support"))
    assert {"nl": "In 3 hiervan", "en": "In 3 of these"}[language] in support
    assert "2 " + {"nl": "houden wij", "en": "we are holding"}[language] in support
    assert "15, lid 4" in support or "15(4)" in support


# ---------------------------------------------------------------------------------------------
# The summary, and the rights and remedies once
# ---------------------------------------------------------------------------------------------


def test_the_summary_counts_per_system_and_says_where_nothing_was_found() -> None:
    """The report opens with which systems hold what, how many, since when (EDPB Guidelines
    01/2022, 5.2.4: a layered answer); systems searched without a find and systems not searched
    yet are named apart, with their status in words."""
    report = _report("nl", chat=OutcomeStatus.MANUAL_ACTION_REQUIRED)
    summary = report.split("data-summary>")[1].split("</div>")[0]
    rows = {
        system: _text(row)
        for system, row in re.findall(r'<tr data-summary-system="(\w+)">(.*?)</tr>', summary, re.S)
    }
    assert list(rows) == ["crm", "orders", "support"]
    assert rows["support"] == f"Support Supportvragen {LISTING_LIMIT + 10} 10 januari 2025"
    assert rows["orders"] == "Orders orders 2 4 mei 2023"
    assert rows["crm"].endswith("1 2 november 2024")
    assert "Geen gegevens over u gevonden in: Mailing." in _text(summary)
    assert "Nog niet (volledig) doorzocht: Chat (wordt handmatig" in _text(summary)
    assert report.index("data-summary>") < report.index('id="system-')


def test_the_summary_says_so_when_nothing_was_found_anywhere() -> None:
    report = render_report(
        _state("nl"), REGISTER.systems, {}, language="nl", generated_at=NOW, register=REGISTER
    )
    assert "in geen enkel systeem gegevens over u gevonden" in _text(report)


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_15_1_e_f_rights_and_remedies_appear_once_for_five_systems(language: str) -> None:
    """Art. 15(1)(e)-(f) GDPR, Art. 35 UAVG: the rights and the remedies are stated once for the
    whole report (five systems), each system links to them; per system only what differs
    (portability, withdrawing consent)."""
    report = _report(language)
    assert len(REGISTER.systems) == 5
    assert report.count("data-remedies") == 1 and report.count("data-rights") == 1
    assert report.count(f'href="{AP_COMPLAINT_URL}"') == 1
    restriction = {"nl": "Beperking (artikel 18)", "en": "Restriction (Article 18)"}[language]
    assert _text(report).count(restriction) == 1
    for system in REGISTER.names:
        section = _section(report, system)
        assert 'href="#rights"' in section and 'href="#remedies"' in section
    consent = report.split('data-right="consent">')[1].split("</li>")[0]
    assert "Mailing" in consent and "Crm" not in consent
    assert 'id="remedies"' in report and 'data-remedy="court"' in report


def test_the_informal_tone_addresses_the_reader_with_je() -> None:
    controller = REGISTER.controller.model_copy(update={"tone": "je"})  # type: ignore[union-attr]
    informal = REGISTER.model_copy(update={"controller": controller})
    text = _text(_report("nl", informal))
    assert "Inzage in je persoonsgegevens" in text and "Je rechten" in text
    assert re.search(r"(?<!\w)(u|uw|U|Uw)(?!\w)", re.sub(r"https?://\S+", "", text)) is None


# ---------------------------------------------------------------------------------------------
# The demo's report in Chromium, in both languages
# ---------------------------------------------------------------------------------------------

#: What each demo system holds in the browser test, dated.
DEMO_RECORDS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "hubspot": {"contacts": [{"id": 51, "email": "jan@example.nl", "created_at": "2024-06-03"}]},
    "activecampaign": {
        "contacts": [{"id": 3, "email": "jan@example.nl", "score": 12, "created_at": "2025-02-14"}]
    },
    "freshdesk": {
        "tickets": [
            {"id": 1, "subject": "Levering", "created_at": "2025-09-01T08:15:00Z"},
            {"id": 2, "subject": "Retour", "created_at": "2025-10-12T16:40:00Z"},
        ]
    },
    "orders": {"orders": [{"id": 1001, "total": 49.95, "created_at": "2023-12-20"}]},
}
DEMO_WORDS = {
    "nl": {
        "since": "3 juni 2024",
        "written": "1 september 2025, 08:15 UTC",
        "profiling": "contactscore",
        "glossary": "Wat de velden betekenen",
        "tickets": "Supportvragen",
    },
    "en": {
        "since": "3 June 2024",
        "written": "1 September 2025, 08:15 UTC",
        "profiling": "contact score",
        "glossary": "What the fields mean",
        "tickets": "Support questions",
    },
}


def _demo_report(tmp_path: Path, language: str) -> Path:
    register = load_for_export(register_path(), {})  # the demo register, fakes' secrets left out
    digests = {
        system: [_digest(system, name, records) for name, records in found.items()]
        for system, found in DEMO_RECORDS.items()
    }
    request = factories.request("req-demo-1", "jan@example.nl", received_at=NOW)
    state = RequestState(
        request_id=request.request_id,
        request=request.model_copy(update={"language": language}),
        status=RequestStatus.COMPLETED,
        systems={
            name: SystemProgress(
                status=OutcomeStatus.COMPLETED if name in digests else OutcomeStatus.NOT_FOUND
            )
            for name in register.names
        },
    )
    page = tmp_path / f"report-{language}.html"
    page.write_text(_render(state, register, digests), encoding="utf-8")
    return page


@pytest.mark.browser
@pytest.mark.parametrize("language", ["nl", "en"])
def test_the_demo_report_in_chromium(tmp_path: Path, language: str) -> None:
    """The demo's Art. 15 report as the subject opens it: the summary, ActiveCampaign's
    profiling, the carrier and payment provider beside the processors, the glossary headings
    and written-out dates are visible; a screenshot is kept in the test's tmp dir."""
    path = _demo_report(tmp_path, language)
    words = DEMO_WORDS[language]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(path.resolve().as_uri())
        summary = page.locator("[data-summary]")
        assert summary.is_visible()
        assert summary.locator('[data-summary-system="freshdesk"]').is_visible()
        assert words["since"] in summary.inner_text()
        profiling = page.locator('#system-activecampaign [data-profiling="profiling"]')
        assert profiling.is_visible() and words["profiling"] in profiling.inner_text()
        assert page.locator('#system-hubspot [data-profiling="none"]').is_visible()
        for recipient in ("PostNL", "Mollie B.V.", "Belastingdienst"):
            assert page.locator(f'#system-orders [data-recipient="{recipient}"]').is_visible()
        tickets = page.locator('#system-freshdesk [data-collection="tickets"]')
        assert tickets.locator("h4").inner_text() == words["tickets"]
        assert tickets.locator("[data-glossary] summary").inner_text() == words["glossary"]
        assert words["written"] in tickets.locator("[data-listing]").inner_text()
        assert page.locator("[data-remedies]").count() == 1
        shot = tmp_path / f"report-{language}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert errors == []


def test_art_15_1_d_report_states_the_machine_readable_retention_in_words() -> None:
    """Art. 15(1)(d) GDPR: the period for which the data will be stored. The register's sweep
    rules (what a sweep enforces) are stated per collection, in the report's language."""
    from orchestrator.artifacts.report import _retention_rules
    from schemas.register import System

    system = System.model_validate(
        {
            "name": "support", "kind": "support_desk", "connector": "freshdesk",
            "data_categories": ["vragen"], "purposes": ["klantvragen"],
            "legal_basis": ["contract"], "profiling": "none", "retention": "12 maanden",
            "sweep": {"collections": [{"collection": "tickets", "period": "12 months",
                                       "counted_from": "last_activity",
                                       "date_field": "updated_at"}]},
        }
    )  # fmt: skip
    assert _retention_rules(system, "nl") == ["Supportvragen: 12 maanden na de laatste activiteit"]
    assert _retention_rules(system, "en")[0].startswith("Support questions: 12 months after")


# ---------------------------------------------------------------------------------------------
# The register's facts are rendered once and kept: an edited register is never answered stale
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_15_1_d_an_edited_register_shows_in_the_next_report_at_once(language: str) -> None:
    """Art. 15(1) GDPR: the report states what the register says now. A system's facts are
    rendered once and kept (`report._facts`); a changed retention, purpose or recipient must
    give the new text in the very next report, and the unchanged systems the same text."""
    before = _report(language)
    edited = REGISTER.model_dump(mode="json", by_alias=True, exclude_none=True)
    crm = next(s for s in edited["systems"] if s["name"] == "crm")
    crm["retention"] = {"nl": "zeven jaar (fiscaal)", "en": "seven years (tax law)"}
    after = _report(language, parse_register(edited))
    new = {"nl": "zeven jaar (fiscaal)", "en": "seven years (tax law)"}[language]
    assert new in _text(_section(after, "crm")) and new not in _text(_section(before, "crm"))
    assert _section(after, "orders") == _section(before, "orders")
    assert _report(language) == before  # the original register: its facts, unchanged


# What rendering a report costs: it runs once per access export, on the request path
# ----------------------------------------------------------------------------------


def test_the_report_looks_up_its_texts_and_sections_without_raising_an_error_each() -> None:
    """Jinja2 resolves `mapping.name` as an attribute first and as an item after: on the
    texts (`t.title`) and the report's sections and collections, which are plain dicts, each
    of some 240 lookups raised and caught an AttributeError. The documents' environment looks
    a plain dict's items up directly (`render._Environment`); a dict's methods stay methods."""
    _report("nl")  # templates compiled, the register's facts rendered and kept
    raised: list[str] = []

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "exception" and issubclass(arg[0], AttributeError):
            raised.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
        return trace

    sys.settrace(trace)
    try:
        report = _report("nl")
    finally:
        sys.settrace(None)
    assert 'id="system-crm"' in report
    assert raised == []


def test_a_plain_dicts_names_resolve_in_a_template_as_jinja2_resolves_them() -> None:
    """The faster lookup gives what Jinja2's own does: the item for a name, the method for a
    dict method's name (`certificate.get(...)` in a certificate, whatever keys it holds), and
    a loud error for a name that is neither."""
    plain = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True)
    ours = environment()
    data = {"title": "Inzage", "get": "a key named get", "items": [1, 2], "n": 0}
    source = "{{ d.title }}|{{ d.n }}|{{ d.get('title') }}|{{ d['get'] }}|{{ d.items() | list }}"
    assert ours.from_string(source).render(d=data) == plain.from_string(source).render(d=data)
    for env in (ours, plain):
        with pytest.raises(jinja2.UndefinedError):
            env.from_string("{{ d.nowhere }}").render(d=data)


def test_the_report_takes_one_template_context_for_all_its_systems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each `{% include %}` that runs looks its template up and builds a new context: the
    report includes its systems once (`_report_systems.html`), not two parts per system."""
    contexts: list[str | None] = []
    new_context = jinja2.Template.new_context

    def counted(self: jinja2.Template, *args: Any, **kwargs: Any) -> Any:
        contexts.append(self.name)
        return new_context(self, *args, **kwargs)

    _report("nl")  # the register's facts rendered and kept
    monkeypatch.setattr(jinja2.Template, "new_context", counted)
    _report("nl")
    assert len(REGISTER.systems) >= 3
    assert sorted(contexts, key=str) == ["_remedies.html", "_report_systems.html", "report.html"]


def test_a_registers_facts_are_found_by_its_objects_and_by_content_after_a_reload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exports of a batch share one register object: each system's facts are found by
    the object, without encoding the system again (`report._facts`). A register read again
    (the same content, new objects) finds them by content once per system."""
    register = parse_register(REGISTER.model_dump(mode="json", by_alias=True, exclude_none=True))
    first = _report("en", register)
    by_content: list[str] = []
    found = report_module._facts_by_content

    def counted(section: dict[str, Any], *args: Any) -> Any:
        by_content.append(section["system"].name)
        return found(section, *args)

    monkeypatch.setattr(report_module, "_facts_by_content", counted)
    assert _report("en", register) == first
    assert by_content == []
    reloaded = parse_register(REGISTER.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert _report("en", reloaded) == first
    assert sorted(by_content) == sorted(s.name for s in reloaded.systems)
