"""Shredding decisions (pure) and how a state is stored: sealed, or as a stub."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.lifecycle.deadlines import Period
from orchestrator.lifecycle.reducer import (
    Context,
    Policy,
    RequestState,
    extend,
    next_check,
    record_outcome,
    shred_at,
    submit,
    tick,
    verify,
)
from orchestrator.lifecycle.state import StateInvalid, decode_state, encode_state, watch_view
from orchestrator.runtime.config import ConfigError, load_settings
from schemas.events import (
    DeadlineExtended,
    IdentityVerified,
    RequestStatus,
    RequestSubmitted,
    StatusTrigger,
    TaskOutcome,
    VerificationMethod,
)
from schemas.primitives.sealing import BusKeyError, DataKeys, SealingError, context, seal
from tests.orchestrator import test_lifecycle as lifecycle

NOW = lifecycle.NOW
EMAIL = "shred.me@example.nl"
SYSTEMS = ("crm", "chat")
POLICY = Policy(shred_after=Period.parse("30 days"), task_timeout=timedelta(days=365))


def ctx(now: datetime = NOW, policy: Policy = POLICY) -> Context:
    return Context(systems=SYSTEMS, policy=policy, now=now)


def request() -> RequestSubmitted:
    return lifecycle.request(type="access", email=EMAIL)


def outcome(system: str) -> TaskOutcome:
    return lifecycle.outcome(system, action="access")


def finished() -> RequestState:
    state, _ = submit(None, request(), ctx())
    for system in SYSTEMS:
        state, _ = record_outcome(state, outcome(system), ctx())
    assert state is not None and state.status == RequestStatus.COMPLETED
    state.delivery = lifecycle.delivered_by_post()  # answered: only shredding is left to do
    return state


def test_a_final_request_is_watched_until_its_shred_time() -> None:
    state = finished()
    due = NOW + timedelta(days=30)
    assert shred_at(state, POLICY) == next_check(state, POLICY) == due
    assert next_check(state, Policy()) is None  # no shredding configured: never again
    assert shred_at(finished(), Policy(shred_after=Period.parse("1 month"))) == datetime(
        2026, 4, 10, 12, 0, tzinfo=UTC
    )
    # An open request is not shredded, whatever the clock says.
    open_state, _ = submit(None, request(), ctx())
    assert open_state is not None and shred_at(open_state, POLICY) is None


def test_before_its_time_nothing_happens() -> None:
    state, effects = tick(finished(), ctx(NOW + timedelta(days=29)))
    assert not effects.shred and not effects.changed and state.request is not None


def test_at_its_time_the_request_is_shredded_to_a_stub() -> None:
    before = finished()
    sequence = before.sequence
    state, effects = tick(before, ctx(NOW + timedelta(days=30)))
    assert effects.shred
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.SHREDDED and status.status == RequestStatus.COMPLETED
    assert status.sequence == state.sequence == sequence + 1
    assert "crypto-shredded" in (status.reason or "")
    assert EMAIL not in status.model_dump_json()
    # The stub: what the request was and when, nothing from its body, not even its hash.
    assert state.request is None and state.fingerprint is None and state.systems == {}
    assert state.request_type == "access" and state.status == RequestStatus.COMPLETED
    assert state.finished_at == before.finished_at
    assert state.shredded_at == NOW + timedelta(days=30)
    assert before.fingerprint is not None and before.fingerprint not in state.model_dump_json()
    assert next_check(state, POLICY) is None
    _, effects = tick(state, ctx(NOW + timedelta(days=60)))
    assert not effects.shred and not effects.statuses


def test_every_event_treats_a_shredded_request_as_final() -> None:
    stub, _ = tick(finished(), ctx(NOW + timedelta(days=30)))
    later = ctx(NOW + timedelta(days=31))
    # The same request re-sent: dead-lettered, never carried out (or its data kept) again.
    state, effects = submit(stub, request(), later)
    assert state is stub and not effects.changed
    assert effects.dead_letter is not None
    assert (
        "crypto-shredded" in effects.dead_letter
        and "choose a new request_id" in effects.dead_letter
    )
    verified = IdentityVerified(
        request_id="req-1", method=VerificationMethod.ID_DOCUMENT, verified_at=NOW
    )
    state, effects = verify(stub, verified, later)
    assert state is stub and not effects.changed and effects.dead_letter is None
    extension = DeadlineExtended(
        request_id="req-1", months=1, reason="many systems to search", extended_at=NOW
    )
    state, effects = extend(stub, extension, later)
    assert effects.dead_letter is not None and "already final" in effects.dead_letter
    state, effects = record_outcome(stub, outcome("crm"), later)  # a late re-delivery
    assert state is stub and not effects.changed and effects.dead_letter is None


# -- the table value ---------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> DataKeys:
    return DataKeys(tmp_path / "dek", os.urandom(32))


def test_a_state_is_stored_sealed_with_its_request_s_data_key(keys: DataKeys) -> None:
    state = finished()
    raw = encode_state(state, keys)
    assert EMAIL not in raw and (state.fingerprint or "") not in raw
    envelope = json.loads(raw)
    assert set(envelope) == {
        "request_id",
        "type",
        "status",
        "finished_at",
        "awaits_delivery",
        "sealed",
    }
    assert decode_state(raw, keys) == state
    # The timer needs no key for a final state (there may be many).
    locked = DataKeys(keys.root, os.urandom(32))
    view = watch_view(raw, locked)
    assert next_check(view, POLICY) == next_check(state, POLICY)
    with pytest.raises(BusKeyError):
        decode_state(raw, locked)


def test_after_shredding_the_old_value_no_longer_opens(keys: DataKeys) -> None:
    state = finished()
    sealed = encode_state(state, keys)
    stub, _ = tick(state, ctx(NOW + timedelta(days=30)))
    keys.destroy("req-1")
    raw = encode_state(stub, keys)
    assert json.loads(raw)["shredded"] is True and EMAIL not in raw
    assert decode_state(raw, keys) == stub
    # The sealed versions further back in the changelog read as a stub: the body is gone.
    old = decode_state(sealed, keys)
    assert old.request is None and old.shredded_at is not None
    assert old.status == RequestStatus.COMPLETED and old.request_type == "access"


def test_a_state_written_before_sealing_still_loads(keys: DataKeys) -> None:
    state = finished()
    assert decode_state(state.model_dump_json(), keys) == state


def test_the_shred_setting_is_parsed_and_explained(tmp_path: Path) -> None:
    assert load_settings(shred_after="0 seconds").policy().shred_after == Period(0, "seconds")
    assert load_settings(shred_after="never").policy().shred_after is None
    assert load_settings().policy().shred_after == Period(30, "days")
    with pytest.raises(ConfigError, match="DSR_SHRED_AFTER: period 'soon' is not understood"):
        load_settings(shred_after="soon")
    with pytest.raises(ConfigError, match="DSR_BUS_KEY_FILE: no such file"):
        load_settings(data_dir=tmp_path, bus_key_file=tmp_path / "absent").data_keys()


def test_art_46_uavg_a_stored_state_with_a_bsn_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A state written before BSNs were refused opens but no longer validates: it raises
    `StateInvalid` (a SealingError, which the agent and the timer handle) naming no value."""
    keys = DataKeys(tmp_path / "deks", b"k" * 32)
    state = RequestState(request_id="old-bsn-1")
    raw = json.loads(encode_state(state, keys))
    bsn = "123456782"
    plain = state.model_dump(mode="json")
    plain["request"] = {
        "request_id": "old-bsn-1",
        "type": "access",
        "subject": {"identifiers": [{"type": "customer_id", "value": bsn}]},
        "received_at": "2026-01-05T10:00:00+00:00",
        "requested_by": "old-version",
    }
    sealed = seal(keys.get("old-bsn-1"), json.dumps(plain).encode(), context("state", "old-bsn-1"))
    raw["sealed"] = sealed.model_dump()
    with pytest.raises(StateInvalid) as caught:
        decode_state(json.dumps(raw), keys)
    assert isinstance(caught.value, SealingError)
    assert bsn not in str(caught.value)


def test_shredding_removes_kept_outcomes_with_inline_records(
    tmp_path: Path, keys: DataKeys
) -> None:
    """A manual completion can carry its records inline; once a request is shredded nothing of
    the subject's may stay readable on disk (Art. 5(1)(e) GDPR), so its kept outcomes go too.
    Until then they are kept sealed with the request's data key (Art. 32(1)(a) GDPR)."""
    from orchestrator.artifacts.store import ArtifactStore
    from schemas.events import OutcomeStatus, Record, RequestType, TaskOutcome

    keys.create("req-shred-1")
    store = ArtifactStore(tmp_path / "data", keys)
    outcome = TaskOutcome(
        request_id="req-shred-1",
        task_id="req-shred-1/archive",
        system="archive",
        action=RequestType.ACCESS,
        status=OutcomeStatus.COMPLETED,
        records=[Record(collection="notes", data={"email": "anna@example.nl"})],
        completed_at=datetime.now(UTC),
    )
    path = store.save_outcome(outcome)
    assert b"anna@example.nl" not in path.read_bytes()  # sealed, not in the clear
    kept = store.load_outcome("req-shred-1", "archive")
    assert kept is not None and kept.records[0].data["email"] == "anna@example.nl"
    store.discard_outcomes("req-shred-1")
    assert not path.exists() and store.load_outcome("req-shred-1", "archive") is None
    assert not any(b"anna" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
