"""Authenticated tasks and outcomes (issue 16): the bus between our own components is signed.

The orchestrator signs tasks as `orchestrator`; a connector worker group signs outcomes as
`connectors-<group>`, accepted only for the systems that group serves in the register; a
person signs a manual completion with their own publisher key. Everything else is refused at
stage `signature` (Art. 32(1)(b) GDPR: integrity of the processing systems), without running
a task or letting an outcome reach the lifecycle that issues certificates.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.conformance import dispatched
from connectors.runtime import ConnectorWorker
from orchestrator.intake.decode import Refused, partition_for, sort_batch
from orchestrator.intake.publishers import IssuedKey, create_publisher, rotate_publisher
from orchestrator.runtime.stack import component_keys
from schemas.envelope import SIGNATURE_HEADER, KafkaMessage, RawEvent, encode, header_dict
from schemas.events import Identifier, OutcomeStatus, RequestType, Subject, TaskOutcome
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import (
    OUTCOME_EVENT_TYPES,
    TASK_EVENT_TYPES,
    PublisherKeys,
    RequestSigner,
    RequestVerifier,
    SigningKey,
    VerifyingKey,
    connector_publisher,
)
from schemas.topics import OUTCOMES, TASKS
from tests.connectors.test_sweep_runtime import Producer, register, sweep

PARTITIONS = 8
SUBJECT = Subject(identifiers=[Identifier(type="email", value="jan@example.nl")])
#: System -> worker group, as the register says (`register()` of the sweep tests agrees).
GROUPS = {"chat": "default", "shop": "default", "mailing": "mailing"}


@dataclass
class Bus:
    """A publisher keys file with the components' keys and a person allowed to complete."""

    keys_file: Path
    orchestrator: RequestSigner
    groups: dict[str, RequestSigner]
    officer: IssuedKey
    web_form: IssuedKey
    env: dict[str, dict[str, str]] = field(default_factory=dict)

    def verifier(self) -> RequestVerifier:
        return RequestVerifier(self.keys_file, reload_seconds=0, group_of=GROUPS.get)


@pytest.fixture
def bus(tmp_path: Path) -> Bus:
    keys_file = tmp_path / "publisher-keys.yaml"
    officer = create_publisher(keys_file, "officer-7", events=[OUTCOME_EVENT_TYPES[0]])
    web_form = create_publisher(keys_file, "web-form")
    env = component_keys(keys_file, tmp_path / "components", ["default", "mailing"])
    signers = {
        name: RequestSigner.from_key_file(name, e["DSR_PUBLISHER_KEY_FILE"])
        for name, e in env.items()
    }
    groups = {g: signers[connector_publisher(g)] for g in ("default", "mailing")}
    return Bus(keys_file, signers["orchestrator"], groups, officer, web_form, env)


def _outcome(system: str = "chat", status: OutcomeStatus = OutcomeStatus.COMPLETED) -> TaskOutcome:
    return TaskOutcome(
        request_id="req-1",
        task_id=f"req-1/{system}",
        system=system,
        action=RequestType.ERASURE,
        status=status,
        completed_at=datetime.now(UTC),
    )


def _record(message: KafkaMessage, topic: str) -> ConsumerRecord:
    key = message.key or b""
    partition = partition_for(key.decode(), PARTITIONS)
    value = message.value
    return ConsumerRecord(
        topic, partition, 0, 0, 0, message.key, value, None, 0, len(value), message.headers
    )


def _raw(message: KafkaMessage) -> RawEvent:
    headers = header_dict(message.headers)
    attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
    return RawEvent(attributes, message.key, message.value, headers)


def _forged(message: KafkaMessage, publisher: str) -> KafkaMessage:
    """`message` with a random signature claiming to be from `publisher`."""
    sig = base64.b64encode(os.urandom(64)).decode()
    header = f"v1;alg=ed25519;publisher={publisher};kid=ed25519-forged;sig={sig}"
    rest = [(k, v) for k, v in message.headers if k != SIGNATURE_HEADER]
    return KafkaMessage(message.key, message.value, [*rest, (SIGNATURE_HEADER, header.encode())])


def _sorted(bus: Bus, message: KafkaMessage) -> list[Refused]:
    intake = sort_batch([_record(message, OUTCOMES.name)], bus.verifier(), PARTITIONS)
    refused = [r for r in intake.turned_away if isinstance(r, Refused)]
    assert bool(refused) != bool(intake.by_request)  # refused, or on to the lifecycle
    return refused


# -- the components' keys ------------------------------------------------------------------------


def test_component_keys_are_created_once_and_listed_with_their_events(
    bus: Bus, tmp_path: Path
) -> None:
    keys = bus.verifier().keys
    assert keys.events["orchestrator"] == frozenset(TASK_EVENT_TYPES)
    assert keys.events["connectors-mailing"] == frozenset(OUTCOME_EVENT_TYPES)
    again = component_keys(bus.keys_file, tmp_path / "components", ["default", "mailing"])
    assert again == bus.env  # the same keys on the next start: nothing re-issued
    for env in again.values():
        assert (Path(env["DSR_PUBLISHER_KEY_FILE"]).stat().st_mode & 0o777) == 0o600


# -- outcomes in intake --------------------------------------------------------------------------


def test_art_32_outcome_signed_by_the_serving_group_reaches_the_lifecycle(bus: Bus) -> None:
    message = bus.groups["mailing"].sign(encode(_outcome("mailing"), source="tests"))
    assert _sorted(bus, message) == []


@pytest.mark.parametrize(
    ("label", "sign", "reason"),
    [
        ("unsigned", lambda bus, m: m, "outcome is not signed"),
        ("unknown key", lambda bus, m: _forged(m, "intruder"), "unknown publisher 'intruder'"),
        (
            "forged group signature",
            lambda bus, m: _forged(m, "connectors-default"),
            "has no key 'ed25519-forged'",
        ),
        (
            "another group's key",
            lambda bus, m: bus.groups["mailing"].sign(m),
            "may report only for the systems of worker group 'mailing', not for system 'chat'",
        ),
        (
            "the orchestrator's key",
            lambda bus, m: bus.orchestrator.sign(m),
            "may not publish dsr.task.outcome.v1",
        ),
        (
            "a web form's key",
            lambda bus, m: bus.web_form.signer().sign(m),
            "may not publish dsr.task.outcome.v1",
        ),
    ],
)
def test_art_32_forged_outcome_is_refused_at_stage_signature(
    bus: Bus, label: str, sign: Callable[[Bus, KafkaMessage], KafkaMessage], reason: str
) -> None:
    """Art. 32(1)(b) GDPR: only the group serving the system (or a person allowed to complete
    tasks) can report its outcome; a certificate of erasure is issued from outcomes."""
    message = sign(bus, encode(_outcome("chat"), source="tests"))
    [refused] = _sorted(bus, message)
    assert refused.stage == "signature", label
    assert reason in refused.reason, (label, refused.reason)
    assert "jan@example.nl" not in refused.reason


def test_art_32_outcome_for_an_unregistered_system_is_refused(bus: Bus) -> None:
    message = bus.groups["default"].sign(encode(_outcome("ghost"), source="tests"))
    [refused] = _sorted(bus, message)
    assert refused.stage == "signature" and "it is not registered" in refused.reason


def test_art_32_person_completes_a_manual_task_with_their_own_key(bus: Bus) -> None:
    """People's completions are signed with their publisher key, allowed dsr.task.outcome.v1."""
    message = bus.officer.signer().sign(encode(_outcome("shop"), source="dsr-cli"))
    assert _sorted(bus, message) == []


def test_outcome_key_rotation_old_and_new_keys_both_verify(bus: Bus) -> None:
    """Rotation exactly as for publishers: several keys per id, told apart by `kid`."""
    old = bus.officer.signer()
    new = rotate_publisher(bus.keys_file, "officer-7").signer()
    assert old.key_id != new.key_id
    for signer in (old, new):
        assert _sorted(bus, signer.sign(encode(_outcome("shop"), source="dsr-cli"))) == []


def test_allow_unsigned_lets_unsigned_outcomes_in_but_checks_signed_ones(bus: Bus) -> None:
    verifier = RequestVerifier(bus.keys_file, allow_unsigned=True, group_of=GROUPS.get)
    unsigned = _record(encode(_outcome("chat"), source="tests"), OUTCOMES.name)
    wrong = _record(bus.groups["mailing"].sign(encode(_outcome(), source="t")), OUTCOMES.name)
    intake = sort_batch([unsigned, wrong], verifier, PARTITIONS)
    [(accepted, _)] = intake.by_request["req-1"]
    assert accepted is unsigned
    [refused] = intake.turned_away
    assert isinstance(refused, Refused) and refused.record is wrong


# -- tasks in the connector worker ---------------------------------------------------------------


def _worker(bus: Bus, tmp_path: Path) -> ConnectorWorker:
    return ConnectorWorker(
        KafkaSettings(),
        register(tmp_path),
        "default",
        verify=bus.verifier(),
        signer=bus.groups["default"],
    )


def _task_record(message: KafkaMessage) -> ConsumerRecord:
    value = message.value
    return ConsumerRecord(
        TASKS.name, 0, 0, 0, 0, message.key, value, None, 0, len(value), message.headers
    )


def test_art_32_signed_task_runs_and_its_outcome_is_signed_by_the_group(
    bus: Bus, tmp_path: Path
) -> None:
    task = dispatched("chat", RequestType.ERASURE, SUBJECT)
    signed = bus.orchestrator.sign(encode(task, source="dsr-orchestrator"))
    worker, producer = _worker(bus, tmp_path), Producer()
    asyncio.run(worker._process([_task_record(signed)], producer))
    [(topic, key, value, headers)] = producer.sent
    assert topic == OUTCOMES.name and worker.processed == 1
    # The orchestrator accepts it: signed by the group that serves `chat`.
    publisher = bus.verifier().keys.verify(
        _raw(KafkaMessage(key, value, headers))  # type: ignore[arg-type]
    )
    assert publisher == "connectors-default"


@pytest.mark.parametrize(
    ("label", "sign", "reason"),
    [
        ("unsigned", lambda bus, m: m, "task is not signed"),
        ("forged", lambda bus, m: _forged(m, "orchestrator"), "has no key 'ed25519-forged'"),
        ("a group's key", lambda bus, m: bus.groups["default"].sign(m), "may not publish"),
        ("a person's key", lambda bus, m: bus.officer.signer().sign(m), "may not publish"),
    ],
)
def test_art_32_forged_task_is_dead_lettered_and_not_run(
    bus: Bus,
    tmp_path: Path,
    label: str,
    sign: Callable[[Bus, KafkaMessage], KafkaMessage],
    reason: str,
) -> None:
    """Art. 32(1)(b) GDPR: a connector erases or exports only on the orchestrator's word."""
    worker, producer = _worker(bus, tmp_path), Producer()
    for body in (dispatched("chat", RequestType.ERASURE, SUBJECT), sweep("chat")):
        message = sign(bus, encode(body, source="intruder"))
        asyncio.run(worker._process([_task_record(message)], producer))
    assert worker.processed == 0, label
    letters = producer.dead_letters()
    assert [d.stage for d in letters] == ["signature", "signature"], label
    assert all(reason in d.reason for d in letters), (label, [d.reason for d in letters])
    assert not [s for s in producer.sent if s[0] == OUTCOMES.name]


def test_other_groups_tasks_are_left_to_them(bus: Bus, tmp_path: Path) -> None:
    """A task for another group's system is neither run nor dead-lettered here (that group
    verifies its own), and costs no signature check."""
    worker, producer = _worker(bus, tmp_path), Producer()
    unsigned = encode(dispatched("mailing", RequestType.ERASURE, SUBJECT), source="x")
    asyncio.run(worker._process([_task_record(unsigned)], producer))
    assert producer.sent == [] and worker.processed == 0


def test_worker_without_its_group_key_does_not_start(
    bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSR_PUBLISHER_KEYS", str(bus.keys_file))
    for name in ("DSR_PUBLISHER_ID", "DSR_PUBLISHER_KEY_FILE", "DSR_ALLOW_UNSIGNED_REQUESTS"):
        monkeypatch.delenv(name, raising=False)
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path), "default")
    with pytest.raises(Exception, match="DSR_PUBLISHER_ID=connectors-default"):
        worker._keys_from_env()
    for name, value in bus.env["connectors-mailing"].items():  # another group's key
        monkeypatch.setenv(name, value)
    with pytest.raises(Exception, match="signs its outcomes as publisher 'connectors-default'"):
        worker._keys_from_env()
    for name, value in bus.env["connectors-default"].items():
        monkeypatch.setenv(name, value)
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path), "default")
    worker._keys_from_env()
    assert worker.signer is not None and worker.signer.publisher == "connectors-default"


# -- cost on the request path --------------------------------------------------------------------


def _per_message(action: Callable[[], object], n: int = 300) -> float:
    start = time.perf_counter()
    for _ in range(n):
        action()
    return (time.perf_counter() - start) / n


def test_signing_and_verifying_a_message_is_cheap_and_keys_are_parsed_once() -> None:
    """Every task and outcome is signed and verified: Ed25519 (public keys for verifiers, so
    a connector worker cannot forge tasks) costs well under a millisecond per message.
    Measured here (a whole signed event): Ed25519 by libsodium ~45 us sign, ~90 us verify
    (by OpenSSL before: ~57 and ~155); HMAC-SHA256 less."""
    private = Ed25519PrivateKey.generate()
    signer = RequestSigner.from_private_key("connectors-default", private)
    public = VerifyingKey(
        "connectors-default", signer.key_id, "ed25519", public_key=private.public_key()
    )
    keys = PublisherKeys(
        {("connectors-default", signer.key_id): public},
        {"connectors-default": frozenset(OUTCOME_EVENT_TYPES)},
    )
    message = encode(_outcome(), source="dsr-connectors/default")
    raw = _raw(signer.sign(message))
    assert _per_message(lambda: signer.sign(message)) < 0.001
    assert _per_message(lambda: keys.verify(raw)) < 0.001


def test_ed25519_signatures_by_libsodium_are_openssls_and_checked_alike() -> None:
    """Events are signed and checked by libsodium (PyNaCl), keys read and made by
    `cryptography` (OpenSSL). Ed25519 is deterministic (RFC 8032, 5.1.6): the same key signs the
    same bytes identically in both, each checks the other's signatures, and both refuse a
    changed byte, a signature of the wrong length, and one whose S is not reduced mod L
    (RFC 8032, 5.1.7: such an S must be rejected)."""
    private = Ed25519PrivateKey.generate()
    signing = SigningKey("ed25519", "k1", private_key=private)
    verifying = VerifyingKey("p", "k1", "ed25519", public_key=private.public_key())
    order = 2**252 + 27742317777372353535851937790883648493  # L, the group's order
    for size in (0, 1, 700, 70_000):
        data = os.urandom(size)
        signature = signing.sign(data)
        assert signature == private.sign(data)
        assert verifying.verify(signature, data)
        private.public_key().verify(signature, data)  # OpenSSL accepts ours (raises if not)
        changed = bytes([data[0] ^ 1]) + data[1:] if data else b"x"
        assert not verifying.verify(signature, changed)
        assert not verifying.verify(signature[:-1], data)
        assert not verifying.verify(signature + b"\0", data)
        s = int.from_bytes(signature[32:], "little")
        unreduced = signature[:32] + (s + order).to_bytes(32, "little")
        assert not verifying.verify(unreduced, data)
    other = VerifyingKey("p", "k2", "ed25519", public_key=Ed25519PrivateKey.generate().public_key())
    assert not other.verify(signing.sign(b"event"), b"event")


def test_worker_loads_only_task_publishers_and_needs_no_request_publishers_secret(
    bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connector worker holds the keys that dispatch tasks, nothing more: an HMAC publisher
    of requests (whose secret would let it forge requests) is not loaded, its secret not read."""
    create_publisher(bus.keys_file, "portal", "hmac-sha256", out_dir=tmp_path / "portal")
    (secret,) = (tmp_path / "portal").iterdir()
    secret.unlink()  # not mounted in the worker's pod
    monkeypatch.setenv("DSR_PUBLISHER_KEYS", str(bus.keys_file))
    for name, value in bus.env["connectors-default"].items():
        monkeypatch.setenv(name, value)
    worker = ConnectorWorker(KafkaSettings(), register(tmp_path), "default")
    worker._keys_from_env()
    assert isinstance(worker.verify, RequestVerifier)
    assert set(worker.verify.keys.events) == {"orchestrator"}
