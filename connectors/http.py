"""One HTTP layer for every REST connector: auth, rate limits, retries, paging, errors.

A connector says *what* to call (`client.request("GET", "/contacts/{id}", path_params=...)`)
and this module owns *how*: the auth header, a client-side limiter shared by every task of the
system, retries with backoff that honour `Retry-After` and rate-limit reset headers, the
paging strategies vendors use, and one place (`classify`) that turns a response into success,
a retryable failure or a fatal one.

Personal data in URLs. Like the Singer SDK warns for its REST streams: a URL can carry personal
data (`/contacts?email=anna@example.nl`, `/contacts/anna%40example.nl`), and so can a vendor's
error body. This layer keeps both out of logs and exception messages:

- callers pass *templates* (`/contacts?email={email}` as path + params) and the subject's
  values separately; the rendered URL is only ever handed to httpx, while log lines and
  `HttpError` messages name the system, the method, the template and the status;
- response bodies never reach a message (vendors echo the address they did not find);
- httpx and httpcore log every request URL (INFO / DEBUG); their records are dropped while
  this client is sending (`_QuietWhileSending`), and the client logs its own line instead;
- transport exceptions are re-raised without their text and with `from None`, so a traceback
  printed later cannot quote the URL either.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import email.utils
import logging
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC
from functools import cache
from string import Formatter
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_fixed,
    wait_random,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from connectors.base import ConnectorError

log = logging.getLogger(__name__)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------- auth


class Auth(_Config):
    """How requests authenticate; secrets are kept out of `repr`."""

    type: Literal["none", "bearer", "basic", "api_key", "key_as_basic_user"] = "none"
    token: str | None = Field(default=None, repr=False, description="bearer")
    username: str | None = Field(default=None, description="basic")
    password: str | None = Field(
        default=None,
        repr=False,
        description="basic; key_as_basic_user (defaults to 'X', Freshdesk style)",
    )
    key: str | None = Field(default=None, repr=False, description="api_key, key_as_basic_user")
    header: str = Field(default="Authorization", description="api_key: the header to send")
    prefix: str = Field(default="", description="api_key: e.g. 'AccessKey ' (MessageBird)")

    @model_validator(mode="after")
    def _needs(self) -> Auth:
        required = {
            "none": (),
            "bearer": ("token",),
            "basic": ("username", "password"),
            "api_key": ("key",),
            "key_as_basic_user": ("key",),
        }[self.type]
        missing = [name for name in required if not getattr(self, name)]
        if missing:
            raise ValueError(f"auth type {self.type!r} needs {', '.join(missing)}")
        return self

    def headers(self) -> dict[str, str]:
        """The headers to send with every request."""
        match self.type:
            case "bearer":
                return {"Authorization": f"Bearer {self.token}"}
            case "basic":
                return {"Authorization": _basic(self.username or "", self.password or "")}
            case "api_key":
                return {self.header: f"{self.prefix}{self.key}"}
            case "key_as_basic_user":
                return {"Authorization": _basic(self.key or "", self.password or "X")}
        return {}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# ------------------------------------------------------------------------- limits and retries


class RateLimit(_Config):
    """Client-side limit per system: `requests` per `per_seconds`, and `concurrency` at once."""

    requests: Annotated[int, Field(ge=1)] | None = None
    per_seconds: Annotated[float, Field(gt=0)] = 1.0
    concurrency: Annotated[int, Field(ge=1)] | None = None


class RetryPolicy(_Config):
    """Retries of connection errors, timeouts, 5xx and 429, with capped exponential backoff."""

    attempts: Annotated[int, Field(ge=1)] = 5
    backoff_seconds: Annotated[float, Field(ge=0)] = 0.5
    max_backoff_seconds: Annotated[float, Field(ge=0)] = 30.0
    max_wait_seconds: Annotated[float, Field(ge=0)] = Field(
        default=60.0, description="Cap on any single wait, also one a server asks for."
    )


#: Requests reach the vendor a little later than we send them, and not evenly: keep a margin
#: so the vendor's own sliding window never sees more than the configured rate.
_WINDOW_MARGIN_SECONDS = 0.05


class RateLimiter:
    """A sliding-window rate limit plus a concurrency cap, shared by all tasks of one system.

    The window is process-wide (the vendor counts per account, whatever loop we run on);
    the concurrency cap is per event loop, as asyncio semaphores cannot span loops.
    """

    def __init__(self, limit: RateLimit, sent: deque[float] | None = None) -> None:
        self.limit = limit
        self._sent: deque[float] = sent if sent is not None else deque()
        self._lock = threading.Lock()  # guards the window; never held across an await
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._paused_until = 0.0

    def pause_until(self, monotonic_time: float) -> None:
        """Hold every task of the system back, e.g. after a 429 asked us to wait."""
        with self._lock:
            self._paused_until = max(self._paused_until, monotonic_time)

    def hold_window(self, since: float) -> None:
        """Count the window up to `since` (monotonic) as fully used: no call before one whole
        window has passed since then. Only a rate limit has a window to hold."""
        if self.limit.requests is not None:
            self.pause_until(since + self.limit.per_seconds + _WINDOW_MARGIN_SECONDS)

    @asynccontextmanager
    async def slot(self, cost: int = 1) -> AsyncIterator[None]:
        """Wait for a free concurrency slot and a turn in the window; hold the slot inside.
        `cost`: how many of the window's requests this one uses (a vendor's batch of calls
        counts each), at most the whole window."""
        slots = None
        if self.limit.concurrency:
            loop = asyncio.get_running_loop()
            with self._lock:
                slots = self._slots.setdefault(loop, asyncio.Semaphore(self.limit.concurrency))
            await slots.acquire()
        try:
            await self._wait_turn(cost)
            yield
        finally:
            if slots is not None:
                slots.release()

    async def _wait_turn(self, cost: int = 1) -> None:
        window = self.limit.per_seconds + _WINDOW_MARGIN_SECONDS
        if self.limit.requests is not None:
            cost = max(1, min(cost, self.limit.requests))  # more could never have a turn
        while True:
            with self._lock:
                now = time.monotonic()
                if now < self._paused_until:
                    delay = self._paused_until - now
                else:
                    while self._sent and now - self._sent[0] >= window:
                        self._sent.popleft()
                    if self.limit.requests is None or len(self._sent) + cost <= self.limit.requests:
                        self._sent.extend([now] * cost)
                        return
                    delay = self._sent[0] + window - now
            await asyncio.sleep(delay)


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()
#: When this process took each system over from another (`take_over`), monotonic time.
_taken_over: dict[str, float] = {}


def limiter_for(system: str, limit: RateLimit) -> RateLimiter:
    """The process-wide limiter of `system`; a changed `limit` replaces it, keeping history."""
    with _limiters_lock:
        current = _limiters.get(system)
        if current is None or current.limit != limit:
            sent = deque(current._sent) if current is not None else None
            current = _limiters[system] = RateLimiter(limit, sent)
            if system in _taken_over:
                current.hold_window(_taken_over[system])
        return current


def take_over(system: str, since: float | None = None) -> None:
    """From `since` (monotonic; default now) this process alone calls `system`: its tasks'
    partition was just assigned here. The previous owner may have used the whole last window,
    and its calls are not in our history, so the first call waits one window (the limiter may
    not exist yet: the limit it holds is the connector's, known at its first request).

    See docs/vendor-budget.md for why the old and new owner together stay within the limit.
    """
    since = time.monotonic() if since is None else since
    with _limiters_lock:
        _taken_over[system] = since
        current = _limiters.get(system)
    if current is not None:
        current.hold_window(since)


# --------------------------------------------------------------------------------- errors


class HttpError(ConnectorError):
    """A failed HTTP call; the message names system, method, path template and status only."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after = retry_after


def classify(
    system: str,
    method: str,
    template: str,
    *,
    response: httpx.Response | None = None,
    error: Exception | None = None,
    expected: Collection[int] = (200,),
) -> HttpError | None:
    """Decide once what a response or transport error means: None (fine) or an HttpError."""
    where = f"{system}: {method} {template}"
    if error is not None:
        kind = "timed out" if isinstance(error, httpx.TimeoutException) else "connection failed"
        return HttpError(f"{where}: {kind} ({type(error).__name__})", retryable=True)
    assert response is not None
    status = response.status_code
    if status in expected:
        return None
    if status in (401, 403):
        return HttpError(
            f"{where}: credentials rejected ({status}): "
            f"check the API key/token for system {system!r}",
            status=status,
        )
    if status == 429:
        return HttpError(
            f"{where} -> 429 rate limited",
            status=status,
            retryable=True,
            retry_after=server_wait(response),
        )
    if status >= 500:
        wait = server_wait(response) if status == 503 else None
        return HttpError(
            f"{where} -> {status} server error", status=status, retryable=True, retry_after=wait
        )
    expected_text = "/".join(str(s) for s in sorted(expected))
    return HttpError(f"{where} -> {status} (expected {expected_text})", status=status)


_RESET_HEADERS = ("X-RateLimit-Reset", "RateLimit-Reset", "X-Rate-Limit-Reset")
#: Reset values above this are points in time (epoch seconds), below it durations: no vendor
#: asks for a wait of 30 years, and no clock reads earlier than 1973.
_EPOCH_THRESHOLD = 1e8


def server_wait(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait (`Retry-After`, then reset headers), or None."""
    now = time.time() if now is None else now
    value = response.headers.get("Retry-After")
    if value is not None:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, when.timestamp() - now)
    if response.status_code != 429:
        return None  # reset headers come on every response; they only matter once limited
    for name in _RESET_HEADERS:
        raw = response.headers.get(name)
        if raw is None:
            continue
        try:
            number = float(raw.strip())
        except ValueError:
            continue
        if number > _EPOCH_THRESHOLD * 1000:  # epoch milliseconds
            number = number / 1000 - now
        elif number > _EPOCH_THRESHOLD:
            number -= now
        return max(0.0, number)
    return None


class _WaitForServer(wait_base):
    """Exponential backoff with jitter, unless the server said how long; capped either way."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._max = policy.max_wait_seconds
        # Jitter spreads the retries of tasks that failed together (one outage, many tasks).
        self._backoff = wait_exponential(
            multiplier=policy.backoff_seconds, max=policy.max_backoff_seconds
        ) + wait_random(0, policy.backoff_seconds)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, HttpError) and error.retry_after is not None:
            return min(error.retry_after, self._max)
        return min(self._backoff(retry_state), self._max)


# ----------------------------------------------------------------------- templates, logging


class TemplateError(ConnectorError):
    """A template names a value that is not there; a configuration error, not retryable."""


def render(template: str, values: Mapping[str, Any], *, encode: bool = False) -> str:
    """Fill `{name}` / `{a.b}` placeholders (`{{` is a literal brace); URL-encode if asked."""
    out: list[str] = []
    for literal, name, _spec, _conversion in Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        value = lookup(values, name)
        if value is None:
            raise TemplateError(f"template {template!r} needs a value for {{{name}}}")
        text = str(value)
        out.append(quote(text, safe="") if encode else text)
    return "".join(out)


class PathSegmentError(ConnectorError):
    """A filled-in path has a `.` or `..` segment: refused, as it would address another
    resource. Bad input, not retryable; the message never quotes the value."""


#: The dot-segments of RFC 3986, section 3.3: clients and servers resolve them (section 5.2.4,
#: remove_dot_segments), so `/contacts/{id}/notes` with `..` as the id would call `/notes`.
_DOT_SEGMENTS = frozenset({".", ".."})


def render_path(template: str, values: Mapping[str, Any], *, where: str = "") -> str:
    """The path `template` with its placeholders filled in, each value percent-encoded.

    Every value is encoded as a whole (RFC 3986, section 2.1; only the unreserved characters
    stay), so a `/`, `?` or `#` in it cannot split a segment or end the path. A `.` or `..`
    segment after substitution is refused with a `PathSegmentError`: httpx and the vendor's
    server would resolve it (section 5.2.4) and call another resource. Percent-encoded dots
    count too: `%2E` is equivalent to `.` (section 2.3). The message names the call (`where`,
    e.g. `crm: DELETE`) and the template, never the value.
    """
    path = render(template, values, encode=True)
    segments = path.split("?", 1)[0].split("/")
    if any(unquote(segment) in _DOT_SEGMENTS for segment in segments):
        call = f"{where} {template}" if where else template
        raise PathSegmentError(
            f"{call}: refused: a value filled into the path makes a '.' or '..' segment, "
            "which would address another resource; check the request's identifiers and the "
            "ids the vendor returned"
        )
    return path


def render_value(value: Any, values: Mapping[str, Any]) -> Any:
    """Render templates inside JSON-like data; a string that is one placeholder keeps the type."""
    if isinstance(value, str):
        parts = list(Formatter().parse(value))
        if len(parts) == 1 and parts[0][0] == "" and parts[0][1]:
            found = lookup(values, parts[0][1])
            if found is None:
                raise TemplateError(f"template {value!r} needs a value for {{{parts[0][1]}}}")
            return found
        return render(value, values)
    if isinstance(value, Mapping):
        return {k: render_value(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, values) for v in value]
    return value


def placeholders(value: Any) -> set[str]:
    """Every placeholder name used in a template or in JSON-like data holding templates."""
    if isinstance(value, str):
        return {name for _, name, _, _ in Formatter().parse(value) if name}
    if isinstance(value, Mapping):
        return set().union(*(placeholders(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value))
    return set()


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path (`paging.next.after`, list indexes allowed), or None."""
    if path == "":
        return data
    for part in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _assign(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with `value` set at the dotted `path` (for cursors sent in a body)."""
    head, _, rest = path.partition(".")
    copy = dict(data)
    if rest:
        inner = copy.get(head)
        copy[head] = _assign(inner if isinstance(inner, dict) else {}, rest, value)
    else:
        copy[head] = value
    return copy


def describe(template: str, params: Mapping[str, Any] | None) -> str:
    """The path template with its query templates, e.g. `/contacts?email={email}`."""
    if not params:
        return template
    return template + "?" + "&".join(f"{k}={v}" for k, v in params.items())


_sending: contextvars.ContextVar[bool] = contextvars.ContextVar("dsr_http_sending", default=False)


class _QuietWhileSending(logging.Filter):
    """Drop httpx/httpcore records made while our client sends: they quote the full URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _sending.get()


# Logger filters do not apply to child loggers, so name every logger these libraries use.
_NOISY_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_quiet = _QuietWhileSending()
for _name in _NOISY_LOGGERS:
    logging.getLogger(_name).addFilter(_quiet)


# -------------------------------------------------------------------------------- paging


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One request of a paged listing: rendered params and body, or a next-page URL."""

    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    url: str | None = None  # absolute, given by the vendor (Link header, links.next)
    content: bytes | None = None  # a raw body instead of `json` (e.g. a vendor's multipart batch)
    content_type: str | None = None  # the raw body's Content-Type


@dataclass(frozen=True, slots=True)
class Page:
    """One page: the response, its JSON body and the records found in it."""

    response: httpx.Response
    body: Any
    records: list[Any]


class _ParamPaging(_Config):
    send_in: Literal["query", "body"] = Field(
        default="query", description="Where paging parameters go; body paths may be dotted."
    )

    def _set(self, request: PageRequest, **values: Any) -> PageRequest:
        if self.send_in == "query":
            return replace(request, params={**request.params, **values})
        body = request.json if isinstance(request.json, dict) else {}
        for path, value in values.items():
            body = _assign(body, path, value)
        return replace(request, json=body)


class NoPaging(_Config):
    """A single response holds everything."""

    type: Literal["none"] = "none"

    def first(self, request: PageRequest) -> PageRequest:
        """The first request."""
        return request

    def next(self, page: Page, request: PageRequest) -> PageRequest | None:
        """No next page."""
        return None


class CursorPaging(_ParamPaging):
    """A cursor in the body, sent back as a parameter (HubSpot `paging.next.after` -> `after`)."""

    type: Literal["cursor"] = "cursor"
    cursor_path: str = Field(description="Dotted path of the next cursor in the response body.")
    cursor_param: str = Field(description="Parameter (or dotted body path) that sends it back.")
    has_more_path: str | None = Field(default=None, description="Stop when this is false.")
    limit_param: str | None = None
    page_size: Annotated[int, Field(ge=1)] | None = None

    def first(self, request: PageRequest) -> PageRequest:
        """The first request, with the page size if configured."""
        if self.limit_param and self.page_size:
            return self._set(request, **{self.limit_param: self.page_size})
        return request

    def next(self, page: Page, request: PageRequest) -> PageRequest | None:
        """The request for the cursor in this page, or None at the end."""
        if self.has_more_path and lookup(page.body, self.has_more_path) is False:
            return None
        cursor = lookup(page.body, self.cursor_path)
        if cursor in (None, "") or not page.records:
            return None
        return self._set(request, **{self.cursor_param: cursor})


class OffsetPaging(_ParamPaging):
    """`limit` + `offset`; stops at `total` or on a short page (ActiveCampaign, Mailchimp)."""

    type: Literal["offset"] = "offset"
    limit_param: str = "limit"
    offset_param: str = "offset"
    page_size: Annotated[int, Field(ge=1)] = 100
    total_path: str | None = Field(default=None, description="e.g. meta.total")

    def first(self, request: PageRequest) -> PageRequest:
        """The first page."""
        return self._set(request, **{self.limit_param: self.page_size, self.offset_param: 0})

    def next(self, page: Page, request: PageRequest) -> PageRequest | None:
        """The next page, or None after a short page or past the total."""
        if len(page.records) < self.page_size:
            return None
        current = request.params if self.send_in == "query" else request.json or {}
        offset = int(lookup(current, self.offset_param) or 0) + self.page_size
        total = lookup(page.body, self.total_path) if self.total_path else None
        if isinstance(total, int) and offset >= total:
            return None
        return self._set(request, **{self.offset_param: offset})


class PageNumberPaging(_ParamPaging):
    """`page` (+ `per_page`); stops on a short or empty page (Freshdesk)."""

    type: Literal["page"] = "page"
    page_param: str = "page"
    size_param: str | None = "per_page"
    page_size: Annotated[int, Field(ge=1)] = 100
    first_page: int = 1
    follow_link: bool = Field(
        default=False,
        description='Also go on after a short page that has a Link rel="next" header (where '
        "the vendor's page size is not documented); an empty page always ends the listing.",
    )
    last_page: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="The last page the vendor answers (a capped search API)."
    )

    def first(self, request: PageRequest) -> PageRequest:
        """The first page."""
        values: dict[str, Any] = {self.page_param: self.first_page}
        if self.size_param:
            values[self.size_param] = self.page_size
        return self._set(request, **values)

    def next(self, page: Page, request: PageRequest) -> PageRequest | None:
        """The next page number, or None after a short page (without a next link, when
        followed) or the last page."""
        linked = self.follow_link and bool(page.response.links.get("next", {}).get("url"))
        if not page.records or (len(page.records) < self.page_size and not linked):
            return None
        current = request.params if self.send_in == "query" else request.json or {}
        number = int(lookup(current, self.page_param) or self.first_page) + 1
        if self.last_page is not None and number > self.last_page:
            return None
        return self._set(request, **{self.page_param: number})


class LinkHeaderPaging(_Config):
    """The next page's URL in a `Link: <...>; rel="next"` header (RFC 8288)."""

    type: Literal["link_header"] = "link_header"

    def first(self, request: PageRequest) -> PageRequest:
        """The first request, as given."""
        return request

    def next(self, page: Page, request: PageRequest) -> PageRequest | None:
        """The `rel="next"` URL, or None."""
        url = page.response.links.get("next", {}).get("url")
        return PageRequest(url=url, json=request.json) if url and page.records else None


class NextUrlPaging(_Config):
    """The next page's URL in the body (Zendesk `links.next` with `meta.has_more`)."""

    type: Literal["next_url"] = "next_url"
    next_path: str = "links.next"
    has_more_path: str | None = None

    def first(self, request: PageRequest) -> PageRequest:
        """The first request, as given."""
        return request

    def next(self, page: Page, request: PageRequest) -> PageRequest | None:
        """The URL at `next_path`, unless `has_more_path` says there is no more."""
        if self.has_more_path and lookup(page.body, self.has_more_path) is False:
            return None
        url = lookup(page.body, self.next_path)
        if not isinstance(url, str) or not url or not page.records:
            return None
        return PageRequest(url=url, json=request.json)


Paging = Annotated[
    NoPaging | CursorPaging | OffsetPaging | PageNumberPaging | LinkHeaderPaging | NextUrlPaging,
    Field(discriminator="type"),
]


def records_at(body: Any, path: str, source: str = "the response") -> list[Any]:
    """The records at a dotted path: a list, one object, or nothing when absent."""
    found = lookup(body, path)
    if found is None:
        return []
    if isinstance(found, list):
        return found
    if isinstance(found, dict):
        return [found]
    raise ConnectorError(f"{source}: expected a list of records at {path or '(body)'!r}")


# ---------------------------------------------------------------------------- vendor jobs


class JobPolling(_Config):
    """How to wait for a vendor's asynchronous job, e.g. a deletion that finishes later."""

    poll: str = Field(description="Path template of the job's status, with {job_id}.")
    status_path: str = Field(default="status", description="Dotted path of the job's status.")
    done: list[str] = Field(default=["completed"])
    failed: list[str] = Field(default=["failed"])
    interval_seconds: Annotated[float, Field(ge=0)] = 1.0
    timeout_seconds: Annotated[float, Field(gt=0)] | None = Field(
        default=60.0, description="Give up after this long; None: only `attempts` counts."
    )
    attempts: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Give up after this many polls; None: only the timeout counts."
    )

    @model_validator(mode="after")
    def _ends(self) -> JobPolling:
        if self.timeout_seconds is None and self.attempts is None:
            raise ValueError("give timeout_seconds or attempts, or polling never ends")
        return self

    def stop(self) -> stop_base:
        """When polling gives up: the timeout or the number of polls, whichever comes first."""
        stop: stop_base = stop_never
        if self.attempts is not None:
            stop = stop_after_attempt(self.attempts)
        if self.timeout_seconds is not None:
            stop = stop | stop_after_delay(self.timeout_seconds)
        return stop


# -------------------------------------------------------------------------------- client


class HttpClient:
    """The HTTP client of one system: auth, limiter, retries, paging; no personal data logged."""

    def __init__(
        self,
        system: str,
        base_url: str,
        auth: Auth | None = None,
        limits: RateLimit | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 30.0,
        *,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_pages: int = 10_000,
    ) -> None:
        self.system = system
        self.base_url = base_url
        self.auth = auth or Auth()
        self.limits = limits or RateLimit()
        self.retry = retry or RetryPolicy()
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_pages = max_pages
        self._headers = {"User-Agent": "dsr-orchestrator", **(headers or {})}
        self._headers.update(self.auth.headers())
        self._transport = transport
        self._origin = urlsplit(base_url)[:2]
        # httpx pools are bound to the loop that opened them; tests run one loop per call.
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            self._clients = {lp: c for lp, c in self._clients.items() if not lp.is_closed()}
            client = self._clients[loop] = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=self.timeout,
                transport=self._transport,
                verify=_tls_context(),
                follow_redirects=False,  # a redirect could carry our credentials elsewhere
            )
        return client

    async def request(
        self,
        method: str,
        path_template: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        expected: Collection[int] = (200,),
        content: bytes | None = None,
        content_type: str | None = None,
        cost: int = 1,
        extensions: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request with retries; `path_params` fill `{name}` in path, params and json.

        Never put a subject's value into `path_template` or `params` yourself: pass it in
        `path_params`, so messages can show the template instead.

        `content` (with its `content_type`) is a raw body sent as it is, instead of `json`;
        the response's raw body is `response.content`. `cost`: how many of the rate limit's
        requests this one counts as (a batch of `cost` calls). `extensions` reach the
        transport with the request (httpx request extensions), e.g. whom a call acts for.
        """
        where = f"{self.system}: {method.upper()}"
        path, first, template = _prepare(where, path_template, path_params, params, json)
        if content is not None:
            first = replace(first, content=content, content_type=content_type)
        return await self._send(
            method, path, first, template, expected, cost=cost, extensions=extensions
        )

    def retrying(self) -> AsyncRetrying:
        """This client's retry policy (backoff, `Retry-After`, attempts), for a caller that
        retries a step of its own: e.g. the calls of a vendor's batch the vendor refused."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=_WaitForServer(self.retry),
            retry=retry_if_exception(lambda e: isinstance(e, HttpError) and e.retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )

    async def _send(
        self,
        method: str,
        path: str,
        request: PageRequest,
        template: str,
        expected: Collection[int],
        *,
        cost: int = 1,
        extensions: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        method = method.upper()
        if request.url is not None and urlsplit(request.url)[:2] != self._origin:
            raise HttpError(f"{self.system}: {method} {template}: next page is on another host")
        url = request.url or path
        async for attempt in self.retrying():
            with attempt:
                return await self._send_once(
                    method, url, request, template, expected, cost=cost, extensions=extensions
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send_once(
        self,
        method: str,
        url: str,
        request: PageRequest,
        template: str,
        expected: Collection[int],
        *,
        cost: int = 1,
        extensions: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        limiter = limiter_for(self.system, self.limits)
        client = self._client()
        headers = {"Content-Type": request.content_type} if request.content_type else None
        async with limiter.slot(cost):
            started = time.monotonic()
            token = _sending.set(True)
            try:
                response = await client.request(
                    method,
                    url,
                    params=request.params or None,
                    json=request.json,
                    content=request.content,
                    headers=headers,
                    extensions=dict(extensions) if extensions else None,
                )
                await response.aread()
            except httpx.HTTPError as exc:
                failure = classify(self.system, method, template, error=exc)
                assert failure is not None
                raise failure from None  # httpx's text may quote the URL
            finally:
                _sending.reset(token)
        elapsed = time.monotonic() - started
        log.debug(
            "%s: %s %s -> %d (%.3fs)",
            self.system,
            method,
            template,
            response.status_code,
            elapsed,
        )
        failure = classify(self.system, method, template, response=response, expected=expected)
        if failure is None:
            return response
        if failure.status == 429 and failure.retry_after:
            # The vendor counts per account: every task of this system must wait, not just us.
            pause = min(failure.retry_after, self.retry.max_wait_seconds)
            limiter.pause_until(time.monotonic() + pause)
        raise failure

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "%s; retry %d/%d in %.1fs",
            error,
            state.attempt_number,
            self.retry.attempts - 1,
            wait,
        )

    async def paginate(
        self,
        method: str,
        path_template: str,
        *,
        paging: Paging | None = None,
        records_path: str = "",
        path_params: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        expected: Collection[int] = (200,),
        absent: Collection[int] = (),
    ) -> AsyncIterator[Page]:
        """Yield every page; a status in `absent` (e.g. 404) means nothing there: no pages."""
        paging = paging or NoPaging()
        where = f"{self.system}: {method.upper()}"
        path, first, template = _prepare(where, path_template, path_params, params, json)
        request: PageRequest | None = paging.first(first)
        seen: set[str] = set()
        pages = 0
        while request is not None:
            response = await self._send(
                method, path, request, template, tuple(expected) + tuple(absent)
            )
            if response.status_code in absent:
                return
            body = _json(response, self.system, method, template)
            page = Page(response, body, records_at(body, records_path, f"{method} {template}"))
            yield page
            pages += 1
            request = paging.next(page, request)
            if request is None:
                return
            # A vendor repeating its cursor would loop forever; fail loudly instead.
            key = repr((request.url, sorted(request.params.items()), request.json))
            if key in seen or pages >= self.max_pages:
                raise HttpError(
                    f"{self.system}: {method} {template}: paging did not end after {pages} pages"
                )
            seen.add(key)

    async def records(self, method: str, path_template: str, **kwargs: Any) -> AsyncIterator[Any]:
        """Yield every record of every page (same arguments as `paginate`)."""
        async for page in self.paginate(method, path_template, **kwargs):
            for record in page.records:
                yield record

    async def all_records(self, method: str, path_template: str, **kwargs: Any) -> list[Any]:
        """Every record of every page in one list (same arguments as `paginate`)."""
        return [record async for record in self.records(method, path_template, **kwargs)]

    async def wait_for_job(
        self, job: JobPolling, values: Mapping[str, Any], *, what: str, status: Any = None
    ) -> str:
        """Poll a vendor's job until it is done and return its final status.

        `values` fill the poll's template and hold the `job_id`; `status` is what the call that
        started the job said already (no polling when that is final); `what` names that call
        in messages. A failed job, or one not done in time, is a retryable `ConnectorError`:
        the vendor may finish it on the next attempt.
        """
        final = {*job.done, *job.failed}
        job_id = values["job_id"]
        if status not in final:
            polling = AsyncRetrying(
                stop=job.stop(),
                wait=wait_fixed(job.interval_seconds),
                retry=retry_if_result(lambda found: found not in final),
                retry_error_callback=_last_status,  # out of time: judged below, not raised
            )
            status = await polling(self._job_status, job, values)
        if status in job.done:
            return str(status)
        verdict = "reported" if status in job.failed else "not done in time, last status"
        raise ConnectorError(
            f"{self.system}: vendor job {job_id} of {what} {verdict} {status!r}", retryable=True
        )

    async def _job_status(self, job: JobPolling, values: Mapping[str, Any]) -> Any:
        response = await self.request("GET", job.poll, path_params=values)
        return lookup(json_body(response), job.status_path)

    async def aclose(self) -> None:
        """Close the connection pools."""
        clients, self._clients = self._clients, {}
        for loop, client in clients.items():
            if loop is asyncio.get_running_loop():
                await client.aclose()


def _last_status(state: RetryCallState) -> Any:
    return state.outcome.result() if state.outcome is not None else None


@cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~50 ms and blocks the loop; once per process is enough.
    # A blocked loop delays requests that already have their turn, bunching them at the vendor.
    return httpx.create_ssl_context()


def _prepare(
    where: str,
    path_template: str,
    path_params: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    json: Any,
) -> tuple[str, PageRequest, str]:
    """The rendered path, the rendered first request, and the template for messages;
    `where` ("system: METHOD") starts any message about a refused path."""
    values = path_params or {}
    request = PageRequest(
        params=render_value(dict(params or {}), values), json=render_value(json, values)
    )
    template = describe(path_template, params)
    return render_path(path_template, values, where=where), request, template


def _json(response: httpx.Response, system: str, method: str, template: str) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise HttpError(
            f"{system}: {method} {template} -> {response.status_code}: body is not JSON"
        ) from None


def json_body(response: httpx.Response) -> Any:
    """The JSON body, or None when empty or not JSON (e.g. a 204)."""
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


__all__ = [
    "Auth",
    "CursorPaging",
    "HttpClient",
    "HttpError",
    "JobPolling",
    "LinkHeaderPaging",
    "NextUrlPaging",
    "NoPaging",
    "OffsetPaging",
    "Page",
    "PageNumberPaging",
    "PageRequest",
    "Paging",
    "PathSegmentError",
    "RateLimit",
    "RateLimiter",
    "RetryPolicy",
    "TemplateError",
    "classify",
    "describe",
    "json_body",
    "limiter_for",
    "lookup",
    "placeholders",
    "records_at",
    "render",
    "render_path",
    "render_value",
    "server_wait",
    "take_over",
]
