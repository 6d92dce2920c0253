"""A request's whole journey on the real embedded broker, with real worker processes."""

from __future__ import annotations

import io
import json
import sqlite3
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from orchestrator.artifacts.export import open_export
from orchestrator.runtime import demo
from schemas.envelope import KafkaMessage, encode
from schemas.events import (
    DeadLetter,
    DeadlineExtended,
    IdentityVerified,
    RequestStatus,
    RequestStatusChanged,
    RequestSubmitted,
    StatusTrigger,
    TaskDispatched,
    TaskOutcome,
    VerificationMethod,
)
from schemas.topics import DEAD_LETTER, OUTCOMES, REQUESTS, STATUS, TASKS
from tests.e2e.conftest import DEMO_SYSTEMS, System, committed_offset, read_topic
from tests.orchestrator import test_lifecycle as lifecycle

pytestmark = pytest.mark.broker

ANNA = demo.DEMO_EMAIL
BRAM = "bram.jansen@example.nl"
CHANTAL = "chantal@example.com"


def new_request(
    kind: str, email: str, *, verified: bool = True, **extra: object
) -> RequestSubmitted:
    """A request received now, with a new id, over the demo systems unless `scope` says."""
    fields: dict[str, object] = {
        "request_id": f"t-{kind}-{uuid.uuid4().hex[:10]}",
        "type": kind,
        "scope": DEMO_SYSTEMS,
        **extra,
    }
    return lifecycle.request(verified, now=datetime.now(UTC), email=email, **fields)


def rows_for(systems_dir: Path, email: str) -> dict[str, int]:
    """How many rows mention `email`, per demo database in the requests' scope, queried directly."""
    counts = {}
    for db in sorted(systems_dir.glob("*.db")):
        if db.stem not in DEMO_SYSTEMS:
            continue  # the order database has its own test (retention, tests/e2e/test_demo.py)
        with sqlite3.connect(db) as conn:
            total = 0
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
                for column in columns:
                    total += conn.execute(
                        f"SELECT count(*) FROM {table} WHERE lower({column}) = ?", (email,)
                    ).fetchone()[0]
        counts[db.stem] = total
    return counts


def open_zip(system: System, path: str) -> zipfile.ZipFile:
    """A sealed export as a ZIP, opened in memory (the tests' exports are small)."""
    chunks = open_export(Path(path), system.stack.settings.data_keys())
    return zipfile.ZipFile(io.BytesIO(b"".join(chunks)))


def finished_events(system: System, request_id: str) -> list[RequestStatusChanged]:
    return [
        e.body
        for _, e in read_topic(system.kafka, STATUS.name)
        if e is not None
        and isinstance(e.body, RequestStatusChanged)
        and e.body.request_id == request_id
        and e.body.trigger == StatusTrigger.FINISHED
    ]


def test_access_collects_records_from_all_four_systems(running: System) -> None:
    request = new_request("access", ANNA)
    with running.publisher() as publisher:
        publisher.publish(request)
    status = running.wait_final(request.request_id)
    assert status.status == RequestStatus.COMPLETED, status.reason
    assert status.systems_done == status.systems_total == 4
    assert status.artifact and Path(status.artifact).exists()
    result = json.loads(Path(status.artifact).read_text())
    assert set(result["systems"]) == set(DEMO_SYSTEMS)
    for name, entry in result["systems"].items():
        assert entry["status"] == "completed", name
        assert entry["collections"], f"no records from {name}"
        assert entry["counts"]["found"] == sum(entry["collections"].values())

    # The records are in the export, one file per system and collection ...
    records: dict[str, list[dict[str, object]]] = {}
    with open_zip(running, result["export"]) as archive:
        for name in archive.namelist():
            if name.startswith("data/") and name.endswith(".json"):
                records[name] = json.loads(archive.read(name))
    collections = {path.split("/")[2].removesuffix(".json") for path in records}
    assert {
        "contacts",
        "deals",
        "subscribers",
        "campaign_events",
        "visitors",
        "chat_messages",
        "requesters",
        "tickets",
    } <= collections
    for path, rows in records.items():
        assert rows and all(ANNA in json.dumps(row).lower() for row in rows), path
    # ... and never travelled through Kafka in the clear: the outcomes carry a reference with
    # a hash, and a small result's records sealed with the request's data key.
    read = [
        (record, envelope.body)
        for record, envelope in read_topic(running.kafka, OUTCOMES.name)
        if envelope is not None and getattr(envelope.body, "request_id", None) == request.request_id
    ]
    assert len(read) == 4
    for record, outcome in read:
        assert isinstance(outcome, TaskOutcome)
        assert outcome.records == [] and outcome.records_ref is not None
        assert len(outcome.records_ref.sha256) == 64 and outcome.records_ref.count > 0
        assert ANNA.encode() not in record.value.lower()  # type: ignore[attr-defined]
    inline = [o.records_ref.sealed is not None for _, o in read]  # type: ignore[union-attr]
    assert any(inline) and not all(inline), "both: files for large results, inline for small"
    # The record files are removed once the export holds them (after a short grace period).
    leftover = running.data_dir / "records" / request.request_id
    deadline = time.monotonic() + 10
    while leftover.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftover.exists()


def test_erasure_removes_the_subject_from_all_four_systems(running: System) -> None:
    before = rows_for(running.systems_dir, BRAM)
    assert all(before.values()), before
    others_before = rows_for(running.systems_dir, CHANTAL)
    request = new_request("erasure", BRAM)
    with running.publisher() as publisher:
        publisher.publish(request)
    status = running.wait_final(request.request_id)
    assert status.status == RequestStatus.COMPLETED, status.reason
    assert rows_for(running.systems_dir, BRAM) == dict.fromkeys(before, 0)
    assert rows_for(running.systems_dir, CHANTAL) == others_before  # nobody else touched
    deleted = {name: p.counts.deleted for name, p in status.systems.items()}
    assert all(deleted.values()), deleted
    result = json.loads(Path(status.artifact or "").read_text())
    assert BRAM not in json.dumps(result).lower()  # an erasure result holds no personal data


def test_unverified_request_waits_for_verification(running: System) -> None:
    request = new_request("access", CHANTAL, verified=False)
    with running.publisher() as publisher:
        publisher.publish(request)
        running.wait_for(
            request.request_id, lambda s: s.status == RequestStatus.AWAITING_VERIFICATION
        )
        time.sleep(2)  # give a wrongly eager orchestrator time to fan out
        tasks = [
            e.body
            for _, e in read_topic(running.kafka, TASKS.name)
            if e is not None
            and isinstance(e.body, TaskDispatched)
            and e.body.request_id == request.request_id
        ]
        assert tasks == []
        publisher.verify_identity(
            IdentityVerified(
                request_id=request.request_id,
                method=VerificationMethod.ID_DOCUMENT,
                verified_at=datetime.now(UTC),
            )
        )
    status = running.wait_final(request.request_id)
    assert status.status == RequestStatus.COMPLETED
    assert status.verified_at is not None


def test_duplicate_request_yields_one_result(running: System) -> None:
    request = new_request("access", ANNA)
    with running.publisher() as publisher:
        publisher.publish(request)
        publisher.publish(request)
        running.wait_final(request.request_id)
        publisher.publish(request)  # a late re-send after completion
    time.sleep(2)
    assert len(finished_events(running, request.request_id)) == 1
    results = list((running.data_dir / "results").glob(f"{request.request_id}*"))
    assert len(results) == 1


def test_malformed_events_are_dead_lettered_and_the_worker_keeps_running(running: System) -> None:
    producer = KafkaProducer(**running.kafka.kafka_python_options())
    marker = uuid.uuid4().hex[:8]
    bad_body = new_request("access", ANNA).model_dump(mode="json")
    bad_body["type"] = "teleport"
    bad_body["request_id"] = f"bad-{marker}"
    headers = encode(new_request("access", ANNA), source="tests").headers
    # Signed by a known publisher, so the body is what gets checked (and refused).
    bad = running.signing.signer().sign(
        KafkaMessage(f"bad-{marker}".encode(), json.dumps(bad_body).encode(), headers)
    )
    producer.send(REQUESTS.name, key=f"junk-{marker}".encode(), value=b"\xff\xfe not json")
    producer.send(REQUESTS.name, key=bad.key, value=bad.value, headers=bad.headers)
    producer.flush(10)
    producer.close()

    request = new_request("access", ANNA)
    with running.publisher() as publisher:
        publisher.publish(request)
    assert running.wait_final(request.request_id).status == RequestStatus.COMPLETED

    letters = {
        e.body.key: e.body
        for _, e in read_topic(running.kafka, DEAD_LETTER.name)
        if e is not None and isinstance(e.body, DeadLetter)
    }
    junk, bad = letters[f"junk-{marker}"], letters[f"bad-{marker}"]
    assert junk.stage == "envelope" and "not a CloudEvent" in junk.reason
    assert bad.stage == "body" and "type" in bad.reason and "teleport" not in bad.reason
    assert junk.source_topic == REQUESTS.name and junk.value_base64  # the original is kept
    running.stack.check()  # no worker died


def test_failing_system_gives_partially_completed_with_reason(running: System) -> None:
    request = new_request("access", ANNA, scope=["crm", "ledger"])
    with running.publisher() as publisher:
        publisher.publish(request)
    status = running.wait_final(request.request_id)
    assert status.status == RequestStatus.PARTIALLY_COMPLETED
    assert status.reason and "ledger" in status.reason and "injected fatal failure" in status.reason
    assert status.systems["crm"].status == "completed"
    assert status.systems["ledger"].status == "failed"
    # The subject gets a letter saying, per system, what is missing and why (Dutch default).
    result = json.loads(Path(status.artifact or "").read_text())
    letter = Path(result["documents"]["missing"]).read_text()
    assert letter.endswith("</html>") and "missing.nl.html" in result["documents"]["missing"]
    assert 'data-system="ledger"' in letter and "injected fatal failure" in letter
    assert ANNA not in letter.lower()


def test_retryable_failure_is_retried_then_failed(running: System) -> None:
    request = new_request("erasure", ANNA, scope=["flaky"])
    with running.publisher() as publisher:
        publisher.publish(request)
    status = running.wait_final(request.request_id)
    assert status.status == RequestStatus.FAILED
    assert status.systems["flaky"].attempt == 3  # max_attempts
    assert status.systems["flaky"].retryable


def test_request_received_long_ago_is_flagged_overdue(running: System) -> None:
    request = new_request(
        "access", ANNA, received_at=datetime.now(UTC) - timedelta(days=40), verified=False
    )
    with running.publisher() as publisher:
        publisher.publish(request)
    # overdue on arrival, then refused by the deadline timer: identity never verified
    view = running.wait_for(request.request_id, lambda s: s.status == RequestStatus.REFUSED)
    triggers = [e.trigger for e in view.history[request.request_id]]
    assert StatusTrigger.OVERDUE in triggers
    final = view.history[request.request_id][-1]
    assert final.reason and final.artifact
    # The refusal letter states the reason in the request's language.
    result = json.loads(Path(final.artifact).read_text())
    letter = Path(result["documents"]["refusal"]).read_text()
    assert "Uw verzoek is geweigerd" in letter and final.reason in letter
    assert "autoriteitpersoonsgegevens.nl" in letter


def test_art_12_3_extension_after_deadline_refused(running: System) -> None:
    """An extension published after the deadline is dead-lettered with the rule, shows on the
    request, and the request stays overdue (Art. 12(3) GDPR)."""
    request = new_request(
        "access", ANNA, scope=["paper_archive"], received_at=datetime.now(UTC) - timedelta(days=40)
    )
    with running.publisher() as publisher:
        publisher.publish(request)
        running.wait_for(
            request.request_id, lambda s: s.status == RequestStatus.ACTION_REQUIRED and s.overdue
        )
        publisher.extend_deadline(
            DeadlineExtended(
                request_id=request.request_id,
                months=2,
                reason="the paper archive has to be searched by hand",
                extended_at=datetime.now(UTC),
            )
        )
    refused = running.wait_for(
        request.request_id,
        lambda s: bool(s.reason and s.reason.startswith("deadline extension refused")),
    )
    latest = refused.history[request.request_id][-1]
    assert latest.overdue and not latest.deadline_extended
    assert latest.deadline < datetime.now(UTC)
    letters = [
        e.body
        for _, e in read_topic(running.kafka, DEAD_LETTER.name)
        if e is not None and isinstance(e.body, DeadLetter) and e.body.key == request.request_id
    ]
    assert any("refused" in d.reason and "Art. 12(3) GDPR" in d.reason for d in letters)
    assert not (running.data_dir / "documents" / request.request_id / "extension.nl.html").exists()
    running.stack.check()


def test_system_added_to_the_register_is_served_without_a_restart(running: System) -> None:
    import yaml

    path = running.stack.settings.register_file
    data = yaml.safe_load(path.read_text())
    data["systems"].append(
        {
            "name": "newsletter",
            "kind": "mailing",
            "connector": "memory",
            "settings": {"records": [{"collection": "subscribers", "data": {"email": ANNA}}]},
            "data_categories": ["email address"],
            "purposes": ["newsletter"],
            "legal_basis": ["consent"],
            "profiling": "none",
            "retention": "until unsubscribed",
        }
    )
    path.write_text(yaml.safe_dump(data))
    request = new_request("access", ANNA, scope=["newsletter"])
    with running.publisher() as publisher:
        publisher.publish(request)
    status = running.wait_final(request.request_id)
    assert status.status == RequestStatus.COMPLETED, status.reason
    assert status.systems["newsletter"].counts.found == 1


def test_declarative_spec_changed_while_the_worker_runs_applies_to_the_next_task(
    running: System,
) -> None:
    import yaml

    from connectors.fakes import acme

    subject_email = acme.SUBJECT_EMAIL
    first = new_request("erasure", subject_email, scope=["acme"])
    with running.publisher() as publisher:
        publisher.publish(first)
        status = running.wait_for(
            first.request_id, lambda s: s.status == RequestStatus.ACTION_REQUIRED
        ).get(first.request_id)
        assert status is not None
        assert status.systems["acme"].status == "manual_action_required"  # spec: access only

        path = running.spec_dir / "acme.yaml"
        spec = yaml.safe_load(path.read_text())
        spec["rights"] = ["access", "erasure"]
        path.write_text(yaml.safe_dump(spec))  # no restart

        second = new_request("erasure", subject_email, scope=["acme"])
        publisher.publish(second)
    done = running.wait_final(second.request_id)
    assert done.status == RequestStatus.COMPLETED, done.reason
    assert done.systems["acme"].counts.deleted == 2


def test_a_finished_requests_events_are_committed_by_the_orchestrator(running: System) -> None:
    """A batch's events are acked when the agent moves on, after the batch's outputs are with
    the broker and the table's changelog is flushed (`Orchestrator.handle`); acked, they are
    committed. Once a request is finished, the offsets of its request and outcome events count
    as done for the orchestrator's group, and a restarted orchestrator reads on from there
    (a change to how batches are taken or acked that lost the acks fails here)."""
    request = new_request("access", BRAM)
    with running.publisher() as publisher:
        publisher.publish(request)
        running.wait_final(request.request_id)
    mine = [
        record
        for topic in (REQUESTS.name, OUTCOMES.name)
        for record, envelope in read_topic(running.kafka, topic)
        if envelope is not None and getattr(envelope.body, "request_id", None) == request.request_id
    ]
    assert len(mine) == 1 + len(DEMO_SYSTEMS)
    group = running.stack.settings.app_id  # Faust's consumer group is the app's id

    def committed(topic: str, partition: int) -> int | None:
        return committed_offset(running.kafka, group, topic, partition)

    deadline = time.monotonic() + 30  # Faust commits every few seconds
    for record in mine:
        while (done := committed(record.topic, record.partition)) is None or done <= record.offset:
            assert time.monotonic() < deadline, f"{record.topic} offset {record.offset} not done"
            time.sleep(0.5)
