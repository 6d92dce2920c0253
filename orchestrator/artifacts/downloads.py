"""Expiring download links for a request's export and certificate, as the dashboard serves them.

The dashboard authenticates the user, then hands out a link with a token that names one file of
one request and expires within minutes (HMAC-SHA256 with a key in the keys dir, created on
first use). Following the link streams the file: the export decrypted on the fly (it is sealed
at rest, see `orchestrator.artifacts.export`), the certificate as it is (it holds no personal data).
A token is a capability, not a session: whoever holds it may download until it expires, so it
is short-lived and never logged in full.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from orchestrator.artifacts.export import open_export
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.runtime.config import Settings
from schemas.errors import DsrError
from schemas.events import REQUEST_ID_PATTERN
from schemas.primitives.encoding import b64url, b64url_decode
from schemas.primitives.sealed_files import plaintext_size
from schemas.primitives.sealing import DataKeyDestroyed, DataKeys, secret_file

DownloadKind = Literal["export", "certificate"]
KINDS: tuple[DownloadKind, ...] = get_args(DownloadKind)
#: The token key's file name in the keys dir.
TOKEN_KEY_FILE = "download-token.key"  # noqa: S105 - a file name
#: The longest a link may live: it is for clicking now, not for mailing around.
MAX_EXPIRY = timedelta(hours=24)
_VERSION = b"dsr.download.v1"
_CHUNK = 1 << 20
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


class DownloadError(DsrError):
    """A download cannot be served; the message says why (no personal data)."""


class InvalidToken(DownloadError):
    """The token is malformed or its signature is wrong (forged, or another installation's)."""


class TokenExpired(DownloadError):
    """The token was genuine but has expired: ask for a new link."""


class NotAvailable(DownloadError):
    """The file does not exist (not finished, another request type) or was shredded."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows: one file of one request, until a moment."""

    request_id: str
    kind: DownloadKind
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Download:
    """A file ready to stream: its name for the browser, media type, size and content."""

    filename: str
    media_type: str
    size: int
    chunks: Iterator[bytes]


class Downloads:
    """Makes and checks download tokens, and opens the files they grant."""

    def __init__(self, data_dir: Path, keys_dir: Path, data_keys: DataKeys) -> None:
        self._artifacts = ArtifactStore(data_dir)
        self._key = secret_file(Path(keys_dir) / TOKEN_KEY_FILE)
        self._data_keys = data_keys

    @classmethod
    def from_settings(cls, settings: Settings) -> Downloads:
        """Downloads for the data dir and keys of these settings."""
        return cls(settings.data_dir, settings.key_store_dir(), settings.data_keys())

    def make_token(
        self,
        request_id: str,
        kind: DownloadKind,
        expires_in: timedelta = timedelta(minutes=5),
        *,
        now: datetime | None = None,
    ) -> str:
        """A token for one file of one request, valid for `expires_in` (at most a day)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not _valid_request_id(request_id):
            raise ValueError("not a valid request id")
        if not timedelta(0) < expires_in <= MAX_EXPIRY:
            raise ValueError(f"expires_in must be more than 0 and at most {MAX_EXPIRY}")
        expires = int(((now or datetime.now(UTC)) + expires_in).timestamp())
        payload = b64url(f"{request_id}|{kind}|{expires}".encode())
        return f"{payload}.{b64url(self._sign(payload))}"

    def check_token(self, token: str, *, now: datetime | None = None) -> Grant:
        """What the token grants; `InvalidToken` or `TokenExpired` otherwise."""
        payload, _, signature = token.partition(".")
        try:
            genuine = hmac.compare_digest(b64url_decode(signature), self._sign(payload))
            request_id, kind, expires = b64url_decode(payload).decode().split("|")
            expires_at = datetime.fromtimestamp(int(expires), UTC)
        except (ValueError, UnicodeDecodeError):
            raise InvalidToken("the download link is malformed; ask for a new one") from None
        if not genuine or kind not in KINDS or not _valid_request_id(request_id):
            raise InvalidToken("the download link is not valid; ask for a new one")
        if (now or datetime.now(UTC)) >= expires_at:
            raise TokenExpired(
                f"the download link expired at {expires_at:%Y-%m-%d %H:%M:%S} UTC; "
                "ask for a new one"
            )
        return Grant(request_id, kind, expires_at)

    def open(self, token: str, *, now: datetime | None = None) -> Download:
        """The granted file, ready to stream (the export decrypted as it goes)."""
        grant = self.check_token(token, now=now)
        request_id = grant.request_id
        if grant.kind == "certificate":
            path = self._artifacts.certificate_path(request_id)
            if not path.is_file():
                raise NotAvailable(f"request {request_id!r} has no deletion certificate")
            return Download(
                f"{request_id}-certificate.json",
                "application/json",
                path.stat().st_size,
                _read(path),
            )
        path = self._artifacts.export_path(request_id)
        if not path.is_file():
            raise NotAvailable(
                f"request {request_id!r} has no export (not an access or portability request, "
                "not finished, or its personal data was destroyed after the retention window)"
            )
        try:
            chunks = open_export(path, self._data_keys, request_id)
        except DataKeyDestroyed:
            raise NotAvailable(
                f"the export of request {request_id!r} was destroyed (crypto-shredded) after "
                "the retention window"
            ) from None
        return Download(f"{request_id}.zip", "application/zip", plaintext_size(path), chunks)

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._key, _VERSION + b"|" + payload.encode(), hashlib.sha256).digest()


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while piece := handle.read(_CHUNK):
            yield piece


def _valid_request_id(request_id: str) -> bool:
    return _REQUEST_ID.fullmatch(request_id) is not None


__all__ = [
    "KINDS",
    "Download",
    "DownloadError",
    "DownloadKind",
    "Downloads",
    "Grant",
    "InvalidToken",
    "NotAvailable",
    "TokenExpired",
]
