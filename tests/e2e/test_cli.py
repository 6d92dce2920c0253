"""`dsr submit`, `dsr verify-identity` and `dsr status` against a running system."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaProducer

from orchestrator.fanout.app import partition_for
from schemas.envelope import encode
from schemas.events import RequestStatus
from schemas.topics import REQUESTS
from tests.e2e.conftest import System
from tests.e2e.test_pipeline import ANNA, CHANTAL, new_request

pytestmark = pytest.mark.broker


def dsr(system: System, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DSR_KAFKA_BOOTSTRAP": system.kafka.require_bootstrap(),
        **system.signing.env(),  # the CLI signs with the publisher key the orchestrator knows
    }
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_submit_wait_and_status(running: System) -> None:
    proc = dsr(
        running,
        "submit",
        "--id",
        "cli-access-1",
        "--type",
        "access",
        "--email",
        ANNA,
        "--verified",
        "id_document",
        "--scope",
        "crm,mailing",
        "--wait",
    )
    assert proc.returncode == 0, proc.stderr
    assert "cli-access-1: access completed (2/2 systems" in proc.stdout
    table = dsr(running, "status")
    assert table.returncode == 0 and "cli-access-1" in table.stdout
    detail = json.loads(dsr(running, "status", "cli-access-1", "--json").stdout)
    assert detail["status"] == "completed" and detail["systems_done"] == 2
    assert ANNA not in table.stdout + json.dumps(detail)  # status carries no personal data


def test_verify_identity_releases_a_held_request(running: System) -> None:
    held = dsr(
        running,
        "submit",
        "--id",
        "cli-held-1",
        "--type",
        "erasure",
        "--email",
        "x@y.nl",
        "--scope",
        "chat",
    )
    assert held.returncode == 0, held.stderr
    running.wait_for("cli-held-1", lambda s: s.status == RequestStatus.AWAITING_VERIFICATION)
    assert dsr(running, "verify-identity", "cli-held-1", "--method", "in_person").returncode == 0
    assert running.wait_final("cli-held-1").status == RequestStatus.COMPLETED


def test_submit_rejects_bad_input_without_echoing_it(running: System) -> None:
    proc = dsr(running, "submit", "--type", "access", "--email", "not-an-address")
    assert proc.returncode != 0
    assert "email" in proc.stderr and "not-an-address" not in proc.stderr


def test_event_on_the_wrong_partition_is_moved_and_processed(running: System) -> None:
    """Producers with another partitioner (kcat's default) put keys on other partitions."""
    request = new_request("access", CHANTAL, scope=["support"])
    right = partition_for(request.request_id, running.kafka.partitions)
    wrong = (right + 1) % running.kafka.partitions
    message = running.signing.signer().sign(encode(request, source="tests"))
    producer = KafkaProducer(**running.kafka.kafka_python_options())
    producer.send(
        REQUESTS.name,
        key=message.key,
        value=message.value,
        headers=message.headers,
        partition=wrong,
    ).get(10)
    producer.close()
    assert running.wait_final(request.request_id).status == RequestStatus.COMPLETED


def test_manual_task_is_listed_and_completed_by_a_person(running: System) -> None:
    request = new_request("erasure", CHANTAL, scope=["paper_archive", "chat"])
    with running.publisher() as publisher:
        publisher.publish(request)
    running.wait_for(request.request_id, lambda s: s.status == RequestStatus.ACTION_REQUIRED)
    task = f"{request.request_id}/paper_archive"
    listed = dsr(running, "tasks", "list")
    assert listed.returncode == 0 and task in listed.stdout
    assert f"dsr tasks complete {task}" in listed.stdout  # the instructions say how
    done = dsr(
        running,
        "tasks",
        "complete",
        task,
        "--evidence",
        "archive box 12 shredded",
        "--by",
        "officer-7",
    )
    assert done.returncode == 0, done.stderr
    status = running.wait_final(request.request_id)
    assert status.status == RequestStatus.COMPLETED
    evidence = {e.kind: e.value for e in status.systems["paper_archive"].evidence}
    assert evidence == {
        "manual_confirmation": "archive box 12 shredded",
        "completed_by": "officer-7",
    }
    again = dsr(running, "tasks", "complete", task, "--evidence", "twice")
    assert again.returncode != 0 and "not waiting for a person" in again.stderr


def test_extend_moves_the_deadline_once(running: System) -> None:
    held = dsr(
        running,
        "submit",
        "--id",
        "cli-ext-1",
        "--type",
        "access",
        "--email",
        "e@x.nl",
        "--scope",
        "chat",
    )
    assert held.returncode == 0, held.stderr
    before = running.wait_for(
        "cli-ext-1", lambda s: s.status == RequestStatus.AWAITING_VERIFICATION
    )
    first = before.get("cli-ext-1")
    assert first is not None
    done = dsr(
        running,
        "extend",
        "cli-ext-1",
        "--months",
        "2",
        "--reason",
        "many systems involved, complex request",
    )
    assert done.returncode == 0, done.stderr
    view = running.wait_for("cli-ext-1", lambda s: s.deadline_extended)
    extended = view.get("cli-ext-1")
    assert extended is not None and extended.deadline > first.deadline
    assert (extended.deadline - first.deadline).days >= 59
    # The status event points to the notice the subject must be sent (Art. 12(3)).
    assert extended.artifact and extended.artifact.endswith("extension.nl.html")
    notice = Path(extended.artifact).read_text()
    assert "many systems involved, complex request" in notice
    assert extended.deadline.date().isoformat() in notice
    bad = dsr(running, "extend", "cli-ext-1", "--months", "3", "--reason", "far too long a delay")
    assert bad.returncode != 0
