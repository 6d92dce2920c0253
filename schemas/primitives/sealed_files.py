"""Sealed files: a file of any size encrypted in chunks, written and read as a stream.

Record files and exports can be gigabytes, so they are sealed in chunks (AES-256-GCM, each
chunk with its own random nonce) and memory stays flat on both sides. Layout::

    header   "DSRSEAL" 0x01 | chunk size (4 bytes) | file id (16 random bytes)
    chunk*   length (4 bytes) | final flag (1 byte) | nonce (12 bytes) | ciphertext and tag

Each chunk's associated data is the header, the file's context (e.g. its name in the record
store, see `schemas.primitives.sealing.context`), the chunk's index and its final flag. So a flipped
byte, a chunk moved or swapped, chunks spliced in from another file, a file renamed to another
request's name, or a file cut short (no chunk marked final) all fail to open, with an error
rather than wrong data.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.primitives.sealing import KEY_SIZE, NONCE_SIZE, SealBroken

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

MAGIC = b"DSRSEAL\x01"
#: Plaintext bytes per chunk: large enough that the 33 bytes per chunk and the per-call cost
#: vanish, small enough that a reader and a writer each hold about a megabyte.
CHUNK_SIZE = 256 * 1024
_MAX_CHUNK = 16 * 1024 * 1024
_TAG = 16
_HEADER = len(MAGIC) + 4 + 16
_CHUNK_HEAD = 4 + 1 + NONCE_SIZE


class SealedWriter:
    """A write-only binary stream that seals everything written to it into `path`.

    `close()` seals the last chunk (marked final) and syncs the file (unless `durable` is
    False: a scratch file that dies with the process); `abort()` removes it. Not seekable:
    `zipfile` writes an archive to it as it would to a pipe.
    """

    def __init__(
        self,
        path: Path,
        key: bytes,
        context: bytes,
        *,
        chunk_size: int = CHUNK_SIZE,
        durable: bool = True,
    ) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"an AES-256-GCM key has {KEY_SIZE} bytes, not {len(key)}")
        if not 0 < chunk_size <= _MAX_CHUNK:
            raise ValueError(f"chunk size must be 1..{_MAX_CHUNK} bytes")
        self.path = Path(path)
        self._cipher = AESGCM(key)
        self._chunk_size = chunk_size
        self._durable = durable
        self._header = MAGIC + chunk_size.to_bytes(4, "big") + os.urandom(16)
        self._aad = self._header + context
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")
        self._file.write(self._header)
        self._buffer = bytearray()
        self._index = 0
        self._written = 0

    def write(self, data: ReadableBuffer) -> int:
        """Take plaintext; full chunks are sealed and written as they fill up."""
        if self._file is None:
            raise ValueError("write to a closed sealed file")
        view = memoryview(data)
        self._buffer += view
        self._written += view.nbytes
        # Keep one chunk back: the last chunk must carry the final flag.
        while len(self._buffer) > self._chunk_size:
            self._emit(bytes(self._buffer[: self._chunk_size]), final=False)
            del self._buffer[: self._chunk_size]
        return view.nbytes

    def tell(self) -> int:
        """Plaintext bytes written so far."""
        return self._written

    def flush(self) -> None:
        """Nothing to do: a partial chunk cannot be sealed before the stream ends."""

    def _emit(self, plaintext: bytes, *, final: bool) -> None:
        assert self._file is not None
        flag = b"\x01" if final else b"\x00"
        nonce = os.urandom(NONCE_SIZE)
        aad = self._aad + self._index.to_bytes(8, "big") + flag
        sealed = self._cipher.encrypt(nonce, plaintext, aad)
        self._file.write(len(sealed).to_bytes(4, "big") + flag + nonce)
        self._file.write(sealed)
        self._index += 1

    def close(self) -> None:
        """Seal the final chunk, sync and close; closing twice is harmless."""
        if self._file is None:
            return
        self._emit(bytes(self._buffer), final=True)
        self._buffer.clear()
        handle, self._file = self._file, None
        handle.flush()
        if self._durable:
            os.fsync(handle.fileno())
        handle.close()

    def abort(self) -> None:
        """Drop the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        """True after `close()` or `abort()`."""
        return self._file is None

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class SealedReader(io.RawIOBase):
    """The plaintext of a sealed file as a readable stream, chunk by chunk.

    Raises `SealBroken` (an `OSError` is not used: a broken seal is not an I/O problem) as soon
    as a chunk does not open, and at the end when the final chunk is missing.
    """

    def __init__(self, path: Path, key: bytes, context: bytes) -> None:
        super().__init__()
        if len(key) != KEY_SIZE:
            raise ValueError(f"an AES-256-GCM key has {KEY_SIZE} bytes, not {len(key)}")
        self.path = Path(path)
        self._file = self.path.open("rb")
        header = self._file.read(_HEADER)
        if len(header) != _HEADER or not header.startswith(MAGIC):
            self._file.close()
            raise SealBroken(f"{self.path.name} is not a sealed file (or it was cut short)")
        self._chunk_size = int.from_bytes(header[len(MAGIC) : len(MAGIC) + 4], "big")
        if not 0 < self._chunk_size <= _MAX_CHUNK:
            self._file.close()
            raise SealBroken(f"{self.path.name} has an impossible chunk size in its header")
        self._cipher = AESGCM(key)
        self._aad = header + context
        self._index = 0
        self._final = False
        self._plain = b""
        self._offset = 0

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill `buffer` with the next plaintext bytes; 0 at the end of the file."""
        target = memoryview(buffer).cast("B")
        while self._offset >= len(self._plain):
            if not self._next_chunk():
                return 0
        n = min(len(target), len(self._plain) - self._offset)
        target[:n] = self._plain[self._offset : self._offset + n]
        self._offset += n
        return n

    def _next_chunk(self) -> bool:
        head = self._file.read(_CHUNK_HEAD)
        if not head:
            if not self._final:
                raise SealBroken(f"{self.path.name} was cut short: its final chunk is missing")
            return False
        if self._final:
            raise SealBroken(f"{self.path.name} has data after its final chunk")
        length = int.from_bytes(head[:4], "big")
        if len(head) != _CHUNK_HEAD or not _TAG <= length <= self._chunk_size + _TAG:
            raise SealBroken(f"{self.path.name}: chunk {self._index} is damaged")
        flag, nonce = head[4:5], head[5:]
        sealed = self._file.read(length)
        aad = self._aad + self._index.to_bytes(8, "big") + flag
        try:
            self._plain = self._cipher.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise SealBroken(
                f"{self.path.name}: chunk {self._index} does not open (wrong key, or the file "
                "was altered, reordered or cut)"
            ) from None
        self._offset = 0
        self._index += 1
        self._final = flag == b"\x01"
        return True

    def close(self) -> None:
        """Close the underlying file."""
        if not self.closed:
            self._file.close()
        super().close()


def read_sealed(
    path: Path, key: bytes, context: bytes, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """The plaintext of a sealed file, in pieces of at most `chunk_size` bytes.

    The file is opened (and its header checked) at once, not at the first piece.
    """
    reader = SealedReader(path, key, context)

    def pieces() -> Iterator[bytes]:
        with reader:
            while piece := reader.read(chunk_size):
                yield piece

    return pieces()


def plaintext_size(path: Path) -> int:
    """How many plaintext bytes a sealed file holds, from its size (e.g. for Content-Length)."""
    with Path(path).open("rb") as handle:
        header = handle.read(_HEADER)
        size = os.fstat(handle.fileno()).st_size
    if len(header) != _HEADER or not header.startswith(MAGIC):
        raise SealBroken(f"{Path(path).name} is not a sealed file")
    chunk = int.from_bytes(header[len(MAGIC) : len(MAGIC) + 4], "big")
    body = size - _HEADER
    chunks = max(1, -(-body // (chunk + _TAG + _CHUNK_HEAD)))
    return body - chunks * (_TAG + _CHUNK_HEAD)


__all__ = ["CHUNK_SIZE", "SealedReader", "SealedWriter", "plaintext_size", "read_sealed"]
