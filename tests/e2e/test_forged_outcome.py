"""Forged outcomes on the real broker: only the worker group serving a system completes its task.

An erasure waits on a manual task; completed outcomes for exactly that task (right task id and
attempt) arrive unsigned, signed by an unknown key and signed by another group's key. Each is
dead-lettered at stage `signature`, the request keeps waiting and no certificate is written;
then the genuine outcome, signed by the group serving the system, completes it.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer

from orchestrator.intake.publishers import create_publisher
from orchestrator.status.tasks import manual_outcome, waiting_task
from schemas.envelope import SIGNATURE_HEADER, KafkaMessage, encode
from schemas.events import DeadLetter, OutcomeStatus, RequestStatus
from schemas.primitives.signing import OUTCOME_EVENT_TYPES, RequestSigner, connector_publisher
from schemas.topics import DEAD_LETTER, OUTCOMES
from tests.e2e.conftest import System, read_topic
from tests.e2e.test_pipeline import new_request

pytestmark = pytest.mark.broker

SYSTEM = "paper_archive"  # every task is a manual task: the erasure waits for a person


def _unknown_key(message: KafkaMessage) -> KafkaMessage:
    sig = base64.b64encode(os.urandom(64)).decode()
    header = f"v1;alg=ed25519;publisher=intruder;kid=ed25519-x;sig={sig}".encode()
    return KafkaMessage(message.key, message.value, [*message.headers, (SIGNATURE_HEADER, header)])


def _dead_letters(system: System, key: str) -> list[DeadLetter]:
    return [
        e.body
        for _, e in read_topic(system.kafka, DEAD_LETTER.name)
        if e is not None and isinstance(e.body, DeadLetter) and e.body.key == key
    ]


def test_art_32_forged_completed_outcome_is_dead_lettered(running: System, tmp_path: Path) -> None:
    """Art. 32(1)(b) GDPR (integrity of processing systems): a certificate of erasure rests on
    outcomes, so only the component serving the system can report one."""
    request = new_request("erasure", "forged@example.nl", scope=[SYSTEM])
    rid = request.request_id
    with running.publisher() as publisher:
        publisher.publish(request)
    view = running.wait_for(rid, lambda s: s.status == RequestStatus.ACTION_REQUIRED)
    task = waiting_task(view.get(rid), SYSTEM, f"{rid}/{SYSTEM}")
    completed = manual_outcome(task, "archive box 7 shredded", completed_by="officer-7")
    assert completed.status == OutcomeStatus.COMPLETED
    message = encode(completed, source="intruder", event_id=f"{task.task_id}#{completed.attempt}")

    # Another group: a real key in the keys file, allowed outcomes, serving no such system.
    other_group = connector_publisher("elsewhere")
    keys_file = running.stack.settings.publisher_keys
    assert keys_file is not None
    other = create_publisher(
        keys_file, other_group, out_dir=tmp_path, events=list(OUTCOME_EVENT_TYPES)
    ).signer()
    time.sleep(1.5)  # the orchestrator re-reads the keys file at most once a second
    forgeries: dict[str, tuple[Callable[[KafkaMessage], KafkaMessage], str]] = {
        "unsigned": (lambda m: m, "outcome is not signed"),
        "unknown key": (_unknown_key, "unknown publisher 'intruder'"),
        "other group": (other.sign, f"publisher {other_group!r} may report only"),
    }
    producer = KafkaProducer(**running.kafka.kafka_python_options())
    for forge, _ in forgeries.values():
        forged = forge(message)
        producer.send(OUTCOMES.name, key=forged.key, value=forged.value, headers=forged.headers)
    producer.flush(10)

    deadline = time.monotonic() + 30
    letters = _dead_letters(running, rid)
    while len(letters) < len(forgeries) and time.monotonic() < deadline:
        time.sleep(0.5)
        letters = _dead_letters(running, rid)
    assert len(letters) == len(forgeries), [d.reason for d in letters]
    for label, (_, reason) in forgeries.items():
        assert any(d.stage == "signature" and reason in d.reason for d in letters), label
    assert all("forged@example.nl" not in d.reason for d in letters)
    status = running.wait_for(rid, lambda s: True).get(rid)
    assert status is not None and status.status == RequestStatus.ACTION_REQUIRED
    certificates = running.data_dir / "certificates"
    assert not list(certificates.glob(f"{rid}*"))

    # The genuine outcome: signed by the group that serves the system.
    group = next(s.group for s in running.stack.register.systems if s.name == SYSTEM)
    env = running.stack.component_env[connector_publisher(group)]
    genuine = RequestSigner.from_key_file(env["DSR_PUBLISHER_ID"], env["DSR_PUBLISHER_KEY_FILE"])
    signed = genuine.sign(message)
    producer.send(OUTCOMES.name, key=signed.key, value=signed.value, headers=signed.headers)
    producer.flush(10)
    producer.close()
    final = running.wait_final(rid)
    assert final.status == RequestStatus.COMPLETED
    assert final.artifact is not None
    certificate = json.loads(Path(final.artifact).read_text())
    assert certificate and list(certificates.glob(f"{rid}*"))
    running.stack.check()
