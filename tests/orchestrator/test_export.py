"""The export archive: manifest hashes, CSV, the Art. 15 report, portability, flat memory."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tracemalloc
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.artifacts.export import AP_URL, write_export
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import OutcomeStatus, Record, RequestStatus, RequestSubmitted, SystemProgress
from schemas.register import Register, parse_register
from tests import factories

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ART15 = "abcdefgh"

REGISTER = {
    "controller": {"name": "Voorbeeld B.V.", "dpo": "fg@voorbeeld.nl"},
    "systems": [
        {
            "name": "crm",
            "title": "HubSpot CRM",
            "kind": "crm",
            "connector": "memory",
            "processor": {"name": "HubSpot Inc.", "sub_processors": ["AWS", "Google Cloud"]},
            "data_categories": ["name", "email", "phone"],
            "purposes": ["customer relations"],
            "legal_basis": ["contract"],
            "retention": "2 years after the last order",
            "location": {"region": "US", "transfer_mechanism": "EU-US Data Privacy Framework"},
        },
        {
            "name": "mailing",
            "title": "ActiveCampaign",
            "kind": "mailing",
            "connector": "memory",
            "processor": {"name": "ActiveCampaign LLC"},
            "data_categories": ["name", "email", "IP address"],
            "purposes": ["newsletter <b>&</b> offers"],
            "legal_basis": ["consent"],
            "retention": "180 days",
        },
        {
            "name": "analytics",
            "kind": "analytics",
            "connector": "memory",
            "data_categories": ["IP address"],
            "purposes": ["fraud prevention"],
            "legal_basis": ["legitimate_interests"],
            "retention": "30 days",
            "source": "our web server logs",
        },
    ],
}


def make_state(
    language: str = "nl", systems: tuple[str, ...] = ("crm", "mailing", "analytics")
) -> RequestState:
    """A finished access request over the given systems."""
    request = factories.request("req-export-1", "jan@example.nl", received_at=NOW)
    return completed(request.model_copy(update={"language": language}), systems)


def completed(request: RequestSubmitted, systems: Iterable[str]) -> RequestState:
    """The state of `request` once every one of `systems` completed it."""
    return RequestState(
        request_id=request.request_id,
        request=request,
        status=RequestStatus.COMPLETED,
        systems={s: SystemProgress(status=OutcomeStatus.COMPLETED) for s in systems},
        finished_at=request.received_at,
    )


def register() -> Register:
    """The test register."""
    return parse_register(REGISTER)


def sample_records(system: str) -> Iterator[Record]:
    """A few records per system, collections interleaved, with uneven and nested keys."""
    if system == "crm":
        yield Record(collection="contacts", data={"id": 1, "name": "Jan", "email": "jan@x.nl"})
        yield Record(collection="deals", data={"id": 9, "amount": 12.5, "tags": ["a", "b"]})
        yield Record(
            collection="contacts",
            data={"id": 2, "name": 'Jan "J", de Vries\nregel 2', "address": {"city": "Utrecht"}},
        )
    elif system == "mailing":
        for i in range(5):
            yield Record(collection="subscribers", data={"id": i, "ip": None, "opt_in": True})
    elif system == "analytics":
        yield Record(collection="visits", data={"ip": "192.0.2.1"})


def open_zip(path: Path) -> zipfile.ZipFile:
    """The archive, for reading."""
    return zipfile.ZipFile(path)


def test_manifest_hashes_and_counts_match_the_files(tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    summary = write_export(out, make_state(), register(), sample_records, generated_at=NOW)
    with open_zip(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = set(archive.namelist())
        assert manifest["request_id"] == "req-export-1"
        assert manifest["generated_at"] == NOW.isoformat()
        assert manifest["systems"] == ["crm", "mailing", "analytics"]
        listed = {f["path"] for f in manifest["files"]}
        assert listed | {"manifest.json"} == names
        for entry in manifest["files"]:
            data = archive.read(entry["path"])
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
            assert len(data) == entry["bytes"]
            if entry["path"].endswith(".json"):
                assert len(json.loads(data)) == entry["records"]
        counts = {f["path"]: f.get("records") for f in manifest["files"]}
    assert counts["data/crm/contacts.json"] == 2
    assert counts["data/crm/deals.json"] == 1
    assert counts["data/mailing/subscribers.csv"] == 5
    assert summary.records == 9
    assert not list(tmp_path.glob(".spool-*")) and not list(tmp_path.glob("*.part"))


def test_json_keeps_the_records_exactly(tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    write_export(out, make_state(), register(), sample_records, generated_at=NOW)
    with open_zip(out) as archive:
        contacts = json.loads(archive.read("data/crm/contacts.json"))
    assert contacts == [r.data for r in sample_records("crm") if r.collection == "contacts"]


def test_csv_opens_with_the_csv_module_and_has_the_right_rows(tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    write_export(out, make_state(), register(), sample_records, generated_at=NOW)
    with open_zip(out) as archive:
        text = archive.read("data/crm/contacts.csv").decode("utf-8")
        subscribers = archive.read("data/mailing/subscribers.csv").decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    # The header is the union of keys over all records, in first-seen order.
    assert list(rows[0]) == ["id", "name", "email", "address"]
    assert rows[0] == {"id": "1", "name": "Jan", "email": "jan@x.nl", "address": ""}
    assert rows[1]["name"] == 'Jan "J", de Vries\nregel 2'
    assert json.loads(rows[1]["address"]) == {"city": "Utrecht"}  # nested: JSON text
    sub_rows = list(csv.DictReader(io.StringIO(subscribers, newline="")))
    assert [r["id"] for r in sub_rows] == ["0", "1", "2", "3", "4"]
    assert sub_rows[0]["ip"] == "" and sub_rows[0]["opt_in"] == "true"


def _section(report: str, system: str) -> str:
    match = re.search(rf'<section id="system-{system}">(.*?)</section>', report, re.S)
    assert match, f"no section for {system}"
    return match.group(1)


@pytest.mark.parametrize("language", ["nl", "en"])
def test_report_has_every_art15_item_for_every_system(tmp_path: Path, language: str) -> None:
    out = tmp_path / "export.zip"
    write_export(out, make_state(language), register(), sample_records, generated_at=NOW)
    with open_zip(out) as archive:
        report = archive.read("report.html").decode("utf-8")
    assert f'<html lang="{language}">' in report
    for system in ("crm", "mailing", "analytics"):
        section = _section(report, system)
        for item in ART15:
            match = re.search(
                rf'<div data-art15="{item}"><dt>[^<]+</dt><dd>(.+?)</dd></div>', section
            )
            assert match and match.group(1).strip(), f"{system}: Art. 15(1)({item}) missing"
        assert AP_URL in section
        assert 'data-art15="2"' in section  # storage location and transfer safeguards
    crm = _section(report, "crm")
    assert "HubSpot Inc." in crm and "AWS, Google Cloud" in crm
    assert "EU-US Data Privacy Framework" in crm
    assert 'href="data/crm/contacts.json"' in crm and "<td>2</td>" in crm
    assert "our web server logs" in _section(report, "analytics")
    # Register text is escaped, not interpreted.
    assert "newsletter &lt;b&gt;&amp;&lt;/b&gt; offers" in _section(report, "mailing")
    if language == "nl":
        assert "Autoriteit Persoonsgegevens" in report and "Bewaartermijn" in report
        assert "intrekken" in _section(report, "mailing")
    else:
        assert "Retention period" in report and "lodge a complaint" in report
        assert "withdraw your consent" in _section(report, "mailing")
        assert "withdraw your consent" not in crm


def test_report_defaults_to_dutch(tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    write_export(out, make_state(), register(), sample_records, generated_at=NOW)
    with open_zip(out) as archive:
        assert '<html lang="nl">' in archive.read("report.html").decode()


def test_portability_has_provided_data_only_and_no_report(tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    summary = write_export(
        out, make_state(), register(), sample_records, generated_at=NOW, portability=True
    )
    with open_zip(out) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert summary.systems == ["crm", "mailing"]
    assert manifest["type"] == "portability" and manifest["systems"] == ["crm", "mailing"]
    assert "report.html" not in names
    assert not any(n.startswith("data/analytics/") for n in names)
    assert all(n.endswith((".json", ".csv")) for n in names)


def test_only_systems_in_the_request_and_odd_collection_names(tmp_path: Path) -> None:
    def records(system: str) -> Iterator[Record]:
        yield Record(collection="../../etc/passwd", data={"a": 1})
        yield Record(collection="Tickets", data={"a": 2})
        yield Record(collection="tickets", data={"a": 3})

    out = tmp_path / "export.zip"
    write_export(out, make_state(systems=("crm",)), register(), records, generated_at=NOW)
    with open_zip(out) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".json") and "/" in n)
    assert names == [
        "data/crm/Tickets.json",
        "data/crm/etc_passwd.json",
        "data/crm/tickets-2.json",
    ]


def test_a_failing_source_leaves_no_archive(tmp_path: Path) -> None:
    def records(system: str) -> Iterator[Record]:
        yield Record(collection="c", data={"a": 1})
        raise RuntimeError("connector broke")

    out = tmp_path / "export.zip"
    with pytest.raises(RuntimeError):
        write_export(out, make_state(), register(), records, generated_at=NOW)
    assert list(tmp_path.iterdir()) == []


def test_memory_stays_flat_for_a_large_export(tmp_path: Path) -> None:
    """200k records (about 50 MB of JSON) are exported with a small, bounded peak."""
    n = 200_000
    filler = "x" * 180

    def records(system: str) -> Iterator[Record]:
        if system != "crm":
            return
        for i in range(n):
            collection = "tickets" if i % 4 else "contacts"
            yield Record.model_construct(
                collection=collection, data={"id": i, "subject": f"ticket {i}", "body": filler}
            )

    out = tmp_path / "big.zip"
    tracemalloc.start()
    try:
        summary = write_export(out, make_state(), register(), records, generated_at=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.records == n
    raw = sum(f.bytes for f in summary.files if f.path.endswith(".json"))
    assert raw > 45_000_000
    assert peak < 20_000_000, f"peak {peak / 1e6:.1f} MB"
