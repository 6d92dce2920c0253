"""Sealed values, the bus key, the data-key store, and sealed tasks (no broker)."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.runtime import ConnectorWorker
from schemas.events import (
    FieldChange,
    Identifier,
    OutcomeStatus,
    RequestType,
    Subject,
    TaskDispatched,
)
from schemas.kafka import KafkaSettings
from schemas.primitives.sealing import (
    BusKeyError,
    DataKeyDestroyed,
    DataKeyMissing,
    DataKeys,
    SealBroken,
    SealedValue,
    bus_key,
    context,
    load_bus_key,
    open_sealed,
    open_task,
    seal,
    seal_task,
)
from schemas.register import parse_register

EMAIL = "sealed.subject@example.nl"
KEY = bytes(range(32))
AAD = context("task", "req-1", "req-1/crm", "s")


def _flip(text: str, at: int) -> str:
    """The base64url text with one bit of the decoded byte at `at` flipped."""
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw[at] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


# -- sealed values -----------------------------------------------------------------------------


def test_a_sealed_value_opens_with_its_key_and_context_only() -> None:
    sealed = seal(KEY, EMAIL.encode(), AAD)
    assert EMAIL not in sealed.model_dump_json()
    assert open_sealed(KEY, sealed, AAD) == EMAIL.encode()
    # Every seal gets a fresh nonce: the same plaintext never gives the same ciphertext.
    assert seal(KEY, EMAIL.encode(), AAD).ciphertext != sealed.ciphertext
    with pytest.raises(SealBroken):
        open_sealed(os.urandom(32), sealed, AAD)  # wrong key
    with pytest.raises(SealBroken):
        open_sealed(KEY, sealed, context("task", "req-1", "req-1/chat", "s"))  # wrong AAD
    with pytest.raises(SealBroken):
        open_sealed(KEY, sealed, context("state", "req-1"))  # another purpose


@pytest.mark.parametrize("field", ["nonce", "ciphertext"])
@pytest.mark.parametrize("at", [0, 5, -1])
def test_one_tampered_byte_is_detected(field: str, at: int) -> None:
    sealed = seal(KEY, EMAIL.encode(), AAD)
    tampered = sealed.model_copy(update={field: _flip(getattr(sealed, field), at)})
    with pytest.raises(SealBroken, match="wrong key, wrong context, or altered"):
        open_sealed(KEY, tampered, AAD)


def test_context_parts_cannot_be_shifted_into_each_other() -> None:
    assert context("task", "ab", "c") != context("task", "a", "bc")
    assert context("task", "a") != context("taska")


def test_the_sealed_value_schema_is_strict() -> None:
    sealed = seal(KEY, b"x", AAD)
    with pytest.raises(ValidationError):
        SealedValue.model_validate({**sealed.model_dump(), "alg": "A128CBC"})
    with pytest.raises(ValidationError):
        SealedValue.model_validate({**sealed.model_dump(), "nonce": "too-short"})


# -- the bus key -------------------------------------------------------------------------------


def test_the_bus_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    with ThreadPoolExecutor(8) as pool:  # workers starting at the same moment
        found = set(pool.map(lambda _: bus_key(None, keys_dir), range(16)))
    assert len(found) == 1 and len(found.pop()) == 32
    path = keys_dir / "bus.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in keys_dir.iterdir()] == ["bus.key"]  # no temporary files left


def test_a_configured_bus_key_file_is_read_raw_or_base64(tmp_path: Path) -> None:
    raw = os.urandom(32)
    (tmp_path / "raw").write_bytes(raw)
    (tmp_path / "b64").write_text(base64.b64encode(raw).decode() + "\n")
    assert load_bus_key(tmp_path / "raw") == raw == load_bus_key(tmp_path / "b64")
    assert bus_key(tmp_path / "b64", tmp_path / "unused") == raw
    assert not (tmp_path / "unused").exists()  # a configured key is never made up


def test_a_missing_or_bad_bus_key_file_names_the_setting_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BusKeyError, match=r"DSR_BUS_KEY_FILE: no such file .*openssl rand"):
        bus_key(tmp_path / "absent.key", tmp_path)
    (tmp_path / "short.key").write_text("c2hvcnQ=\n")
    with pytest.raises(BusKeyError, match="expected 32 random bytes"):
        bus_key(tmp_path / "short.key", tmp_path)


# -- data keys ---------------------------------------------------------------------------------


def test_a_data_key_is_created_once_and_stored_wrapped(tmp_path: Path) -> None:
    keys = DataKeys(tmp_path, KEY)
    key = keys.create("req-1")
    assert keys.create("req-1") == key == keys.get("req-1")
    assert DataKeys(tmp_path, KEY).get("req-1") == key  # another process, same key
    path = tmp_path / "req-1.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key not in path.read_bytes() and base64.b64encode(key) not in path.read_bytes()
    assert keys.create("req-2") != key


def test_concurrent_creation_gives_everyone_the_same_key(tmp_path: Path) -> None:
    def create(_: int) -> bytes:
        return DataKeys(tmp_path, KEY).create("req-race")

    with ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(create, range(32)))) == 1


def test_keys_created_together_are_the_same_as_created_one_by_one(tmp_path: Path) -> None:
    """`create_many` (a batch's new requests): each key stored wrapped, mode 0600, synced
    before it is linked into place; an existing key is kept, a destroyed one never comes back,
    and no temporary file is left."""
    keys = DataKeys(tmp_path, KEY)
    kept = keys.create("req-0")
    keys.destroy("req-gone")
    keys.create_many(["req-0", "req-1", "req-2", "req-gone"])
    assert keys.get("req-0") == kept
    assert keys.get("req-1") != keys.get("req-2")
    assert DataKeys(tmp_path, KEY).get("req-1") == keys.get("req-1")  # another process
    assert stat.S_IMODE((tmp_path / "req-1.key").stat().st_mode) == 0o600
    with pytest.raises(DataKeyDestroyed):
        keys.get("req-gone")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    def race(_: int) -> None:
        DataKeys(tmp_path, KEY).create_many([f"req-race-{n}" for n in range(8)])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(race, range(8)))
    first = {n: keys.get(f"req-race-{n}") for n in range(8)}
    assert all(DataKeys(tmp_path, KEY).get(f"req-race-{n}") == k for n, k in first.items())


def test_a_new_data_key_and_a_tombstone_are_on_disk_before_they_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key's file is synced, linked into place, and then its folder is synced, before the key
    is handed out: a new name is durable only once its directory is (fsync(2)). Without that a
    power cut could lose the name of a key that states and tasks were already sealed with, or
    the tombstone of a destroyed key, which could then be created again. Recorded here as the
    order of syncs: the folder's comes after the names exist."""
    keys = DataKeys(tmp_path, KEY, cache_size=8)
    real_fsync = os.fsync
    synced: list[tuple[str, set[str]]] = []

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((target, {p.name for p in tmp_path.iterdir()}))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    keys.create_many(["req-1", "req-2"])
    folder = [names for target, names in synced if target == str(tmp_path)]
    assert folder and {"req-1.key", "req-2.key"} <= folder[-1]
    assert synced[-1][0] == str(tmp_path)  # the last sync: nothing linked after it

    synced.clear()
    keys.destroy("req-1")
    folder = [names for target, names in synced if target == str(tmp_path)]
    assert folder and "req-1.shredded" in folder[0]
    with pytest.raises(DataKeyDestroyed):
        keys.get("req-1")


def test_keys_created_together_are_remembered_by_a_caching_store(tmp_path: Path) -> None:
    """The orchestrator creates a batch's new keys together, then seals each state with its key
    at once: the key it just wrapped is not read back from disk and unwrapped again (a file read
    on the event loop per new request, issue 19). A store without a cache (a connector worker's)
    reads every key from disk; a destroyed key is forgotten either way."""
    caching = DataKeys(tmp_path, KEY, cache_size=8)
    caching.create_many(["req-1", "req-2"])
    moved = tmp_path / "elsewhere"
    (tmp_path / "req-1.key").rename(moved)
    key = caching.get("req-1")  # from the cache: the file is not there
    with pytest.raises(DataKeyMissing):
        DataKeys(tmp_path, KEY).get("req-1")
    moved.rename(tmp_path / "req-1.key")
    assert DataKeys(tmp_path, KEY).get("req-1") == key
    plain = DataKeys(tmp_path, KEY)
    plain.create_many(["req-3"])
    (tmp_path / "req-3.key").unlink()
    with pytest.raises(DataKeyMissing):
        plain.get("req-3")
    caching.destroy("req-2")
    with pytest.raises(DataKeyDestroyed):
        caching.get("req-2")
    # A key read or created while it was being destroyed is not kept (checked under the lock).
    assert not caching._remember("req-2", os.urandom(32))
    with pytest.raises(DataKeyDestroyed):
        caching.get("req-2")


def test_a_connector_workers_checked_cache_never_outlives_a_destruction_or_a_changed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Art. 17 and 32 GDPR: a destroyed key opens nothing from then on, in every process. A
    connector worker reads each request's key once and then takes it from memory only after
    two `stat` calls: the tombstone absent (another process, the orchestrator, destroyed it)
    and the key file the same one (a key put back from a backup is read again)."""
    orchestrator = DataKeys(tmp_path, KEY)
    worker = DataKeys(tmp_path, KEY, checked_cache_size=4)
    orchestrator.create_many(["req-1", "req-2", "req-3"])
    unwrapped: list[str] = []
    unwrap = DataKeys._unwrapped

    def counted(self: DataKeys, request_id: str, *args: Any) -> bytes:
        unwrapped.append(request_id)
        return unwrap(self, request_id, *args)

    monkeypatch.setattr(DataKeys, "_unwrapped", counted)
    key = worker.get("req-1")
    assert [worker.get("req-1") for _ in range(3)] == [key] * 3
    assert key == orchestrator.get("req-1") and unwrapped == ["req-1", "req-1"]

    orchestrator.destroy("req-1")  # in another process: the worker's memory is not told
    with pytest.raises(DataKeyDestroyed):
        worker.get("req-1")

    elsewhere = DataKeys(tmp_path / "backup", KEY)  # another key for the same request id
    restored = elsewhere.create("req-2")
    first = worker.get("req-2")
    assert first == orchestrator.get("req-2") != restored
    os.replace(tmp_path / "backup" / "req-2.key", tmp_path / "req-2.key")
    assert worker.get("req-2") == restored

    worker.get("req-3")
    (tmp_path / "req-3.key").unlink()
    with pytest.raises(DataKeyMissing):
        worker.get("req-3")

    worker.create_many([f"req-{n}" for n in range(4, 10)])
    for n in range(4, 10):
        worker.get(f"req-{n}")
    assert len(worker._checked) == 4  # bounded: the least recently used go first


def test_get_after_destroy_raises_and_destroy_is_idempotent(tmp_path: Path) -> None:
    keys = DataKeys(tmp_path, KEY, cache_size=10)
    keys.create("req-1")
    assert not keys.destroyed("req-1")
    keys.destroy("req-1")
    keys.destroy("req-1")  # again: nothing changes, nothing fails
    assert keys.destroyed("req-1") and not (tmp_path / "req-1.key").exists()
    with pytest.raises(DataKeyDestroyed, match="crypto-shredded"):
        keys.get("req-1")  # not from the cache either
    with pytest.raises(DataKeyDestroyed):
        keys.create("req-1")  # a shredded request id never gets a new key
    keys.destroy("never-created")  # destroying what never existed is fine too
    assert keys.destroyed("never-created")


def test_a_missing_key_and_a_wrong_bus_key_are_told_apart(tmp_path: Path) -> None:
    keys = DataKeys(tmp_path, KEY)
    with pytest.raises(DataKeyMissing, match="DSR_DEK_DIR"):
        keys.get("req-unknown")
    keys.create("req-1")
    with pytest.raises(BusKeyError, match="same DSR_BUS_KEY_FILE"):
        DataKeys(tmp_path, os.urandom(32)).get("req-1")
    # A wrapped key copied to another request's name does not unwrap there.
    (tmp_path / "req-2.key").write_bytes((tmp_path / "req-1.key").read_bytes())
    with pytest.raises(BusKeyError):
        keys.get("req-2")
    with pytest.raises(ValueError, match="not a valid request id"):
        keys.get("../etc/passwd")


# -- sealed tasks ------------------------------------------------------------------------------

SUBJECT = Subject(identifiers=[Identifier(type="email", value=EMAIL)])


def _task(system: str = "crm", **extra: object) -> TaskDispatched:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "request_id": "req-1",
        "task_id": f"req-1/{system}",
        "system": system,
        "action": RequestType.ACCESS,
        "subject": SUBJECT,
        "deadline": now,
        "dispatched_at": now,
    }
    return TaskDispatched.model_validate({**fields, **extra})


def test_a_sealed_task_carries_no_identifier_and_opens_again() -> None:
    task = _task(
        action=RequestType.RECTIFICATION,
        changes=[FieldChange(field="phone", value="+31611111111")],
    )
    sealed = seal_task(task, KEY)
    wire = sealed.model_dump_json()
    assert sealed.subject is None and sealed.changes is None
    assert EMAIL not in wire and "31611111111" not in wire
    # It still validates as an event body, and opens to the original task.
    again = TaskDispatched.model_validate_json(wire)
    assert open_task(again, KEY) == task
    # Sealing a sealed task, or opening an open one, changes nothing.
    assert seal_task(sealed, KEY) is sealed and open_task(task, KEY) is task


def test_a_sealed_subject_does_not_open_in_another_task() -> None:
    crm, chat = seal_task(_task("crm"), KEY), seal_task(_task("chat"), KEY)
    swapped = chat.model_copy(update={"sealed_subject": crm.sealed_subject})
    with pytest.raises(SealBroken):
        open_task(swapped, KEY)
    with pytest.raises(SealBroken):
        open_task(crm, os.urandom(32))


def test_a_task_has_exactly_one_subject() -> None:
    with pytest.raises(ValidationError, match="exactly one of 'subject' and 'sealed_subject'"):
        _task(subject=None)
    sealed = seal_task(_task(), KEY)
    with pytest.raises(ValidationError, match="exactly one"):
        TaskDispatched.model_validate({**sealed.model_dump(), "subject": SUBJECT.model_dump()})


def _worker(tmp_path: Path, keys: DataKeys | None) -> ConnectorWorker:
    register = parse_register(
        {
            "systems": [
                {
                    "name": "crm",
                    "kind": "crm",
                    "connector": "memory",
                    "settings": {"records": [{"collection": "contacts", "data": {"email": EMAIL}}]},
                    "data_categories": ["email"],
                    "purposes": ["sales"],
                    "legal_basis": ["contract"],
                    "profiling": "none",
                    "retention": "1 year",
                }
            ]
        }
    )
    return ConnectorWorker(KafkaSettings(), register, data_keys=keys)


def test_the_connector_worker_opens_sealed_tasks(tmp_path: Path) -> None:
    keys = DataKeys(tmp_path / "dek", KEY)
    task = seal_task(_task(), keys.create("req-1"))
    outcome = asyncio.run(_worker(tmp_path, keys).execute(task))
    assert outcome.status == OutcomeStatus.COMPLETED and outcome.counts.found == 1
    plain = asyncio.run(_worker(tmp_path, None).execute(_task()))  # tools and tests
    assert plain.status == OutcomeStatus.COMPLETED


def test_a_shredded_task_fails_clearly_and_never_crashes_the_worker(tmp_path: Path) -> None:
    keys = DataKeys(tmp_path / "dek", KEY)
    task = seal_task(_task(), keys.create("req-1"))
    keys.destroy("req-1")
    outcome = asyncio.run(_worker(tmp_path, keys).execute(task))
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    assert outcome.reason is not None
    assert outcome.reason.startswith("the request's data key was destroyed (crypto-shredded)")
    # A broken seal, or a worker without the data-key store: failed, with the reason.
    other = seal_task(_task(), os.urandom(32))
    keys.create("req-2")
    broken = asyncio.run(
        _worker(tmp_path, keys).execute(
            other.model_copy(update={"request_id": "req-2", "task_id": "req-2/crm"})
        )
    )
    assert broken.status == OutcomeStatus.FAILED and "cannot be opened" in (broken.reason or "")
    unkeyed = asyncio.run(_worker(tmp_path, None).execute(seal_task(_task(), KEY)))
    assert unkeyed.status == OutcomeStatus.FAILED and "DSR_DEK_DIR" in (unkeyed.reason or "")
    for result in (outcome, broken, unkeyed):
        assert EMAIL not in result.model_dump_json()


def test_dsr_worker_connectors_runs_with_a_checked_key_cache_its_record_store_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dsr worker connectors` builds its worker with the checked data-key cache (4,096 keys,
    see the test above for what it guarantees), and its record store seals with the same
    store, so a destroyed key is refused for records as for tasks (Art. 17 and 32)."""
    from click.testing import CliRunner

    import connectors.runtime
    from orchestrator.cli import run

    built: dict[str, Any] = {}

    class Captured:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.update(kwargs)

    async def no_run(*_: Any) -> None:
        return None

    monkeypatch.setattr(connectors.runtime, "ConnectorWorker", Captured)
    monkeypatch.setattr(run, "_run_connectors", no_run)
    monkeypatch.setattr(run, "_settle_heap", lambda: None)
    (tmp_path / "register.yaml").write_text(
        "systems:\n- {name: crm, kind: crm, connector: memory, data_categories: [email],\n"
        "   purposes: [service], legal_basis: [contract], profiling: none, retention: 1 year}\n"
    )
    monkeypatch.setenv("DSR_KAFKA_BOOTSTRAP", "127.0.0.1:9")  # never contacted
    monkeypatch.setenv("DSR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DSR_REGISTER", str(tmp_path / "register.yaml"))
    result = CliRunner().invoke(run.worker_connectors, ["--group", "default"])
    assert result.exit_code == 0, result.output
    keys = built["data_keys"]
    assert isinstance(keys, DataKeys) and keys._checked_size == 4096
    assert built["records"].keys is keys
