"""Base64url (RFC 4648 section 5, unpadded as in RFC 7515) and key ids derived from keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: only the one canonical spelling is accepted.

    Raises `ValueError` (never with the input in its message).
    """
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("not valid base64url") from None
    # Unused trailing bits would let several spellings decode to the same bytes.
    if b64url(raw) != text:
        raise ValueError("not valid (canonical, unpadded) base64url")
    return raw


def public_raw(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed25519_key_id(key: Ed25519PublicKey) -> str:
    """A key id from the key's RFC 7638 thumbprint, so a bare PEM file yields the same kid."""
    members = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url(public_raw(key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return "ed25519-" + b64url(hashlib.sha256(members.encode()).digest())[:16]
