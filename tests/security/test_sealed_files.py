"""Sealed files: chunked AES-256-GCM; every kind of tampering is detected; memory stays flat."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from schemas.primitives.sealed_files import (
    CHUNK_SIZE,
    SealedReader,
    SealedWriter,
    plaintext_size,
    read_sealed,
)
from schemas.primitives.sealing import SealBroken, context

KEY = bytes(range(32))
CONTEXT = context("records", "req-1/crm.1.abc.jsonl")
CHUNK = 1024  # small chunks, so a few kilobytes make many of them
HEADER = 28
CHUNK_HEAD = 17
TAG = 16


def _write(path: Path, data: bytes, *, chunk_size: int = CHUNK, piece: int = 300) -> None:
    with SealedWriter(path, KEY, CONTEXT, chunk_size=chunk_size) as writer:
        for start in range(0, len(data), piece):
            writer.write(data[start : start + piece])
        assert writer.tell() == len(data)


def _read(path: Path, key: bytes = KEY, ctx: bytes = CONTEXT) -> bytes:
    return b"".join(read_sealed(path, key, ctx))


def _chunks(path: Path) -> tuple[bytes, list[bytes]]:
    """The header and the raw chunk records of a sealed file."""
    data = path.read_bytes()
    header, rest, chunks = data[:HEADER], data[HEADER:], []
    while rest:
        length = int.from_bytes(rest[:4], "big")
        chunks.append(rest[: CHUNK_HEAD + length])
        rest = rest[CHUNK_HEAD + length :]
    return header, chunks


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10_000])
def test_round_trip_of_any_size(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    _write(path, data)
    assert _read(path) == data
    assert plaintext_size(path) == size
    assert len(_chunks(path)[1]) == max(1, -(-size // CHUNK))  # no empty trailing chunk
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_plaintext_is_not_in_the_file(tmp_path: Path) -> None:
    data = b'{"email": "noor@example.nl"}\n' * 100
    _write(tmp_path / "f", data)
    assert b"noor@example.nl" not in (tmp_path / "f").read_bytes()


def _sealed(tmp_path: Path) -> Path:
    path = tmp_path / "f"
    _write(path, os.urandom(5 * CHUNK + 10))
    return path


@pytest.mark.parametrize(
    "where",
    [
        3,  # the magic
        10,  # the chunk size in the header
        20,  # the file id
        HEADER + 2,  # a chunk's length
        HEADER + 4,  # a chunk's final flag
        HEADER + 8,  # a chunk's nonce
        HEADER + CHUNK_HEAD + 100,  # ciphertext
        -1,  # the last tag
    ],
)
def test_one_flipped_byte_anywhere_is_detected(tmp_path: Path, where: int) -> None:
    path = _sealed(tmp_path)
    data = bytearray(path.read_bytes())
    data[where] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SealBroken):
        _read(path)


def test_truncation_is_detected(tmp_path: Path) -> None:
    path = _sealed(tmp_path)
    header, chunks = _chunks(path)
    path.write_bytes(header + b"".join(chunks[:-1]))  # the final chunk dropped
    with pytest.raises(SealBroken, match="cut short"):
        _read(path)
    path.write_bytes(header + b"".join(chunks)[:-7])  # cut inside the last chunk
    with pytest.raises(SealBroken):
        _read(path)
    path.write_bytes(header[:10])
    with pytest.raises(SealBroken, match="not a sealed file"):
        _read(path)


def test_reordered_duplicated_or_appended_chunks_are_detected(tmp_path: Path) -> None:
    path = _sealed(tmp_path)
    header, chunks = _chunks(path)
    swapped = [chunks[1], chunks[0], *chunks[2:]]
    path.write_bytes(header + b"".join(swapped))
    with pytest.raises(SealBroken, match="chunk 0 does not open"):
        _read(path)
    path.write_bytes(header + b"".join([chunks[0], *chunks]))
    with pytest.raises(SealBroken):
        _read(path)
    path.write_bytes(header + b"".join([*chunks, chunks[-1]]))
    with pytest.raises(SealBroken, match="after its final chunk"):
        _read(path)


def test_chunks_of_another_file_or_another_name_do_not_open(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _write(one, os.urandom(3 * CHUNK))
    _write(two, os.urandom(3 * CHUNK))
    header, chunks = _chunks(one)
    _, others = _chunks(two)
    one.write_bytes(header + b"".join([chunks[0], others[1], chunks[2]]))
    with pytest.raises(SealBroken, match="chunk 1"):
        _read(one)
    with pytest.raises(SealBroken):  # a file opened as another one (renamed, other request)
        _read(two, ctx=context("records", "req-2/crm.1.abc.jsonl"))
    with pytest.raises(SealBroken):
        _read(two, key=os.urandom(32))


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with pytest.raises(RuntimeError), SealedWriter(path, KEY, CONTEXT) as writer:
        writer.write(b"x" * 10)
        raise RuntimeError("the source broke")
    assert not path.exists()


def test_fifty_megabytes_round_trip_in_flat_memory(tmp_path: Path) -> None:
    """50 MB through the writer and back with the default chunk size: the peak of traced
    memory stays a few chunks, whatever the size of the file."""
    path = tmp_path / "big"
    piece = os.urandom(64 * 1024)
    pieces = 50 * 1024 * 1024 // len(piece)
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        with SealedWriter(path, KEY, CONTEXT) as writer:
            for _ in range(pieces):
                writer.write(piece)
                expected.update(piece)
        write_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        got = hashlib.sha256()
        size = 0
        with SealedReader(path, KEY, CONTEXT) as reader:
            while block := reader.read(1 << 20):
                got.update(block)
                size += len(block)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == pieces * len(piece) and got.digest() == expected.digest()
    assert plaintext_size(path) == size
    # A few chunks (and the reader's 1 MiB blocks), against 50 MiB of data.
    assert write_peak < 4 * CHUNK_SIZE, write_peak
    assert read_peak < 4 * CHUNK_SIZE + 2 * (1 << 20), read_peak
