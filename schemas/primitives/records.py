"""The record store: where connectors put the records they find, so Kafka carries references.

An access or portability task can find millions of records. A connector worker streams them
into one JSON Lines file per task (one `Record` per line), hashing as it writes, and the
outcome event carries a `RecordsRef` (path, SHA-256, size, count per collection). The
orchestrator streams the file back into the export and checks the hash on the way. Memory stays
flat on both sides, and no message grows with the subject's data beyond a small bound:

A result of at most `inline_bytes` of JSON Lines (default 64 KiB, `DSR_RECORD_INLINE_BYTES`)
is not written to a file at all. It travels in the reference itself (`RecordsRef.sealed`),
sealed with the request's data key and bound to the same name a file would have had, so it is
as unreadable after shredding as a file, and cannot be moved to another request or task.
Most subjects have a few records per system: creating, syncing, renaming and later removing
a file each was most of a connector worker's CPU per task on an ext4 disk (issue 19).

The store is a directory (`DSR_RECORD_DIR`, default `DATA_DIR/records`) that connector workers
and the orchestrator share: one machine, or a shared volume in Kubernetes. Files are personal
data, so each is sealed in chunks with the request's data key (`schemas.primitives.sealed_files`,
bound to its name in the store) and unreadable once that key is destroyed. The reference's
SHA-256 and size are of the plaintext JSON Lines, what the connector wrote; the seal protects
the file itself. Files a person attached to a manual task (`RecordStore.attach`) are kept
the same way, next to the records. The orchestrator removes a request's files once its export
is written.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from schemas.errors import DsrError
from schemas.events import Attachment, Record, RecordsRef
from schemas.primitives.sealed_files import CHUNK_SIZE, SealedReader, SealedWriter
from schemas.primitives.sealing import (
    DataKeys,
    OneKey,
    SealingError,
    context,
    open_sealed,
    seal,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: Results up to this many bytes of JSON Lines travel sealed in their reference, not in a file.
INLINE_BYTES = 64 * 1024

#: Request ids and system names are validated by the event schemas; be strict here too.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class RecordStoreError(DsrError, RuntimeError):
    """A stored record file is missing, altered or unreadable (no personal data in messages)."""


class RecordSink(Protocol):
    """Where a connector writes the records it finds."""

    def write(self, record: Record) -> None:
        """Store one record."""


class RecordWriter:
    """Writes one task's records; `commit()` returns their reference.

    Up to `inline_bytes` they are kept in memory and sealed into the reference; past that,
    everything goes to a temporary file, published under its name by `commit()`.
    """

    def __init__(self, root: Path, relative: str, key: bytes, inline_bytes: int = 0) -> None:
        self._root = root
        self.relative = relative
        self._final = root / relative
        self._tmp = self._final.with_name(f".tmp-{self._final.name}")
        self._key = key
        self._inline_bytes = inline_bytes
        self._pending: bytearray | None = bytearray()  # not yet in a file
        self._handle: SealedWriter | None = None
        self._closed = False
        self._hash = hashlib.sha256()
        self._size = 0
        self.collections: Counter[str] = Counter()
        if inline_bytes <= 0:
            self._spill()

    @property
    def count(self) -> int:
        """Records written so far."""
        return sum(self.collections.values())

    @property
    def inline(self) -> bool:
        """True while the records are held in memory (no file: nothing for a disk to wait on)."""
        return self._handle is None

    def write(self, record: Record) -> None:
        """Append one record."""
        if self._closed:
            raise RecordStoreError("record writer is closed")
        line = record.model_dump_json().encode() + b"\n"
        self._hash.update(line)
        self._size += len(line)
        self.collections[record.collection] += 1
        if self._pending is not None:
            self._pending += line
            if len(self._pending) > self._inline_bytes:
                self._spill()
        else:
            assert self._handle is not None
            self._handle.write(line)

    def _spill(self) -> None:
        """From now on into a file: what was held so far goes first."""
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._handle = SealedWriter(self._tmp, self._key, _context(self.relative))
        if self._pending:
            self._handle.write(self._pending)
        self._pending = None

    def commit(self) -> RecordsRef | None:
        """Publish the records and return their reference; None (and no file) when empty."""
        if self._closed:
            raise RecordStoreError("record writer is closed")
        self._closed = True
        handle, self._handle = self._handle, None
        if not self.collections:
            if handle is not None:
                handle.abort()
            return None
        sealed = None
        if handle is None:
            assert self._pending is not None
            sealed = seal(self._key, bytes(self._pending), _inline_context(self.relative))
            self._pending = None
        else:
            handle.close()  # seals the last chunk and syncs
            os.replace(self._tmp, self._final)
        return RecordsRef(
            path=self.relative,
            sha256=self._hash.hexdigest(),
            size=self._size,
            count=self.count,
            collections=dict(sorted(self.collections.items())),
            sealed=sealed,
        )

    def abort(self) -> None:
        """Drop what was written (the task failed)."""
        self._closed = True
        self._pending = None
        if self._handle is not None:
            self._handle.abort()
            self._handle = None
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._closed:
            self.abort()


class RecordStore:
    """A directory of record files, one folder per request, sealed with the requests' data keys."""

    def __init__(
        self, root: Path, keys: DataKeys | OneKey, *, inline_bytes: int = INLINE_BYTES
    ) -> None:
        self.root = Path(root)
        self.keys = keys
        #: Results up to this size travel sealed in their reference (0: always a file).
        self.inline_bytes = inline_bytes

    def writer(self, request_id: str, system: str, attempt: int) -> RecordWriter:
        """A writer for one task attempt; every delivery gets a file of its own.

        Raises a `SealingError` when the request has no data key (or it was destroyed).
        """
        _check_name(request_id)
        _check_name(system)
        name = f"{system}.{attempt}.{uuid.uuid4().hex[:12]}.jsonl"
        key = self.keys.get(request_id)
        return RecordWriter(self.root, f"{request_id}/{name}", key, self.inline_bytes)

    def path(self, ref: RecordsRef | Attachment) -> Path:
        """The file a reference points to; refuses paths leaving the store."""
        # Checked by name, not by resolving links (a dozen system calls per file): the
        # store's own names are `REQUEST/FILE`, each part from the safe set and never `..`.
        parts = ref.path.split("/")
        if len(parts) != 2 or not all(_safe_name(part) for part in parts):
            raise RecordStoreError("record reference points outside the record store")
        return self.root / ref.path

    def read(self, ref: RecordsRef, request_id: str) -> Iterator[Record]:
        """Stream one request's records back, checking seal, size, count and SHA-256.

        A mismatch raises `RecordStoreError` (at the latest after the last record): consumers
        write to a temporary file and publish only when the iteration ends cleanly.
        """
        count = 0
        raw = _Hashing(self._inline(ref, request_id) if ref.sealed else self._open(ref, request_id))
        with io.BufferedReader(raw, buffer_size=CHUNK_SIZE) as handle:
            lines = iter(handle)
            while True:
                try:
                    line = next(lines)
                except StopIteration:
                    break
                except SealingError as exc:
                    raise RecordStoreError(f"record file {ref.path}: {exc}") from None
                count += 1
                try:  # pydantic parses and validates in one go: as fast as json.loads alone
                    yield Record.model_validate_json(line)
                except ValueError:
                    raise RecordStoreError(
                        f"record file {ref.path} line {count} is not a valid record"
                    ) from None
        size, digest = raw.size, raw.digest
        if size != ref.size or count != ref.count or digest.hexdigest() != ref.sha256:
            raise RecordStoreError(
                f"record file {ref.path} does not match its reference "
                f"(size {size}/{ref.size}, records {count}/{ref.count}, sha256 differs: "
                f"{digest.hexdigest() != ref.sha256})"
            )

    def attach(
        self,
        request_id: str,
        system: str,
        source: IO[bytes],
        *,
        name: str,
        media_type: str,
        max_bytes: int,
    ) -> Attachment:
        """Store a file a person attached to a manual task, sealed like a record file.

        It lives in the request's folder, so it goes when the request's records go. A file
        growing past `max_bytes` while it is read is refused and nothing is kept.
        """
        _check_name(request_id)
        _check_name(system)
        relative = f"{request_id}/{system}.attachment.{uuid.uuid4().hex[:12]}"
        final = self.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with SealedWriter(
            final.with_name(f".tmp-{final.name}"), self.keys.get(request_id), _context(relative)
        ) as sealed:
            while piece := source.read(CHUNK_SIZE):
                size += len(piece)
                if size > max_bytes:  # leaving the block aborts: the partial file is removed
                    raise RecordStoreError(f"the attached file is larger than {max_bytes} bytes")
                digest.update(piece)
                sealed.write(piece)
        os.replace(sealed.path, final)
        return Attachment(
            name=name, path=relative, sha256=digest.hexdigest(), size=size, media_type=media_type
        )

    def read_attachment(self, attachment: Attachment, request_id: str) -> Iterator[bytes]:
        """Stream an attached file back, checking seal, size and SHA-256; a mismatch raises
        `RecordStoreError` after the last piece (consumers publish only a clean end)."""
        digest = hashlib.sha256()
        size = 0
        with self._open(attachment, request_id) as raw:
            while True:
                try:
                    piece = raw.read(CHUNK_SIZE)
                except SealingError as exc:
                    raise RecordStoreError(f"attached file {attachment.path}: {exc}") from None
                if not piece:
                    break
                digest.update(piece)
                size += len(piece)
                yield piece
        if size != attachment.size or digest.hexdigest() != attachment.sha256:
            raise RecordStoreError(
                f"attached file {attachment.path} does not match its SHA-256 and size "
                f"(size {size}/{attachment.size})"
            )

    def _inline(self, ref: RecordsRef, request_id: str) -> io.BytesIO:
        """Records that travelled in their reference, opened (seal and ownership checked)."""
        relative = _owned(ref, request_id)
        assert ref.sealed is not None
        try:
            plain = open_sealed(self.keys.get(request_id), ref.sealed, _inline_context(relative))
        except SealingError as exc:
            raise RecordStoreError(f"records {relative} cannot be opened: {exc}") from None
        return io.BytesIO(plain)

    def _open(self, ref: RecordsRef | Attachment, request_id: str) -> SealedReader:
        """A stored file of `request_id`, opened for reading (seal and ownership checked)."""
        relative = _owned(ref, request_id)
        try:
            return SealedReader(self.path(ref), self.keys.get(request_id), _context(relative))
        except FileNotFoundError:
            raise RecordStoreError(f"record file {relative} is missing") from None
        except SealingError as exc:
            raise RecordStoreError(f"record file {relative} cannot be opened: {exc}") from None

    def discard(self, request_id: str) -> None:
        """Remove every record file of a request (its export holds them now)."""
        _check_name(request_id)
        shutil.rmtree(self.root / request_id, ignore_errors=True)

    def requests(self) -> list[str]:
        """Request ids with record files."""
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())


class _Hashing(io.RawIOBase):
    """A sealed file's plaintext, hashed and counted as it is read: one SHA-256 update per
    chunk rather than one per record."""

    def __init__(self, source: SealedReader | io.BytesIO) -> None:
        super().__init__()
        self._source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Read, hash and count."""
        n = self._source.readinto(buffer)
        with memoryview(buffer) as view:
            self.digest.update(view[:n])
        self.size += n
        return n

    def close(self) -> None:
        """Close the sealed file too."""
        self._source.close()
        super().close()


def _context(relative: str) -> bytes:
    """A record file's seal is bound to its name in the store (request id, system, attempt)."""
    return context("records", relative)


def _inline_context(relative: str) -> bytes:
    """Records in their reference are bound to the name a file would have had."""
    return context("records-inline", relative)


def _owned(ref: RecordsRef | Attachment, request_id: str) -> str:
    """The reference's name in the store, which must be one of `request_id`'s."""
    if not ref.path.startswith(f"{request_id}/"):
        raise RecordStoreError(
            f"record reference {ref.path} does not belong to request {request_id!r}"
        )
    return ref.path


def _safe_name(value: str) -> bool:
    return bool(value) and value not in {".", ".."} and set(value) <= _SAFE


def _check_name(value: str) -> None:
    if not _safe_name(value):
        raise RecordStoreError("request id or system name is not usable as a file name")


__all__ = ["INLINE_BYTES", "RecordSink", "RecordStore", "RecordStoreError", "RecordWriter"]
