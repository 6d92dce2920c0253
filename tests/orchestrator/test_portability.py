"""The portability export (Art. 20 GDPR): only what the subject provided, from systems whose
processing rests on consent or contract; whatever is left out is named with the reason.

Art. 20(1): the subject receives the personal data "which he or she has provided to a
controller", where the processing is based on consent or on a contract (Art. 20(1)(a)). WP29
Guidelines on the right to data portability (WP 242 rev.01, section III): data actively and
knowingly provided and data observed from the use of the service are "provided"; data the
controller inferred or derived (a score, a profile) are not.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.artifacts.export import NOT_CONSENT_OR_CONTRACT, NOT_PROVIDED, write_export
from schemas.events import Record
from schemas.register import Register, parse_register
from tests.orchestrator.test_export import NOW, completed, factories

_SYSTEM = {
    "kind": "mailing",
    "data_categories": ["contactgegevens"],
    "retention": "1 jaar",
    "profiling": "none",
}


def _register(tone: str = "u") -> Register:
    return parse_register(
        {
            "controller": {"name": "Webwinkel B.V.", "dpo": "fg@webwinkel.example", "tone": tone},
            "systems": [
                # Packaged metadata: contacts in part, scores and staff notes not provided.
                {**_SYSTEM, "name": "mailing", "title": "ActiveCampaign",
                 "connector": "activecampaign", "purposes": ["nieuwsbrief"],
                 "legal_basis": ["consent"]},
                # The register's own `provided`: a derived field left out.
                {**_SYSTEM, "name": "shop", "title": "Webwinkel", "connector": "memory",
                 "purposes": [{"name": "bestellingen", "legal_basis": "contract"},
                              {"name": "fraudepreventie", "legal_basis": "legitimate_interests"}],
                 "provided": {"orders": ["id", "product", "address"]}},
                {**_SYSTEM, "name": "analytics", "title": "Bezoekersanalyse", "connector": "memory",
                 "purposes": [{"name": "fraudepreventie", "legal_basis": "legitimate_interests",
                               "legitimate_interest": "misbruik voorkomen"}]},
            ],
        }
    )  # fmt: skip


def _records(system: str) -> Iterator[Record]:
    if system == "mailing":
        yield Record(
            collection="contacts",
            data={"id": "11", "email": "anna@example.nl", "firstName": "Anna",
                  "cdate": "2024-01-01T10:00:00-06:00", "deleted": "0", "anonymized": "0"},
        )  # fmt: skip
        yield Record(collection="scoreValues", data={"id": "951", "scoreValue": "10"})
        yield Record(collection="notes", data={"id": "300", "note": "Lastige klant"})
        yield Record(collection="trackingLogs", data={"id": "800", "type": "open"})
    elif system == "shop":
        yield Record(
            collection="orders",
            data={"id": 7, "product": "fiets", "address": "Dorpsstraat 1", "risk_score": 0.93},
        )
    else:
        yield Record(collection="visits", data={"ip": "192.0.2.1"})


def _export(tmp_path: Path, language: str = "nl", tone: str = "u") -> zipfile.ZipFile:
    request = factories.request("req-port-1", "anna@example.nl", received_at=NOW)
    state = completed(
        request.model_copy(update={"language": language}), ("mailing", "shop", "analytics")
    )
    out = tmp_path / "export.zip"
    write_export(out, state, _register(tone), _records, generated_at=NOW, portability=True)
    return zipfile.ZipFile(out)


def test_art_20_1_portability_only_provided_data(tmp_path: Path) -> None:
    """Art. 20(1) GDPR, WP 242 rev.01 section III: the subject's own fields and observed data
    are in; a score (inferred), staff notes and a derived field are left out, and named."""
    with _export(tmp_path) as archive:
        names = set(archive.namelist())
        contacts = json.loads(archive.read("data/mailing/contacts.json"))
        orders = json.loads(archive.read("data/shop/orders.json"))
        tracking = json.loads(archive.read("data/mailing/trackingLogs.json"))
        manifest = json.loads(archive.read("manifest.json"))
        csv_header = archive.read("data/shop/orders.csv").decode().splitlines()[0]
    assert contacts == [
        {"id": "11", "email": "anna@example.nl", "firstName": "Anna",
         "cdate": "2024-01-01T10:00:00-06:00"}
    ]  # fmt: skip
    assert orders == [{"id": 7, "product": "fiets", "address": "Dorpsstraat 1"}]
    assert csv_header == "id,product,address"
    assert tracking == [{"id": "800", "type": "open"}]  # observed data is provided
    assert not {"data/mailing/scoreValues.json", "data/mailing/notes.json"} & names
    excluded = manifest["excluded"]
    assert {
        "system": "mailing",
        "collection": "scoreValues",
        "reason_code": NOT_PROVIDED,
    } in excluded
    assert {"system": "mailing", "collection": "notes", "reason_code": NOT_PROVIDED} in excluded
    assert {
        "system": "mailing",
        "collection": "contacts",
        "fields": ["deleted", "anonymized"],
        "reason_code": NOT_PROVIDED,
    } in excluded
    assert {
        "system": "shop",
        "collection": "orders",
        "fields": ["risk_score"],
        "reason_code": NOT_PROVIDED,
    } in excluded


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_20_1_excluded_systems_named_with_reason(tmp_path: Path, language: str) -> None:
    """Art. 20(1)(a) GDPR: a system that rests on legitimate interests only is left out and
    named, with the reason, in the manifest and in README.html in the request's language; a
    system with one purpose on contract is in."""
    with _export(tmp_path, language) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        readme = archive.read("README.html").decode("utf-8")
    assert manifest["systems"] == ["mailing", "shop"]
    assert {"system": "analytics", "reason_code": NOT_CONSENT_OR_CONTRACT} in manifest["excluded"]
    assert not any(n.startswith("data/analytics/") for n in names)
    assert "README.html" in {f["path"] for f in manifest["files"]}
    assert f'<html lang="{language}">' in readme
    assert "Bezoekersanalyse" in readme and "192.0.2.1" not in readme
    assert f'data-reason-code="{NOT_CONSENT_OR_CONTRACT}">Bezoekersanalyse.' in readme
    if language == "nl":
        assert "toestemming of een overeenkomst" in readme and "Scores" in readme
        assert "Notities van medewerkers" in readme and "Geanonimiseerd" in readme
        assert "10 maart 2026" in readme  # written out, not ISO
    else:
        assert "consent or a contract" in readme and "Staff notes" in readme


def test_portability_readme_follows_the_informal_tone(tmp_path: Path) -> None:
    with _export(tmp_path, "nl", tone="je") as archive:
        readme = archive.read("README.html").decode("utf-8")
    assert "Je gegevens om mee te nemen" in readme and "jouw toestemming" in readme
    assert not re.search(r"\b(u|uw|U|Uw)\b", readme)


def test_art_20_1_staff_replies_are_not_the_subjects_provided_data(tmp_path: Path) -> None:
    """WP 242 rev.01 section III: the messages the subject sent are provided data; an agent's
    reply or an internal note in the same collection is not (Freshdesk's `incoming`, `private`).
    The README counts what was left out, without content."""
    register = parse_register(
        {
            "controller": {"name": "Webwinkel B.V."},
            "systems": [
                {**_SYSTEM, "name": "support", "kind": "support_desk", "connector": "freshdesk",
                 "purposes": ["klantvragen"], "legal_basis": ["contract"]},
            ],
        }
    )  # fmt: skip

    def records(system: str) -> Iterator[Record]:
        for n, (incoming, private) in enumerate([(True, False), (False, False), (False, True)]):
            yield Record(
                collection="conversations",
                data={"id": n, "ticket_id": 1, "body_text": f"bericht {n}",
                      "incoming": incoming, "private": private},
            )  # fmt: skip

    state = completed(factories.request("req-port-2", "anna@example.nl", received_at=NOW),
                      ("support",))  # fmt: skip
    out = tmp_path / "export.zip"
    write_export(out, state, register, records, generated_at=NOW, portability=True)
    with zipfile.ZipFile(out) as archive:
        messages = json.loads(archive.read("data/support/conversations.json"))
        manifest = json.loads(archive.read("manifest.json"))
        readme = archive.read("README.html").decode()
    assert [m["body_text"] for m in messages] == ["bericht 0"]
    assert {
        "system": "support",
        "collection": "conversations",
        "records": 2,
        "reason_code": NOT_PROVIDED,
    } in manifest["excluded"]
    assert "2 berichten die niet van u komen" in readme
    assert "bericht 1" not in readme and "bericht 2" not in readme
