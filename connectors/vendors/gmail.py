"""Google Workspace (Gmail): the subject's e-mails in every mailbox of the controller's domain.

Sign-in: a service account with domain-wide delegation. `google-auth` makes and signs the
OAuth 2.0 JWT bearer grant (RFC 7523) for each mailbox it acts as (`sub`), at the key file's
`token_uri`; the token call goes over httpx (`_HttpxRequest`), and Gmail's own calls go through
our `HttpClient`, so its retries, rate limit and error messages apply. Scopes, least privilege
(Art. 25(2), 32(1) GDPR): reads use `gmail.readonly` (`access_scope`), only deletes ask for
`https://mail.google.com/`, the one scope `messages.delete`/`batchDelete` accept; listing the
domain's mailboxes uses `admin.directory.user.readonly` acting as `admin`. The Admin console's
domain-wide delegation must grant the key's client id exactly those scopes.

Mailboxes: the configured `mailboxes`, or every user of the Directory API (`users.list`,
`customer=my_customer`, 500 a page). A suspended user is not searched (Google may refuse to act
as one; UNCONFIRMED): the evidence counts them, and their mail needs Google Vault.

Access (Art. 15): per mailbox, `users.messages.list` with `q` = `from:"a" OR to:"a" OR cc:"a"
OR bcc:"a"` for each of the subject's e-mail addresses, `includeSpamTrash=true` (spam and trash
are still stored mail), 500 a page; then `messages.get?format=raw` per message, up to
`batch_calls` (default 50) of them in one request to Google's batch endpoint (see Batches
below). Gmail's search
is not an exact match, so each message is kept only when one of its From/To/Cc/Bcc addresses
equals one of the subject's. The export's record model carries JSON only (attachments are for
manual tasks), so each message is a record with its metadata and the whole RFC 822 message, as
an `.eml` file would hold it, base64-encoded in `eml`. Records stream into the export one by one
(`export_into`): a mailbox's mail never sits in memory at once.

Other people (Art. 15(4) GDPR): an e-mail names its other participants and may quote what they
wrote. `Record.others` marks every address that is not the subject's, the mailbox's owner, and,
when anyone else takes part, the whole `eml` (a raw message cannot be redacted in part), plus
the subject line of a message someone else wrote. Register this system with
`third_parties: {messages: hold}` to have an officer release full messages instead.

Erasure (Art. 17): every message found as above is deleted permanently with `batchDelete` (at
most `batch_size` ids a call; Google documents 1,000 for `batchModify`, the `batchDelete` limit
is UNCONFIRMED) or `messages.delete` one by one (`batch_delete: false`). Never `trash`: trashed
mail stays 30 days and can be restored, so it is not erased. A search after the deletes must find
none of them. A message someone else sent to the subject, or shared with others, is deleted too:
in the controller's mailbox the whole message is about the subject, and the rights of others
limit a copy (Art. 15(4)) and portability (Art. 20(4)) but are not among the exceptions to
erasure (Art. 17(3)); the other participants keep their own copies. Mail the controller must
keep (e.g. invoices, 7 years under art. 52 AWR) belongs in another system or a retention duty;
this connector applies no retention rules. Evidence counts per mailbox, named by a pseudonym
(`sha256:` + 12 hex of the lower-case address) since a staff address is personal data too.

Batches: `POST /batch/gmail/v1`, a `multipart/mixed` body with one `application/http` part per
call (its request line, Content-ID `<n>`), answered by a `multipart/mixed` body with one HTTP
response per call (Content-ID `<response-n>`, in any order). Google's "Batching requests" guide:
at most 100 calls a batch, more than 50 not recommended, the outer request's headers
(Authorization) apply to every call, and each call counts against the quota as if sent alone;
so the client's rate limit counts a batch as its calls (`cost`), and a batch holds at most the
rate limit's requests a window. A batch's calls each have their own status: the ones refused
for quota (429, or 403 `userRateLimitExceeded`/`rateLimitExceeded`) or by a 5xx are sent again,
in a smaller batch, after the client's own backoff (or the longest `Retry-After` among them);
404 is a message gone meanwhile; anything else fails the task like a single call would.
`batch_calls: 1` turns batching off (one `messages.get` per message).

Quota: Gmail allows 15,000 units per user per minute (list and get 5, delete 10, batchDelete
50). Exceeding it answers 429, or 403 with reason `userRateLimitExceeded`/`rateLimitExceeded`;
the transport shows those 403s as the 429 they mean, so `HttpClient` backs off exponentially
(or as long as `Retry-After` says) like for any vendor.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from email import policy
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import httpx
from google.auth import exceptions as google_errors
from google.auth import transport as google_transport
from google.auth.credentials import TokenState
from google.oauth2 import service_account
from pydantic import ConfigDict, Field, model_validator

from connectors.base import Connector, ConnectorConfigError, ConnectorError, Result
from connectors.http import (
    Auth,
    CursorPaging,
    HttpClient,
    HttpError,
    RateLimit,
    classify,
    json_body,
    limiter_for,
)
from connectors.vendors.base import RECORD_RIGHTS, HttpSettings, erased, pointer
from schemas.events import Counts, Evidence, Record, Subject
from schemas.primitives.records import RecordSink

log = logging.getLogger(__name__)

GMAIL_URL = "https://gmail.googleapis.com"
DIRECTORY_URL = "https://admin.googleapis.com"
READONLY_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
FULL_SCOPE = "https://mail.google.com/"
DIRECTORY_SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"
#: The most ids one `batchDelete` takes (UNCONFIRMED: documented for `batchModify`).
BATCH_LIMIT = 1000
_PAGE = 500  # the documented maximum of messages.list and users.list
_PARTICIPANTS = ("from", "to", "cc", "bcc")
_QUOTA_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
_MESSAGES = "/gmail/v1/users/{user}/messages"
#: Messages fetched at once: keeps the limiter's slots busy and memory flat.
_FETCH_CHUNK = 50
#: The most calls one batch request takes (Google's "Batching requests" guide).
BATCH_CALLS_LIMIT = 100
_BATCH = "/batch/gmail/v1"
#: The httpx request extension that says whom a request acts for, and with which scope: a
#: batch's path names no user.
ACTING = "google_acting_as"


class GmailSettings(HttpSettings):
    """Register settings of a Google Workspace domain's Gmail."""

    model_config = ConfigDict(extra="forbid")

    service_account_key: str | None = Field(
        default=None, repr=False, description="The key's JSON text, e.g. ${GOOGLE_SA_KEY}."
    )
    service_account_key_file: Path | None = Field(
        default=None, description="Path of the key's JSON file (instead of the text)."
    )
    mailboxes: list[str] | None = Field(
        default=None, description="The mailboxes to search; without, the Directory's users."
    )
    admin: str | None = Field(
        default=None, description="An administrator the Directory listing acts as."
    )
    customer: str = Field(default="my_customer", description="Directory `customer`.")
    access_scope: Literal[
        "https://www.googleapis.com/auth/gmail.readonly", "https://mail.google.com/"
    ] = Field(
        default="https://www.googleapis.com/auth/gmail.readonly",
        description="Scope of reads; deletes always use https://mail.google.com/.",
    )
    batch_delete: bool = Field(default=True, description="batchDelete instead of one by one.")
    batch_size: Annotated[int, Field(ge=1, le=BATCH_LIMIT)] = BATCH_LIMIT
    batch_calls: Annotated[int, Field(ge=1, le=BATCH_CALLS_LIMIT)] = Field(
        default=50,
        description="messages.get calls per batch request (Google advises at most 50); "
        "1: no batches. Never more than the rate limit's requests.",
    )
    gmail_url: str = GMAIL_URL
    directory_url: str = DIRECTORY_URL
    # 15,000 units per user per minute is 50 messages.get a second; stay well below it.
    rate_limit: RateLimit = RateLimit(requests=40, per_seconds=1.0, concurrency=8)

    @model_validator(mode="after")
    def _sources(self) -> GmailSettings:
        if (self.service_account_key is None) == (self.service_account_key_file is None):
            raise ValueError("give exactly one of service_account_key and service_account_key_file")
        if (self.mailboxes is None) == (self.admin is None):
            raise ValueError("give exactly one of mailboxes (a list) and admin (Directory API)")
        if self.mailboxes is not None and not all("@" in m for m in self.mailboxes):
            raise ValueError("mailboxes must be e-mail addresses")
        return self

    def url(self) -> str:
        """Gmail's API URL."""
        return self.gmail_url

    def auth(self) -> Auth:
        """None here: each request is signed as the mailbox it acts for (`_GoogleTransport`)."""
        return Auth()


# ------------------------------------------------------------------------------ tokens


class _HttpxResponse(google_transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Any:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _HttpxRequest(google_transport.Request):
    """google-auth's transport interface over an httpx client (no `requests` dependency)."""

    def __init__(self, client: httpx.Client, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Any = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _HttpxResponse:
        try:
            response = self._client.request(
                method, url, content=body, headers=headers, timeout=timeout or self._timeout
            )
        except httpx.HTTPError as exc:
            raise google_errors.TransportError(type(exc).__name__) from None
        return _HttpxResponse(response)


class DelegatedTokens:
    """Access tokens of the service account acting as each user (domain-wide delegation)."""

    def __init__(self, system: str, key: dict[str, Any], timeout: float) -> None:
        self.system = system
        try:
            self._account = service_account.Credentials.from_service_account_info(key)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectorConfigError(
                f"settings of system {system!r} are invalid: the service account key is not "
                f"usable ({type(exc).__name__}); create a new JSON key for the service account "
                "in the Google Cloud console"
            ) from None
        self._issued: dict[tuple[str, str], service_account.Credentials] = {}
        self._lock = threading.Lock()  # one refresh at a time; held in a worker thread only
        self._timeout = timeout
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)

    async def token(self, user: str, scope: str) -> str:
        """A fresh access token for acting as `user` with `scope`; minted when needed."""
        credentials = self._issued.get((user, scope))
        if credentials is None:
            credentials = self._account.with_subject(user).with_scopes([scope])
            self._issued[(user, scope)] = credentials
        if credentials.token_state is not TokenState.FRESH:
            await asyncio.to_thread(self._refresh, credentials, scope)
        return str(credentials.token)

    def _refresh(self, credentials: service_account.Credentials, scope: str) -> None:
        with self._lock:
            if credentials.token_state is TokenState.FRESH:
                return  # another task refreshed it meanwhile
            try:
                credentials.refresh(_HttpxRequest(self._http, self._timeout))
            except google_errors.RefreshError as exc:
                raise self._refused(exc, scope) from None
            except google_errors.TransportError as exc:
                raise ConnectorError(
                    f"{self.system}: the token endpoint could not be reached ({exc})",
                    retryable=True,
                ) from None

    def _refused(self, exc: google_errors.RefreshError, scope: str) -> ConnectorError:
        """The token endpoint's refusal, naming its OAuth error code, never the user."""
        details = exc.args[1] if len(exc.args) > 1 else None
        code = details.get("error") if isinstance(details, dict) else None
        if getattr(exc, "retryable", False):
            return ConnectorError(
                f"{self.system}: the token endpoint failed ({code or 'no error code'}); "
                "google-auth retried it",
                retryable=True,
            )
        return ConnectorError(
            f"{self.system}: credentials rejected by Google's token endpoint "
            f"({code or 'no error code'}) for scope {scope}: check the service account key, "
            "that domain-wide delegation grants its client id this scope in the Admin console, "
            "and that the mailboxes exist"
        )

    def close(self) -> None:
        """Close the token endpoint's connections."""
        self._http.close()


def _rate_limited(response: httpx.Response) -> bool:
    """Whether a 403 is Google's quota answer (`userRateLimitExceeded`, `rateLimitExceeded`)."""
    body = json_body(response)
    errors = body.get("error", {}).get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return False
    return any(isinstance(e, dict) and e.get("reason") in _QUOTA_REASONS for e in errors)


def _as_quota(response: httpx.Response) -> httpx.Response:
    """Google's quota 403 as the 429 it means; any other response as it is."""
    if response.status_code != 403 or not _rate_limited(response):
        return response
    return httpx.Response(
        429, headers=response.headers, content=response.content, request=response._request
    )


# ----------------------------------------------------------------------------- batches


def batch_body(boundary: str, calls: Sequence[str]) -> bytes:
    """A batch request's `multipart/mixed` body: one `application/http` part per call (its
    request line without the version, e.g. `GET /gmail/v1/users/x/messages/1`), Content-ID
    `<n>` its index. Calls must be ASCII without line breaks (paths quoted)."""
    if any(not c.isascii() or "\r" in c or "\n" in c for c in calls):
        raise ValueError("a batched call must be one ASCII line")
    parts = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{n}>\r\n\r\n"
        f"{call} HTTP/1.1\r\n\r\n"
        for n, call in enumerate(calls)
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode("ascii")


def batch_answers(content_type: str, body: bytes) -> dict[str, httpx.Response]:
    """The HTTP responses in a batch's `multipart/mixed` answer, by the Content-ID of the call
    each answers (`<response-n>` answers `<n>`). ValueError when it is not such an answer."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    batch = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not batch.is_multipart() or batch.get_content_subtype() != "mixed":
        raise ValueError("not a multipart/mixed answer")
    answers: dict[str, httpx.Response] = {}
    for part in batch.iter_parts():
        content_id = str(part.get("Content-ID", "")).strip().strip("<>")
        payload = part.get_payload(decode=True)
        if not content_id.startswith("response-") or not isinstance(payload, bytes):
            raise ValueError("a part is not a call's HTTP response")
        status_line, _, rest = payload.partition(b"\n")
        fields = status_line.split()
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
            raise ValueError("a part has no HTTP status line")
        inner = BytesParser(policy=policy.HTTP).parsebytes(rest)
        headers = [
            (name, str(value))
            for name, value in inner.items()
            if name.lower() not in ("content-length", "transfer-encoding")
        ]
        content = inner.get_payload(decode=True)
        answers[content_id.removeprefix("response-")] = httpx.Response(
            int(fields[1]), headers=headers, content=content if isinstance(content, bytes) else b""
        )
    return answers


class _GoogleTransport(httpx.AsyncBaseTransport):
    """Signs each request as the user it acts for (the `ACTING` extension's, or `acting`'s
    answer), and shows Google's quota 403 as the 429 it means, so `HttpClient`'s one retry
    policy (backoff, `Retry-After`) waits it out."""

    def __init__(
        self, tokens: DelegatedTokens, acting: Callable[[httpx.Request], tuple[str, str]]
    ) -> None:
        self._tokens = tokens
        self._acting = acting
        # Connection pools belong to the event loop that opened them.
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport
        ] = weakref.WeakKeyDictionary()

    def _pool(self) -> httpx.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = httpx.AsyncHTTPTransport()
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` with the acting user's token."""
        acting = request.extensions.get(ACTING)
        user, scope = acting if acting is not None else self._acting(request)
        request.headers["Authorization"] = f"Bearer {await self._tokens.token(user, scope)}"
        response = await self._pool().handle_async_request(request)
        if response.status_code != 403:
            return response
        await response.aread()
        return _as_quota(response)

    async def aclose(self) -> None:
        """Close this event loop's connections."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()


# ---------------------------------------------------------------------------- messages


def search_query(emails: Iterable[str]) -> str:
    """Gmail search for messages from, to, cc or bcc any of `emails`, each quoted; an address
    with a quote, backslash or space cannot be quoted safely and is left out."""
    terms = [
        f'{field}:"{email}"'
        for email in emails
        if email and not any(c in email for c in '"\\ \t\r\n')
        for field in _PARTICIPANTS
    ]
    return " OR ".join(terms)


def pseudonym(mailbox: str) -> str:
    """How evidence names a mailbox: `sha256:` + the first 12 hex digits of its address."""
    return "sha256:" + hashlib.sha256(mailbox.strip().lower().encode()).hexdigest()[:12]


def participants(raw: bytes) -> dict[str, list[str]]:
    """The addresses in a message's From, To, Cc and Bcc headers, lower-case."""
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    return {
        field: [a.lower() for _, a in getaddresses(headers.get_all(field, [])) if a]
        for field in _PARTICIPANTS
    }


def _header_block(message: dict[str, Any]) -> bytes:
    """A `format=metadata` message's headers as the header block of an RFC 822 message."""
    headers = (message.get("payload") or {}).get("headers") or []
    lines = [
        f"{h['name']}: {' '.join(h['value'].splitlines())}\r\n"  # no line may add a header
        for h in headers
        if isinstance(h, dict)
        and isinstance(h.get("name"), str)
        and isinstance(h.get("value"), str)
    ]
    return ("".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def _involves(people: dict[str, list[str]], mine: set[str]) -> bool:
    return any(a in mine for addresses in people.values() for a in addresses)


def _suspended(user: dict[str, Any]) -> bool:
    return bool(user.get("suspended") or user.get("archived"))


def _subject_line(raw: bytes) -> str:
    headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    return str(headers.get("Subject", ""))


def _date(message: dict[str, Any]) -> str | None:
    millis = str(message.get("internalDate") or "")
    if not millis.isdigit():
        return None
    return datetime.fromtimestamp(int(millis) / 1000, UTC).isoformat()


def message_record(mailbox: str, message: dict[str, Any], mine: set[str]) -> Record | None:
    """The record of one `format=raw` message, or None when no participant is the subject
    (`mine`: the subject's addresses, lower-case) exactly: Gmail's search is not exact."""
    raw = base64.urlsafe_b64decode(str(message.get("raw", "")) + "==")
    people = participants(raw)
    if not _involves(people, mine):
        return None
    sent_by_subject = any(a in mine for a in people["from"])
    data: dict[str, Any] = {
        "mailbox": mailbox,
        "id": message.get("id"),
        "threadId": message.get("threadId"),
        "labelIds": message.get("labelIds", []),
        "date": _date(message),
        "subject": _subject_line(raw),
        **people,
        "sent_by_subject": sent_by_subject,
        "sizeEstimate": message.get("sizeEstimate"),
        "eml": base64.b64encode(raw).decode("ascii"),
    }
    others = [
        pointer(field, i)
        for field in _PARTICIPANTS
        for i, address in enumerate(people[field])
        if address not in mine
    ]
    if mailbox.lower() not in mine:
        others.append(pointer("mailbox"))
    if others:
        others.append(pointer("eml"))  # it names them, and may quote what they wrote
    if not sent_by_subject:
        others.append(pointer("subject"))
    return Record(collection="messages", data=data, others=others)


class GmailConnector(Connector[GmailSettings]):
    """Gmail in a Google Workspace domain: the subject's e-mails, exported as .eml; deletion."""

    capabilities = RECORD_RIGHTS
    description = "Google Workspace Gmail: e-mails from/to/cc the subject in every mailbox"

    def __init__(self, system: str, settings: Any = None) -> None:
        super().__init__(system, settings)
        s = self.settings
        self.tokens = DelegatedTokens(system, _key(system, s), s.timeout_seconds)
        full = {"DELETE", "POST"}  # batchDelete is a POST; nothing else writes

        def mailbox_owner(request: httpx.Request) -> tuple[str, str]:
            parts = request.url.path.split("/")
            user = parts[parts.index("users") + 1]  # /gmail/v1/users/{user}/...
            return user, FULL_SCOPE if request.method in full else s.access_scope

        def administrator(request: httpx.Request) -> tuple[str, str]:
            return s.admin or "", DIRECTORY_SCOPE

        # One system name: both share the system's limiter, as its configured rate promises.
        self.gmail = self._client(s.gmail_url, _GoogleTransport(self.tokens, mailbox_owner))
        self.directory = self._client(s.directory_url, _GoogleTransport(self.tokens, administrator))

    def _client(self, url: str, transport: _GoogleTransport) -> HttpClient:
        s = self.settings
        return HttpClient(
            self.system,
            url,
            limits=s.rate_limit,
            retry=s.retry,
            timeout=s.timeout_seconds,
            transport=transport,
        )

    async def mailboxes(self) -> tuple[list[str], int]:
        """The mailboxes to search, and how many suspended users the Directory left out."""
        if self.settings.mailboxes is not None:
            return list(self.settings.mailboxes), 0
        users = await self.directory.all_records(
            "GET",
            "/admin/directory/v1/users",
            params={"customer": self.settings.customer},
            paging=CursorPaging(
                cursor_path="nextPageToken",
                cursor_param="pageToken",
                limit_param="maxResults",
                page_size=_PAGE,
            ),
            records_path="users",
        )
        usable = [u for u in users if u.get("primaryEmail")]
        active = [str(u["primaryEmail"]) for u in usable if not _suspended(u)]
        return active, len(usable) - len(active)

    async def _listed(self, mailbox: str, query: str) -> list[str]:
        """The ids of every message in `mailbox` Gmail finds for `query`, spam and trash too."""
        found = await self.gmail.all_records(
            "GET",
            _MESSAGES,
            path_params={"user": mailbox, "q": query},
            params={"q": "{q}", "includeSpamTrash": "true"},
            paging=CursorPaging(
                cursor_path="nextPageToken",
                cursor_param="pageToken",
                limit_param="maxResults",
                page_size=_PAGE,
            ),
            records_path="messages",
        )
        return list(dict.fromkeys(str(m["id"]) for m in found))

    async def _message(
        self, mailbox: str, message_id: str, headers_only: bool = False
    ) -> dict[str, Any] | None:
        """One message, `format=raw` (or only its participant headers); None when it went
        meanwhile (404)."""
        params: dict[str, Any] = {"format": "raw"}
        if headers_only:
            params = {"format": "metadata", "metadataHeaders": ["From", "To", "Cc", "Bcc"]}
        response = await self.gmail.request(
            "GET",
            _MESSAGES + "/{id}",
            path_params={"user": mailbox, "id": message_id},
            params=params,
            expected=(200, 404),
        )
        body = json_body(response)
        return body if response.status_code == 200 and isinstance(body, dict) else None

    def _batch_calls(self) -> int:
        """Calls per batch: the setting, at most the rate limit's requests a window (a batch
        counts as its calls); 1: no batches."""
        s = self.settings
        return min(s.batch_calls, s.rate_limit.requests or s.batch_calls)

    async def _fetched(
        self, mailbox: str, query: str, headers_only: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """The messages Gmail finds in one mailbox, fetched a batch (or a chunk) at a time."""
        ids = await self._listed(mailbox, query)
        batch = self._batch_calls()
        size = batch if batch > 1 else _FETCH_CHUNK
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            if batch > 1:
                found = await self._batched(mailbox, chunk, headers_only)
            else:
                calls = (self._message(mailbox, i, headers_only) for i in chunk)
                found = await asyncio.gather(*calls)
            for message in found:
                if message is not None:
                    yield message

    async def _batched(
        self, mailbox: str, ids: Sequence[str], headers_only: bool
    ) -> list[dict[str, Any] | None]:
        """Messages `ids` of `mailbox` by one batch request (None: gone); the calls Google
        refused for quota or a 5xx go again in a batch of their own, after the client's
        backoff: never the ones already answered."""
        found: dict[str, dict[str, Any] | None] = {}
        async for attempt in self.gmail.retrying():
            with attempt:
                left = [i for i in ids if i not in found]
                await self._batch_once(mailbox, left, headers_only, found)
        return [found.get(i) for i in ids]

    async def _batch_once(
        self,
        mailbox: str,
        ids: Sequence[str],
        headers_only: bool,
        found: dict[str, dict[str, Any] | None],
    ) -> None:
        """One batch of `messages.get`: each message answered goes into `found` (None: 404,
        gone); then a retryable `HttpError` if Google refused some, a fatal one at once if
        it refused any for good."""
        params: dict[str, Any] = {"format": "raw"}
        if headers_only:
            params = {"format": "metadata", "metadataHeaders": ["From", "To", "Cc", "Bcc"]}
        path = f"/gmail/v1/users/{quote(mailbox, safe='@')}/messages/"
        query = urlencode(params, doseq=True)
        calls = [f"GET {path}{quote(i, safe='')}?{query}" for i in ids]
        boundary = "batch_" + secrets.token_hex(16)
        response = await self.gmail.request(
            "POST",
            _BATCH,
            content=batch_body(boundary, calls),
            content_type=f"multipart/mixed; boundary={boundary}",
            cost=len(calls),
            extensions={ACTING: (mailbox, self.settings.access_scope)},
        )
        try:
            answers = batch_answers(response.headers.get("Content-Type", ""), response.content)
        except ValueError as exc:
            raise HttpError(
                f"{self.system}: POST {_BATCH}: the answer is not a batch's ({exc})",
                retryable=True,
            ) from None
        refused: list[HttpError] = []
        for n, message_id in enumerate(ids):
            answer = answers.get(str(n))
            failure = self._inner_failure(answer)
            if failure is None and answer is not None:
                body = json_body(answer)
                ok = answer.status_code == 200 and isinstance(body, dict)
                found[message_id] = body if ok else None
            elif failure is not None and failure.retryable:
                refused.append(failure)
            elif failure is not None:
                raise failure
        if refused:
            raise self._refused(refused, len(ids))

    def _inner_failure(self, answer: httpx.Response | None) -> HttpError | None:
        """What one call's answer in a batch means, as `classify` judges a single call."""
        template = f"{_MESSAGES}/{{id}} in a batch"
        if answer is None:
            return HttpError(f"{self.system}: GET {template}: no answer", retryable=True)
        return classify(
            self.system, "GET", template, response=_as_quota(answer), expected=(200, 404)
        )

    def _refused(self, refused: list[HttpError], sent: int) -> HttpError:
        """One retryable error for the calls Google refused: it waits the longest
        `Retry-After` among them, and holds back every task of the system as long."""
        waits = [f.retry_after for f in refused if f.retry_after is not None]
        wait = max(waits) if waits else None
        if wait:
            limiter = limiter_for(self.gmail.system, self.gmail.limits)
            limiter.pause_until(time.monotonic() + min(wait, self.gmail.retry.max_wait_seconds))
        statuses = "/".join(sorted({str(f.status) for f in refused if f.status is not None}))
        return HttpError(
            f"{self.system}: POST {_BATCH}: {len(refused)} of {sent} call(s) refused "
            f"({statuses or 'no answer'}); sending them again",
            status=429 if "429" in statuses else None,
            retryable=True,
            retry_after=wait,
        )

    async def _records(self, mailbox: str, query: str, mine: set[str]) -> AsyncIterator[Record]:
        """The subject's messages in one mailbox, as records."""
        async for message in self._fetched(mailbox, query):
            record = message_record(mailbox, message, mine)
            if record is not None:
                yield record

    async def _messages(self, subject: Subject) -> AsyncIterator[Record]:
        mine = {e.strip().lower() for e in subject.values("email")}
        query = search_query(mine)
        if not query:
            return
        mailboxes, _ = await self.mailboxes()
        for mailbox in mailboxes:
            async for record in self._records(mailbox, query, mine):
                yield record

    async def access(self, subject: Subject) -> Result:
        """Every message from, to, cc or bcc the subject, in every mailbox (Art. 15)."""
        return Result.found([record async for record in self._messages(subject)])

    async def export_into(self, subject: Subject, sink: RecordSink, *, portability: bool) -> Result:
        """Access or portability, each message written into `sink` as soon as it is read."""
        found = 0
        async for record in self._messages(subject):
            sink.write(record)
            found += 1
        return Result.completed(Counts(found=found)) if found else Result.not_found()

    async def _delete(self, mailbox: str, ids: Sequence[str]) -> None:
        """Delete `ids` permanently: batchDelete in chunks, or one by one (a 404 is gone)."""
        if self.settings.batch_delete:
            size = self.settings.batch_size
            for start in range(0, len(ids), size):
                await self.gmail.request(
                    "POST",
                    _MESSAGES + "/batchDelete",
                    path_params={"user": mailbox},
                    json={"ids": list(ids[start : start + size])},
                    expected=(200, 204),
                )
            return
        await asyncio.gather(
            *(
                self.gmail.request(
                    "DELETE",
                    _MESSAGES + "/{id}",
                    path_params={"user": mailbox, "id": i},
                    expected=(200, 204, 404),
                )
                for i in ids
            )
        )

    async def _erase_mailbox(self, mailbox: str, query: str, mine: set[str]) -> int:
        """Delete the subject's messages in one mailbox; a search afterwards must find none."""
        ids = [
            str(message["id"])
            async for message in self._fetched(mailbox, query, headers_only=True)
            if _involves(participants(_header_block(message)), mine)
        ]
        if not ids:
            return 0
        await self._delete(mailbox, ids)
        left = set(ids) & set(await self._listed(mailbox, query))
        if left:
            raise ConnectorError(
                f"{self.system}: {len(left)} deleted message(s) are still listed in mailbox "
                f"{pseudonym(mailbox)}; the next attempt deletes them again",
                retryable=True,
            )
        return len(ids)

    async def erase(self, subject: Subject) -> Result:
        """Delete every message from, to, cc or bcc the subject permanently (Art. 17)."""
        mine = {e.strip().lower() for e in subject.values("email")}
        query = search_query(mine)
        if not query:
            return Result.not_found(reason="the subject has no e-mail address to search for")
        mailboxes, suspended = await self.mailboxes()
        per_mailbox: dict[str, int] = {}
        for mailbox in mailboxes:
            deleted = await self._erase_mailbox(mailbox, query, mine)
            if deleted:
                per_mailbox[pseudonym(mailbox)] = deleted
        if not per_mailbox:
            return Result.not_found()
        return erased({"messages": sum(per_mailbox.values())}, _evidence(per_mailbox, suspended))

    async def aclose(self) -> None:
        """Close the HTTP clients and the token endpoint's connections."""
        await self.gmail.aclose()
        await self.directory.aclose()
        self.tokens.close()


def _evidence(per_mailbox: dict[str, int], suspended: int) -> list[Evidence]:
    items = [
        Evidence(kind="mailbox_messages_deleted", value=f"{name}: {count}")
        for name, count in sorted(per_mailbox.items())
    ]
    items.append(
        Evidence(
            kind="vendor_note",
            value="Gmail messages.batchDelete/messages.delete: permanent and immediate, not "
            "moved to Trash; a search after deleting found none of them. Messages others sent "
            "to the subject or shared with others were deleted too: others' rights limit a copy "
            "(Art. 15(4) GDPR), not erasure (Art. 17(3)).",
        )
    )
    if suspended:
        items.append(
            Evidence(
                kind="vendor_note",
                value=f"{suspended} suspended or archived user(s) not searched: search their "
                "mail with Google Vault",
            )
        )
    return items


def _key(system: str, settings: GmailSettings) -> dict[str, Any]:
    """The service account key, from the setting's text or its file; errors name the setting."""
    field = "service_account_key"
    try:
        if settings.service_account_key_file is not None:
            field = "service_account_key_file"
            text = settings.service_account_key_file.read_text(encoding="utf-8")
        else:
            text = settings.service_account_key or ""
        key = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConnectorConfigError(
            f"settings of system {system!r} are invalid: {field}: cannot read a JSON key "
            f"({type(exc).__name__})"
        ) from None
    if not isinstance(key, dict) or key.get("type") != "service_account":
        raise ConnectorConfigError(
            f"settings of system {system!r} are invalid: {field}: not a service account key "
            '(its "type" must be "service_account")'
        )
    return key


__all__ = [
    "BATCH_LIMIT",
    "DIRECTORY_SCOPE",
    "FULL_SCOPE",
    "READONLY_SCOPE",
    "DelegatedTokens",
    "GmailConnector",
    "GmailSettings",
    "message_record",
    "participants",
    "pseudonym",
    "search_query",
]
