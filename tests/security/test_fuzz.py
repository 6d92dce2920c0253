"""Bad input, fuzzed: whatever arrives on an input topic ends as a result or a dead letter with
a reason, and no worker ever crashes.

Two levels: the decode path alone (envelope, signature, body) with thousands of records and no
broker; and the real worker processes on a real broker with a few batches of records.
DSR_FUZZ_EXAMPLES=N runs more (decode level: N records; broker: N // 50 batches).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orchestrator.intake.publishers import IssuedKey
from schemas.envelope import EnvelopeError, dead_letter_for, decode, encode
from schemas.events import RequestStatus
from schemas.primitives.signing import RequestVerifier
from schemas.topics import OUTCOMES, REQUESTS, TASKS
from tests.conftest import OLD_DEFAULT
from tests.security.conftest import Raw, SecureSystem, new_request, observe, produce, signed
from tests.security.strategies import FuzzRecord, Records

EXAMPLES = int(os.environ.get("DSR_FUZZ_EXAMPLES", "0"))
EXPECT = {REQUESTS.name: REQUESTS.events, OUTCOMES.name: OUTCOMES.events, TASKS.name: TASKS.events}
#: Real Kafka refuses messages over 1 MB by default: a dead letter must always fit.
MAX_DEAD_LETTER = 1024 * 1024
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


class _Record:
    """What `dead_letter_for` needs, for records that never touched a broker."""

    def __init__(self, record: FuzzRecord) -> None:
        self.topic, self.partition, self.offset = record.topic, 0, 0
        self.key, self.value, self.headers = record.key, record.value, record.headers


# -- the decode path, no broker ------------------------------------------------------------------


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> IssuedKey:
    from orchestrator.intake.publishers import create_publisher

    directory = tmp_path_factory.mktemp("fuzz-keys")
    return create_publisher(directory / "keys.yaml", "fuzzer", "hmac-sha256", events=OLD_DEFAULT)


def _decode_strategy(publisher: IssuedKey) -> st.SearchStrategy[FuzzRecord]:
    return Records(publisher.signer()).any_record((REQUESTS.name, TASKS.name, OUTCOMES.name))


def test_decode_never_raises_anything_but_envelope_error(publisher: IssuedKey) -> None:
    verifier = RequestVerifier(publisher.keys_file)

    @settings(
        max_examples=EXAMPLES or 2000,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=_HEALTH,
    )
    @given(_decode_strategy(publisher))
    def check(record: FuzzRecord) -> None:
        try:
            decode(
                record.value,
                record.headers,
                key=record.key,
                expect=EXPECT[record.topic],
                verify=verifier if record.topic == REQUESTS.name else None,
            )
        except EnvelopeError as exc:
            assert exc.stage in record.stages, (record.kind, exc.stage, str(exc))
            reason = str(exc)
            assert reason and len(reason) < 2000
            assert "fuzz.subject@example.nl" not in reason
            letter = dead_letter_for(_Record(record), stage=exc.stage, reason=reason)  # type: ignore[arg-type]
            assert len(encode(letter, source="fuzz", key=letter.key).value) < MAX_DEAD_LETTER
        else:
            # Only an outcome for a task nobody dispatched decodes; the lifecycle refuses it.
            assert "process" in record.stages, f"{record.kind} was accepted: {record!r}"

    check()


def test_signed_request_still_decodes(publisher: IssuedKey) -> None:
    """The control for the above: the verifier and strategies accept what is right."""
    request = new_request("fz-control")
    message = signed(publisher, request)
    envelope = decode(
        message.value,
        message.headers,
        key=message.key,
        expect=REQUESTS.events,
        verify=RequestVerifier(publisher.keys_file),
    )
    assert envelope.body == request


# -- the running workers -------------------------------------------------------------------------

BATCHES = max(EXAMPLES // 50, 4)


@pytest.mark.broker
def test_workers_account_for_every_fuzzed_record(secure: SecureSystem, tmp_path: Path) -> None:
    records = Records(secure.desk.signer(), run=uuid.uuid4().hex[:6])
    topics = (REQUESTS.name, OUTCOMES.name, TASKS.name)
    report: list[str] = []

    @settings(
        max_examples=BATCHES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],  # a failing batch is reported whole: shrinking needs minutes
        suppress_health_check=[*_HEALTH, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(records.any_record(topics), min_size=45, max_size=55))
    def batch(fuzzed: list[FuzzRecord]) -> None:
        control = new_request(f"fz-ok-{uuid.uuid4().hex[:8]}")
        raws = [Raw(r.topic, r.key, r.value, r.headers) for r in fuzzed]
        raws.append(Raw.of(signed(secure.desk, control)))
        landed = asyncio.run(produce(secure.kafka, raws))
        where = dict(zip(landed[:-1], fuzzed, strict=True))

        observed = observe(
            secure.kafka,
            lambda o: o.final(control.request_id) and all(c in o.dead_letters for c in where),
            timeout=60,
        )
        secure.assert_alive()
        missing = [f"{r.kind} at {c}" for c, r in where.items() if c not in observed.dead_letters]
        assert not missing, f"not dead-lettered: {missing}"
        completed = int(observed.final(control.request_id))
        dead_lettered = sum(1 for c in where if c in observed.dead_letters)
        assert landed[-1] not in observed.dead_letters, observed.dead_letters.get(landed[-1])
        assert len(raws) == completed + dead_lettered
        assert observed.statuses[control.request_id].status == RequestStatus.COMPLETED
        for coordinates, record in where.items():
            letter = observed.dead_letters[coordinates]
            assert letter.reason, record.kind
            # Tasks and outcomes are signed too since issue 16: an unsigned fuzzed one stops
            # at the signature, before its body is even parsed.
            stages = record.stages | ({"signature"} if record.topic != REQUESTS.name else set())
            assert letter.stage in stages, (record.kind, letter.stage, letter.reason)
            assert letter.source_topic == record.topic
        # Nothing fuzzed was ever fanned out or given a status.
        ids = {r.request_id for r in fuzzed if r.request_id}
        assert not ids & set(observed.tasks), "a task was dispatched for a fuzzed record"
        assert not ids & set(observed.statuses), "a fuzzed record became a request"
        kinds = sorted({r.kind.split(":")[0] for r in fuzzed})
        report.append(f"{len(raws)} records ({', '.join(kinds)})")

    batch()
    # Still serving after everything: a valid signed request completes.
    after = new_request(f"fz-after-{uuid.uuid4().hex[:8]}")
    asyncio.run(produce(secure.kafka, [Raw.of(signed(secure.desk, after))]))
    done = observe(secure.kafka, lambda o: o.final(after.request_id))
    assert done.statuses[after.request_id].status == RequestStatus.COMPLETED
    secure.assert_alive()
    assert len(report) == BATCHES
