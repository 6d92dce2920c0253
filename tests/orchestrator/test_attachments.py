"""What a person found in a manual system: stored sealed, read back checked, in the export."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.artifacts.attachments import (
    AttachedFiles,
    AttachmentError,
    attachment_name,
    media_type,
    store_files,
    store_records,
)
from orchestrator.artifacts.export import write_export
from orchestrator.status.tasks import TaskError, check_attachable, manual_outcome, waiting_task
from schemas.events import OutcomeStatus, RequestStatusChanged, TaskOutcome
from schemas.primitives.records import RecordStore, RecordStoreError
from schemas.primitives.sealing import DataKeys
from tests import factories
from tests.orchestrator.test_export import NOW, completed, register

REQUEST = "req-attach-1"
TRANSCRIPT = b"Chat 12 mei: Noor vroeg naar haar bestelling.\n" * 50


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    """A record store in which REQUEST has a data key."""
    keys = DataKeys(tmp_path / "dek", os.urandom(32))
    keys.create(REQUEST)
    return RecordStore(tmp_path / "records", keys)


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def task_of(kind: str) -> object:
    """The waiting manual task `crm` of a REQUEST of type `kind`."""
    status = RequestStatusChanged.model_validate(
        {
            "request_id": REQUEST,
            "request_type": kind,
            "sequence": 3,
            "status": "action_required",
            "trigger": "outcome",
            "systems_total": 1,
            "systems_done": 0,
            "systems": {
                "crm": {"status": "manual_action_required", "attempt": 1, "instructions": "Look"}
            },
            "received_at": NOW,
            "deadline": NOW + timedelta(days=20),
            "days_left": 20,
            "occurred_at": NOW,
        }
    )
    return waiting_task(status, "crm", f"{REQUEST}/crm")


def test_art_15_3_attached_file_is_stored_sealed_and_read_back_intact(
    store: RecordStore, tmp_path: Path
) -> None:
    """What a person found by hand is part of the copy (Art. 15(3) GDPR): kept sealed with the
    request's data key like connector records, and returned byte for byte."""
    source = write(tmp_path / "in", "transcript.txt", TRANSCRIPT)
    [attachment] = store_files(store, REQUEST, "crm", [source])
    assert attachment.name == "transcript.txt" and attachment.media_type == "text/plain"
    assert attachment.sha256 == hashlib.sha256(TRANSCRIPT).hexdigest()
    assert attachment.size == len(TRANSCRIPT)
    stored = store.path(attachment)
    assert stored.parent == store.root / REQUEST  # goes with the request's records
    assert b"Noor" not in stored.read_bytes()  # sealed at rest
    assert b"".join(store.read_attachment(attachment, REQUEST)) == TRANSCRIPT


def test_an_altered_attachment_is_refused(store: RecordStore, tmp_path: Path) -> None:
    [attachment] = store_files(store, REQUEST, "crm", [write(tmp_path, "a.txt", TRANSCRIPT)])
    wrong_hash = attachment.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(RecordStoreError, match="does not match its SHA-256"):
        b"".join(store.read_attachment(wrong_hash, REQUEST))
    data = bytearray(store.path(attachment).read_bytes())
    data[-5] ^= 1
    store.path(attachment).write_bytes(bytes(data))
    with pytest.raises(RecordStoreError):
        b"".join(store.read_attachment(attachment, REQUEST))
    with pytest.raises(RecordStoreError, match="does not belong to request"):
        b"".join(store.read_attachment(attachment, "req-other"))


def test_names_are_sanitised_and_unique_within_a_task() -> None:
    used: set[str] = set()
    assert attachment_name("Gesprek (mei) é.PDF", used) == "Gesprek_mei_e.PDF"
    assert attachment_name("gesprek_(mei)_é.pdf", used) == "gesprek_mei_e-2.pdf"
    assert attachment_name("..hidden", used) == "hidden"
    assert attachment_name("...", used) == "attachment"
    long = attachment_name("x" * 300 + ".txt", used)
    assert len(long) <= 128 and long.endswith(".txt")
    assert media_type("scan.pdf") == "application/pdf"
    assert media_type("transcript") == "application/octet-stream"


def test_a_name_with_personal_data_is_refused_before_anything_is_stored(
    store: RecordStore, tmp_path: Path
) -> None:
    """File names travel in the outcome event, which must not identify the subject."""
    good = write(tmp_path, "transcript.txt", TRANSCRIPT)
    bad = write(tmp_path, "chat-noor@example.nl.txt", TRANSCRIPT)
    with pytest.raises(AttachmentError, match="email address") as error:
        store_files(store, REQUEST, "crm", [good, bad])
    assert "noor" not in str(error.value)
    assert not (store.root / REQUEST).exists() or not any((store.root / REQUEST).iterdir())


def test_files_over_the_limit_are_refused_and_nothing_is_kept(
    store: RecordStore, tmp_path: Path
) -> None:
    small = write(tmp_path, "small.txt", b"ok")
    big = write(tmp_path, "big.bin", b"\0" * (1024 * 1024 + 1))
    with pytest.raises(AttachmentError, match=r"attached file 2 is larger than 1 MB.*--max-size"):
        store_files(store, REQUEST, "crm", [small, big], max_mb=1)
    with pytest.raises(AttachmentError, match="attached file 1 does not exist"):
        store_files(store, REQUEST, "crm", [tmp_path / "missing.txt"])
    assert not (store.root / REQUEST).exists() or not any((store.root / REQUEST).iterdir())


def test_a_file_growing_past_the_limit_while_read_leaves_nothing(
    store: RecordStore, tmp_path: Path
) -> None:
    with (tmp_path / "growing").open("wb") as handle:
        handle.write(b"\0" * 100)
    with (tmp_path / "growing").open("rb") as source, pytest.raises(RecordStoreError):
        store.attach(REQUEST, "crm", source, name="g", media_type="x/y", max_bytes=10)
    assert list((store.root / REQUEST).iterdir()) == []


def test_art_15_3_records_found_by_hand_become_records_of_the_system(
    store: RecordStore, tmp_path: Path
) -> None:
    """JSON and CSV files become collections named after the file, read like connector
    records (then listed in the report like any other collection)."""
    chats = write(
        tmp_path, "chats.json", json.dumps([{"at": "2026-05-12", "text": "hoi"}] * 2).encode()
    )
    orders = write(tmp_path, "orders.csv", b"id,x\n7,a\n")
    ref = store_records(store, REQUEST, "crm", 1, [chats, orders])
    assert ref is not None and ref.collections == {"chats": 2, "orders": 1}
    records = list(store.read(ref, REQUEST))
    assert records[-1].collection == "orders" and records[-1].data == {"id": "7", "x": "a"}
    assert store_records(store, REQUEST, "crm", 1, []) is None


def test_bad_records_files_are_refused_without_echoing_them(
    store: RecordStore, tmp_path: Path
) -> None:
    broken = write(tmp_path, "broken.json", b'{"name": "Noor de Vries",')
    with pytest.raises(AttachmentError, match="records file 1 is not valid JSON") as error:
        store_records(store, REQUEST, "crm", 1, [broken])
    assert "Noor" not in str(error.value)
    scalars = write(tmp_path, "scalars.json", b"[1, 2]")
    with pytest.raises(AttachmentError, match="JSON object or an array of objects"):
        store_records(store, REQUEST, "crm", 1, [scalars])
    with pytest.raises(AttachmentError, match=r"neither \.json nor \.csv"):
        store_records(store, REQUEST, "crm", 1, [write(tmp_path, "scan.pdf", b"%PDF")])


def _outcome(attachments: list) -> TaskOutcome:  # type: ignore[type-arg]
    return TaskOutcome(
        request_id=REQUEST,
        task_id=f"{REQUEST}/crm",
        system="crm",
        action="access",
        status=OutcomeStatus.COMPLETED,
        attachments=attachments,
        completed_at=NOW,
    )


def test_art_15_1_attachment_in_export_with_its_hash_in_the_manifest(
    store: RecordStore, tmp_path: Path
) -> None:
    """The export copies each attached file to attachments/<system>/<name>, and the manifest
    lists it with its SHA-256."""
    attached = store_files(store, REQUEST, "crm", [write(tmp_path, "transcript.txt", TRANSCRIPT)])
    request = factories.request(REQUEST, "noor@example.nl", received_at=NOW)
    outcomes = {"crm": _outcome(attached)}
    out = tmp_path / "export.zip"
    write_export(
        out,
        completed(request, ["crm", "mailing"]),
        register(),
        lambda system: [],
        generated_at=datetime.now(UTC),
        attachments=AttachedFiles(store, REQUEST, outcomes.get),
    )
    with zipfile.ZipFile(out) as archive:
        assert archive.read("attachments/crm/transcript.txt") == TRANSCRIPT
        files = json.loads(archive.read("manifest.json"))["files"]
    [listed] = [f for f in files if f["path"].startswith("attachments/")]
    assert listed == {
        "path": "attachments/crm/transcript.txt",
        "sha256": hashlib.sha256(TRANSCRIPT).hexdigest(),
        "bytes": len(TRANSCRIPT),
        "system": "crm",
    }


def test_an_export_with_an_altered_attachment_fails_naming_the_system_only(
    store: RecordStore, tmp_path: Path
) -> None:
    [attachment] = store_files(store, REQUEST, "crm", [write(tmp_path, "noor.txt", TRANSCRIPT)])
    altered = attachment.model_copy(update={"sha256": "1" * 64})
    request = factories.request(REQUEST, "noor@example.nl", received_at=NOW)
    out = tmp_path / "export.zip"
    with pytest.raises(RecordStoreError, match="attachment 1 of system 'crm'") as error:
        write_export(
            out,
            completed(request, ["crm"]),
            register(),
            lambda system: [],
            generated_at=NOW,
            attachments=AttachedFiles(store, REQUEST, {"crm": _outcome([altered])}.get),
        )
    assert "noor" not in str(error.value)
    assert not out.exists()  # a half-written export is never published


def test_attachments_are_removed_with_the_request_records(
    store: RecordStore, tmp_path: Path
) -> None:
    [attachment] = store_files(store, REQUEST, "crm", [write(tmp_path, "a.txt", TRANSCRIPT)])
    store.discard(REQUEST)
    assert not store.path(attachment).exists()


def test_art_15_3_only_exports_take_attachments() -> None:
    """Files go into an access export; records also into a portability export (filtered to
    what the subject provided, Art. 20(1) GDPR); nothing goes to other rights or to a task
    reported as not found."""
    check_attachable(task_of("access"), files=True)  # type: ignore[arg-type]
    check_attachable(task_of("portability"))  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="files can only be attached to an access request"):
        check_attachable(task_of("portability"), files=True)  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="erasure request"):
        check_attachable(task_of("erasure"))  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="--outcome completed"):
        check_attachable(task_of("access"), "not_found", files=True)  # type: ignore[arg-type]


def test_the_outcome_carries_the_attachments_and_counts_what_was_found(
    store: RecordStore, tmp_path: Path
) -> None:
    attached = store_files(store, REQUEST, "crm", [write(tmp_path, "a.txt", TRANSCRIPT)])
    rows = write(tmp_path, "chats.json", b'[{"text": "hoi"}, {"text": "dag"}]')
    ref = store_records(store, REQUEST, "crm", 1, [rows])
    outcome = manual_outcome(
        task_of("access"),  # type: ignore[arg-type]
        "searched the Tawk.to dashboard",
        attachments=attached,
        records_ref=ref,
        now=NOW,
    )
    assert outcome.attachments == attached and outcome.records_ref == ref
    assert outcome.counts.found == 3 and outcome.status == OutcomeStatus.COMPLETED
    with pytest.raises(TaskError, match="erasure request"):
        manual_outcome(task_of("erasure"), "done", attachments=attached)  # type: ignore[arg-type]
