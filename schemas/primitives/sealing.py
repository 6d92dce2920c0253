"""Sealing personal data: AES-256-GCM under a data key per request, so it can be shredded.

Kafka cannot delete one record from a topic, and a table's changelog keeps every version of
a value. So personal data is never written there in the clear: it is *sealed* (AES-256-GCM)
with a data key that belongs to one request. Destroying that key makes every copy unreadable
for good, on the bus and on disk alike (crypto-shredding).

Two kinds of key:

- the **bus key** (32 bytes), shared by the orchestrator and the connector workers
  (`DSR_BUS_KEY_FILE`, in Kubernetes a mounted Secret; created on first use in the keys dir
  when not configured). It only wraps data keys; it never seals personal data itself.
- a **data key** per request (32 random bytes), kept wrapped by the bus key in the data-key
  store (`DSR_DEK_DIR`, one file per request, on the volume the workers share). It never
  travels in Kafka: a wrapped key on the bus would outlive its destruction.

Every sealed value is bound to where it belongs through its associated data (`context`): a
task's sealed subject does not open as another task's, nor as the table state of its request.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import TypeAdapter, ValidationError

from schemas.errors import DsrError
from schemas.events import FieldChange, SealedValue, Subject, TaskDispatched
from schemas.primitives.encoding import b64url, b64url_decode

KEY_SIZE = 32
NONCE_SIZE = 12
#: The bus key's file name in the keys dir when DSR_BUS_KEY_FILE is not set.
BUS_KEY_FILE = "bus.key"

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


class SealingError(DsrError):
    """Something sealed cannot be opened or a key is unusable; messages hold no personal data."""


class SealBroken(SealingError):
    """A sealed value or file does not open: wrong key, wrong context, or altered."""


class BusKeyError(SealingError):
    """The bus key is missing, malformed or not the one the data keys were wrapped with."""


class DataKeyMissing(SealingError):
    """No data key for a request in the store (never created, or another store)."""


class DataKeyDestroyed(SealingError):
    """The request's data key was destroyed: what was sealed with it is gone for good."""


def context(purpose: str, *parts: str) -> bytes:
    """Associated data that binds a sealed value to its place (purpose, request id, ...).

    Each part is length-prefixed, so no two different lists of parts give the same bytes.
    """
    out = bytearray(b"dsr.seal.v1")
    for part in (purpose, *parts):
        raw = part.encode()
        out += len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> SealedValue:
    """Encrypt and authenticate `plaintext` under `key`, bound to `aad`; a fresh random nonce."""
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = _cipher(key).encrypt(nonce, plaintext, aad)
    return SealedValue(nonce=b64url(nonce), ciphertext=b64url(ciphertext))


def open_sealed(key: bytes, sealed: SealedValue, aad: bytes) -> bytes:
    """The plaintext of a sealed value; `SealBroken` when key, context or value do not match."""
    try:
        nonce, ciphertext = b64url_decode(sealed.nonce), b64url_decode(sealed.ciphertext)
        return _cipher(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError):
        raise SealBroken(
            "a sealed value does not open: wrong key, wrong context, or altered"
        ) from None


def _cipher(key: bytes) -> AESGCM:
    if len(key) != KEY_SIZE:
        raise ValueError(f"an AES-256-GCM key has {KEY_SIZE} bytes, not {len(key)}")
    return AESGCM(key)


# ---------------------------------------------------------------------------------------------
# The bus key


def load_bus_key(path: Path) -> bytes:
    """A key from a file: 32 raw bytes, or their base64 (as `openssl rand -base64 32`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BusKeyError(f"cannot read the key file {path}: {exc.strerror}") from None
    if len(data) == KEY_SIZE:
        return data
    text = data.strip()
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_SIZE:
            return key
    raise BusKeyError(
        f"{path} does not hold a key: expected 32 random bytes or their base64; "
        "create one with `openssl rand -base64 32`"
    )


def bus_key(configured: Path | None, keys_dir: Path) -> bytes:
    """The bus key: the configured file (DSR_BUS_KEY_FILE), else `bus.key` in the keys dir,
    created on first use so a laptop needs no configuration."""
    if configured is not None:
        if not Path(configured).exists():
            raise BusKeyError(
                f"DSR_BUS_KEY_FILE: no such file {configured}; create it with "
                "`openssl rand -base64 32` (mode 0600) and give the same file to the "
                "orchestrator and every connector worker"
            )
        return load_bus_key(configured)
    return secret_file(Path(keys_dir) / BUS_KEY_FILE)


def secret_file(path: Path) -> bytes:
    """A 32-byte secret kept in a file (base64, mode 0600), created on first use."""
    if not path.exists():
        try:
            _create_once(path, base64.b64encode(os.urandom(KEY_SIZE)) + b"\n")
        except OSError as exc:  # e.g. the keys dir is a read-only Secret mount
            raise BusKeyError(
                f"cannot create the key file {path}: {exc.strerror}; create it beforehand "
                "(`openssl rand -base64 32`), or for the bus key set DSR_BUS_KEY_FILE"
            ) from None
    return load_bus_key(path)


def _create_once(path: Path, data: bytes) -> bool:
    """Create a file (mode 0600) with its whole content at once; False when it already exists.

    Written to a temporary file and linked into place: another process starting at the same
    moment either wins the link or reads the complete file, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        sync_folder(path.parent)
        return True
    finally:
        os.unlink(tmp)


def sync_folder(folder: Path) -> None:
    """Make a folder's entries durable, such as a file just linked into it.

    Syncing a file does not sync the name it was given: "Calling fsync() does not necessarily
    ensure that the entry in the directory containing the file has also reached disk. For that
    an explicit fsync() on a file descriptor for the directory is also needed" (fsync(2)). A
    data key whose name was lost in a power cut would leave every state, task and export
    sealed with it unreadable; a lost tombstone would let a destroyed key be created again.
    """
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Data keys


class DataKeys:
    """The data-key store: each request's data key, wrapped by the bus key, one file each.

    `REQUEST_ID.key` holds the wrapped key; `destroy` overwrites and removes it and leaves
    `REQUEST_ID.shredded` (a timestamp, no personal data) so a destroyed key is told apart from
    a missing one and is never created again for the same request id.

    Unwrapped keys may be kept in memory: `cache_size` keys without another look at the disk,
    only in the one process that destroys keys (the orchestrator); `checked_cache_size` keys
    in any other process (connector workers), each taken only after two `stat` calls show its
    tombstone absent and its file unchanged.
    """

    def __init__(
        self, root: Path, bus_key: bytes, *, cache_size: int = 0, checked_cache_size: int = 0
    ) -> None:
        if len(bus_key) != KEY_SIZE:
            raise BusKeyError(f"the bus key must have {KEY_SIZE} bytes, not {len(bus_key)}")
        self.root = Path(root)
        self._bus_key = bus_key
        # Only for the one process that also destroys keys (the orchestrator): another
        # process's cache would not see a destruction.
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        # For the other processes (connector workers): a key is taken from here only once
        # its tombstone is seen absent and its file unchanged (`_checked_get`).
        self._checked: OrderedDict[str, tuple[_FileId, bytes]] = OrderedDict()
        self._checked_size = checked_cache_size

    def _paths(self, request_id: str) -> tuple[Path, Path]:
        if not _REQUEST_ID.fullmatch(request_id):
            raise ValueError("not a valid request id")
        return self.root / f"{request_id}.key", self.root / f"{request_id}.shredded"

    def create(self, request_id: str) -> bytes:
        """The request's data key, created on first use; refused once destroyed."""
        try:
            return self.get(request_id)
        except DataKeyMissing:
            pass
        self.create_many([request_id])
        return self.get(request_id)  # whoever won the race, everyone uses that key

    def create_many(self, request_ids: Iterable[str]) -> None:
        """Create the data keys of several requests at once, as `create` does one.

        Every file is written first and then synced: the first sync commits the file system's
        journal for all of them, so the others cost next to nothing (one by one, each waits
        for a commit of its own). Written to a temporary file and linked into place: another
        process creating the same key at the same moment either wins the link or reads the
        complete file. The folder is synced once after the links (`sync_folder`), so the keys'
        names are on disk too before any key is handed out. A key that cannot be created
        (destroyed, a wrong bus key) is left to `get`, which reports it for its request.
        """
        pending: list[tuple[str, Path, int, str, bytes]] = []
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for request_id in request_ids:
                try:
                    self.get(request_id)
                    continue
                except DataKeyMissing:
                    pass
                except SealingError:
                    continue
                path, _ = self._paths(request_id)
                key = os.urandom(KEY_SIZE)
                wrapped = seal(self._bus_key, key, context("data-key", request_id))
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
                pending.append((request_id, path, fd, tmp, key))
                os.fchmod(fd, 0o600)
                os.write(fd, wrapped.model_dump_json().encode())
            for _, _, fd, _, _ in pending:
                os.fsync(fd)
            linked: list[tuple[str, Path, bytes]] = []
            for request_id, path, _, tmp, key in pending:
                try:
                    os.link(tmp, path)
                except FileExistsError:  # another process won: its key counts (`get` reads it)
                    continue
                linked.append((request_id, path, key))
            if linked:
                sync_folder(self.root)  # the new names on disk too, before any key is used
            for request_id, path, key in linked:
                if not self._remember(request_id, key):  # destroyed meanwhile: never resurrect
                    path.unlink(missing_ok=True)
        finally:
            for _, _, fd, tmp, _ in pending:
                os.close(fd)
                os.unlink(tmp)

    def get(self, request_id: str) -> bytes:
        """The request's data key; `DataKeyDestroyed` after shredding, `DataKeyMissing` if none."""
        with self._cache_lock:  # threads share the store (documents are written in threads)
            cached = self._cache.get(request_id)
            if cached is not None:
                self._cache.move_to_end(request_id)
                return cached
        path, tombstone = self._paths(request_id)
        if tombstone.exists():
            raise DataKeyDestroyed(
                f"the data key of request {request_id!r} was destroyed "
                f"(crypto-shredded) at {_read_text(tombstone) or 'an unknown time'}"
            )
        try:
            if self._checked_size:
                return self._checked_get(request_id, path)
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DataKeyMissing(
                f"no data key for request {request_id!r} in {self.root}; the orchestrator "
                "creates it when the request arrives, so the orchestrator and the connector "
                "workers must share this directory (DSR_DEK_DIR) and the bus key "
                "(DSR_BUS_KEY_FILE)"
            ) from None
        return self._unwrapped(request_id, path, raw)

    def _unwrapped(self, request_id: str, path: Path, raw: bytes) -> bytes:
        """The key in a key file's bytes, remembered unless it was destroyed meanwhile."""
        try:
            wrapped = SealedValue.model_validate_json(raw)
            key = open_sealed(self._bus_key, wrapped, context("data-key", request_id))
        except (ValidationError, SealBroken):
            raise BusKeyError(
                f"the data key of request {request_id!r} ({path}) cannot be unwrapped: the bus "
                "key is not the one it was wrapped with; give the orchestrator and every "
                "connector worker the same DSR_BUS_KEY_FILE"
            ) from None
        if not self._remember(request_id, key):
            raise DataKeyDestroyed(f"the data key of request {request_id!r} was just destroyed")
        return key

    def _checked_get(self, request_id: str, path: Path) -> bytes:
        """The key from the checked cache when its file is the one it was read from, else read
        (the tombstone was just seen absent; raises FileNotFoundError without a key file).

        A connector worker opens each task's subject and seals its records with the request's
        key, eight reads and unwraps of one file for a request to four systems (a read, a JSON
        parse and an AES-GCM open each, ~90 us). Two `stat` calls say the same: `destroy`
        writes the tombstone before it touches the key file, and no key is ever written again
        after a tombstone, so an absent tombstone and the same file (device, inode, size,
        change time) mean the same key as a read would give."""
        seen = _file_id(os.stat(path))
        with self._cache_lock:
            found = self._checked.get(request_id)
            if found is not None and found[0] == seen:
                self._checked.move_to_end(request_id)
                return found[1]
        with path.open("rb") as handle:
            read = _file_id(os.fstat(handle.fileno()))
            raw = handle.read()
        key = self._unwrapped(request_id, path, raw)
        with self._cache_lock:
            self._checked[request_id] = (read, key)
            self._checked.move_to_end(request_id)
            if len(self._checked) > self._checked_size:
                self._checked.popitem(last=False)
        return key

    def _remember(self, request_id: str, key: bytes) -> bool:
        """Keep a key in the cache (when this store has one), unless it was destroyed: False
        then. Checked under the lock, and `destroy` empties the cache under it after writing
        the tombstone, so a key read or created while it is destroyed is never kept."""
        tombstone = self._paths(request_id)[1]
        with self._cache_lock:
            if tombstone.exists():
                return False
            if self._cache_size:
                self._cache[request_id] = key
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return True

    def destroy(self, request_id: str) -> None:
        """Destroy the request's data key (crypto-shredding); doing it again changes nothing."""
        path, tombstone = self._paths(request_id)
        # The tombstone first: a crash half-way leaves a key that `get` already refuses.
        if not tombstone.exists():
            _create_once(tombstone, datetime.now(UTC).isoformat(timespec="seconds").encode())
        with self._cache_lock:  # after the tombstone: see `_remember`
            self._cache.pop(request_id, None)
            self._checked.pop(request_id, None)
        try:
            with path.open("r+b") as handle:
                # Best effort against undelete tools; no guarantee on SSDs or copy-on-write
                # file systems, where only the bus key's secrecy protects the old blocks.
                handle.write(b"\0" * os.fstat(handle.fileno()).st_size)
                handle.flush()
                os.fsync(handle.fileno())
        except FileNotFoundError:
            return
        path.unlink(missing_ok=True)

    def destroyed(self, request_id: str) -> bool:
        """True once the request's data key was destroyed."""
        return self._paths(request_id)[1].exists()


#: What tells one key file from another: device, inode, size and change time (`stat`).
_FileId = tuple[int, int, int, int]


def _file_id(stat: os.stat_result) -> _FileId:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_ctime_ns)


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# Tasks on the bus


_CHANGES: TypeAdapter[list[FieldChange]] = TypeAdapter(list[FieldChange])


class OneKey:
    """One request's data key, for a process handed just that key (an export process): it
    has no key store, and opens nothing of any other request."""

    def __init__(self, request_id: str, key: bytes) -> None:
        self.request_id = request_id
        self._key = key

    def get(self, request_id: str) -> bytes:
        """The key, for its own request only; `DataKeyMissing` for any other."""
        if request_id != self.request_id:
            raise DataKeyMissing(f"no data key for request {request_id!r} in this process")
        return self._key


def seal_task(task: TaskDispatched, key: bytes) -> TaskDispatched:
    """The task with its subject and changes sealed with the request's data key."""
    if task.subject is None:
        return task
    update: dict[str, object] = {
        "subject": None,
        "sealed_subject": seal(key, task.subject.model_dump_json().encode(), _task_aad(task, "s")),
        "changes": None,
    }
    if task.changes is not None:
        update["sealed_changes"] = seal(key, _CHANGES.dump_json(task.changes), _task_aad(task, "c"))
    return task.model_copy(update=update)


def open_task(task: TaskDispatched, key: bytes) -> TaskDispatched:
    """The task with its subject and changes in the clear; `SealBroken` if they do not open."""
    if task.sealed_subject is None:
        return task
    try:
        subject = Subject.model_validate_json(
            open_sealed(key, task.sealed_subject, _task_aad(task, "s"))
        )
        changes = task.changes
        if task.sealed_changes is not None:
            changes = _CHANGES.validate_json(
                open_sealed(key, task.sealed_changes, _task_aad(task, "c"))
            )
    except ValidationError:  # its message would quote the subject
        raise SealBroken(f"the sealed subject of task {task.task_id!r} is not valid") from None
    update = {"subject": subject, "sealed_subject": None, "changes": changes}
    return task.model_copy(update={**update, "sealed_changes": None})


def _task_aad(task: TaskDispatched, part: str) -> bytes:
    return context("task", task.request_id, task.task_id, part)


__all__ = [
    "BUS_KEY_FILE",
    "BusKeyError",
    "DataKeyDestroyed",
    "DataKeyMissing",
    "DataKeys",
    "OneKey",
    "SealBroken",
    "SealedValue",
    "SealingError",
    "bus_key",
    "context",
    "load_bus_key",
    "open_sealed",
    "open_task",
    "seal",
    "seal_task",
    "secret_file",
    "sync_folder",
]
