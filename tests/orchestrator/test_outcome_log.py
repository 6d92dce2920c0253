"""The outcome log: one sealed, append-only file per request (`orchestrator.artifacts.outcomes`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.artifacts.outcomes import MARKER, OutcomeLog
from schemas.events import OutcomeStatus, Record, RequestType, TaskOutcome
from schemas.primitives.sealing import DataKeyDestroyed, DataKeys, SealBroken

REQUEST = "req-log-1"


@pytest.fixture
def keys(tmp_path: Path) -> DataKeys:
    keys = DataKeys(tmp_path / "dek", os.urandom(32))
    keys.create(REQUEST)
    return keys


def outcome(system: str, email: str = "anna@example.nl", request: str = REQUEST) -> TaskOutcome:
    return TaskOutcome(
        request_id=request,
        task_id=f"{request}/{system}",
        system=system,
        action=RequestType.ACCESS,
        status=OutcomeStatus.COMPLETED,
        records=[Record(collection="contacts", data={"email": email})],
        completed_at=datetime.now(UTC),
    )


def test_outcomes_are_kept_sealed_and_the_last_one_per_system_counts(
    tmp_path: Path, keys: DataKeys
) -> None:
    log = OutcomeLog(tmp_path / "outcomes", keys)
    log.append(REQUEST, [outcome("crm"), outcome("mail")])
    log.append(REQUEST, [outcome("crm", "anna.new@example.nl")])  # a re-delivery
    raw = log.path(REQUEST).read_bytes()
    assert b"anna" not in raw and raw.count(MARKER) == 3
    assert oct(log.path(REQUEST).stat().st_mode & 0o777) == "0o600"
    kept = log.load(REQUEST)
    assert set(kept) == {"crm", "mail"}
    assert kept["crm"].records[0].data["email"] == "anna.new@example.nl"


def test_a_torn_last_entry_is_skipped_and_later_appends_still_read(
    tmp_path: Path, keys: DataKeys
) -> None:
    """A power loss mid-append leaves part of an entry; its batch was never committed, so the
    outcome comes again and is appended after the torn bytes."""
    log = OutcomeLog(tmp_path / "outcomes", keys)
    log.append(REQUEST, [outcome("crm")])
    whole = log.path(REQUEST).read_bytes()
    log.append(REQUEST, [outcome("mail")])
    torn = log.path(REQUEST).read_bytes()[: len(whole) + 40]
    log.path(REQUEST).write_bytes(torn)
    assert set(log.load(REQUEST)) == {"crm"}
    log.append(REQUEST, [outcome("mail")])
    assert set(log.load(REQUEST)) == {"crm", "mail"}


def test_an_altered_entry_is_an_error_not_a_missing_outcome(tmp_path: Path, keys: DataKeys) -> None:
    log = OutcomeLog(tmp_path / "outcomes", keys)
    log.append(REQUEST, [outcome("crm"), outcome("mail")])
    raw = bytearray(log.path(REQUEST).read_bytes())
    raw[len(MARKER) + 30] ^= 1
    log.path(REQUEST).write_bytes(bytes(raw))
    with pytest.raises(SealBroken):
        log.load(REQUEST)


def test_an_entry_moved_to_another_requests_file_does_not_open(
    tmp_path: Path, keys: DataKeys
) -> None:
    keys.create("req-log-2")
    log = OutcomeLog(tmp_path / "outcomes", keys)
    log.append(REQUEST, [outcome("crm")])
    log.path("req-log-2").write_bytes(log.path(REQUEST).read_bytes())
    with pytest.raises(SealBroken):
        log.load("req-log-2")
    with pytest.raises(ValueError):
        log.append(REQUEST, [outcome("crm", request="req-log-2")])


def test_after_shredding_the_outcomes_cannot_be_opened(tmp_path: Path, keys: DataKeys) -> None:
    log = OutcomeLog(tmp_path / "outcomes", keys)
    log.append(REQUEST, [outcome("crm")])
    keys.destroy(REQUEST)
    with pytest.raises(DataKeyDestroyed):
        log.load(REQUEST)
    log.discard(REQUEST)
    assert not log.path(REQUEST).exists()


def test_outcomes_kept_by_an_earlier_version_as_plain_files_are_still_read(
    tmp_path: Path, keys: DataKeys
) -> None:
    """A request open across an upgrade: its outcomes were kept as `requests/ID/outcomes/X.json`."""
    legacy = tmp_path / "requests" / REQUEST / "outcomes"
    legacy.mkdir(parents=True)
    (legacy / "crm.json").write_text(outcome("crm").model_dump_json())
    log = OutcomeLog(tmp_path / "outcomes", keys)
    log.append(REQUEST, [outcome("mail")])
    assert set(log.load(REQUEST)) == {"crm", "mail"}
    log.discard(REQUEST)
    assert not legacy.exists() and log.load(REQUEST) == {}
