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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.artifacts.digest import LISTING_LIMIT, record_date
from orchestrator.artifacts.export import ExportSummary, write_export
from orchestrator.artifacts.redaction import MARKERS
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
            "processor": {
                "name": "HubSpot Inc.",
                "sub_processors": ["AWS", "Google Cloud"],
                "agreement": {"signed_on": "2024-02-01", "reference": "DPA 2024-02"},
            },
            "data_categories": ["name", "email", "phone"],
            "purposes": ["customer relations"],
            "legal_basis": ["contract"],
            "profiling": "none",
            "retention": "2 years after the last order",
            "location": {"region": "US", "transfer_mechanism": "EU-US Data Privacy Framework"},
        },
        {
            "name": "mailing",
            "title": "ActiveCampaign",
            "kind": "mailing",
            "connector": "memory",
            "processor": {
                "name": "ActiveCampaign LLC",
                "agreement": {"signed_on": "2024-03-01", "reference": "DPA 2024-03"},
            },
            "data_categories": ["name", "email", "IP address"],
            "purposes": ["newsletter <b>&</b> offers"],
            "legal_basis": ["consent"],
            "profiling": "none",
            "retention": "180 days",
        },
        {
            "name": "analytics",
            "kind": "analytics",
            "connector": "memory",
            "data_categories": ["IP address"],
            "purposes": ["fraud prevention"],
            "legal_basis": ["legitimate_interests"],
            "profiling": "none",
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
        assert 'href="#remedies"' in section  # the remedies are stated once, linked
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
    assert all(n.endswith((".json", ".csv")) for n in names if n != "README.html")
    assert manifest["excluded"] == [{"system": "analytics", "reason_code": "legal_basis"}]


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


SHARED = {
    "controller": {"name": "Voorbeeld B.V."},
    "systems": [
        {
            "name": "chat",
            "kind": "chat",
            "connector": "intercom",
            "data_categories": ["berichten"],
            "purposes": ["klantenservice"],
            "legal_basis": ["contract"],
            "profiling": "none",
            "retention": "1 jaar",
            "third_parties": {"tickets": "hold"},
        }
    ],
}
OTHER = ("Jan Jansen", "jan@example.com", "Bel mij op 0612345678")


def _shared(system: str) -> Iterator[Record]:
    """A conversation the subject shares with Jan, one of the subject's own, a shared ticket."""
    yield Record(
        collection="conversations",
        data={
            "id": "shared",
            "created_at": 1717200000,
            "parts": [
                {"author": "Anna", "body": "Waar is mijn bestelling?"},
                {"author": OTHER[0], "email": OTHER[1], "body": OTHER[2]},
            ],
        },
        others=["/parts/1/author", "/parts/1/email", "/parts/1/body"],
    )
    yield Record(
        collection="conversations",
        data={"id": "own", "created_at": "2024-06-01T10:00:00Z", "parts": []},
    )
    yield Record(collection="tickets", data={"id": "t1", "cc": OTHER[1]}, others=["/cc"])


def _shared_export(tmp_path: Path, language: str = "nl") -> tuple[ExportSummary, Path]:
    out = tmp_path / "export.zip"
    request = factories.request("req-shared-1", "anna@example.nl", received_at=NOW)
    state = completed(request.model_copy(update={"language": language}), ["chat"])
    summary = write_export(out, state, parse_register(SHARED), _shared, generated_at=NOW)
    return summary, out


def test_art_15_4_export_redacts_shared_records(tmp_path: Path) -> None:
    """Art. 15(4) GDPR (EDPB Guidelines 01/2022, section 6.2): the copy carries the subject's
    part of a shared conversation and a marker where the other person's data was, never that
    data; a collection the register holds for review has its record held back and counted."""
    summary, out = _shared_export(tmp_path)
    with open_zip(out) as archive:
        everything = b"".join(archive.read(n) for n in archive.namelist()).decode("utf-8")
        conversations = json.loads(archive.read("data/chat/conversations.json"))
        manifest = json.loads(archive.read("manifest.json"))
        names = archive.namelist()
    for value in OTHER:
        assert value not in everything
    shared = conversations[0]["parts"]
    assert shared[0] == {"author": "Anna", "body": "Waar is mijn bestelling?"}
    assert shared[1] == {"author": MARKERS["nl"], "email": MARKERS["nl"], "body": MARKERS["nl"]}
    assert "data/chat/tickets.json" not in names  # its only record is held
    collections = {c["collection"]: c for c in manifest["collections"]}
    assert collections["tickets"] == {
        "system": "chat", "collection": "tickets", "records": 0, "held": 1, "redacted": 0
    }  # fmt: skip
    assert collections["conversations"]["redacted"] == 1
    [tickets] = [d for d in summary.digests["chat"] if d.collection == "tickets"]
    assert tickets.held == 1 and tickets.count == 0 and tickets.sample == []


def test_digests_count_and_date_each_collection(tmp_path: Path) -> None:
    """The report's summary: per collection how many records, since when, a listing sample;
    dates from the connector metadata's date field, ISO text or epoch seconds alike."""
    summary, _ = _shared_export(tmp_path, "en")
    [conversations, tickets] = summary.digests["chat"]
    assert (conversations.collection, conversations.count) == ("conversations", 2)
    assert conversations.earliest == date(2024, 6, 1) == conversations.latest
    assert list(conversations.fields) == ["id", "created_at", "parts"]
    assert conversations.sample[0]["parts"][1]["body"] == MARKERS["en"]  # redacted in the listing
    assert tickets.earliest is None and tickets.latest is None


def test_digest_listing_is_bounded_and_dates_span(tmp_path: Path) -> None:
    days = [date(2025, 1, 1) + timedelta(days=(37 * n) % 365) for n in range(LISTING_LIMIT + 19)]

    def records(system: str) -> Iterator[Record]:
        for n, day in enumerate(days):
            when = f"{day.isoformat()}T08:00:00Z"
            yield Record(collection="conversations", data={"id": n, "created_at": when})
        yield Record(collection="conversations", data={"id": "odd", "created_at": "gisteren"})

    out = tmp_path / "export.zip"
    request = factories.request("req-digest-1", "anna@example.nl", received_at=NOW)
    state = completed(request, ["chat"])
    summary = write_export(out, state, parse_register(SHARED), records, generated_at=NOW)
    [digest] = summary.digests["chat"]
    assert digest.count == LISTING_LIMIT + 20 and len(digest.sample) == LISTING_LIMIT
    assert (digest.earliest, digest.latest) == (min(days), max(days))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T10:00:00.000Z", date(2024, 3, 1)),
        ("2024-01-01T10:00:00-06:00", date(2024, 1, 1)),
        ("2024-03-01", date(2024, 3, 1)),
        (1717200000, date(2024, 6, 1)),
        ("1717200000", date(2024, 6, 1)),
        (1717200000123, date(2024, 6, 1)),  # milliseconds
        (True, None),
        (None, None),
        ("gisteren", None),
        ("2024-13-45", None),
        (1e300, None),
        (float("nan"), None),
        ("9" * 5000, None),
        ([2024], None),
        ({"date": "2024-03-01"}, None),
    ],
)
def test_record_dates_parse_safely(value: object, expected: date | None) -> None:
    assert record_date(value) == expected
