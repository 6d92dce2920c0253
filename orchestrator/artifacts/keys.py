"""Ed25519 signing keys for deletion certificates: a key store directory and JWKS export."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.errors import DsrError
from schemas.primitives.encoding import b64url, b64url_decode, ed25519_key_id, public_raw
from schemas.primitives.files import atomic_write

INDEX_FILE = "keys.json"
_T = TypeVar("_T")


class KeyStoreError(DsrError):
    """A key store or key file problem; the message names the file and the fix."""


def default_keys_dir() -> Path:
    """DSR_KEYS_DIR, else `<DSR_DATA_DIR or dsr-data>/keys`."""
    explicit = os.environ.get("DSR_KEYS_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("DSR_DATA_DIR", "dsr-data")) / "keys"


def jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """One public key as a JWK."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(public_raw(key)),
        "kid": ed25519_key_id(key),
        "use": "sig",
        "alg": "EdDSA",
    }


def jwks(keys: list[Ed25519PublicKey]) -> dict[str, Any]:
    """Public keys as a JWKS document."""
    return {"keys": [jwk(k) for k in keys]}


def load_jwks(document: dict[str, Any], source: str = "JWKS") -> dict[str, Ed25519PublicKey]:
    """Public keys by kid from a JWKS document; non-Ed25519 keys are an error."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyStoreError(f"{source}: not a JWKS document (expected {{'keys': [...]}})")
    found: dict[str, Ed25519PublicKey] = {}
    for n, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or entry.get("kty") != "OKP"
            or entry.get("crv") != "Ed25519"
        ):
            raise KeyStoreError(f"{source}: key #{n} is not an Ed25519 key (kty OKP, crv Ed25519)")
        try:
            raw = b64url_decode(str(entry.get("x", "")))
            key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise KeyStoreError(f"{source}: key #{n} has an invalid 'x' value") from None
        kid = entry.get("kid") or ed25519_key_id(key)
        found[str(kid)] = key
    return found


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """Public keys by kid from a JWKS file or a PEM public key file."""
    data = _read(Path(path), "key file")
    if data.lstrip().startswith(b"-----BEGIN"):
        key = _parsed(
            serialization.load_pem_public_key,
            data,
            f"{path}: not a PEM public key; give a JWKS file from `dsr keys export-jwks`",
        )
        if not isinstance(key, Ed25519PublicKey):
            raise KeyStoreError(f"{path}: the PEM key is not an Ed25519 key")
        return {ed25519_key_id(key): key}
    document = _parsed(
        json.loads,
        data,
        f"{path}: neither JSON (JWKS) nor PEM; export keys with `dsr keys export-jwks`",
    )
    return load_jwks(document, source=str(path))


def _read(path: Path, what: str) -> bytes:
    """A key file's bytes; KeyStoreError naming the file when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read {what} {path}: {exc.strerror}") from None


def _parsed(parse: Callable[[bytes], _T], data: bytes, problem: str) -> _T:
    """`parse(data)`, or KeyStoreError(problem) when the bytes are not in that format."""
    try:
        return parse(data)
    except (ValueError, UnsupportedAlgorithm):  # bad JSON, bad UTF-8 and bad PEM are ValueErrors
        raise KeyStoreError(problem) from None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key in the store (public facts only)."""

    kid: str
    created_at: str
    active: bool


class KeyStore:
    """A directory of Ed25519 private keys (PEM, mode 0600) with one active signing key."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_keys_dir()

    # -- index ---------------------------------------------------------------------------------

    def _index(self) -> dict[str, Any]:
        path = self.root / INDEX_FILE
        if not path.exists():
            return {"active": None, "keys": []}
        index: dict[str, Any] = _parsed(
            json.loads, path.read_bytes(), f"{path} is not valid JSON; restore it from a backup"
        )
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        atomic_write(self.root / INDEX_FILE, json.dumps(index, indent=2).encode(), mode=0o644)

    def private_path(self, kid: str) -> Path:
        """Where the private key with this kid is kept."""
        return self.root / f"{kid}.pem"

    # -- operations ----------------------------------------------------------------------------

    def create(self) -> KeyInfo:
        """Create the first signing key; refuses when the store already has one."""
        if self._index()["active"]:
            raise KeyStoreError(
                f"the key store {self.root} already has an active key; "
                "use `dsr keys rotate` for a new one"
            )
        return self._new_key()

    def rotate(self) -> KeyInfo:
        """Make a new active key; older keys stay for verifying earlier certificates."""
        return self._new_key()

    def _new_key(self) -> KeyInfo:
        private = Ed25519PrivateKey.generate()
        kid = ed25519_key_id(private.public_key())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.root.mkdir(parents=True, exist_ok=True)
        # Private keys are for the issuer only.
        atomic_write(self.private_path(kid), pem, mode=0o600)
        index = self._index()
        created = datetime.now(UTC).isoformat(timespec="seconds")
        index["keys"].append({"kid": kid, "created_at": created})
        index["active"] = kid
        self._write_index(index)
        return KeyInfo(kid=kid, created_at=created, active=True)

    def list(self) -> list[KeyInfo]:
        """All keys, oldest first."""
        index = self._index()
        return [
            KeyInfo(kid=k["kid"], created_at=k["created_at"], active=k["kid"] == index["active"])
            for k in index["keys"]
        ]

    def active(self) -> tuple[str, Ed25519PrivateKey]:
        """The active signing key and its kid."""
        kid = self._index()["active"]
        if not kid:
            raise KeyStoreError(
                f"the key store {self.root} has no signing key; create one with `dsr keys create`"
            )
        return kid, self._load_private(kid)

    def _load_private(self, kid: str) -> Ed25519PrivateKey:
        path = self.private_path(kid)
        key = _parsed(
            partial(serialization.load_pem_private_key, password=None),
            _read(path, "private key"),
            f"{path} is not a PEM private key",
        )
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError(f"{path} is not an Ed25519 private key")
        return key

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every key's public half, by kid."""
        return {k.kid: self._load_private(k.kid).public_key() for k in self.list()}

    def export_jwks(self) -> dict[str, Any]:
        """All public keys as JWKS, for anyone who verifies certificates."""
        return jwks(list(self.public_keys().values()))
