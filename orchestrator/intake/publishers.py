"""Publisher keys on disk: issue, rotate and retire keys in the publisher keys file.

The orchestrator reads the keys file (`DSR_PUBLISHER_KEYS`, see `schemas.primitives.signing`); each
publisher gets the private part of its key: an Ed25519 private key (the keys file holds the
public key) or an HMAC secret (the keys file points at the same secret). Private files are
written with mode 0600 and never overwritten.

`dsr up` and `dsr demo` on the embedded broker use `local_publisher`: one key created on
first use in the data directory, so local use needs no configuration at all.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.envelope import (
    SIGNATURE_HEADER,
    TYPE_OF,
    EnvelopeError,
    RawEvent,
    _attributes_and_data,
    describe_validation_error,
)
from schemas.events import RequestSubmitted
from schemas.primitives.files import atomic_write
from schemas.primitives.signing import (
    ED25519,
    HMAC_SHA256,
    PublisherKeyError,
    PublisherKeys,
    PublisherKeysConfig,
    RequestSigner,
    RequestVerifier,
    ed25519_key_id,
    hmac_key_id,
    parse_publisher_keys,
    parse_signature,
)
from schemas.topics import IDENTITY_VERIFIED_EVENT_TYPE, REQUEST_EVENT_TYPES

LOCAL_PUBLISHER = "local"
LOCAL_KEYS_FILE = "publisher-keys.yaml"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just added to the keys file, and where its private part is."""

    publisher: str
    algorithm: str  # ED25519 or HMAC_SHA256
    key_id: str
    #: The publisher's private key or shared secret.
    key_file: Path
    #: The keys file the orchestrator reads (DSR_PUBLISHER_KEYS).
    keys_file: Path

    def env(self) -> dict[str, str]:
        """The variables a publishing service signs with."""
        return {
            "DSR_PUBLISHER_ID": self.publisher,
            "DSR_PUBLISHER_KEY_FILE": str(self.key_file.resolve()),
            "DSR_PUBLISHER_KEY_ID": self.key_id,
        }

    def signer(self) -> RequestSigner:
        """A signer using this key."""
        return RequestSigner.from_key_file(self.publisher, self.key_file, self.key_id)


def read_keys_document(keys_file: Path) -> dict[str, Any]:
    """The keys file as data (an empty document if the file does not exist yet)."""
    if not keys_file.exists():
        return {"publishers": []}
    try:
        data = yaml.safe_load(keys_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PublisherKeyError(f"{keys_file}: cannot read it as YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.setdefault("publishers", []), list):
        raise PublisherKeyError(f"{keys_file}: expected a mapping with a 'publishers' list")
    return data


def _find(document: dict[str, Any], publisher: str) -> dict[str, Any] | None:
    for entry in document["publishers"]:
        if isinstance(entry, dict) and entry.get("id") == publisher:
            return entry
    return None


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def _write_private(path: Path, data: bytes) -> None:
    """Create a 0600 file; never replace one (it may be a key in use)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PublisherKeyError(f"{path} exists already; remove it or choose --out") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PEM keys) as literal blocks, which stay readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write_keys_document(keys_file: Path, document: dict[str, Any]) -> None:
    """Check the document's structure, then replace the file atomically.

    Keys are not resolved here: `${VAR}` secrets need not be set where keys are managed.
    """
    try:
        config = PublisherKeysConfig.model_validate(document)
    except ValidationError as exc:
        raise PublisherKeyError(f"{keys_file}: {describe_validation_error(exc, 10)}") from None
    ids = [p.id for p in config.publishers]
    if len(set(ids)) != len(ids):
        raise PublisherKeyError(f"{keys_file}: a publisher is listed twice")
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    # Public keys and file references only; secrets live elsewhere.
    atomic_write(keys_file, text, mode=0o644)


def _new_key(
    keys_file: Path, publisher: str, algorithm: str, out_dir: Path | None, name: str | None
) -> tuple[dict[str, Any], IssuedKey]:
    """Generate a key, write its private part; return the keys-file entry and the result."""
    out = out_dir or keys_file.parent
    base = keys_file.parent
    if algorithm == HMAC_SHA256:
        secret = secrets.token_urlsafe(32)
        kid = hmac_key_id(secret.encode())
        path = out / (name or f"{publisher}.{kid}.secret")
        _write_private(path, secret.encode() + b"\n")
        entry: dict[str, Any] = {
            "algorithm": HMAC_SHA256,
            "id": kid,
            "secret_file": _relative(path, base),
        }
    elif algorithm == ED25519:
        private = Ed25519PrivateKey.generate()
        kid = ed25519_key_id(private.public_key())
        path = out / (name or f"{publisher}.{kid}.pem")
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(path, pem)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        entry = {"algorithm": ED25519, "id": kid, "public_key": public.decode()}
    else:
        raise PublisherKeyError(f"unknown algorithm {algorithm!r}; use {HMAC_SHA256} or {ED25519}")
    return entry, IssuedKey(publisher, algorithm, kid, path, keys_file)


def create_publisher(
    keys_file: Path,
    publisher: str,
    algorithm: str = ED25519,
    *,
    out_dir: Path | None = None,
    events: list[str] | None = None,
    key_file_name: str | None = None,
) -> IssuedKey:
    """Add a publisher with a new key to the keys file (created if missing)."""
    document = read_keys_document(keys_file)
    if _find(document, publisher) is not None:
        raise PublisherKeyError(
            f"publisher {publisher!r} is already in {keys_file}; "
            f"use `dsr publishers rotate {publisher}` for a new key"
        )
    entry, issued = _new_key(keys_file, publisher, algorithm, out_dir, key_file_name)
    record: dict[str, Any] = {"id": publisher}
    if events:
        record["events"] = list(events)
    record["keys"] = [entry]
    document["publishers"].append(record)
    _commit(keys_file, document, issued)
    return issued


def rotate_publisher(
    keys_file: Path,
    publisher: str,
    algorithm: str | None = None,
    *,
    out_dir: Path | None = None,
) -> IssuedKey:
    """Add a new key to a publisher; its older keys stay valid until retired."""
    document = read_keys_document(keys_file)
    record = _find(document, publisher)
    if record is None:
        raise PublisherKeyError(
            f"no publisher {publisher!r} in {keys_file}; create it with "
            f"`dsr publishers create {publisher}`"
        )
    keys = record.setdefault("keys", [])
    algorithm = algorithm or (keys[-1].get("algorithm") if keys else None) or ED25519
    entry, issued = _new_key(keys_file, publisher, algorithm, out_dir, None)
    keys.append(entry)
    _commit(keys_file, document, issued)
    return issued


def _commit(keys_file: Path, document: dict[str, Any], issued: IssuedKey) -> None:
    try:
        write_keys_document(keys_file, document)
    except BaseException:
        issued.key_file.unlink(missing_ok=True)  # not in the file: the key would be useless
        raise


def retire_key(keys_file: Path, publisher: str, key_id: str) -> None:
    """Remove one key of a publisher; events signed with it are refused from then on."""
    document = read_keys_document(keys_file)
    record = _find(document, publisher)
    if record is None:
        raise PublisherKeyError(f"no publisher {publisher!r} in {keys_file}")
    keys = record.get("keys") or []
    ids = [k.get("id") if isinstance(k, dict) else None for k in keys]
    if key_id not in ids:  # perhaps a derived id: resolve the keys (needs their secrets)
        known = parse_publisher_keys(document, base_dir=keys_file.parent, source=str(keys_file))
        ids = [k for p, k in known.keys if p == publisher]  # in file order
    if key_id not in ids:
        raise PublisherKeyError(
            f"publisher {publisher!r} has no key {key_id!r}; its keys: "
            + ", ".join(str(i) for i in ids)
        )
    if len(ids) == 1:
        raise PublisherKeyError(
            f"{key_id!r} is the last key of publisher {publisher!r}: rotate first "
            f"(`dsr publishers rotate {publisher}`), or remove the publisher from {keys_file}"
        )
    del keys[ids.index(key_id)]
    write_keys_document(keys_file, document)


def local_publisher(directory: Path) -> IssuedKey:
    """The publisher `dsr up` and `dsr demo` sign with: created once in `directory`."""
    keys_file = directory / LOCAL_KEYS_FILE
    key_file = directory / f"{LOCAL_PUBLISHER}.pem"
    if keys_file.exists() and key_file.exists():
        signer = RequestSigner.from_key_file(LOCAL_PUBLISHER, key_file)
        known = parse_publisher_keys(
            read_keys_document(keys_file), base_dir=directory, source=str(keys_file)
        )
        if (LOCAL_PUBLISHER, signer.key_id) in known.keys:
            return IssuedKey(LOCAL_PUBLISHER, ED25519, signer.key_id, key_file, keys_file)
    # Missing or half-written (e.g. interrupted): start over; it only ever signed local tests.
    keys_file.unlink(missing_ok=True)
    key_file.unlink(missing_ok=True)
    # The local publisher is the officer's own (`dsr up`, the demo, the CLI and the dashboard on
    # one machine): it may publish every request event (verifications, extensions, decisions,
    # deliveries, sweeps), where a publisher without `events` may only submit.
    return create_publisher(
        keys_file,
        LOCAL_PUBLISHER,
        ED25519,
        key_file_name=key_file.name,
        out_dir=directory,
        events=list(REQUEST_EVENT_TYPES),
    )


# -- what a verified publisher may claim ---------------------------------------------------------


class _Verification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    verified: bool = False


class _VerificationClaim(BaseModel):
    """The one field of a RequestSubmitted that is a permission of its own."""

    model_config = ConfigDict(extra="ignore")

    verification: _Verification = _Verification()


_SUBMITTED = TYPE_OF[RequestSubmitted]


def claims_verified_identity(event: RawEvent) -> bool:
    """True when a (signature-checked) RequestSubmitted says `verification.verified: true`.

    Read from the authentic bytes the same way `schemas.envelope.decode` reads the body right
    after (the same CloudEvents data, the same JSON parser and the same coercion of `verified`),
    but only that one field: a body that does not parse here is refused by `decode` at stage
    'body' anyway, so False is safe then.
    """
    if event.attributes.get("type") != _SUBMITTED:
        return False
    try:
        _, data = _attributes_and_data(event.value, dict(event.headers))
        claim = (
            _VerificationClaim.model_validate_json(data)
            if isinstance(data, bytes)
            else _VerificationClaim.model_validate(data)
        )
    except (EnvelopeError, ValidationError):
        return False
    return claim.verification.verified


def check_claims(keys: PublisherKeys, publisher: str, event: RawEvent) -> None:
    """Raise `EnvelopeError` (stage 'signature') when an authentic event claims more than its
    publisher may: a submission saying the identity is verified is an identity verification,
    so it needs `dsr.request.identity_verified.v1` in the publisher's `events`, as an
    IdentityVerified does.

    Art. 12(6) GDPR lets the controller establish the requester's identity; EDPB Guidelines
    01/2022 (right of access) section 3.3, para. 70: the controller implements an
    authentication procedure and keeps the handling of the request secure (Art. 32 GDPR). A
    web form that may submit is not that procedure: without the permission its word that the
    identity was checked would release the subject's data to whoever filled in the form.
    """
    if IDENTITY_VERIFIED_EVENT_TYPE in keys.events.get(publisher, frozenset()):
        return
    if claims_verified_identity(event):
        raise EnvelopeError(
            "signature",
            f"publisher {publisher!r} may not submit a request with verification.verified: "
            f"true: that needs {IDENTITY_VERIFIED_EVENT_TYPE} in the publisher's `events` in "
            "the publisher keys file; submit it unverified, and verify the identity separately",
            _SUBMITTED,
        )


class PermissionedVerifier(RequestVerifier):
    """`RequestVerifier` plus the permissions an event's body can claim (`check_claims`).

    The signature is checked first, on the raw bytes; only then is the one claim read, from
    those same authentic bytes, before `decode` parses the whole body.
    """

    def __call__(self, event: RawEvent) -> None:
        """Raise `EnvelopeError` (stage 'signature') unless authentic and permitted."""
        super().__call__(event)  # authentic, and its type allowed to its publisher
        header = event.headers.get(SIGNATURE_HEADER)
        if header is None:
            return  # unsigned: only with allow_unsigned (a trusted test setup)
        check_claims(self.current(), parse_signature(header).publisher, event)


__all__ = [
    "LOCAL_PUBLISHER",
    "IssuedKey",
    "PermissionedVerifier",
    "check_claims",
    "claims_verified_identity",
    "create_publisher",
    "local_publisher",
    "read_keys_document",
    "retire_key",
    "rotate_publisher",
    "write_keys_document",
]
