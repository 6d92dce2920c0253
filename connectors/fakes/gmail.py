"""A strict local fake of Google's token endpoint, the Admin SDK Directory API and Gmail.

Documented behaviours it reproduces (vendor-apis.md, "Google Workspace: Gmail API"):

- `POST /token` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and a JWT
  `assertion`: the signature is verified with the configured service account's public key, and
  `iss` (the service account), `aud` (Google's token URI `https://oauth2.googleapis.com/token`,
  which google-auth always puts there, whatever `token_uri` the key names, and which Google
  checks), `sub` (a user of the domain), `scope`
  (each one granted to the client by domain-wide delegation, `granted`) and a lifetime
  `exp - iat` of at most one hour are checked; then `{access_token, expires_in: 3599,
  token_type: "Bearer"}`. Any failure answers 401 with an OAuth error body (`invalid_grant`,
  `unauthorized_client`; UNCONFIRMED: Google answers some of these 400). `token_requests` lists
  the `(sub, scope)` of every token issued;
- every other call needs `Authorization: Bearer <an unexpired token>`, else 401
  `UNAUTHENTICATED`; a token acts only for its `sub` (`users/{user}` must be it, or `me`), else
  403; reads need `gmail.readonly`, `gmail.modify` or `https://mail.google.com/`, deletes need
  `https://mail.google.com/`, else 403 `insufficientPermissions`;
- `GET /admin/directory/v1/users?customer=my_customer&maxResults=<=500&pageToken=`
  -> `{users: [{id, primaryEmail, name, suspended}], nextPageToken}` for the administrator
  (`admin`) with the `admin.directory.user(.readonly)` scope, else 403;
- `GET /gmail/v1/users/{user}/messages?q=&maxResults=<=500&pageToken=&includeSpamTrash=`
  -> `{messages: [{id, threadId}], nextPageToken, resultSizeEstimate}`, newest first (no
  `messages` key when none); `q` may only hold `from:`, `to:`, `cc:` and `bcc:` terms joined by
  `OR`, each value bare or in double quotes (anything else answers 400: the fake's strictness).
  A term matches an address that *contains* its value, ignoring case (looser than Gmail may be,
  UNCONFIRMED: it proves the connector checks the headers itself). Messages labelled `SPAM` or
  `TRASH` are listed only with `includeSpamTrash=true`;
- `GET /gmail/v1/users/{user}/messages/{id}?format=raw|metadata|minimal|full` (`raw`: the RFC
  822 message, base64url; `metadata`: the `metadataHeaders` asked for); 404 `notFound`;
- `DELETE .../messages/{id}` -> 204, permanent; `POST .../messages/batchDelete {ids}` -> 204,
  permanent, more than `BATCH_LIMIT` ids answer 400 (the limit is UNCONFIRMED), unknown ids are
  skipped (UNCONFIRMED); `POST .../messages/{id}/trash` only adds the `TRASH` label;
- `POST /batch/gmail/v1` (Google's "Batching requests" guide): a `multipart/mixed` body (a
  boundary is required) of 1 to `BATCH_CALLS_LIMIT` parts, each `Content-Type:
  application/http` holding one whole request without a body (`GET /gmail/v1/...?q HTTP/1.1`,
  path only: a full URL answers 400), else the whole batch answers 400. The outer request's
  `Authorization` applies to each call unless the call has its own. Each call is answered by its
  route as if sent alone (scopes, delegation, 404, and the quota charged per call, so one call
  can answer 429 while the others succeed), and the answer is `multipart/mixed` with one
  `application/http` part per call, Content-ID `<response-{its Content-ID}>`, in reverse order
  (Google promises no order). Faults and `requests` concern the outer request only; each call
  is logged in `batched` (and its route in `endpoints`);
- per-user quota (`quota`, a `Quota`; back to Google's with `reset_faults`): 15,000 units a
  minute by default (list and get 5, delete 10, batchDelete 50, trash 5); past it, 429 (or 403,
  as Google also answers) with reason `userRateLimitExceeded`, and `Retry-After` if chosen.

Gmail's faults (`faults`: 5xx, injected 429s, latency) do not reach the token endpoint: it is
another service (oauth2.googleapis.com). `endpoints` lists `(method, route)` of every call.
"""

from __future__ import annotations

import base64
import email.policy
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import format_datetime, getaddresses
from functools import cache
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from connectors.fakes.server import (
    RETRY_AFTER,
    Answer,
    FakeServer,
    LoggedRequest,
    bearer_token,
    route,
)

TOKEN_PATH = "/token"  # noqa: S105 - a path, not a secret
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_EMAIL = "dsr-export@shop-dsr.iam.gserviceaccount.com"
READONLY = "https://www.googleapis.com/auth/gmail.readonly"
MODIFY = "https://www.googleapis.com/auth/gmail.modify"
FULL = "https://mail.google.com/"
DIRECTORY = "https://www.googleapis.com/auth/admin.directory.user.readonly"
DIRECTORY_WRITE = "https://www.googleapis.com/auth/admin.directory.user"
BATCH_LIMIT = 1000
#: The most calls one batch request may hold.
BATCH_CALLS_LIMIT = 100
BATCH_PATH = "/batch/gmail/v1"
MAX_RESULTS = 500

#: The domain's three mailboxes; the first is also the administrator.
MAILBOXES = ("it@shop.example", "sales@shop.example", "support@shop.example")
ADMIN = MAILBOXES[0]
SUBJECT_EMAIL = "anna.devries@example.nl"
SUBJECT_NAME = "Anna de Vries"
#: Another customer, writing to and copied with the subject.
OTHER_EMAIL = "jan.jansen@example.com"
OTHER_NAME = "Jan Jansen"
#: An address that *contains* the subject's: the fake's loose search finds it.
LOOKALIKE_EMAIL = "hanna.devries@example.nl"

_UNITS = {"list": 5, "get": 5, "delete": 10, "batchDelete": 50, "trash": 5}
_TERM = re.compile(r'^(from|to|cc|bcc):(?:"([^"\s]+)"|([^"\s]+))$')
_BASE_TIME = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@cache
def private_key_pem(name: str = "service-account") -> str:
    """A 2048-bit RSA private key in PEM, one per `name` for the whole test run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(private_pem: str) -> str:
    """The public key of a PEM private key, in PEM."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def google_error(status: int, message: str, reason: str, state: str) -> dict[str, Any]:
    """Google's JSON error body (the Gmail API's "Resolve errors" guide)."""
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": state,
        }
    }


def _refuse(status: int, message: str, reason: str, state: str) -> web.Response:
    return web.json_response(google_error(status, message, reason, state), status=status)


def _oauth_refusal(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=401)


@dataclass(slots=True)
class Quota:
    """Gmail's per-user quota: `units` per `seconds`; past it, `status` (429, or 403 as Google
    also answers) with reason `userRateLimitExceeded`, and `Retry-After` when `retry_after`."""

    units: int = 15_000
    seconds: float = 60.0
    status: int = 429
    retry_after: bool = True


@dataclass(frozen=True, slots=True)
class Grant:
    """An access token the fake issued: who it acts for, with which scopes, until when."""

    sub: str
    scopes: frozenset[str]
    expires: float  # time.monotonic()


@dataclass
class StoredMessage:
    """One message in a mailbox."""

    id: str
    thread_id: str
    labels: list[str]
    internal_date: int  # epoch milliseconds
    raw: bytes
    people: dict[str, list[str]] = field(default_factory=dict)

    def matches(self, terms: list[tuple[str, str]]) -> bool:
        """Whether any `(field, value)` term finds it: an address containing the value."""
        return any(value.lower() in a for f, value in terms for a in self.people.get(f, []))

    def header(self, name: str) -> list[str]:
        """The values of one header."""
        return [str(v) for v in BytesHeaderParser().parsebytes(self.raw).get_all(name, [])]


def message(
    number: int,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    labels: list[str] | None = None,
    text: str = "",
) -> StoredMessage:
    """A stored message numbered `number` (its id, thread and time follow from it)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    if cc:
        mail["Cc"] = ", ".join(cc)
    if bcc:
        mail["Bcc"] = ", ".join(bcc)
    when = _BASE_TIME - timedelta(hours=number)
    mail["Subject"] = f"Bestelling {10_000 + number}"
    mail["Date"] = format_datetime(when)
    mail["Message-ID"] = f"<m{number}@shop.example>"
    mail.set_content(text or f"Bericht {number} over bestelling {10_000 + number}.")
    raw = mail.as_bytes()
    people = {
        f: [a.lower() for _, a in getaddresses([mail.get(f, "")]) if a]
        for f in ("from", "to", "cc", "bcc")
    }
    return StoredMessage(
        id=f"{number:016x}",
        thread_id=f"{number // 3:016x}",
        labels=labels or ["INBOX"],
        internal_date=int(when.timestamp() * 1000),
        raw=raw,
        people=people,
    )


def _subject_message(number: int, mailbox: str) -> StoredMessage:
    """The subject's `number`th message in `mailbox`: from, to, cc or bcc the subject by turns;
    some in spam or trash, some with the address in capitals."""
    anna = SUBJECT_EMAIL.upper() if number % 5 == 4 else SUBJECT_EMAIL
    anna = f"{SUBJECT_NAME} <{anna}>"
    label = "SPAM" if number % 10 == 9 else "TRASH" if number % 7 == 6 else None
    match number % 4:
        case 0:
            return message(number, anna, [mailbox], labels=[label or "INBOX"])
        case 1:
            return message(number, mailbox, [anna], labels=[label or "SENT"])
        case 2:
            text = "Jan hier: stuur de mijne naar Dorpsstraat 1, Delft."
            other = f"{OTHER_NAME} <{OTHER_EMAIL}>"
            return message(
                number, other, [mailbox], cc=[anna], labels=[label or "INBOX"], text=text
            )
        case _:
            return message(number, mailbox, [OTHER_EMAIL], bcc=[anna], labels=[label or "SENT"])


@dataclass(eq=False)
class FakeGmail(FakeServer):
    """The fake Google token endpoint, Directory and Gmail; see the module docstring."""

    client_email: str = CLIENT_EMAIL
    #: The public key of the service account's key (its private key signs the assertions).
    public_key: str = field(default_factory=lambda: public_key_pem(private_key_pem()))
    admin: str = ADMIN
    customer_id: str = "C03az79cb"
    #: Scopes domain-wide delegation grants the service account's client id.
    granted: frozenset[str] = frozenset({READONLY, FULL, DIRECTORY})

    unauthorised = Answer(
        401,
        google_error(401, "Request had invalid authentication credentials.", "authError",
                     "UNAUTHENTICATED"),
    )  # fmt: skip
    server_error = Answer(
        503,
        google_error(503, "The service is currently unavailable.", "backendError", "UNAVAILABLE"),
    )
    too_many = Answer(
        429,
        google_error(429, "Too many concurrent requests for user.", "rateLimitExceeded",
                     "RESOURCE_EXHAUSTED"),
        RETRY_AFTER,
    )  # fmt: skip

    def reset(self, messages: int = 12) -> None:
        """Seed `messages` of the subject's across the three mailboxes (half, a third, a
        sixth), and in each mailbox three that are not the subject's; empty logs, no faults."""
        self.tokens: dict[str, Grant] = {}
        self.token_requests: list[tuple[str, str]] = []
        self.usage: dict[str, deque[tuple[float, int]]] = {}
        self.users = [
            {"id": str(100 + i), "primaryEmail": m, "name": {"fullName": m.split("@")[0]},
             "suspended": False}
            for i, m in enumerate(MAILBOXES)
        ]  # fmt: skip
        self.mail: dict[str, dict[str, StoredMessage]] = {m: {} for m in MAILBOXES}
        for n in range(messages):
            mailbox = MAILBOXES[0 if n % 6 < 3 else 1 if n % 6 < 5 else 2]
            self.add(mailbox, _subject_message(n, mailbox))
        for i, mailbox in enumerate(MAILBOXES):
            n = 100_000 + 10 * i
            self.add(mailbox, message(n, LOOKALIKE_EMAIL, [mailbox]))
            self.add(mailbox, message(n + 1, OTHER_EMAIL, [mailbox]))
            self.add(mailbox, message(n + 2, mailbox, [OTHER_EMAIL], labels=["TRASH"]))
        self.reset_faults()

    def reset_faults(self) -> None:
        """Gmail's own quota again, no injected faults, an empty log."""
        self.quota = Quota()
        super().reset_faults()

    def clear_log(self) -> None:
        """Forget the requests received so far, and the calls inside batches."""
        super().clear_log()
        #: Every call inside a batch request: its method, path, query and status.
        self.batched: list[LoggedRequest] = []

    def add_users(self, count: int) -> list[str]:
        """`count` more users with empty mailboxes (to page the Directory); their addresses."""
        added = [f"user{n}@shop.example" for n in range(len(self.users), len(self.users) + count)]
        for address in added:
            self.users.append(
                {
                    "id": str(100 + len(self.users)),
                    "primaryEmail": address,
                    "name": {"fullName": address.split("@")[0]},
                    "suspended": False,
                }
            )
            self.mail[address] = {}
        return added  # fmt: skip

    def add(self, mailbox: str, stored: StoredMessage) -> None:
        """Put a message into a mailbox."""
        self.mail[mailbox][stored.id] = stored

    def involving(self, address: str) -> dict[str, list[StoredMessage]]:
        """Per mailbox, the messages with `address` exactly in From, To, Cc or Bcc."""
        wanted = address.lower()
        return {
            mailbox: [m for m in stored.values() if any(wanted in p for p in m.people.values())]
            for mailbox, stored in self.mail.items()
        }

    @property
    def token_uri(self) -> str:
        """The token endpoint's URI, as the service account's key names it."""
        return self.url + TOKEN_PATH

    def key_info(self, private_pem: str | None = None) -> dict[str, Any]:
        """A service account JSON key for this fake (its token URI), signed with `private_pem`
        (default: the key whose public half the fake knows)."""
        return {
            "type": "service_account",
            "project_id": "shop-dsr",
            "private_key_id": "0123456789abcdef",
            "private_key": private_pem or private_key_pem(),
            "client_email": self.client_email,
            "client_id": "104729563216482937465",
            "token_uri": self.token_uri,
        }

    # ------------------------------------------------------------------ auth and quota

    async def before(self, request: web.Request) -> web.StreamResponse | None:
        """The token endpoint is another service: Gmail's faults do not apply to it."""
        if request.path == TOKEN_PATH:
            self.endpoints.append((request.method, TOKEN_PATH))
            return None
        return await super().before(request)

    def authorised(self, request: web.Request) -> bool:
        """Whether the request carries an unexpired token this fake issued."""
        grant = self.tokens.get(bearer_token(request) or "")
        return grant is not None and grant.expires > time.monotonic()

    def _grant(self, request: web.Request) -> Grant:
        return self.tokens[bearer_token(request) or ""]

    def _acting(self, request: web.Request, write: bool = False) -> str | web.Response:
        """The mailbox the request acts on, or the refusal: a token acts for its own user."""
        grant = self._grant(request)
        user = request.match_info["user"]
        user = grant.sub if user == "me" else user.lower()
        if user != grant.sub.lower() or user not in self.mail:
            return _refuse(403, "Delegation denied.", "forbidden", "PERMISSION_DENIED")
        needed = {FULL} if write else {READONLY, MODIFY, FULL}
        if not grant.scopes & needed:
            return _refuse(
                403,
                "Request had insufficient authentication scopes.",
                "insufficientPermissions",
                "PERMISSION_DENIED",
            )
        return user

    def _charge(self, user: str, method: str) -> web.Response | None:
        """Count the call against the user's quota; past it, Google's quota answer."""
        now = time.monotonic()
        used = self.usage.setdefault(user, deque())
        quota = self.quota
        while used and now - used[0][0] >= quota.seconds:
            used.popleft()
        units = _UNITS[method]
        if sum(u for _, u in used) + units <= quota.units:
            used.append((now, units))
            return None
        wait = max(1, math.ceil(used[0][0] + quota.seconds - now)) if used else 1
        state = "RESOURCE_EXHAUSTED" if quota.status == 429 else "PERMISSION_DENIED"
        reason = "userRateLimitExceeded"
        body = google_error(quota.status, "User-rate limit exceeded.", reason, state)
        headers = {"Retry-After": str(wait)} if quota.retry_after else {}
        return web.json_response(body, status=quota.status, headers=headers)

    # ---------------------------------------------------------------------- token

    @route("POST", TOKEN_PATH)
    async def token(self, request: web.Request) -> web.Response:
        """The OAuth 2.0 JWT bearer grant (RFC 7523), checked strictly."""
        form = await request.post()
        if form.get("grant_type") != JWT_GRANT:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")), certs=self.public_key, audience=GOOGLE_TOKEN_URI
            )
        except ValueError:
            return _oauth_refusal("invalid_grant", "Invalid JWT Signature.")
        scopes = frozenset(str(claims.get("scope", "")).split())
        sub = str(claims.get("sub", "")).lower()
        if claims.get("iss") != self.client_email:
            return _oauth_refusal("invalid_grant", "Invalid JWT: iss is not the client.")
        if int(claims.get("exp", 0)) - int(claims.get("iat", 0)) > 3600:
            return _oauth_refusal("invalid_grant", "Invalid JWT: Token must be short-lived.")
        if sub not in self.mail:
            return _oauth_refusal("invalid_grant", "Invalid email or User ID")
        if not scopes or not scopes <= self.granted:
            return _oauth_refusal(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client "
                "not authorized for any of the scopes requested.",
            )
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.tokens[token] = Grant(sub, scopes, time.monotonic() + 3599)
        self.token_requests.extend((sub, s) for s in sorted(scopes))
        return web.json_response(
            {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    # ------------------------------------------------------------------ directory

    @route("GET", "/admin/directory/v1/users")
    async def users_list(self, request: web.Request) -> web.Response:
        """Admin SDK Directory `users.list` for the administrator."""
        grant = self._grant(request)
        if grant.sub != self.admin or not grant.scopes & {DIRECTORY, DIRECTORY_WRITE}:
            return _refuse(403, "Not Authorized to access this resource/api", "forbidden",
                           "PERMISSION_DENIED")  # fmt: skip
        if request.query.get("customer") not in ("my_customer", self.customer_id):
            return _refuse(400, "Bad Request", "badRequest", "INVALID_ARGUMENT")
        page = _page(request, self.users)
        if isinstance(page, web.Response):
            return page
        users, next_token = page
        body: dict[str, Any] = {"kind": "admin#directory#users", "users": users}
        if next_token:
            body["nextPageToken"] = next_token
        return web.json_response(body)

    # ---------------------------------------------------------------------- gmail

    @route("POST", BATCH_PATH)
    async def batch(self, request: web.Request) -> web.Response:
        """Google's batch endpoint: each part's request answered by its own route."""
        blank = request.clone()  # a request is not cloned once read: each call is a clone
        header = request.headers.get("Content-Type", "")
        head = f"Content-Type: {header}\r\n\r\n".encode("latin-1", "replace")
        batch = BytesParser(policy=email.policy.HTTP).parsebytes(head + await request.read())
        parts = list(batch.iter_parts()) if batch.is_multipart() else []
        if batch.get_content_type() != "multipart/mixed" or not batch.get_boundary():
            return _refuse(400, "Invalid batch: not multipart/mixed", "badRequest",
                           "INVALID_ARGUMENT")  # fmt: skip
        if not 1 <= len(parts) <= BATCH_CALLS_LIMIT:
            return _refuse(400, f"Invalid batch: 1 to {BATCH_CALLS_LIMIT} calls", "badRequest",
                           "INVALID_ARGUMENT")  # fmt: skip
        calls = [_inner_request(part) for part in parts]
        if any(call is None for call in calls) or any(p.is_multipart() for p in parts):
            return _refuse(400, "Invalid batch part", "badRequest", "INVALID_ARGUMENT")
        answers = []
        arrived = time.monotonic()
        for part, call in zip(parts, calls, strict=True):
            assert call is not None
            answer = await self._answer_call(blank, arrived, *call)
            content_id = str(part.get("Content-ID", "")).strip().strip("<>")
            answers.append((content_id, answer))
        boundary = "batch_" + secrets.token_urlsafe(12)
        return web.Response(
            body=_multipart_answer(boundary, reversed(answers)),
            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
        )

    async def _answer_call(
        self,
        outer: web.Request,
        arrived: float,
        method: str,
        target: str,
        headers: dict[str, str],
    ) -> web.Response:
        """One call of a batch, answered by its route with the outer request's headers under
        its own; logged in `batched` as arrived with the batch."""
        inner = outer.clone(method=method, rel_url=target, headers={**outer.headers, **headers})
        match = await outer.app.router.resolve(inner)
        answer: web.StreamResponse
        if inner.path == BATCH_PATH:
            answer = _refuse(400, "A batch cannot hold a batch", "badRequest", "INVALID_ARGUMENT")
        elif isinstance(match, UrlMappingMatchInfo) and match.route.resource is not None:
            match.add_app(outer.app)
            inner._match_info = match  # as aiohttp's own dispatch does
            if not self.authorised(inner):
                answer = self.unauthorised.response()
            else:
                self.endpoints.append((method, match.route.resource.canonical))
                answer = await match.handler(inner)
        else:
            answer = _refuse(404, "Not Found", "notFound", "NOT_FOUND")
        assert isinstance(answer, web.Response)  # every route of this fake answers a Response
        self.batched.append(LoggedRequest(method, inner.path, inner.query_string, arrived,
                                          answer.status))  # fmt: skip
        return answer

    @route("GET", "/gmail/v1/users/{user}/messages")
    async def messages_list(self, request: web.Request) -> web.Response:
        """`users.messages.list` with `q`, paging and `includeSpamTrash`."""
        user = self._acting(request)
        if isinstance(user, web.Response):
            return user
        if refused := self._charge(user, "list"):
            return refused
        terms = parse_query(request.query.get("q", ""))
        if terms is None:
            return _refuse(400, "Invalid query", "invalidArgument", "INVALID_ARGUMENT")
        hidden = set() if request.query.get("includeSpamTrash") == "true" else {"SPAM", "TRASH"}
        found = [
            m
            for m in sorted(self.mail[user].values(), key=lambda m: -m.internal_date)
            if not hidden & set(m.labels) and (not terms or m.matches(terms))
        ]
        page = _page(request, found, default=100)
        if isinstance(page, web.Response):
            return page
        listed, next_token = page
        body: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if listed:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in listed]
        if next_token:
            body["nextPageToken"] = next_token
        return web.json_response(body)

    @route("GET", "/gmail/v1/users/{user}/messages/{id}")
    async def messages_get(self, request: web.Request) -> web.Response:
        """`users.messages.get` as raw, metadata, minimal or full."""
        user = self._acting(request)
        if isinstance(user, web.Response):
            return user
        if refused := self._charge(user, "get"):
            return refused
        stored = self.mail[user].get(request.match_info["id"])
        if stored is None:
            return _refuse(404, "Requested entity was not found.", "notFound", "NOT_FOUND")
        shape = request.query.get("format", "full")
        if shape not in ("raw", "metadata", "minimal", "full"):
            return _refuse(400, "Invalid format", "invalidArgument", "INVALID_ARGUMENT")
        body: dict[str, Any] = {
            "id": stored.id,
            "threadId": stored.thread_id,
            "labelIds": stored.labels,
            "snippet": "",
            "sizeEstimate": len(stored.raw),
            "historyId": "4242",
            "internalDate": str(stored.internal_date),
        }
        if shape == "raw":
            body["raw"] = base64.urlsafe_b64encode(stored.raw).decode("ascii")
        elif shape in ("metadata", "full"):
            names = request.query.getall("metadataHeaders", [])
            wanted = names or ["From", "To", "Cc", "Bcc", "Subject", "Date"]
            body["payload"] = {
                "headers": [{"name": n, "value": v} for n in wanted for v in stored.header(n)]
            }
        return web.json_response(body)

    @route("DELETE", "/gmail/v1/users/{user}/messages/{id}")
    async def messages_delete(self, request: web.Request) -> web.Response:
        """`users.messages.delete`: immediate and permanent."""
        user = self._acting(request, write=True)
        if isinstance(user, web.Response):
            return user
        if refused := self._charge(user, "delete"):
            return refused
        if self.mail[user].pop(request.match_info["id"], None) is None:
            return _refuse(404, "Requested entity was not found.", "notFound", "NOT_FOUND")
        return web.Response(status=204)

    @route("POST", "/gmail/v1/users/{user}/messages/batchDelete")
    async def messages_batch_delete(self, request: web.Request) -> web.Response:
        """`users.messages.batchDelete`: permanent; unknown ids are skipped."""
        user = self._acting(request, write=True)
        if isinstance(user, web.Response):
            return user
        if refused := self._charge(user, "batchDelete"):
            return refused
        try:
            body = await request.json()
        except ValueError:
            body = None
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > BATCH_LIMIT:
            return _refuse(400, "Invalid ids", "invalidArgument", "INVALID_ARGUMENT")
        for message_id in ids:
            self.mail[user].pop(str(message_id), None)
        return web.Response(status=204)

    @route("POST", "/gmail/v1/users/{user}/messages/{id}/trash")
    async def messages_trash(self, request: web.Request) -> web.Response:
        """`users.messages.trash`: moves to Trash only; the message stays (not erasure)."""
        user = self._acting(request)
        if isinstance(user, web.Response):
            return user
        if refused := self._charge(user, "trash"):
            return refused
        stored = self.mail[user].get(request.match_info["id"])
        if stored is None:
            return _refuse(404, "Requested entity was not found.", "notFound", "NOT_FOUND")
        stored.labels = [*(label for label in stored.labels if label != "INBOX"), "TRASH"]
        return web.json_response({"id": stored.id, "labelIds": stored.labels})


def parse_query(q: str) -> list[tuple[str, str]] | None:
    """The `(field, value)` terms of a search of `from:`/`to:`/`cc:`/`bcc:` terms joined by
    OR; an empty list for no query; None for anything else."""
    if not q.strip():
        return []
    terms = []
    for part in re.split(r"\s+OR\s+", q.strip()):
        match = _TERM.match(part)
        if match is None:
            return None
        terms.append((match.group(1), match.group(2) or match.group(3)))
    return terms


def _inner_request(part: Any) -> tuple[str, str, dict[str, str]] | None:
    """A batch part's request: method, path with query, headers; None when it is not one
    whole body-less request of a path."""
    if part.get_content_type() != "application/http":
        return None
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    line, _, rest = payload.partition(b"\n")
    fields = line.decode("latin-1").split()
    if len(fields) != 3 or not fields[1].startswith("/") or not fields[2].startswith("HTTP/"):
        return None
    head = BytesParser(policy=email.policy.HTTP).parsebytes(rest)
    if head.get_payload(decode=True):
        return None  # the fake's batch takes calls without a body
    return fields[0], fields[1], {name: str(value) for name, value in head.items()}


def _multipart_answer(boundary: str, answers: Any) -> bytes:
    """A batch's `multipart/mixed` answer: one `application/http` part per `(content_id,
    response)`, Content-ID `<response-{content_id}>`."""
    chunks = []
    for content_id, answer in answers:
        body = answer.body if isinstance(answer.body, bytes) else b""
        lines = [f"HTTP/1.1 {answer.status} {answer.reason}"]
        lines += [
            f"{name}: {value}"
            for name, value in answer.headers.items()
            if name.lower() not in ("content-type", "content-length")
        ]
        if body:
            lines.append(f"Content-Type: {answer.content_type}")
        lines.append(f"Content-Length: {len(body)}")
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/http\r\n"
            f"Content-ID: <response-{content_id}>\r\n\r\n".encode()
            + "\r\n".join(lines).encode("latin-1")
            + b"\r\n\r\n"
            + body
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


def _page(
    request: web.Request, items: list[Any], default: int = 100
) -> tuple[list[Any], str | None] | web.Response:
    """One page of `items` by `maxResults` and `pageToken` (the offset, opaque to clients)."""
    size_text = request.query.get("maxResults", str(default))
    token = request.query.get("pageToken", "")
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_RESULTS:
        return _refuse(400, "Invalid maxResults", "invalidArgument", "INVALID_ARGUMENT")
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        return _refuse(400, "Invalid pageToken", "invalidArgument", "INVALID_ARGUMENT")
    end = offset + int(size_text)
    next_token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[offset:end], next_token


__all__ = [
    "ADMIN",
    "CLIENT_EMAIL",
    "LOOKALIKE_EMAIL",
    "MAILBOXES",
    "OTHER_EMAIL",
    "SUBJECT_EMAIL",
    "FakeGmail",
    "Grant",
    "Quota",
    "StoredMessage",
    "message",
    "parse_query",
    "private_key_pem",
    "public_key_pem",
]
