"""Only authentic requests get in: on a running system, every forgery is dead-lettered with
its reason and never fanned out, while correctly signed requests complete."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from orchestrator.intake.client import RequestPublisher
from orchestrator.intake.publishers import retire_key
from schemas.envelope import SIGNATURE_HEADER, KafkaMessage, encode
from schemas.events import IdentityVerified, RequestStatus, VerificationMethod
from schemas.primitives.signing import RequestSigner
from tests.security.conftest import (
    SUBJECT_EMAIL,
    Raw,
    SecureSystem,
    new_request,
    observe,
    produce,
    signed,
)

pytestmark = pytest.mark.broker


def _rid(label: str) -> str:
    return f"sec-{label}-{uuid.uuid4().hex[:8]}"


def _signature_header(message: KafkaMessage, header: bytes) -> KafkaMessage:
    """`message` with its signature header replaced."""
    rest = [(k, v) for k, v in message.headers if k != SIGNATURE_HEADER]
    return KafkaMessage(message.key, message.value, [*rest, (SIGNATURE_HEADER, header)])


def _with_signature_of(message: KafkaMessage, donor: KafkaMessage) -> KafkaMessage:
    """`message` carrying the signature of another, validly signed message (a replay)."""
    return _signature_header(message, dict(donor.headers)[SIGNATURE_HEADER])


def _verified(request_id: str) -> IdentityVerified:
    return IdentityVerified(
        request_id=request_id,
        method=VerificationMethod.ID_DOCUMENT,
        verified_at=datetime.now(UTC),
    )


def test_forgeries_are_dead_lettered_and_never_fanned_out(secure: SecureSystem) -> None:
    good = new_request(_rid("good"))
    held = new_request(_rid("held"), verified=False)  # waits for an identity verification
    good_message = signed(secure.desk, good)

    forged: dict[str, tuple[Raw, str]] = {}

    def forge(label: str, message: KafkaMessage, reason: str) -> None:
        forged[label] = (Raw.of(message), reason)

    unsigned = new_request(_rid("unsigned"))
    forge("unsigned", encode(unsigned, source="tests"), "request event is not signed")

    random_sig = base64.b64encode(os.urandom(64)).decode()
    forge(
        "forged-signature",
        _signature_header(
            signed(secure.desk, new_request(_rid("forged-sig"))),
            f"v1;alg=ed25519;publisher=desk;kid={secure.desk.key_id};sig={random_sig}".encode(),
        ),
        "does not verify",
    )
    forge(  # web-form's key id, another secret
        "wrong-key",
        RequestSigner.from_secret("web-form", "m" * 40, key_id=secure.web_form.key_id).sign(
            encode(new_request(_rid("wrong-key")), source="tests")
        ),
        "does not verify",
    )
    forge(
        "unknown-publisher",
        RequestSigner.from_secret("mallory", "m" * 40).sign(
            encode(new_request(_rid("unknown-publisher")), source="tests")
        ),
        "unknown publisher 'mallory'",
    )
    forge(  # a key id desk does not have
        "unknown-key",
        RequestSigner.from_secret("desk", "m" * 40, key_id="desk-2019").sign(
            encode(new_request(_rid("unknown-key")), source="tests")
        ),
        "publisher 'desk' has no key 'desk-2019'",
    )
    one_byte = signed(secure.desk, new_request(_rid("altered")))
    forge(
        "body-altered-one-byte",
        KafkaMessage(
            one_byte.key,
            one_byte.value.replace(SUBJECT_EMAIL.encode(), b"anna.secure@example.nm"),
            one_byte.headers,
        ),
        "does not verify",
    )
    # The signature of the good request, replayed onto another request and another event type.
    other = new_request(_rid("replayed-request"))
    forge(
        "replayed-onto-another-request",
        _with_signature_of(encode(other, source="tests"), good_message),
        "does not verify",
    )
    forge(
        "replayed-onto-identity-verified",
        _with_signature_of(encode(_verified(held.request_id), source="tests"), good_message),
        "does not verify",
    )
    forge(
        "publisher-may-not-verify",
        signed(secure.web_form, _verified(held.request_id)),
        "publisher 'web-form' may not publish dsr.request.identity_verified.v1",
    )

    records = [Raw.of(signed(secure.desk, held)), *(raw for raw, _ in forged.values())]
    records.append(Raw.of(good_message))
    landed = asyncio.run(produce(secure.kafka, records))
    where = dict(zip(forged, landed[1:-1], strict=True))

    observed = observe(
        secure.kafka,
        lambda o: (
            o.final(good.request_id)
            and held.request_id in o.statuses
            and all(c in o.dead_letters for c in where.values())
        ),
    )
    assert observed.final(good.request_id), "the correctly signed request did not complete"
    assert observed.statuses[good.request_id].status == RequestStatus.COMPLETED
    for label, coordinates in where.items():
        letter = observed.dead_letters.get(coordinates)
        assert letter is not None, f"{label}: not dead-lettered"
        assert letter.stage == "signature", (label, letter.stage, letter.reason)
        assert forged[label][1] in letter.reason, (label, letter.reason)
        assert SUBJECT_EMAIL not in letter.reason
    # Nothing was fanned out for any forgery, and the held request still waits.
    forged_ids = {raw.key.decode() for raw, _ in forged.values() if raw.key is not None}
    assert not forged_ids & set(observed.tasks), "a task was dispatched for a forged event"
    assert not (forged_ids - {held.request_id}) & set(observed.statuses)
    assert held.request_id not in observed.tasks
    assert observed.statuses[held.request_id].status == RequestStatus.AWAITING_VERIFICATION

    # The genuine verification releases it.
    verification = Raw.of(signed(secure.desk, _verified(held.request_id)))
    asyncio.run(produce(secure.kafka, [verification]))
    done = observe(secure.kafka, lambda o: o.final(held.request_id))
    assert done.statuses[held.request_id].status == RequestStatus.COMPLETED
    secure.assert_alive()


def test_the_client_signs_and_both_rotated_keys_work(secure: SecureSystem) -> None:
    first, second = new_request(_rid("key-1")), new_request(_rid("key-2"))
    with RequestPublisher(secure.kafka, source="desk", signer=secure.desk.signer()) as one:
        one.publish(first)
    with RequestPublisher(secure.kafka, source="desk", signer=secure.desk_next.signer()) as two:
        two.publish(second)
    observed = observe(
        secure.kafka, lambda o: o.final(first.request_id) and o.final(second.request_id)
    )
    assert observed.statuses[first.request_id].status == RequestStatus.COMPLETED
    assert observed.statuses[second.request_id].status == RequestStatus.COMPLETED


def test_a_retired_key_is_refused_without_a_restart(secure: SecureSystem) -> None:
    # Runs after the rotation test above: retire desk's first key in the running system.
    retire_key(secure.keys_file, "desk", secure.desk.key_id)
    time.sleep(1.5)  # the orchestrator looks at the keys file at most once a second
    old, new = new_request(_rid("retired")), new_request(_rid("current"))
    landed = asyncio.run(
        produce(
            secure.kafka, [Raw.of(signed(secure.desk, old)), Raw.of(signed(secure.desk_next, new))]
        )
    )
    observed = observe(
        secure.kafka, lambda o: landed[0] in o.dead_letters and o.final(new.request_id)
    )
    letter = observed.dead_letters[landed[0]]
    assert letter.stage == "signature"
    assert f"publisher 'desk' has no key {secure.desk.key_id!r}" in letter.reason
    assert old.request_id not in observed.tasks and old.request_id not in observed.statuses
    assert observed.statuses[new.request_id].status == RequestStatus.COMPLETED
    secure.assert_alive()


def _register(tmp_path: Path) -> Path:
    path = tmp_path / "register.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "systems": [
                    {
                        "name": "alpha",
                        "kind": "other",
                        "connector": "memory",
                        "data_categories": ["email"],
                        "purposes": ["testing"],
                        "legal_basis": ["consent"],
                        "profiling": "none",
                        "retention": "1 day",
                    }
                ]
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "command",
    [["worker", "orchestrator"], ["up", "--bootstrap", "127.0.0.1:1"]],
    ids=["worker", "up"],
)
def test_real_kafka_without_publisher_keys_refuses_to_start(
    tmp_path: Path, command: list[str]
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DSR_PUBLISHER", "DSR_ALLOW_UNSIGNED"))
    }
    env |= {
        "DSR_KAFKA_BOOTSTRAP": "127.0.0.1:1",  # never reached: it stops before connecting
        "DSR_REGISTER": str(_register(tmp_path)),
        "DSR_DATA_DIR": str(tmp_path / "data"),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "DSR_PUBLISHER_KEYS is not set" in proc.stderr
    assert "dsr publishers create" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30
