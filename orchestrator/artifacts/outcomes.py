"""Each request's outcomes in one append-only file, every entry sealed with its data key.

The orchestrator keeps what each system reported until the request finishes: the export, the
result and the attachments are built from it. One file per request (`outcomes/ID.log`),
appended once per batch, replaces a file per system and two folders per request: creating a
file is what costs most on a busy disk (about half a millisecond each on our CI machines, where
appending to an open one costs microseconds).

Layout: entries one after another, each::

    "DSROUT" 0x01 0x00 | length (4 bytes) | nonce (12 bytes) | ciphertext and tag (length bytes)

sealed with AES-256-GCM under the request's data key, bound to the request
(`schemas.primitives.sealing.context("outcome", request_id)`). So the outcomes (a manual
completion may carry records inline) are unreadable once the key is destroyed, like everything
else of the request; a request's entries cannot be moved into another request's file.

A system reported twice (a re-delivery, a retried task) has two entries: the last one counts.
An append is one `write` to a file opened with `O_APPEND`: a killed process leaves whole
entries. A power loss may leave a torn last entry; a reader skips it (the batch it belonged to
was not committed, so its outcome is delivered and appended again), and resynchronises on the
next marker. A complete entry that does not open is tampering or the wrong key: an error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.events import TaskOutcome
from schemas.primitives.sealing import NONCE_SIZE, DataKeys, SealBroken, context

MARKER = b"DSROUT\x01\x00"
_HEAD = len(MARKER) + 4 + NONCE_SIZE
SUFFIX = ".log"


class OutcomeLog:
    """The outcomes of each request, kept sealed in `root/ID.log` until the request is done."""

    def __init__(self, root: Path, keys: DataKeys) -> None:
        self.root = Path(root)
        self.keys = keys
        self._root_made = False

    def path(self, request_id: str) -> Path:
        """The file holding one request's outcomes."""
        return self.root / f"{request_id}{SUFFIX}"

    def append(self, request_id: str, outcomes: Sequence[TaskOutcome]) -> None:
        """Add outcomes of one request (sealed) in a single write."""
        if not outcomes:
            return
        cipher = AESGCM(self.keys.get(request_id))
        aad = context("outcome", request_id)
        entries = bytearray()
        for outcome in outcomes:
            if outcome.request_id != request_id:
                raise ValueError("an outcome of another request")
            nonce = os.urandom(NONCE_SIZE)
            sealed = cipher.encrypt(nonce, outcome.model_dump_json().encode(), aad)
            entries += MARKER + len(sealed).to_bytes(4, "big") + nonce + sealed
        if not self._root_made:
            self.root.mkdir(parents=True, exist_ok=True)
            self._root_made = True
        fd = os.open(self.path(request_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(entries)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def load(self, request_id: str) -> dict[str, TaskOutcome]:
        """The latest outcome per system; empty when none was kept.

        Raises `SealingError` when the request's key is missing or destroyed, or an entry was
        altered.
        """
        found = _legacy(self.root.parent, request_id)
        try:
            data = self.path(request_id).read_bytes()
        except FileNotFoundError:
            return found
        cipher = AESGCM(self.keys.get(request_id))
        for plaintext in _entries(data, cipher, context("outcome", request_id)):
            outcome = TaskOutcome.model_validate_json(plaintext)
            found[outcome.system] = outcome
        return found

    def discard(self, request_id: str) -> None:
        """Remove a request's outcomes (its export is written, or it was shredded)."""
        self.path(request_id).unlink(missing_ok=True)
        shutil.rmtree(_legacy_dir(self.root.parent, request_id), ignore_errors=True)


def _entries(data: bytes, cipher: AESGCM, aad: bytes) -> Iterator[bytes]:
    """The plaintext of each whole entry; torn ones (a power loss mid-append) are skipped."""
    view = memoryview(data)
    position = 0
    while (start := data.find(MARKER, position)) >= 0:
        head = start + len(MARKER)
        end = start + _HEAD + int.from_bytes(view[head : head + 4], "big")
        if start + _HEAD > len(data) or end > len(data):
            position = start + 1  # torn: look for the next marker
            continue
        nonce = bytes(view[head + 4 : head + 4 + NONCE_SIZE])
        try:
            yield cipher.decrypt(nonce, bytes(view[start + _HEAD : end]), aad)
        except InvalidTag:
            if end == len(data) or data.startswith(MARKER, end):  # whole, yet it does not open
                raise SealBroken(
                    "a kept outcome does not open: altered, or sealed with another key"
                ) from None
            position = start + 1
            continue
        position = end


def _legacy_dir(data_dir: Path, request_id: str) -> Path:
    return data_dir / "requests" / request_id / "outcomes"


def _legacy(data_dir: Path, request_id: str) -> dict[str, TaskOutcome]:
    """Outcomes an older version kept as plain files (`requests/ID/outcomes/SYSTEM.json`)."""
    folder = _legacy_dir(data_dir, request_id)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    found: dict[str, TaskOutcome] = {}
    for name in sorted(names):
        if name.endswith(".json") and not name.startswith("."):
            outcome = TaskOutcome.model_validate_json((folder / name).read_bytes())
            found[outcome.system] = outcome
    return found


__all__ = ["MARKER", "SUFFIX", "OutcomeLog"]
