"""`dsr register export`: the record of processing activities (Art. 30(1) GDPR), nl and en."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.artifacts.register_export import load_for_export, recipients_of, render_register
from orchestrator.cli import main
from orchestrator.runtime.demo import register_path
from schemas.register import Register, parse_register
from tests.orchestrator.test_documents import _text

#: Art. 30(1)(a)-(g) GDPR: controller and DPO, purposes, categories of data subjects and of
#: personal data, recipients, third-country transfers, erasure time limits, security measures.
ART_30_1 = ["a", "b", "c", "d", "e", "f", "g"]

#: English words a Dutch record must not hold (register texts not localized, labels left in
#: English, engine values such as legal-basis codes).
ENGLISH = [
    "Purpose", "purpose", "purposes", "Legal basis", "consent", "contract", "legitimate",
    "legitimate_interests", "legal_obligation", "processor", "Processor", "recipient",
    "Recipients", "retention", "Retention", "none", "None", "Data subjects", "categories",
    "transfer", "adequacy decision", "Standard Contractual Clauses", "profiling", "logic",
    "consequences", "security", "customer", "customers", "newsletter", "carrier", "payment",
    "tax authority", "name", "email address", "e-mail address", "phone number",
    "support_desk", "database", "mailing", "after the last contact", "days", "years", "months",
    "the data subject", "Order administration",
]  # fmt: skip


def _english(text: str) -> list[str]:
    return [w for w in ENGLISH if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text)]


class _Rows(HTMLParser):
    """Per system section (`data-system`), the Art. 30(1) points its rows answer."""

    def __init__(self) -> None:
        super().__init__()
        self.system: str | None = None
        self.points: dict[str, set[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section" and found.get("data-system"):
            self.system = found["data-system"]
            self.points[self.system] = set()
        elif self.system is not None and found.get("data-art30"):
            self.points[self.system].add(str(found["data-art30"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.system = None


def _demo() -> Register:
    return load_for_export(register_path(), {})


def _section(page: str, system: str) -> str:
    return page.split(f'<section data-system="{system}">')[1].split("</section>")[0]


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_30_1_every_point_is_answered_for_every_system(language: str) -> None:
    register = _demo()
    parser = _Rows()
    parser.feed(render_register(register, language))  # type: ignore[arg-type]
    assert set(parser.points) == set(register.names)
    for system, points in parser.points.items():
        assert sorted(points) == ART_30_1, system


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_30_1_a_controller_and_dpo(language: str) -> None:
    page = render_register(_demo(), language)  # type: ignore[arg-type]
    block = page.split('<table data-art30="a">')[1].split("</table>")[0]
    text = _text(block)
    assert "Demo Webwinkel B.V." in text and "fg@webwinkel.example" in text
    assert "privacy@webwinkel.example" in text and "webwinkel.example/klachten" in text


def test_art_30_1_b_each_purpose_with_its_legal_basis_in_words() -> None:
    page = render_register(_demo(), "nl")
    hubspot = _text(_section(page, "hubspot"))
    contract = "uitvoering van een overeenkomst (artikel 6, lid 1, onder b, AVG)"
    assert f"klantrelatiebeheer: {contract}" in hubspot
    assert "gerechtvaardigd belang: onze producten verkopen aan wie daar zelf om vroeg" in hubspot
    orders = _section(page, "orders")
    assert 'data-basis="legal_obligation"' in orders
    assert "een wettelijke plicht (artikel 6, lid 1, onder c, AVG)" in _text(orders)
    english = _text(_section(render_register(_demo(), "en"), "activecampaign"))
    assert "newsletters and drip campaigns: consent (Article 6(1)(a) GDPR)" in english


def test_art_30_1_d_processor_agreement_and_other_recipients() -> None:
    page = render_register(_demo(), "nl")
    freshdesk = _text(_section(page, "freshdesk"))
    assert "Verwerker: Freshworks Inc. (subverwerkers: Amazon Web Services EMEA SARL)" in freshdesk
    assert "verwerkersovereenkomst getekend op 15 januari 2024" in freshdesk
    assert "VO-2024-01-Freshworks" in freshdesk
    orders = _section(page, "orders")
    for name in ("PostNL", "Mollie B.V.", "Belastingdienst", "Boekhoudkantoor Jansen & De Wit"):
        assert f'data-recipient="{name.replace("&", "&amp;")}"' in orders, name
    assert "geen verwerker; wij beheren dit systeem zelf" in _text(orders)
    assert "Andere ontvangers: geen" in freshdesk
    assert "betaaldienstverlener" in _text(orders)


def test_art_19_the_record_says_how_each_recipient_is_told() -> None:
    text = _text(render_register(_demo(), "nl"))
    assert "per e-mail aan privacy@postnl.example" in text
    assert "artikel 47 AWR" in text  # the tax authority: instructions for the officer


def test_art_30_1_e_transfers_outside_the_eea_with_their_safeguard() -> None:
    page = render_register(_demo(), "nl")
    mailing = _text(_section(page, "activecampaign"))
    assert "naar de Verenigde Staten, met als waarborg EU-U.S. Data Privacy Framework" in mailing
    assert "geen; de gegevens blijven in de Europese Economische Ruimte" in _text(
        _section(page, "hubspot")
    )


def test_art_30_1_f_and_g_retention_and_security_measures() -> None:
    page = render_register(_demo(), "nl")
    assert "uiterlijk na 12 maanden" in _text(_section(page, "freshdesk"))
    security = page.split('<ul data-art30="g">')[1].split("</ul>")[0]
    assert "tweestapsverificatie" in _text(security)
    assert 'href="#security"' in _section(page, "hubspot")


def test_art_15_1_h_profiling_with_logic_and_consequences_or_none_in_words() -> None:
    page = render_register(_demo(), "nl")
    scoring = _text(_section(page, "activecampaign"))
    assert "profilering" in scoring and "contactscore" in scoring
    assert "geen geautomatiseerd besluit als bedoeld in artikel 22 AVG" in scoring
    assert "geen; er is geen profilering en geen geautomatiseerd besluit" in _text(
        _section(page, "hubspot")
    )


@pytest.mark.parametrize(
    ("language", "other"),
    [("nl", "customer relationship management"), ("en", "klantrelatiebeheer")],
)
def test_every_register_text_is_in_the_documents_language(language: str, other: str) -> None:
    text = _text(render_register(_demo(), language))  # type: ignore[arg-type]
    assert other not in text


def test_the_dutch_record_holds_no_english_words() -> None:
    assert _english(_text(render_register(_demo(), "nl"))) == []


def test_the_english_word_scan_catches_english() -> None:
    assert _english("Doel: newsletter; grondslag: consent") == ["consent", "newsletter"]


def test_a_register_without_controller_or_recipients_still_gives_a_record() -> None:
    register = parse_register(
        {
            "systems": [
                {
                    "name": "crm",
                    "kind": "crm",
                    "connector": "sql",
                    "data_categories": ["e-mailadres"],
                    "purposes": ["verkoop"],
                    "legal_basis": ["contract"],
                    "profiling": "none",
                    "retention": "2 jaar",
                }
            ]
        }
    )
    text = _text(render_register(register, "nl"))
    assert "niet opgegeven" in text and "verkoop: uitvoering van een overeenkomst" in text
    assert recipients_of(register, register.systems[0]) == []


def test_recipients_of_a_system_include_those_tied_to_no_system() -> None:
    register = _demo()
    unbound = register.recipients[0].model_copy(update={"name": "Groep B.V.", "systems": []})
    register = register.model_copy(update={"recipients": [*register.recipients, unbound]})
    assert [r.name for r in recipients_of(register, register.get("hubspot"))] == ["Groep B.V."]


def test_cli_writes_the_record_without_the_connectors_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DSR_DEMO_HUBSPOT_TOKEN", "DSR_DEMO_DIR"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "register.en.html"
    result = CliRunner().invoke(
        main,
        ["register", "export", "--register", str(register_path()), "--language", "en",
         "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "Record of processing activities" in page and "(not set)" not in page
    printed = CliRunner().invoke(main, ["register", "export", "--register", str(register_path())])
    assert printed.exit_code == 0 and "Register van verwerkingsactiviteiten" in printed.output


def test_cli_names_the_file_and_field_of_an_invalid_register(tmp_path: Path) -> None:
    path = tmp_path / "register.yaml"
    path.write_text(
        "systems:\n  - {name: crm, kind: crm, connector: sql, data_categories: [e],"
        " purposes: [p], legal_basis: [contract], profiling: none, retention: 1 jaar,"
        " processor: {name: X}}\n"
    )
    result = CliRunner().invoke(main, ["register", "export", "--register", str(path)])
    assert result.exit_code != 0
    assert str(path) in result.output and "processor.agreement" in result.output
    assert "Traceback" not in result.output
