"""A strict local fake of an OpenDSR 2.0 processor: discovery, requests, status, cancel, callbacks.

What it reproduces (../shared/reference/vendor-apis.md, OpenDSR; the spec in opengdpr/OpenDSR):

- `GET /v1/discovery` (no credentials) -> `{api_version, supported_identities: [{identity_type,
  identity_format}], supported_subject_request_types, processor_certificate}`; the certificate
  (self-signed, issued to `domain`) is served at `/cert.pem`;
- `POST /v1/requests` (`Authorization: Bearer`), validated exactly: `regulation` gdpr|ccpa,
  `subject_request_id` a lower-case UUID v4, `subject_request_type` one of the supported,
  `subject_identities` (pairs the discovery lists), `submitted_time` RFC 3339,
  `status_callback_urls` http(s) URLs, `api_version`, `extensions` an object; anything else
  answers 400 `{"error": {code, message, errors: [{domain, reason, message}]}}` naming the
  field, never a value; the same `subject_request_id` again answers 400 `DuplicateRequest`.
  201 `{controller_id, expected_completion_time, received_time, encoded_request,
  subject_request_id, processor_signature}`; `processor_signature` signs the request body as
  received (a receipt: base64 of the signature over SHA-256 of `encoded_request`'s bytes);
- `GET /v1/requests/{id}` -> the status object `{controller_id, expected_completion_time,
  subject_request_id, request_status, api_version, results_url?, results_count?}`;
- `DELETE /v1/requests/{id}` -> 202 while `pending`, else 400; unknown ids 404;
- every answer carries `X-OpenDSR-Processor-Domain` and `X-OpenDSR-Signature` (over SHA-256
  of the raw body, the certificate's RSA key, PKCS#1 v1.5);
- a request goes `pending` -> `in_progress` -> `completed` after `complete_after_seconds`
  (`auto_complete`), or on demand (`complete(id)`, `cancel(id)`); at completion an erasure
  deletes the subject's records (`results_count`: how many), an access or portability request
  gets `results_url` (`GET /v1/results/{token}`, with credentials: `{subject_request_id,
  results: {collection: [records]}}`);
- each status change is POSTed to every `status_callback_urls` entry, signed like an answer,
  with `status_callback_url` naming the URL called; retried up to three times until a 2xx
  (at least once). `send_callbacks = False` stops them (the controller must poll);
  `forge_callback(...)` sends one signed with another key (or none).

The log of every fake (`requests`, `endpoints`), and `callbacks` (each callback POST and its
answer). The fault knobs of every fake (`faults`): a 5xx is 503, a 429 carries Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.fakes.server import RETRY_AFTER, Answer, FakeServer, bearer_token, route
from schemas.primitives.opendsr import self_signed_certificate

TOKEN = "opendsr-fake-controller-token"  # noqa: S105 - a fake's fixed test credential
CONTROLLER_ID = "dsr-test-controller"
API_VERSION = "2.0"

SUBJECT_EMAIL = "anna.devries@example.nl"
SUBJECT_NAME = "Anna de Vries"
OTHER_EMAIL = "jan.jansen@example.com"
#: What the fake holds about the subject: collection -> records.
SUBJECT_EXPECTED = {"profiles": 1, "events": 3}

_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_HEX_LENGTHS = {"sha256": 64, "sha1": 40, "md5": 32}
_FIELDS = {
    "regulation",
    "subject_request_id",
    "subject_request_type",
    "subject_identities",
    "submitted_time",
    "api_version",
    "status_callback_urls",
    "extensions",
}


def _error(status: int, message: str, reason: str = "IllegalArgumentException") -> dict[str, Any]:
    """The spec's error object (section "Error Object")."""
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": "Validation", "reason": reason, "message": message}],
        }
    }


@cache
def _key(name: str) -> rsa.RSAPrivateKey:
    """One RSA key per name and process (generating one takes a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(key: rsa.RSAPrivateKey, domain: str) -> bytes:
    """A self-signed certificate for `domain` (a real processor's is issued by a CA)."""
    return self_signed_certificate(key, domain, days=30, backdate=timedelta(days=1))


def sign(key: rsa.RSAPrivateKey, body: bytes) -> str:
    """Base64 of the RSA (PKCS#1 v1.5) signature over SHA-256 of `body`."""
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def _seed() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """E-mail address -> collection -> records."""
    return {
        SUBJECT_EMAIL: {
            "profiles": [{"id": "p-1", "email": SUBJECT_EMAIL, "name": SUBJECT_NAME}],
            "events": [
                {"id": f"e-{n}", "profile_id": "p-1", "type": kind, "at": f"2025-0{n}-01"}
                for n, kind in ((1, "login"), (2, "purchase"), (3, "newsletter_open"))
            ],
        },
        OTHER_EMAIL: {
            "profiles": [{"id": "p-2", "email": OTHER_EMAIL, "name": "Jan Jansen"}],
            "events": [{"id": "e-9", "profile_id": "p-2", "type": "login", "at": "2025-01-02"}],
        },
    }


@dataclass
class CallbackSent:
    """One callback POST the fake made, and the answer it got (None: no connection)."""

    url: str
    request_status: str
    answer: int | None
    forged: bool = False


@dataclass
class _Request:
    body: dict[str, Any]
    received: datetime
    expected: datetime
    status: str = "pending"
    results: dict[str, list[dict[str, Any]]] | None = None
    results_token: str | None = None
    results_count: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass(eq=False)
class FakeOpenDsr(FakeServer):
    """The fake OpenDSR processor; see the module docstring."""

    token: str = TOKEN
    controller_id: str = CONTROLLER_ID
    #: The domain its certificate is issued to and `X-OpenDSR-Processor-Domain` names.
    domain: str = "127.0.0.1"
    #: The request types its discovery lists.
    request_types: tuple[str, ...] = ("access", "portability", "erasure")

    unauthorised = Answer(401, _error(401, "invalid credentials", "Unauthorized"))
    server_error = Answer(503, _error(503, "service unavailable", "ServiceUnavailable"))
    too_many = Answer(429, _error(429, "too many requests", "RateLimited"), RETRY_AFTER)

    def __post_init__(self) -> None:
        self.key = _key("processor")
        self.certificate_pem = _certificate(self.key, self.domain)
        super().__post_init__()

    def reset(self) -> None:
        """Seed the subject and one other person; no requests, callbacks on, auto-completion
        after 0.2 s; empty logs, no faults."""
        self.people = _seed()
        self.opendsr: dict[str, _Request] = {}
        self.callbacks: list[CallbackSent] = []
        #: Send status callbacks (off: the controller must poll).
        self.send_callbacks = True
        #: Requests complete by themselves after `complete_after_seconds`; else `complete(id)`.
        self.auto_complete = True
        self.complete_after_seconds = 0.2
        #: The formats of `email` identities its discovery lists (and it accepts).
        self.identity_formats: tuple[str, ...] = ("raw", "sha256", "md5")

    def authorised(self, request: web.Request) -> bool:
        """Discovery and the certificate are public; everything else needs the bearer token."""
        if request.path in ("/v1/discovery", "/cert.pem"):
            return True
        return bearer_token(request) == self.token

    # ------------------------------------------------------------------------- answers

    def _signed(self, body: dict[str, Any], status: int = 200) -> web.Response:
        raw = json.dumps(body).encode()
        headers = {
            "X-OpenDSR-Processor-Domain": self.domain,
            "X-OpenDSR-Signature": sign(self.key, raw),
        }
        return web.Response(
            body=raw, status=status, headers=headers, content_type="application/json"
        )

    def _status_object(self, request_id: str, found: _Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "controller_id": self.controller_id,
            "expected_completion_time": _time(found.expected),
            "subject_request_id": request_id,
            "request_status": found.status,
            "api_version": API_VERSION,
        }
        if found.results_token is not None:
            body["results_url"] = f"{self.url}/v1/results/{found.results_token}"
        if found.results_count is not None:
            body["results_count"] = found.results_count
        return body

    @route("GET", "/v1/discovery")
    async def discovery(self, request: web.Request) -> web.Response:
        """What the fake supports."""
        identities = [
            {"identity_type": "email", "identity_format": f} for f in self.identity_formats
        ]
        return self._signed(
            {
                "api_version": API_VERSION,
                "supported_identities": identities,
                "supported_subject_request_types": list(self.request_types),
                "processor_certificate": f"{self.url}/cert.pem",
            }
        )

    @route("GET", "/cert.pem")
    async def certificate(self, request: web.Request) -> web.Response:
        """The signing certificate (PEM)."""
        return web.Response(body=self.certificate_pem, content_type="application/x-pem-file")

    @route("POST", "/v1/requests")
    async def create(self, request: web.Request) -> web.Response:
        """Validate and accept a request (201), or 400 naming the first wrong field."""
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response(_error(400, "the body must be a JSON object"), status=400)
        problem = self.invalid(body)
        if problem is not None:
            return web.json_response(_error(400, problem), status=400)
        request_id = body["subject_request_id"]
        if request_id in self.opendsr:
            message = "subject_request_id was submitted before"
            return web.json_response(_error(400, message, "DuplicateRequest"), status=400)
        now = datetime.now(UTC)
        found = _Request(body, now, now + timedelta(seconds=self.complete_after_seconds))
        self.opendsr[request_id] = found
        if self.auto_complete:
            found.tasks.append(asyncio.create_task(self._progress(request_id)))
        return self._signed(
            {
                "controller_id": self.controller_id,
                "expected_completion_time": _time(found.expected),
                "received_time": _time(now),
                "encoded_request": base64.b64encode(raw).decode("ascii"),
                "subject_request_id": request_id,
                "processor_signature": sign(self.key, raw),
            },
            201,
        )

    def invalid(self, body: dict[str, Any]) -> str | None:
        """What is wrong with a request body (naming the field, never a value), or None."""
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            return f"{unknown[0]} is not a field of an OpenDSR request"
        checks = (
            ("regulation", lambda v: v in ("gdpr", "ccpa"), "must be 'gdpr' or 'ccpa'"),
            ("subject_request_id", lambda v: isinstance(v, str) and bool(_UUID4.match(v)),
             "must be a lower-case UUID v4"),
            ("subject_request_type", lambda v: v in self.request_types,
             f"must be one of {', '.join(self.request_types)}"),
            ("submitted_time", _rfc3339, "must be an RFC 3339 date-time"),
        )  # fmt: skip
        for name, check, message in checks:
            if name not in body:
                return f"{name} field is required"
            if not check(body[name]):
                return f"{name} {message}"
        identities = body.get("subject_identities")
        if not isinstance(identities, list) or not identities:
            return "subject_identities must be a non-empty array of identity objects"
        for n, identity in enumerate(identities):
            problem = self._invalid_identity(identity)
            if problem is not None:
                return f"subject_identities[{n}] {problem}"
        urls = body.get("status_callback_urls", [])
        if not isinstance(urls, list) or not all(
            isinstance(u, str) and re.match(r"^https?://[^\s]+$", u) for u in urls
        ):
            return "status_callback_urls must be an array of http(s) URLs"
        if "api_version" in body and not isinstance(body["api_version"], str):
            return "api_version must be a string"
        if "extensions" in body and not isinstance(body["extensions"], dict):
            return "extensions must be an object keyed by processor domain"
        return None

    def _invalid_identity(self, identity: Any) -> str | None:
        if not isinstance(identity, dict) or set(identity) != {
            "identity_type",
            "identity_value",
            "identity_format",
        }:
            return "must have exactly identity_type, identity_value and identity_format"
        kind, value, form = (
            identity[k] for k in ("identity_type", "identity_value", "identity_format")
        )
        if kind != "email" or form not in self.identity_formats:
            return "is an identity type and format the discovery does not list"
        if not isinstance(value, str) or not value.strip():
            return "identity_value must be a non-empty string"
        if form != "raw" and not re.fullmatch(f"[0-9a-f]{{{_HEX_LENGTHS[form]}}}", value):
            return f"identity_value must be a lower-case hex {form} digest"
        return None

    @route("GET", "/v1/requests/{id}")
    async def status(self, request: web.Request) -> web.Response:
        """The request's status object."""
        request_id = request.match_info["id"]
        found = self.opendsr.get(request_id)
        if found is None:
            return web.json_response(
                _error(404, "no such subject_request_id", "NotFound"), status=404
            )
        return self._signed(self._status_object(request_id, found))

    @route("DELETE", "/v1/requests/{id}")
    async def delete(self, request: web.Request) -> web.Response:
        """Cancel a pending request (202); a request past pending cannot be cancelled (400)."""
        request_id = request.match_info["id"]
        found = self.opendsr.get(request_id)
        if found is None:
            return web.json_response(
                _error(404, "no such subject_request_id", "NotFound"), status=404
            )
        if found.status != "pending":
            message = f"a request in status {found.status} cannot be cancelled"
            return web.json_response(_error(400, message, "NotPending"), status=400)
        await self._change(request_id, "cancelled")
        now = _time(datetime.now(UTC))
        return self._signed(
            {
                "controller_id": self.controller_id,
                "received_time": now,
                "subject_request_id": request_id,
                "processor_signature": sign(self.key, request_id.encode()),
                "api_version": API_VERSION,
            },
            202,
        )

    @route("GET", "/v1/results/{token}")
    async def results(self, request: web.Request) -> web.Response:
        """The results of a completed access or portability request."""
        token = request.match_info["token"]
        for request_id, found in self.opendsr.items():
            if found.results_token is not None and secrets.compare_digest(
                found.results_token, token
            ):
                return web.json_response(
                    {"subject_request_id": request_id, "results": found.results or {}}
                )
        return web.json_response(_error(404, "no such results", "NotFound"), status=404)

    # ------------------------------------------------------------------------- progress

    async def _progress(self, request_id: str) -> None:
        half = self.complete_after_seconds / 2
        await asyncio.sleep(half)
        found = self.opendsr.get(request_id)
        if found is None or found.status != "pending":
            return  # cancelled meanwhile, or the fake was reset
        await self._change(request_id, "in_progress")
        await asyncio.sleep(half)
        await self._finish(request_id)

    async def _finish(self, request_id: str) -> None:
        found = self.opendsr.get(request_id)
        if found is None or found.status in ("completed", "cancelled"):
            return
        matched = self._matched(found.body["subject_identities"])
        if found.body["subject_request_type"] == "erasure":
            count = 0
            for email in matched:
                count += sum(len(records) for records in self.people.pop(email, {}).values())
            found.results_count = count
        else:
            results: dict[str, list[dict[str, Any]]] = {}
            for email in matched:
                for collection, records in self.people.get(email, {}).items():
                    results.setdefault(collection, []).extend(json.loads(json.dumps(records)))
            found.results = results
            found.results_count = sum(len(r) for r in results.values())
            found.results_token = secrets.token_urlsafe(16)
        await self._change(request_id, "completed")

    def _matched(self, identities: list[dict[str, str]]) -> list[str]:
        """The e-mail addresses the fake holds that one of the identities names."""
        found = []
        for email in self.people:
            for identity in identities:
                form, value = identity["identity_format"], identity["identity_value"]
                named = email if form == "raw" else hashlib.new(form, email.encode()).hexdigest()
                if (value.strip().lower() if form == "raw" else value) == named:
                    found.append(email)
        return sorted(set(found))

    async def _change(self, request_id: str, status: str) -> None:
        found = self.opendsr[request_id]
        found.status = status
        if not self.send_callbacks:
            return
        for url in found.body.get("status_callback_urls", []):
            body = {**self._status_object(request_id, found), "status_callback_url": url}
            body.pop("api_version", None)
            await self._post_callback(url, body, self.key)

    async def _post_callback(
        self, url: str, body: dict[str, Any], key: rsa.RSAPrivateKey | None, *, forged: bool = False
    ) -> int | None:
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "X-OpenDSR-Processor-Domain": self.domain}
        if key is not None:
            headers["X-OpenDSR-Signature"] = sign(key, raw)
        answer: int | None = None
        async with httpx.AsyncClient(timeout=10) as client:
            for attempt in range(3):  # at least once; retried while it fails
                try:
                    answer = (await client.post(url, content=raw, headers=headers)).status_code
                except httpx.HTTPError:
                    answer = None
                if answer is not None and (answer < 500 or forged):
                    break
                await asyncio.sleep(0.2 * (attempt + 1))
        self.callbacks.append(CallbackSent(url, body["request_status"], answer, forged))
        return answer

    # ------------------------------------------------------------------ test controls

    def _run(self, coroutine: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("the fake server is not started")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def complete(self, request_id: str) -> None:
        """Complete a request now (with `auto_complete` off), sending its callbacks."""
        self._run(self._finish(request_id))

    def cancel(self, request_id: str) -> None:
        """The processor cancels a request itself, sending its callbacks."""
        self._run(self._change(request_id, "cancelled"))

    def forge_callback(
        self, url: str, request_id: str, status: str = "completed", *, unsigned: bool = False
    ) -> int | None:
        """POST a callback signed with another key (or unsigned); the answer's status."""
        body = {
            "controller_id": self.controller_id,
            "expected_completion_time": _time(datetime.now(UTC)),
            "status_callback_url": url,
            "subject_request_id": request_id,
            "request_status": status,
            "results_count": 0,
        }
        key = None if unsigned else _key("forger")
        answer: int | None = self._run(self._post_callback(url, body, key, forged=True))
        return answer

    def request_ids(self) -> list[str]:
        """The subject_request_ids received, oldest first."""
        return list(self.opendsr)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _rfc3339(value: Any) -> bool:
    if not isinstance(value, str) or not re.match(
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", value
    ):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def new_request_id() -> str:
    """A fresh subject_request_id (tests)."""
    return str(uuid.uuid4())


__all__ = [
    "API_VERSION",
    "CONTROLLER_ID",
    "OTHER_EMAIL",
    "SUBJECT_EMAIL",
    "SUBJECT_EXPECTED",
    "TOKEN",
    "CallbackSent",
    "FakeOpenDsr",
    "new_request_id",
    "sign",
]
