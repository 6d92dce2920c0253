"""Authentic request events: every event on the requests topic is signed by a known publisher.

A publisher (web form, portal, support tool) holds a key: an HMAC-SHA256 secret it shares with
the orchestrator, or an Ed25519 private key whose public half the orchestrator holds. It signs
the *canonical form* of each event and puts the result in one Kafka header::

    dsr_signature: v1;alg=ed25519;publisher=web-form;kid=ed25519-Xy...;sig=<base64>

The canonical form is ten lines, each ending in a line feed (so `printf '%s\\n' ...` builds it)::

    dsr-signature-v1
    <alg>                 hmac-sha256 | ed25519
    <publisher>           the publisher id
    <kid>                 the key id
    <ce_type>             e.g. dsr.request.submitted.v1
    <ce_id>
    <ce_source>
    <ce_time>             as sent; empty when absent
    <Kafka key>           the request id
    <sha256 of value>     lower-case hex of the exact value bytes

The body is bound byte for byte (its SHA-256), not re-serialised: nothing between publisher
and orchestrator rewrites a Kafka value, and a shell script can hash a file with `openssl`.
The CloudEvents type, id, source, time and the Kafka key (the request id) are bound too, so a
signature cannot be moved onto another event type or another request. A line break in any
of these fields is refused: with it, two different events could share a canonical form.
Re-sending an identical signed event is harmless: processing is idempotent by request id.

The same scheme authenticates the bus between our own components (Art. 32(1)(b) GDPR: the
integrity of the processing systems): the orchestrator signs every task it sends as publisher
`orchestrator`, each connector worker group its outcomes as `connectors-<group>`, and a person
who completes a manual task signs the outcome with their own publisher key. Connector workers
verify tasks, the orchestrator verifies outcomes, both against the same publisher keys file.
An outcome signed by a worker group counts only for the systems that group serves in the
register (`RequestVerifier.check_system`): one group's key cannot complete another's tasks.
Components use Ed25519: a verifier then holds public keys only, so a connector worker that
can check tasks cannot forge them (with HMAC every verifier could sign as well).

The orchestrator calls a `RequestVerifier` from `schemas.envelope.decode` after the envelope
is read and before the body is parsed, so nothing is decided on an event that is not
authentic. Its keys come from the publisher keys file (`DSR_PUBLISHER_KEYS`)::

    publishers:
      - id: web-form
        events: [dsr.request.submitted.v1]     # optional: what this publisher may send
                                               # (decisions only when listed: see below)
        keys:
          - algorithm: ed25519
            public_key: |
              -----BEGIN PUBLIC KEY-----
              ...
          - algorithm: hmac-sha256             # several keys: rotation
            secret: ${DSR_WEB_FORM_SECRET}     # or secret_file: web-form.secret
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign, crypto_sign_open
from nacl.exceptions import BadSignatureError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.envelope import (
    SIGNATURE_HEADER,
    TYPE_OF,
    EnvelopeError,
    KafkaMessage,
    RawEvent,
    describe_validation_error,
    header_dict,
)
from schemas.errors import DsrError
from schemas.primitives.encoding import b64url, ed25519_key_id
from schemas.topics import (
    DECISION_EVENT_TYPES,
    DEFAULT_PUBLISHER_EVENTS,
    OUTCOMES,
    REQUEST_EVENT_TYPES,
    REQUESTS,
    TASKS,
)

log = logging.getLogger("dsr.signing")

SCHEME = "dsr-signature-v1"
HMAC_SHA256 = "hmac-sha256"
ED25519 = "ed25519"
Algorithm = Literal["hmac-sha256", "ed25519"]
ALGORITHMS: tuple[str, ...] = (HMAC_SHA256, ED25519)
#: Publisher and key ids: safe to echo in a dead-letter reason, no separators of the header.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
MIN_SECRET_LENGTH = 32
_ID = re.compile(ID_PATTERN)
_SIGNATURE_LENGTH = {HMAC_SHA256: 32, ED25519: 64}
_MAX_HEADER = 512
_KEY_ID_LABEL = b"dsr publisher key id"
_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_HEADER_FORMAT = "v1;alg=ALG;publisher=ID;kid=KEY_ID;sig=BASE64"

#: What the orchestrator signs (publisher `orchestrator`): tasks and sweep tasks.
TASK_EVENT_TYPES: tuple[str, ...] = tuple(TYPE_OF[m] for m in TASKS.events)
#: What connector workers (and people completing manual tasks) sign: outcomes.
OUTCOME_EVENT_TYPES: tuple[str, ...] = tuple(TYPE_OF[m] for m in OUTCOMES.events)
#: Every type a publisher keys file may allow.
SIGNED_EVENT_TYPES: tuple[str, ...] = (
    *REQUEST_EVENT_TYPES,
    *TASK_EVENT_TYPES,
    *OUTCOME_EVENT_TYPES,
)
#: The orchestrator's publisher id (it signs tasks).
ORCHESTRATOR_PUBLISHER = "orchestrator"
#: The HTTP intake process's publisher id (it publishes what HTTP callers it verified sent).
INTAKE_PUBLISHER = "intake"
#: A connector worker group's publisher id is this prefix and the group (`connectors-crm`).
CONNECTOR_PUBLISHER_PREFIX = "connectors-"


def connector_publisher(group: str) -> str:
    """The publisher id a connector worker group signs its outcomes with."""
    return f"{CONNECTOR_PUBLISHER_PREFIX}{group}"


def _kind(ce_type: str | None) -> str:
    """What an event is, for messages: a request event, a task or an outcome."""
    if ce_type in TASK_EVENT_TYPES:
        return "task"
    if ce_type in OUTCOME_EVENT_TYPES:
        return "outcome"
    return "request event"


class PublisherKeyError(DsrError, ValueError):
    """A publisher key or the publisher keys file is missing or wrong; says which and the fix."""


# -- canonical form and key ids ------------------------------------------------------------------


def canonical_form(
    *,
    algorithm: str,
    publisher: str,
    key_id: str,
    ce_type: str,
    ce_id: str,
    ce_source: str,
    ce_time: str,
    key: str,
    value: bytes,
) -> bytes:
    """The bytes a publisher signs: scheme, key, CloudEvents attributes, Kafka key, body hash.

    Raises `ValueError` naming the field when one contains a line break.
    """
    fields = {
        "alg": algorithm,
        "publisher": publisher,
        "kid": key_id,
        "ce_type": ce_type,
        "ce_id": ce_id,
        "ce_source": ce_source,
        "ce_time": ce_time,
        "key": key,
    }
    for name, text in fields.items():
        if "\n" in text or "\r" in text:
            raise ValueError(f"{name} contains a line break; signed fields must be one line")
    lines = [SCHEME, *fields.values(), hashlib.sha256(value).hexdigest()]
    return "".join(f"{line}\n" for line in lines).encode()


def hmac_key_id(secret: bytes) -> str:
    """The default key id of an HMAC secret: a MAC of a fixed label, never the secret itself."""
    return "hmac-" + b64url(hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).digest())[:16]


# -- the header ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed `dsr_signature` header."""

    algorithm: str
    publisher: str
    key_id: str
    value: bytes

    def header(self) -> str:
        """The header text."""
        sig = base64.b64encode(self.value).decode("ascii")
        return f"v1;alg={self.algorithm};publisher={self.publisher};kid={self.key_id};sig={sig}"


def parse_signature(text: str) -> Signature:
    """Parse a `dsr_signature` header; `ValueError` says what is wrong (never echoes it)."""
    if len(text) > _MAX_HEADER:
        raise ValueError(f"is longer than {_MAX_HEADER} characters")
    version, *parts = text.strip().split(";")
    if version != "v1":
        raise ValueError(f"does not start with 'v1' (expected {_HEADER_FORMAT})")
    items: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep or name not in ("alg", "publisher", "kid", "sig") or name in items:
            raise ValueError(f"is not {_HEADER_FORMAT}")
        items[name] = value
    if len(items) != 4:
        raise ValueError(f"is not {_HEADER_FORMAT}")
    if items["alg"] not in ALGORITHMS:
        raise ValueError(f"names an unknown algorithm; use one of {', '.join(ALGORITHMS)}")
    if not _ID.match(items["publisher"]) or not _ID.match(items["kid"]):
        raise ValueError("has a publisher or kid outside [A-Za-z0-9._-] (1-64 characters)")
    try:
        raw = base64.b64decode(items["sig"], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("has a 'sig' that is not base64") from None
    if len(raw) != _SIGNATURE_LENGTH[items["alg"]]:
        raise ValueError(f"has a 'sig' of the wrong length for {items['alg']}")
    return Signature(items["alg"], items["publisher"], items["kid"], raw)


# -- keys ----------------------------------------------------------------------------------------


#: Ed25519 signatures are checked and made by libsodium (PyNaCl) on the event path: every
#: event is signed once and checked once or more, and libsodium's Ed25519 took about half the
#: CPU time of OpenSSL's here (verify 63 vs 120 us, sign 25 vs 40 us; `cryptography` still
#: reads, writes and makes the keys). libsodium's check is RFC 8032's with the stricter
#: encodings (canonical S and points, no small-order keys): it accepts no signature OpenSSL
#: would refuse.
_ED25519_SIGNATURE_BYTES = 64


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """One key of one publisher as the orchestrator holds it (a secret or a public key)."""

    publisher: str
    key_id: str
    algorithm: str
    secret: bytes | None = field(default=None, repr=False)
    public_key: Ed25519PublicKey | None = field(default=None, repr=False)
    _public_raw: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.public_key is not None:
            object.__setattr__(self, "_public_raw", self.public_key.public_bytes_raw())

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when `signature` is this key's signature of `data`."""
        if self.secret is not None:
            expected = hmac.new(self.secret, data, hashlib.sha256).digest()
            return hmac.compare_digest(expected, signature)
        assert self._public_raw is not None
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            return False
        try:
            crypto_sign_open(signature + data, self._public_raw)
        except BadSignatureError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A publisher's own key: an HMAC secret or an Ed25519 private key."""

    algorithm: str
    key_id: str
    secret: bytes | None = field(default=None, repr=False)
    private_key: Ed25519PrivateKey | None = field(default=None, repr=False)
    #: libsodium's form of the private key: the seed and the public key.
    _sodium_key: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.private_key is not None:
            public = self.private_key.public_key().public_bytes_raw()
            object.__setattr__(self, "_sodium_key", self.private_key.private_bytes_raw() + public)

    def sign(self, data: bytes) -> bytes:
        """This key's signature of `data`."""
        if self.secret is not None:
            return hmac.new(self.secret, data, hashlib.sha256).digest()
        assert self._sodium_key is not None
        return crypto_sign(data, self._sodium_key)[:_ED25519_SIGNATURE_BYTES]


def _secret_bytes(text: str | bytes, where: str) -> bytes:
    secret = (text.encode() if isinstance(text, str) else text).strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise PublisherKeyError(
            f"{where}: an HMAC secret needs at least {MIN_SECRET_LENGTH} characters; "
            "generate one with `dsr publishers create NAME --hmac` or `openssl rand -base64 32`"
        )
    return secret


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PublisherKeyError(f"{where}: cannot read {path}: {exc.strerror}") from None


def load_signing_key(path: Path, key_id: str | None = None) -> SigningKey:
    """A publisher's key file: an Ed25519 private key (PEM) or an HMAC secret (text)."""
    data = _read(path, "publisher key")
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise PublisherKeyError(
                f"{path}: not an unencrypted PEM private key; create one with "
                "`dsr publishers create NAME`"
            ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise PublisherKeyError(f"{path}: the PEM key is not an Ed25519 key")
        return SigningKey(
            ED25519, key_id or ed25519_key_id(private.public_key()), private_key=private
        )
    secret = _secret_bytes(data, str(path))
    return SigningKey(HMAC_SHA256, key_id or hmac_key_id(secret), secret=secret)


# -- the publisher's side ------------------------------------------------------------------------


class RequestSigner:
    """Signs request events for one publisher: `signer.sign(encode(body, source=...))`."""

    def __init__(self, publisher: str, key: SigningKey) -> None:
        if not _ID.match(publisher):
            raise PublisherKeyError(
                f"publisher id {publisher!r} is not valid: use 1-64 of [A-Za-z0-9._-]"
            )
        if not _ID.match(key.key_id):
            raise PublisherKeyError("the key id is not valid: use 1-64 of [A-Za-z0-9._-]")
        self.publisher = publisher
        self.key = key

    @classmethod
    def from_key_file(
        cls, publisher: str, path: str | Path, key_id: str | None = None
    ) -> RequestSigner:
        """Sign with the key in `path` (Ed25519 PEM or HMAC secret); key id derived if omitted."""
        return cls(publisher, load_signing_key(Path(path), key_id))

    @classmethod
    def from_secret(
        cls, publisher: str, secret: str | bytes, key_id: str | None = None
    ) -> RequestSigner:
        """Sign with an HMAC-SHA256 secret shared with the orchestrator."""
        raw = _secret_bytes(secret, f"publisher {publisher}")
        return cls(publisher, SigningKey(HMAC_SHA256, key_id or hmac_key_id(raw), secret=raw))

    @classmethod
    def from_private_key(
        cls, publisher: str, private_key: Ed25519PrivateKey, key_id: str | None = None
    ) -> RequestSigner:
        """Sign with an Ed25519 private key; the orchestrator holds its public half."""
        kid = key_id or ed25519_key_id(private_key.public_key())
        return cls(publisher, SigningKey(ED25519, kid, private_key=private_key))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RequestSigner | None:
        """From DSR_PUBLISHER_ID plus DSR_PUBLISHER_KEY_FILE or DSR_PUBLISHER_SECRET
        (DSR_PUBLISHER_KEY_ID optional); None when none of them is set."""
        env = os.environ if env is None else env
        publisher = env.get("DSR_PUBLISHER_ID", "")
        key_file = env.get("DSR_PUBLISHER_KEY_FILE", "")
        secret = env.get("DSR_PUBLISHER_SECRET", "")
        key_id = env.get("DSR_PUBLISHER_KEY_ID") or None
        if not (publisher or key_file or secret):
            return None
        if not publisher or bool(key_file) == bool(secret):
            raise PublisherKeyError(
                "incomplete publisher key configuration: set DSR_PUBLISHER_ID and exactly one "
                "of DSR_PUBLISHER_KEY_FILE (Ed25519 PEM or HMAC secret file) and "
                "DSR_PUBLISHER_SECRET"
            )
        if key_file:
            return cls.from_key_file(publisher, key_file, key_id)
        return cls.from_secret(publisher, secret, key_id)

    @property
    def key_id(self) -> str:
        """The id of the key this signer uses."""
        return self.key.key_id

    def sign(self, message: KafkaMessage) -> KafkaMessage:
        """The message with a `dsr_signature` header (replacing any earlier one)."""
        if message.key is None:
            raise ValueError("a signed event must be keyed by its request id")
        attrs = header_dict(message.headers)
        data = canonical_form(
            algorithm=self.key.algorithm,
            publisher=self.publisher,
            key_id=self.key.key_id,
            ce_type=attrs.get("ce_type", ""),
            ce_id=attrs.get("ce_id", ""),
            ce_source=attrs.get("ce_source", ""),
            ce_time=attrs.get("ce_time", ""),
            key=message.key.decode(),
            value=message.value,
        )
        signature = Signature(
            self.key.algorithm, self.publisher, self.key.key_id, self.key.sign(data)
        )
        headers = [(n, v) for n, v in message.headers if n != SIGNATURE_HEADER]
        headers.append((SIGNATURE_HEADER, signature.header().encode()))
        return KafkaMessage(message.key, message.value, headers)


# -- the publisher keys file ---------------------------------------------------------------------


class PublisherKeyConfig(BaseModel):
    """One key of a publisher in the publisher keys file."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Algorithm
    id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="Key id; derived from the key when omitted (what `dsr publishers` does).",
    )
    secret: str | None = Field(
        default=None, description="hmac-sha256: an environment reference, `${VAR}`."
    )
    secret_file: Path | None = Field(
        default=None, description="hmac-sha256: a file holding the secret."
    )
    public_key: str | None = Field(default=None, description="ed25519: the PEM public key.")
    public_key_file: Path | None = Field(default=None, description="ed25519: a PEM file.")

    @model_validator(mode="after")
    def _one_source(self) -> PublisherKeyConfig:
        if self.algorithm == HMAC_SHA256:
            given = [n for n in ("secret", "secret_file") if getattr(self, n) is not None]
            wrong = [n for n in ("public_key", "public_key_file") if getattr(self, n) is not None]
            need = "exactly one of 'secret' (a ${VAR} reference) and 'secret_file'"
        else:
            given = [n for n in ("public_key", "public_key_file") if getattr(self, n) is not None]
            wrong = [n for n in ("secret", "secret_file") if getattr(self, n) is not None]
            need = "exactly one of 'public_key' (PEM) and 'public_key_file'"
        if wrong:
            raise ValueError(f"{', '.join(wrong)} does not belong to an {self.algorithm} key")
        if len(given) != 1:
            raise ValueError(f"an {self.algorithm} key needs {need}")
        if self.secret is not None and not _ENV_REFERENCE.match(self.secret):
            raise ValueError(
                "'secret' must be an environment reference such as ${DSR_WEB_FORM_SECRET} "
                "(or use 'secret_file'): a secret written into this file ends up in backups "
                "and diffs"
            )
        return self


class PublisherConfig(BaseModel):
    """A publisher: its id, what it may publish and its keys."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN, examples=["web-form"])
    events: list[str] | None = Field(
        default=None,
        description="The event types this publisher may send; if omitted, new requests only "
        "(dsr.request.submitted.v1). Components list theirs: the orchestrator "
        "dsr.task.dispatched.v1 and dsr.sweep.dispatched.v1, a connector worker group "
        "(`connectors-<group>`) dsr.task.outcome.v1 and dsr.sweep.outcome.v1, a person who "
        "completes manual tasks dsr.task.outcome.v1.",
    )
    keys: list[PublisherKeyConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_events(self) -> PublisherConfig:
        unknown = [e for e in self.events or [] if e not in SIGNED_EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"events {unknown} are not event types a publisher signs; use "
                f"{', '.join(SIGNED_EVENT_TYPES)}"
            )
        return self


class PublisherKeysConfig(BaseModel):
    """The publisher keys file."""

    model_config = ConfigDict(extra="forbid")

    publishers: list[PublisherConfig] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PublisherKeys:
    """Every publisher's keys by (publisher, key id), and what each publisher may send."""

    keys: Mapping[tuple[str, str], VerifyingKey]
    events: Mapping[str, frozenset[str]]

    def verify(self, event: RawEvent) -> str:
        """Check an event's signature; return the publisher id or raise `EnvelopeError`."""
        ce_type = event.attributes.get("type")

        def reject(reason: str) -> EnvelopeError:
            return EnvelopeError("signature", reason, ce_type)

        header = event.headers.get(SIGNATURE_HEADER)
        if header is None:
            raise reject(
                f"{_kind(ce_type)} is not signed: add a {SIGNATURE_HEADER} header signed with "
                "a publisher key (see docs/publishing.md, 'Authentic requests: publisher keys')"
            )
        try:
            signature = parse_signature(header)
        except ValueError as exc:
            raise reject(f"{SIGNATURE_HEADER} header {exc}") from None
        publisher, kid = signature.publisher, signature.key_id
        allowed = self.events.get(publisher)
        if allowed is None:
            raise reject(
                f"unknown publisher {publisher!r}: it is not in the publisher keys file "
                "(DSR_PUBLISHER_KEYS)"
            )
        key = self.keys.get((publisher, kid))
        if key is None:
            known = ", ".join(k for p, k in self.keys if p == publisher)
            raise reject(
                f"publisher {publisher!r} has no key {kid!r} (retired, or not yet added to "
                f"the publisher keys file); its keys: {known}"
            )
        if key.algorithm != signature.algorithm:
            raise reject(
                f"key {kid!r} of publisher {publisher!r} is an {key.algorithm} key, "
                f"but the signature says {signature.algorithm}"
            )
        if event.key is None:
            raise reject("a signed event must be keyed by its request id; the Kafka key is empty")
        try:
            data = canonical_form(
                algorithm=signature.algorithm,
                publisher=publisher,
                key_id=kid,
                ce_type=ce_type or "",
                ce_id=event.attributes.get("id", ""),
                ce_source=event.attributes.get("source", ""),
                ce_time=event.attributes.get("time", ""),
                key=event.key.decode("utf-8"),
                value=event.value,
            )
        except UnicodeDecodeError:
            raise reject("the Kafka key is not UTF-8; key events by their request id") from None
        except ValueError as exc:
            raise reject(str(exc)) from None
        if not key.verify(signature.value, data):
            raise reject(
                f"signature by publisher {publisher!r} (key {kid!r}) does not verify: the event "
                "was changed after signing (body, type, id, source, time or key), or it was "
                "signed with another key"
            )
        if ce_type not in allowed:
            hint = (
                ": officers' decisions need the type listed in the publisher's `events` in the "
                "publisher keys file"
                if ce_type in DECISION_EVENT_TYPES
                else ""
            )
            raise reject(f"publisher {publisher!r} may not publish {ce_type}{hint}")
        return publisher


def _expand(text: str, env: Mapping[str, str], where: str) -> str:
    match = _ENV_REFERENCE.match(text)
    assert match is not None  # the model checked
    value = env.get(match.group(1))
    if not value:
        raise PublisherKeyError(f"{where}: environment variable {match.group(1)} is not set")
    return value


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def _public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PublisherKeyError(f"{where}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PublisherKeyError(f"{where}: the public key is not an Ed25519 key")
    return key


def _verifying_key(
    publisher: str, entry: PublisherKeyConfig, env: Mapping[str, str], base_dir: Path, where: str
) -> VerifyingKey:
    """One configured key, read from the file or the value it names."""
    if entry.algorithm == HMAC_SHA256:
        text: str | bytes
        if entry.secret is not None:
            text = _expand(entry.secret, env, where)
        else:
            assert entry.secret_file is not None
            text = _read(_resolve(entry.secret_file, base_dir), where)
        secret = _secret_bytes(text, where)
        return VerifyingKey(publisher, entry.id or hmac_key_id(secret), HMAC_SHA256, secret=secret)
    pem = (
        entry.public_key.encode()
        if entry.public_key is not None
        else _read(_resolve(entry.public_key_file or Path(), base_dir), where)
    )
    public = _public_key(pem, where)
    return VerifyingKey(publisher, entry.id or ed25519_key_id(public), ED25519, public_key=public)


def parse_publisher_keys(
    data: Any,
    *,
    base_dir: Path,
    source: str,
    env: Mapping[str, str] | None = None,
    only_events: Collection[str] | None = None,
) -> PublisherKeys:
    """Validate a publisher keys document (parsed YAML); file paths are relative to `base_dir`.

    With `only_events`, only publishers allowed one of those types are loaded: a connector
    worker checks tasks only, and needs (and gets) no other publisher's HMAC secret.
    """
    env = os.environ if env is None else env
    try:
        config = PublisherKeysConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = describe_validation_error(exc, 10).replace("Value error, ", "")
        raise PublisherKeyError(f"{source}: {problems}") from None
    keys: dict[tuple[str, str], VerifyingKey] = {}
    events: dict[str, frozenset[str]] = {}
    for publisher in config.publishers:
        if publisher.id in events:
            raise PublisherKeyError(f"{source}: publisher {publisher.id!r} is listed twice")
        events[publisher.id] = frozenset(publisher.events or DEFAULT_PUBLISHER_EVENTS)
        if only_events is not None and events[publisher.id].isdisjoint(only_events):
            del events[publisher.id]
            continue
        for n, entry in enumerate(publisher.keys):
            where = f"{source}: publisher {publisher.id!r}, key #{n + 1}"
            key = _verifying_key(publisher.id, entry, env, base_dir, where)
            if (publisher.id, key.key_id) in keys:
                raise PublisherKeyError(
                    f"{where}: key id {key.key_id!r} is used twice for this publisher"
                )
            keys[(publisher.id, key.key_id)] = key
    return PublisherKeys(keys, events)


def load_publisher_keys(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    only_events: Collection[str] | None = None,
) -> PublisherKeys:
    """Read and validate the publisher keys file (see `parse_publisher_keys`)."""
    path = Path(path)
    raw = _read(path, "publisher keys file (DSR_PUBLISHER_KEYS)")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PublisherKeyError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_publisher_keys(
        data, base_dir=path.parent, source=str(path), env=env, only_events=only_events
    )


# -- the orchestrator's side ---------------------------------------------------------------------


class RequestVerifier:
    """The `verify` hook of `decode` for the requests topic: only known publishers get in.

    The keys file is re-read when it changes (checked at most every `reload_seconds`), so a
    key can be added or retired without a restart; an invalid edit is logged and the last
    valid keys stay in use. With `allow_unsigned`, events without a signature are let through
    (a migration aid); an event that carries a signature is always verified.

    The same check serves tasks (in connector workers) and outcomes (in the orchestrator);
    `group_of` (a system's worker group in the register) lets `check_system` hold a worker
    group's outcomes to its own systems; `only_events` loads only the publishers allowed
    one of those types (`parse_publisher_keys`).
    """

    def __init__(
        self,
        keys_file: str | Path | None,
        *,
        allow_unsigned: bool = False,
        env: Mapping[str, str] | None = None,
        reload_seconds: float = 1.0,
        group_of: Callable[[str], str | None] | None = None,
        only_events: Collection[str] | None = None,
    ) -> None:
        if keys_file is None and not allow_unsigned:
            raise PublisherKeyError(
                "DSR_PUBLISHER_KEYS is not set: the orchestrator accepts only request events "
                "signed by a known publisher. Create one with `dsr publishers create NAME` and "
                "set DSR_PUBLISHER_KEYS to the keys file it writes; or, for a trusted test "
                "setup only, set DSR_ALLOW_UNSIGNED_REQUESTS=true"
            )
        self.path = Path(keys_file) if keys_file is not None else None
        self.allow_unsigned = allow_unsigned
        self.group_of = group_of
        self._only_events = only_events
        self._env = env
        self._reload_seconds = reload_seconds
        self._checked = time.monotonic()
        self._stamp = self._read_stamp()
        self.keys = (
            load_publisher_keys(self.path, env, only_events)
            if self.path is not None
            else PublisherKeys({}, {})
        )
        if allow_unsigned:
            log.warning(
                "DSR_ALLOW_UNSIGNED_REQUESTS=true: request events WITHOUT a signature are "
                "accepted; anyone who can write to %s can submit, verify and extend requests. "
                "Never run production like this.",
                REQUESTS.name,
            )

    def _read_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def current(self) -> PublisherKeys:
        """The keys as the file says now (a stat call at most every `reload_seconds`)."""
        now = time.monotonic()
        if self.path is None or now - self._checked < self._reload_seconds:
            return self.keys
        self._checked = now
        stamp = self._read_stamp()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                self.keys = load_publisher_keys(self.path, self._env, self._only_events)
                log.info("publisher keys %s reloaded", self.path)
            except PublisherKeyError as exc:
                log.error(
                    "publisher keys %s changed but are invalid; keeping the last valid keys: %s",
                    self.path,
                    exc,
                )
        return self.keys

    def __call__(self, event: RawEvent) -> None:
        """Raise `EnvelopeError` (stage 'signature') unless the event is authentic."""
        if self.allow_unsigned and SIGNATURE_HEADER not in event.headers:
            return
        self.current().verify(event)

    def check_system(self, headers: Mapping[str, str], system: str, ce_type: str | None) -> None:
        """After `__call__` passed an outcome: raise `EnvelopeError` (stage 'signature') when a
        connector worker group signed it for a system another group serves (or none).

        Art. 32(1)(b) GDPR: one group's key must not complete another group's tasks (a
        certificate of erasure rests on these outcomes). People's outcomes (any other
        publisher allowed the type) are not tied to a group; unsigned ones got here only with
        `allow_unsigned`.
        """
        header = headers.get(SIGNATURE_HEADER)
        if header is None:
            return
        publisher = parse_signature(header).publisher  # verified already: it parses
        if not publisher.startswith(CONNECTOR_PUBLISHER_PREFIX):
            return
        group = publisher.removeprefix(CONNECTOR_PUBLISHER_PREFIX)
        serving = self.group_of(system) if self.group_of is not None else None
        if serving != group:
            served = f"worker group {serving!r} serves it" if serving else "it is not registered"
            raise EnvelopeError(
                "signature",
                f"publisher {publisher!r} may report only for the systems of worker group "
                f"{group!r}, not for system {system!r} ({served} in the register)",
                ce_type,
            )


__all__ = [
    "ALGORITHMS",
    "CONNECTOR_PUBLISHER_PREFIX",
    "ED25519",
    "HMAC_SHA256",
    "INTAKE_PUBLISHER",
    "ORCHESTRATOR_PUBLISHER",
    "OUTCOME_EVENT_TYPES",
    "REQUEST_EVENT_TYPES",
    "SCHEME",
    "SIGNATURE_HEADER",
    "SIGNED_EVENT_TYPES",
    "TASK_EVENT_TYPES",
    "PublisherConfig",
    "PublisherKeyConfig",
    "PublisherKeyError",
    "PublisherKeys",
    "PublisherKeysConfig",
    "RequestSigner",
    "RequestVerifier",
    "Signature",
    "SigningKey",
    "VerifyingKey",
    "canonical_form",
    "connector_publisher",
    "ed25519_key_id",
    "hmac_key_id",
    "load_publisher_keys",
    "load_signing_key",
    "parse_publisher_keys",
    "parse_signature",
]
