"""`dsr tasks complete --attach`: what a person found in a manual system lands in the export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from schemas.events import RequestStatus
from tests.e2e.conftest import System
from tests.e2e.test_cli import dsr
from tests.e2e.test_pipeline import CHANTAL, new_request, open_zip

pytestmark = pytest.mark.broker

TRANSCRIPT = b"Tawk.to chat, 12 May: a question about order 1042 and its delivery.\n"


def waiting_archive_task(running: System, kind: str) -> tuple[str, str]:
    """Publish a `kind` request over the paper archive; (request id, its manual task id)."""
    request = new_request(kind, CHANTAL, scope=["paper_archive"])
    with running.publisher() as publisher:
        publisher.publish(request)
    running.wait_for(request.request_id, lambda s: s.status == RequestStatus.ACTION_REQUIRED)
    return request.request_id, f"{request.request_id}/paper_archive"


def complete(running: System, task: str, evidence: str, *options: str) -> CompletedProcess[str]:
    """`dsr tasks complete TASK --evidence EVIDENCE [OPTIONS]` in the system's data dir."""
    data_dir = ("--data-dir", str(running.data_dir))
    return dsr(running, "tasks", "complete", task, "--evidence", evidence, *options, *data_dir)


def test_art_15_1_manual_system_attachment_in_export(running: System, tmp_path: Path) -> None:
    """A system without an API is searched by hand; the file the person found is part of the
    subject's copy (Art. 15(1) and (3) GDPR), with its SHA-256 in the manifest, and goes with
    the request's other record files once the export is written."""
    request_id, task = waiting_archive_task(running, "access")
    found = tmp_path / "chat transcript.txt"
    found.write_bytes(TRANSCRIPT)
    rows = tmp_path / "contracts.csv"
    rows.write_text("signed_on,product\n2024-03-01,subscription\n")
    done = complete(
        running,
        task,
        "searched archive cabinet 3",
        *("--attach", str(found), "--attach-records", str(rows)),
    )
    assert done.returncode == 0, done.stderr
    assert "1 files and 1 records attached" in done.stdout
    status = running.wait_final(request_id)
    assert status.status == RequestStatus.COMPLETED
    assert status.systems["paper_archive"].counts.found == 2
    result = json.loads(Path(status.artifact or "").read_text())
    with open_zip(running, result["export"]) as archive:
        assert archive.read("attachments/paper_archive/chat_transcript.txt") == TRANSCRIPT
        manifest = json.loads(archive.read("manifest.json"))
        contracts = json.loads(archive.read("data/paper_archive/contracts.json"))
        report = archive.read("report.html").decode()
    listed = {f["path"]: f for f in manifest["files"]}
    attached = listed["attachments/paper_archive/chat_transcript.txt"]
    assert attached["sha256"] == hashlib.sha256(TRANSCRIPT).hexdigest()
    assert attached["system"] == "paper_archive" and attached["bytes"] == len(TRANSCRIPT)
    assert contracts == [{"signed_on": "2024-03-01", "product": "subscription"}]
    # The report lists the attachment with its hash, so the subject sees what was found there.
    assert 'href="attachments/paper_archive/chat_transcript.txt"' in report
    assert attached["sha256"] in report
    # The transcript is kept sealed, and removed with the request's record files.
    records = running.data_dir / "records" / request_id
    running.wait_for(request_id, lambda s: not records.exists(), timeout=30)


def test_attachments_are_refused_for_an_erasure(running: System, tmp_path: Path) -> None:
    request_id, task = waiting_archive_task(running, "erasure")
    found = tmp_path / "scan.pdf"
    found.write_bytes(b"%PDF-1.4")
    refused = complete(running, task, "box shredded", "--attach", str(found))
    assert refused.returncode != 0
    assert "files can only be attached to an access request" in refused.stderr
    assert not (running.data_dir / "records" / request_id).exists()
