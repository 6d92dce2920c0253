"""A YAML-declared REST connector against the real fake Acme CRM."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from connectors.base import ConnectorConfigError, ConnectorError
from connectors.conformance import dispatched
from connectors.declarative import DeclarativeConnector, find_spec, load_spec
from connectors.execute import perform
from connectors.fakes.acme import SUBJECT_EMAIL, SUBJECT_PHONE, TOKEN, AcmeCRM
from connectors.http import HttpError, PathSegmentError
from schemas.events import (
    Identifier,
    OutcomeStatus,
    RequestType,
    Subject,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "connectors" / "acme.yaml"
SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value=SUBJECT_EMAIL),
        Identifier(type="phone", value=SUBJECT_PHONE),
    ]
)
#: Everything about the subject that must never reach a log line or an error message.
PERSONAL = [SUBJECT_EMAIL, quote(SUBJECT_EMAIL, safe=""), SUBJECT_PHONE, "devries", "de Vries"]
_names = itertools.count(1)


@pytest.fixture
def acme() -> Iterator[AcmeCRM]:
    """A fresh fake Acme CRM per test."""
    with AcmeCRM() as server:
        yield server


def write_spec(path: Path, **changes: Any) -> Path:
    """The example spec with top-level keys replaced, fast limits unless given."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["rate_limit"] = {"requests": 200, "per_seconds": 1}
    data["retry"] = {"attempts": 3, "backoff_seconds": 0.01}
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def connector(acme: AcmeCRM, spec: Path, token: str = TOKEN) -> DeclarativeConnector:
    """A connector for the fake; a fresh system name keeps limiters apart."""
    return DeclarativeConnector(
        f"crm-{next(_names)}",
        {"spec": str(spec), "base_url": acme.url + "/api", "credentials": {"token": token}},
    )


def remaining_emails(acme: AcmeCRM) -> list[str]:
    """Email addresses of the contacts still in the fake."""
    return sorted(c["email"].lower() for c in acme.data["contacts"])


# -------------------------------------------------------------------------------- access


def test_access_finds_every_record_across_pages_with_its_collection(
    acme: AcmeCRM, tmp_path: Path
) -> None:
    crm = connector(acme, write_spec(tmp_path / "acme.yaml"))
    result = asyncio.run(crm.access(SUBJECT))
    assert result.status == OutcomeStatus.COMPLETED
    by_collection = Counter(r.collection for r in result.records)
    assert by_collection == {"contacts": 2, "notes": 6, "tickets": 3, "activities": 3}
    assert result.counts.found == 14
    contacts = [r.data for r in result.records if r.collection == "contacts"]
    assert {str(c["email"]).lower() for c in contacts} == {SUBJECT_EMAIL}  # nobody else's
    assert len(acme.calls(path_prefix="/api/contacts/101/notes")) == 3  # cursor pages


def test_find_pages_with_offset_and_deduplicates(acme: AcmeCRM, tmp_path: Path) -> None:
    spec = yaml.safe_load(EXAMPLE.read_text())["find"]
    spec["paging"]["page_size"] = 1
    crm = connector(acme, write_spec(tmp_path / "acme.yaml", find=spec, related=[]))
    result = asyncio.run(crm.access(SUBJECT))
    assert [r.data["id"] for r in result.records] == [101, 102]
    assert len(acme.calls(path_prefix="/api/contacts")) == 2  # stopped at meta.total


def test_example_spec_rate_limit_is_honoured(acme: AcmeCRM) -> None:
    crm = connector(acme, EXAMPLE)  # 5 requests per second, 2 at once
    acme.faults.latency_seconds = 0.02
    result = asyncio.run(crm.access(SUBJECT))
    assert result.counts.found == 14
    assert acme.max_in_window(1.0) <= 5
    assert acme.max_concurrent() <= 2


def test_subject_without_the_searched_identifier_becomes_manual(
    acme: AcmeCRM, tmp_path: Path
) -> None:
    crm = connector(acme, write_spec(tmp_path / "acme.yaml"))
    by_id = Subject(identifiers=[Identifier(type="customer_id", value="C-1")])
    result = asyncio.run(crm.access(by_id))
    assert result.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert "searched by email" in (result.instructions or "")
    assert acme.calls() == []


def test_unknown_subject_is_not_found(acme: AcmeCRM, tmp_path: Path) -> None:
    crm = connector(acme, write_spec(tmp_path / "acme.yaml"))
    nobody = Subject(identifiers=[Identifier(type="email", value="nobody@example.nl")])
    assert asyncio.run(crm.access(nobody)).status == OutcomeStatus.NOT_FOUND
    assert asyncio.run(crm.erase(nobody)).status == OutcomeStatus.NOT_FOUND


# ------------------------------------------------------------------------------- erasure


def test_erasure_deletes_then_reports_not_found(acme: AcmeCRM, tmp_path: Path) -> None:
    crm = connector(acme, write_spec(tmp_path / "acme.yaml"))
    others = [e for e in remaining_emails(acme) if e != SUBJECT_EMAIL]
    first = asyncio.run(crm.erase(SUBJECT))
    assert first.status == OutcomeStatus.COMPLETED
    assert (first.counts.found, first.counts.deleted) == (2, 2)
    assert remaining_emails(acme) == others  # everybody else is still there
    assert asyncio.run(crm.erase(SUBJECT)).status == OutcomeStatus.NOT_FOUND
    assert asyncio.run(crm.access(SUBJECT)).status == OutcomeStatus.NOT_FOUND


def test_erasure_polls_the_vendor_job_and_keeps_its_id(tmp_path: Path) -> None:
    job = {
        "id_path": "job.id",
        "poll": "/jobs/{job_id}",
        "status_path": "status",
        "done": ["completed"],
        "failed": ["failed"],
        "interval_seconds": 0.05,
    }
    steps = [
        {
            "method": "DELETE",
            "path": "/contacts/{id}",
            "expect": [202],
            "already_gone": [404],
            "job": job,
        }
    ]
    with AcmeCRM(async_delete=True, job_polls=2) as acme:
        crm = connector(acme, write_spec(tmp_path / "acme.yaml", erase=steps))
        result = asyncio.run(crm.erase(SUBJECT))
        assert result.status == OutcomeStatus.COMPLETED and result.counts.deleted == 2
        assert [(e.kind, e.value) for e in result.evidence] == [
            ("vendor_job_id", "job-1"),
            ("vendor_job_id", "job-2"),
        ]
        assert len(acme.calls("GET", "/api/jobs/")) == 4
        assert asyncio.run(crm.erase(SUBJECT)).status == OutcomeStatus.NOT_FOUND

        acme.job_fails = True
        acme.data["contacts"].append({"id": 201, "email": SUBJECT_EMAIL, "phone": None})
        with pytest.raises(ConnectorError) as caught:
            asyncio.run(crm.erase(SUBJECT))
        assert caught.value.retryable and "reported 'failed'" in str(caught.value)


def test_through_the_runtime_rights_come_from_the_spec(acme: AcmeCRM, tmp_path: Path) -> None:
    crm = connector(acme, write_spec(tmp_path / "acme.yaml"))
    assert crm.capabilities == {RequestType.ACCESS, RequestType.ERASURE}
    access = asyncio.run(perform(crm, dispatched(crm.system, RequestType.ACCESS, SUBJECT)))
    assert access.status == OutcomeStatus.COMPLETED and access.counts.found == 14
    objection = asyncio.run(perform(crm, dispatched(crm.system, RequestType.OBJECTION, SUBJECT)))
    assert objection.status == OutcomeStatus.MANUAL_ACTION_REQUIRED


def test_rejected_credentials_fail_the_task_without_retry(acme: AcmeCRM, tmp_path: Path) -> None:
    crm = connector(acme, write_spec(tmp_path / "acme.yaml"), token="expired")
    with pytest.raises(HttpError) as caught:
        asyncio.run(crm.access(SUBJECT))
    assert caught.value.status == 401 and not caught.value.retryable
    assert f"check the API key/token for system {crm.system!r}" in str(caught.value)
    outcome = asyncio.run(perform(crm, dispatched(crm.system, RequestType.ERASURE, SUBJECT)))
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    assert "credentials rejected (401)" in (outcome.reason or "")


# ------------------------------------------------------------------ exact matches, paths


def test_art_5_1_f_wildcard_search_result_is_not_found_and_nothing_is_erased(
    acme: AcmeCRM, tmp_path: Path
) -> None:
    """A vendor treating `*` as a wildcard finds everyone at example.com; by default only a
    record whose `email` equals the subject's exactly is kept, so nobody else is erased (an
    accidental destruction would be a personal data breach: Art. 4(12), Art. 5(1)(f) GDPR)."""
    acme.faults.wildcard_search = True
    crm = connector(acme, write_spec(tmp_path / "acme.yaml"))
    before = remaining_emails(acme)
    wildcard = Subject(identifiers=[Identifier(type="email", value="*@example.com")])
    assert asyncio.run(crm.access(wildcard)).status == OutcomeStatus.NOT_FOUND
    assert asyncio.run(crm.erase(wildcard)).status == OutcomeStatus.NOT_FOUND
    assert acme.calls("DELETE") == []
    assert remaining_emails(acme) == before
    found = asyncio.run(crm.access(SUBJECT))  # the subject itself is still found
    assert {r.data["id"] for r in found.records if r.collection == "contacts"} == {101, 102}


def test_match_none_keeps_what_the_vendor_returns_and_warns(
    acme: AcmeCRM, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    acme.faults.wildcard_search = True
    find = yaml.safe_load(EXAMPLE.read_text())["find"]
    find["match"] = "none"
    with caplog.at_level(logging.WARNING, logger="connectors.declarative"):
        crm = connector(acme, write_spec(tmp_path / "acme.yaml", find=find, related=[]))
    assert "find.match is none" in caplog.text and "wildcard" in caplog.text
    wildcard = Subject(identifiers=[Identifier(type="email", value="*@example.com")])
    result = asyncio.run(crm.access(wildcard))
    assert [r.data["email"] for r in result.records] == ["jan.jansen@example.com"]


def test_explicit_match_names_the_field_and_any_identifier_suffices(
    acme: AcmeCRM, tmp_path: Path
) -> None:
    acme.faults.wildcard_search = True
    find = yaml.safe_load(EXAMPLE.read_text())["find"]
    find["params"] = {"email": "{email}"}
    find["match"] = {"email": "email", "phone": "phone"}
    crm = connector(acme, write_spec(tmp_path / "acme.yaml", find=find, related=[]))
    by_phone = Subject(
        identifiers=[
            Identifier(type="email", value="%@example.%"),
            Identifier(type="phone", value="+31 6 87654321"),
        ]
    )
    result = asyncio.run(crm.access(by_phone))
    assert [r.data["id"] for r in result.records] == [103]  # Jan's phone, nobody else


def test_a_search_result_without_the_match_field_fails_naming_find_match(
    acme: AcmeCRM, tmp_path: Path
) -> None:
    find = yaml.safe_load(EXAMPLE.read_text())["find"]
    find["match"] = {"email_address": "email"}
    crm = connector(acme, write_spec(tmp_path / "acme.yaml", find=find))
    outcome = asyncio.run(perform(crm, dispatched(crm.system, RequestType.ERASURE, SUBJECT)))
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    assert "none of the fields email_address" in (outcome.reason or "")
    assert "set find.match in" in (outcome.reason or "")
    assert acme.calls("DELETE") == []


def test_dot_dot_record_id_is_refused_and_nothing_is_erased(acme: AcmeCRM, tmp_path: Path) -> None:
    """`/contacts/{id}` with the id `..` would be `/`; `/contacts/{id}/notes` would be
    `/notes`: refused before the first call, and before anything is erased."""
    acme.data["contacts"].append({"id": "..", "email": SUBJECT_EMAIL, "phone": None})
    crm = connector(acme, write_spec(tmp_path / "acme.yaml"))
    before = remaining_emails(acme)
    with pytest.raises(PathSegmentError) as caught:
        asyncio.run(crm.erase(SUBJECT))
    assert not caught.value.retryable
    assert f"{crm.system}: DELETE /contacts/{{id}}: refused: " in str(caught.value)
    assert acme.calls("DELETE") == [] and remaining_emails(acme) == before
    with pytest.raises(PathSegmentError, match=r"GET /contacts/\{id\}/notes: refused"):
        asyncio.run(crm.access(SUBJECT))
    assert acme.calls(path_prefix="/api/notes") == []
    outcome = asyncio.run(perform(crm, dispatched(crm.system, RequestType.ERASURE, SUBJECT)))
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable


# ---------------------------------------------------------------------------- hot reload


def _touch_later(path: Path) -> None:
    # Coarse file-system clocks may give two quick writes the same mtime.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_changed_spec_takes_effect_on_the_next_task(acme: AcmeCRM, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "acme.yaml")
    crm = connector(acme, spec)
    assert "notes" in {r.collection for r in asyncio.run(crm.access(SUBJECT)).records}

    related = yaml.safe_load(EXAMPLE.read_text())["related"][:1]
    related[0]["collection"] = "crm_notes"
    write_spec(spec, related=related, rights=["access"])
    _touch_later(spec)
    records = asyncio.run(crm.access(SUBJECT)).records
    assert Counter(r.collection for r in records) == {"contacts": 2, "crm_notes": 6}
    erasure = asyncio.run(perform(crm, dispatched(crm.system, RequestType.ERASURE, SUBJECT)))
    assert erasure.status == OutcomeStatus.MANUAL_ACTION_REQUIRED  # erasure was taken out
    assert len(acme.calls("DELETE")) == 0


def test_a_spec_broken_on_disk_fails_tasks_until_fixed(acme: AcmeCRM, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "acme.yaml")
    crm = connector(acme, spec)
    good = spec.read_text()
    spec.write_text(good.replace("records_path: contacts", "records_pth: contacts"))
    _touch_later(spec)
    outcome = asyncio.run(perform(crm, dispatched(crm.system, RequestType.ACCESS, SUBJECT)))
    assert outcome.status == OutcomeStatus.FAILED and outcome.retryable
    assert "acme.yaml: find.records_path: Field required" in (outcome.reason or "")
    spec.write_text(good)
    _touch_later(spec)
    assert asyncio.run(crm.access(SUBJECT)).status == OutcomeStatus.COMPLETED


# --------------------------------------------------------------------------- spec errors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["find"].pop("records_path"), "find.records_path: Field required"),
        (lambda d: d["find"].update(colection="x"), "find.colection: Extra inputs"),
        (lambda d: d.pop("erase"), "rights: erasure needs an 'erase' list"),
        (lambda d: d["find"].update(params={}), "find: must use an identifier placeholder"),
        (lambda d: d.update(rights=["access", "objection"]), "objection cannot be declared"),
        (lambda d: d["auth"].pop("token"), "auth: auth type 'bearer' needs token"),
        (lambda d: d["related"][0]["paging"].pop("cursor_param"), "related.0.paging.cursor"),
        (
            lambda d: d["find"].update(match={"email": "E-mail"}),
            "find: match: email: 'E-mail' is not an identifier type",
        ),
        (lambda d: d["find"].update(match="all"), "find.match"),
    ],
)
def test_spec_errors_name_the_file_and_the_field(tmp_path: Path, change: Any, message: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    change(data)
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConnectorConfigError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_missing_credentials_are_named(acme: AcmeCRM) -> None:
    with pytest.raises(ConnectorConfigError, match=r"auth: .*\{credentials.token\}"):
        DeclarativeConnector("crm", {"spec": str(EXAMPLE), "base_url": acme.url})


def test_specs_are_found_by_name_in_the_connector_dir(
    acme: AcmeCRM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(tmp_path / "acme.yaml")
    monkeypatch.setenv("DSR_CONNECTOR_DIR", str(tmp_path))
    assert find_spec("acme") == tmp_path / "acme.yaml"
    assert find_spec("hubspot") is None
    crm = DeclarativeConnector(
        "crm-dir", {"spec": "acme", "base_url": acme.url + "/api", "credentials": {"token": TOKEN}}
    )
    assert crm.spec.name == "acme-crm"
    with pytest.raises(ConnectorConfigError, match="'hubspot' not found"):
        DeclarativeConnector("crm", {"spec": "hubspot"})


# --------------------------------------------------------------------------------- leaks


def test_no_personal_data_in_logs_or_errors(
    acme: AcmeCRM, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (None, "httpx", "httpcore", "httpcore.http11", "httpcore.connection"):
        caplog.set_level(logging.DEBUG, logger=name)
    acme.faults.rate_limit_every = 4
    acme.faults.fail_5xx = 1
    find = yaml.safe_load(EXAMPLE.read_text())["find"]
    find["params"] = {"email": "{email}", "phone": "{phone}"}
    find["match"] = {"email": "email"}
    crm = connector(acme, write_spec(tmp_path / "acme.yaml", find=find))
    asyncio.run(crm.access(SUBJECT))
    asyncio.run(crm.erase(SUBJECT))
    asyncio.run(crm.erase(SUBJECT))
    bad = connector(acme, write_spec(tmp_path / "bad.yaml", find=find), token="nope")
    failed = asyncio.run(perform(bad, dispatched(bad.system, RequestType.ACCESS, SUBJECT)))
    assert failed.status == OutcomeStatus.FAILED
    text = caplog.text + "".join(str(r.args) for r in caplog.records) + (failed.reason or "")
    for secret in PERSONAL:
        assert secret.lower() not in text.lower(), secret
    assert "GET /contacts?email={email}&phone={phone}" in caplog.text
