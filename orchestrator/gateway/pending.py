"""Submissions of the public request page that wait for the e-mail confirmation.

A submission is not a request yet: nobody has shown that the address is theirs, so nothing of
it goes to Kafka (a topic cannot forget one record). It waits here, on disk, at most
`lifetime` (24 hours), then it is gone.

Where: one file per submission under `<data dir>/intake/pending/`, mode 0600, sealed with
AES-256-GCM under a key that exists only in the link the confirmation e-mail carries. The
token in that link is `<id>.<key>`: the file is named by the id, the key opens it. So the
disk holds nothing readable (a copied volume or backup reveals no address), the intake needs
no key of its own, and a guessed or altered token opens nothing. Kept on disk rather than in
memory so that a restart or a second replica on the same volume can still confirm (with
several replicas: a volume they share, or only one replica serving the page).

Once confirmed, the sealed submission is removed and only the request id is kept until the
file expires, so that a second click says "already confirmed" and publishes nothing.
Art. 5(1)(c) and (e) GDPR (data minimisation, storage limitation) are why nothing outlives
that day.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import RequestSubmitted, SealedValue
from schemas.primitives.encoding import b64url, b64url_decode
from schemas.primitives.files import atomic_write
from schemas.primitives.sealing import KEY_SIZE, SealBroken, context, open_sealed, seal

_ID_BYTES = 16
_TOKEN = re.compile(r"^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")
_PURPOSE = "dsr.public-page.pending"
#: A claim (a confirmation being published) older than this was left by a crashed process.
_STALE_CLAIM = timedelta(minutes=5)


class Submission(BaseModel):
    """What waits for the click: the request to be, and the message for the officer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: RequestSubmitted
    message: str | None = Field(default=None, max_length=4000)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A submission whose link was not clicked yet."""

    submission: Submission
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A submission confirmed before: its request id, nothing else."""

    request_id: str


class PendingSubmissions:
    """Sealed submissions on disk, each opened only by the token its e-mail carries."""

    def __init__(self, root: Path, lifetime: timedelta = timedelta(hours=24)) -> None:
        self.root = Path(root)
        self.lifetime = lifetime

    def add(self, submission: Submission, *, now: datetime | None = None) -> str:
        """Keep `submission` sealed; return the token for the confirmation link."""
        ident, key = secrets.token_bytes(_ID_BYTES), secrets.token_bytes(KEY_SIZE)
        name = b64url(ident)
        expires = (now or datetime.now(UTC)) + self.lifetime
        sealed = seal(key, submission.model_dump_json().encode(), context(_PURPOSE, name))
        self._write(name, {"expires_at": expires.isoformat(), "sealed": sealed.model_dump()})
        return f"{name}.{b64url(key)}"

    def get(self, token: str, *, now: datetime | None = None) -> Waiting | Confirmed | None:
        """The submission behind `token`; None when the token is wrong, unknown or expired."""
        parts = _parse(token)
        if parts is None:
            return None
        name, key = parts
        entry = self._read(self.root / f"{name}.json")
        if entry is None or _expired(entry, now):
            return None
        if "request_id" in entry:
            return Confirmed(str(entry["request_id"]))
        try:
            sealed = SealedValue.model_validate(entry["sealed"])
            plain = open_sealed(key, sealed, context(_PURPOSE, name))
            submission = Submission.model_validate_json(plain)
        except (KeyError, SealBroken, ValidationError, ValueError):
            return None
        return Waiting(submission, datetime.fromisoformat(str(entry["expires_at"])))

    def claim(self, token: str) -> bool:
        """Take the submission for publishing (atomic: of two clicks, one wins).

        False when another click holds it. `confirmed` or `release` ends the claim.
        """
        parts = _parse(token)
        if parts is None:
            return False
        name = parts[0]
        try:
            os.rename(self.root / f"{name}.json", self.root / f"{name}.claim")
        except FileNotFoundError:
            return False
        return True

    def release(self, token: str) -> None:
        """Give a claimed submission back (publishing failed: the link works again)."""
        name = _name(token)
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.root / f"{name}.claim", self.root / f"{name}.json")

    def discard(self, token: str) -> None:
        """Forget a submission at once (its e-mail could not be sent: nobody can confirm it)."""
        name = _name(token)
        (self.root / f"{name}.json").unlink(missing_ok=True)

    def confirmed(self, token: str, request_id: str, *, now: datetime | None = None) -> None:
        """The request is published: drop the sealed data, keep its id until expiry."""
        name = _name(token)
        claim = self.root / f"{name}.claim"
        entry = self._read(claim) or {}
        expires = entry.get("expires_at") or ((now or datetime.now(UTC)) + self.lifetime)
        self._write(name, {"expires_at": str(expires), "request_id": request_id})
        claim.unlink(missing_ok=True)

    def sweep(self, *, now: datetime | None = None) -> int:
        """Remove expired submissions and stale claims; the number removed."""
        removed = 0
        moment = now or datetime.now(UTC)
        for path in self._files():
            entry = self._read(path)
            if entry is None or _expired(entry, moment):
                path.unlink(missing_ok=True)
                removed += 1
            elif path.suffix == ".claim" and _older_than(path, moment, _STALE_CLAIM):
                # A crash between claim and publish: the link works again.
                path.replace(path.with_suffix(".json"))
        return removed

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.suffix in (".json", ".claim")]

    def _write(self, name: str, entry: dict[str, object]) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.root / f"{name}.json", json.dumps(entry), mode=0o600)

    @staticmethod
    def _read(path: Path) -> dict[str, object] | None:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) else None


def _parse(token: str) -> tuple[str, bytes] | None:
    """The file name and key of a well-formed token; None for anything else (no path tricks)."""
    match = _TOKEN.match(token or "")
    if match is None:
        return None
    try:
        key = b64url_decode(match.group(2))
    except ValueError:
        return None
    return (match.group(1), key) if len(key) == KEY_SIZE else None


def _name(token: str) -> str:
    parts = _parse(token)
    if parts is None:
        raise ValueError("not a confirmation token")
    return parts[0]


def _expired(entry: dict[str, object], now: datetime | None) -> bool:
    try:
        expires = datetime.fromisoformat(str(entry["expires_at"]))
    except (KeyError, ValueError):
        return True
    return (now or datetime.now(UTC)) >= expires


def _older_than(path: Path, now: datetime, age: timedelta) -> bool:
    try:
        changed = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return False
    return now - changed > age


__all__ = ["Confirmed", "PendingSubmissions", "Submission", "Waiting"]
