"""Who is calling the intake API: HTTP Message Signatures (RFC 9421) with publisher keys.

A publisher signs each HTTP request with the key it signs Kafka events with (the publisher
keys file, `DSR_PUBLISHER_KEYS`): an Ed25519 private key (`alg="ed25519"`) or an HMAC secret
(`alg="hmac-sha256"`). The request carries::

    Content-Digest: sha-256=:<base64 of SHA-256(body)>:                  (RFC 9530)
    Signature-Input: dsr=("@method" "@authority" "@path" "content-type" "content-digest");\\
        created=1767225600;keyid="ed25519-Xy...";alg="ed25519";nonce="<random>"
    Signature: dsr=:<base64 signature of the signature base>:

`keyid` is the publisher's key id as the keys file (or `dsr publishers`) names it; the key
tells the publisher. A request without a body (GET) covers `@method`, `@authority` and
`@path`. `created` must be within `max_age` (300 s) of our clock, and a `nonce` is refused
when it was seen in that window: a captured request cannot be sent again (Art. 32(1)(b) GDPR,
the integrity of the processing). The nonces live in this process's memory: with several
replicas a replay to another replica within the window is possible, which the API's
idempotency (same request id, same answer) makes harmless for submissions.

The cryptography and the signature base are `http-message-signatures`'; this module decides
the policy and words each refusal (never quoting a header's value).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import http_sf
from aiohttp import web
from http_message_signatures import (
    ContentDigest,
    HTTPMessageVerifier,
    HTTPSignatureAlgorithm,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from schemas.errors import DsrError
from schemas.primitives.signing import ED25519, HMAC_SHA256, PublisherKeys, VerifyingKey

#: What every signature covers; a request with a body also `BODY_COMPONENTS`.
COMPONENTS: tuple[str, ...] = ("@method", "@authority", "@path")
BODY_COMPONENTS: tuple[str, ...] = ("content-type", "content-digest")
MAX_AGE_SECONDS = 300
#: How far ahead of our clock `created` may be (clock skew between publisher and us).
FUTURE_SKEW_SECONDS = 30
_MAX_FIELD = 4096
_EXAMPLE = "(" + " ".join(f'"{c}"' for c in COMPONENTS + BODY_COMPONENTS) + ")"
#: Methods whose requests carry a body (and so must sign its digest and type).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_ALGORITHMS: dict[str, type[HTTPSignatureAlgorithm]] = {
    ED25519: algorithms.ED25519,
    HMAC_SHA256: algorithms.HMAC_SHA256,
}


class SignatureRefused(DsrError):
    """The HTTP request's signature is missing or does not hold; `code` names why (401)."""

    def __init__(self, code: str, message: str, *, field: str = "Signature-Input") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Caller:
    """A publisher whose signature on this HTTP request verified."""

    publisher: str
    key_id: str
    #: The event types its `events` in the publisher keys file allow.
    events: frozenset[str]
    #: The keys the signature was checked against (for `check_claims`).
    keys: PublisherKeys


class _RawHeaders:
    """The request's field lines as sent (Latin-1), in order, for the signature base."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._lines = [(n.decode("ascii"), v.decode("latin-1")) for n, v in raw]

    def items(self) -> list[tuple[str, str]]:
        return list(self._lines)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(n for n, _ in self._lines))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self._lines)

    def get(self, name: str) -> str | None:
        values = [v for n, v in self._lines if n.lower() == name.lower()]
        return ", ".join(values) if values else None


@dataclass(frozen=True, slots=True)
class _Message:
    """The request as `http-message-signatures` resolves components of it."""

    method: str
    url: str
    headers: _RawHeaders
    request_target: str


@dataclass(frozen=True, slots=True)
class _Input:
    """The one signature's parameters and covered components, from Signature-Input."""

    label: str
    components: tuple[str, ...]
    params: dict[str, Any]


class NonceMemory:
    """Nonces seen per key id within the window; `remember` is False for a replay."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._seen: dict[tuple[str, str], float] = {}

    def remember(self, key_id: str, nonce: str, now: float) -> bool:
        """Record one nonce; False when it was seen within the window already."""
        if len(self._seen) > 1000:
            cutoff = now - self.window
            self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
        seen = self._seen.get((key_id, nonce))
        if seen is not None and seen >= now - self.window:
            return False
        self._seen[(key_id, nonce)] = now
        return True


def _parse_input(value: str | None) -> _Input:
    if value is None:
        raise SignatureRefused(
            "signature_missing",
            "the request is not signed: add Signature-Input, Signature and (with a body) "
            "Content-Digest headers per RFC 9421 with your publisher key "
            "(see docs/publishing.md or examples/curl-publish.sh)",
        )
    try:
        parsed: Any = http_sf.parse(value[:_MAX_FIELD].encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        raise SignatureRefused(
            "signature_malformed", "Signature-Input is not an RFC 8941 dictionary"
        ) from None
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise SignatureRefused(
            "signature_malformed", "Signature-Input must hold exactly one signature"
        )
    label, (members, params) = next(iter(parsed.items()))
    if not isinstance(members, list) or any(p for _, p in members):
        raise SignatureRefused(
            "signature_malformed",
            "Signature-Input must list the covered components as plain strings, e.g. " + _EXAMPLE,
        )
    return _Input(label, tuple(str(m) for m, _ in members), dict(params))


def _find_key(keys: PublisherKeys, params: dict[str, Any]) -> VerifyingKey:
    key_id = params.get("keyid")
    if not isinstance(key_id, str) or not key_id:
        raise SignatureRefused("keyid_missing", "Signature-Input has no keyid parameter")
    found = [k for (_, kid), k in keys.keys.items() if kid == key_id]
    if not found:
        raise SignatureRefused(
            "unknown_keyid",
            "keyid names no key in the publisher keys file (DSR_PUBLISHER_KEYS): use the key "
            "id `dsr publishers create` printed, or that examples/curl-publish.sh derives",
            field="Signature-Input.keyid",
        )
    if len(found) > 1:
        raise SignatureRefused(
            "ambiguous_keyid",
            "keyid is used by more than one publisher in the publisher keys file; give each "
            "key its own id",
            field="Signature-Input.keyid",
        )
    key = found[0]
    alg = params.get("alg")
    if alg is not None and alg != key.algorithm:
        raise SignatureRefused(
            "wrong_algorithm",
            f"alg does not match the key: key {key_id!r} is an {key.algorithm} key",
            field="Signature-Input.alg",
        )
    return key


def _check_created(params: dict[str, Any], now: float, max_age: float) -> None:
    created = params.get("created")
    if type(created) is not int:
        raise SignatureRefused(
            "created_missing",
            "Signature-Input has no created parameter (seconds since 1970, as an integer)",
            field="Signature-Input.created",
        )
    if created < now - max_age:
        raise SignatureRefused(
            "signature_expired",
            f"the signature is older than {max_age:g} seconds (created); sign each request "
            "when sending it, and check the clock",
            field="Signature-Input.created",
        )
    if created > now + FUTURE_SKEW_SECONDS:
        raise SignatureRefused(
            "signature_in_future",
            "created lies in the future; check the clock of the signing machine",
            field="Signature-Input.created",
        )


def _check_coverage(signed: _Input, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in signed.components]
    if missing:
        raise SignatureRefused(
            "components_missing",
            f"the signature must cover {', '.join(required)}; missing: {', '.join(missing)}",
        )
    nonce = signed.params.get("nonce")
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
        raise SignatureRefused(
            "nonce_missing",
            "Signature-Input needs a nonce parameter of 8-128 characters, fresh per request",
            field="Signature-Input.nonce",
        )


def _check_digest(headers: _RawHeaders, body: bytes, required: Sequence[str]) -> None:
    if "content-digest" not in required and not body:
        return
    value = headers.get("content-digest")
    if value is None:
        raise SignatureRefused(
            "digest_missing",
            "a request with a body needs a Content-Digest header (RFC 9530, sha-256)",
            field="Content-Digest",
        )
    try:
        ContentDigest.verify(value[:_MAX_FIELD], body)
    except InvalidSignature:
        raise SignatureRefused(
            "digest_mismatch",
            "Content-Digest does not match the body (or is not `sha-256=:<base64>:`); hash "
            "the exact bytes sent",
            field="Content-Digest",
        ) from None


class SignatureChecker:
    """Checks one HTTP request's RFC 9421 signature against the publisher keys file.

    `keys` returns the current keys (a `RequestVerifier.current`, which reloads the file);
    `authorities`, when given, are the only `@authority` values accepted (the public host
    names of this service), so a signature made for another service does not count here.
    """

    def __init__(
        self,
        keys: Callable[[], PublisherKeys],
        *,
        max_age: float = MAX_AGE_SECONDS,
        authorities: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.max_age = max_age
        self.authorities = frozenset(a.lower() for a in authorities)
        self.clock = clock
        self.nonces = NonceMemory(max_age + FUTURE_SKEW_SECONDS)

    def check(self, request: web.Request, body: bytes) -> Caller:
        """The verified caller; `SignatureRefused` says what is missing or wrong."""
        headers = _RawHeaders(request.raw_headers)
        signed = _parse_input(headers.get("signature-input"))
        if headers.get("signature") is None:
            raise SignatureRefused(
                "signature_missing", "Signature-Input is there but Signature is not"
            )
        keys = self.keys()
        key = _find_key(keys, signed.params)
        now = self.clock()
        _check_created(signed.params, now, self.max_age)
        required = COMPONENTS + (BODY_COMPONENTS if body or request.method in _BODY_METHODS else ())
        _check_coverage(signed, required)
        if self.authorities and request.host.lower() not in self.authorities:
            raise SignatureRefused(
                "wrong_authority",
                "the request is addressed to a host name this intake does not answer to "
                "(DSR_INTAKE_SIGNATURE_AUTHORITIES)",
                field="Host",
            )
        _check_digest(headers, body, required)
        self._verify(request, headers, key, body, required)
        if not self.nonces.remember(key.key_id, str(signed.params["nonce"]), now):
            raise SignatureRefused(
                "nonce_replayed",
                "this nonce was used before: the request was sent again (a replay); sign "
                "each request with a fresh nonce",
                field="Signature-Input.nonce",
            )
        return Caller(key.publisher, key.key_id, keys.events.get(key.publisher, frozenset()), keys)

    def _verify(
        self,
        request: web.Request,
        headers: _RawHeaders,
        key: VerifyingKey,
        body: bytes,
        required: Sequence[str],
    ) -> None:
        material = key.secret if key.secret is not None else key.public_key
        assert material is not None
        verifier = HTTPMessageVerifier(
            signature_algorithm=_ALGORITHMS[key.algorithm],
            key_resolver=MappingKeyResolver(public_keys={key.key_id: material}, private_keys={}),
        )
        verifier.max_clock_skew = timedelta(seconds=FUTURE_SKEW_SECONDS)
        message = _Message(request.method, str(request.url), headers, request.raw_path)
        try:
            verifier.verify(
                message,
                max_age=timedelta(seconds=self.max_age),
                require_components=required,
                body=body,
            )
        except (InvalidSignature, HTTPMessageSignaturesException):
            raise SignatureRefused(
                "bad_signature",
                f"the signature does not verify with key {key.key_id!r}: the request was "
                "changed after signing, the signature base differs (method, host, path, "
                "content-type, content-digest, parameters), or another key signed it",
                field="Signature",
            ) from None


__all__ = [
    "BODY_COMPONENTS",
    "COMPONENTS",
    "MAX_AGE_SECONDS",
    "Caller",
    "NonceMemory",
    "SignatureChecker",
    "SignatureRefused",
]
