"""A base for local fakes of vendor APIs: a real aiohttp server on 127.0.0.1 in a thread.

Connector tests run without internet against a fake that reproduces the vendor's shapes (auth
header, paging, 429 and its headers, error bodies, 204/404). The fake is a real HTTP server on
a free loopback port, so the connector's whole HTTP stack runs as in production. It runs its
own event loop in a background thread, so a test may call `asyncio.run` as often as it likes.

Subclass `FakeServer` as a dataclass, mark its handlers with `@route(method, path)`, and use it
as a context manager:

    with AcmeCRM() as acme:
        connector = DeclarativeConnector("crm", {"spec": ..., "base_url": acme.url})

Every request is logged (method, path without query, monotonic time, status) so tests can
count calls and check the client's rate: `max_in_window(1.0)`.

Every fake has the same fault knobs, `fake.faults` (`Faults`): failing requests, injected and
vendor-enforced rate limits, latency. The fake answers them the way its vendor does: a
subclass declares its vendor's 429 (`too_many`, with the vendor's own headers and body), its
5xx (`server_error`) and its refusal of bad credentials (`unauthorised`) as `Answer`s, and
says whether a request's credentials are right (`authorised`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Self, TypeVar

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MethodT = TypeVar("MethodT", bound=Callable[..., Awaitable[web.StreamResponse]])


def route(method: str, path: str) -> Callable[[MethodT], MethodT]:
    """Serve the decorated handler for `method` requests to the fake's `prefix` + `path`."""

    def mark(handler: MethodT) -> MethodT:
        vars(handler).setdefault("fake_routes", []).insert(0, (method, path))
        return handler

    return mark


def bearer_token(request: web.Request) -> str | None:
    """The token of the request's Bearer `Authorization` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """The user and password of the request's Basic `Authorization` header, or None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return user, password


def person(
    record_id: int, name: str, email: str | None, phone: str | None, **fields: Any
) -> dict[str, Any]:
    """A vendor's record of a person (a contact, a user): id, name, email, phone, and the
    vendor's own `fields`."""
    return {"id": record_id, "name": name, "email": email, "phone": phone, **fields}


#: The header most vendors say how long to wait in (an `Answer` header template).
RETRY_AFTER = {"Retry-After": "{wait}"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A vendor's canned answer: status, JSON body (None: empty) and headers. In a header,
    `{wait}` becomes the seconds to wait, `{until}` the unix time to wait until and `{limit}`
    the vendor's request limit."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def response(self, wait: int = 1, limit: int | None = None) -> web.Response:
        """The answer, its header templates filled in."""
        until = math.ceil(time.time()) + wait
        values = {"wait": wait, "until": until, "limit": "" if limit is None else limit}
        headers = {name: value.format(**values) for name, value in self.headers.items()}
        if self.body is None:
            return web.Response(status=self.status, headers=headers)
        return web.json_response(
            self.body, status=self.status, headers=headers, content_type=self.content_type
        )

    def refusal(self) -> web.HTTPException:
        """The answer as an exception, for a check deep inside a handler to raise."""
        return _Refusal(self)


class _Refusal(web.HTTPException):
    def __init__(self, answer: Answer) -> None:
        self.status_code = answer.status
        super().__init__(text=json.dumps(answer.body), content_type=answer.content_type)


async def json_object(request: web.Request, refusal: Answer) -> dict[str, Any]:
    """The request's body, which must be a JSON object; otherwise the vendor's `refusal`."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise refusal.refusal()
    return body


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request the fake received."""

    method: str
    path: str
    query: str
    at: float  # time.monotonic() on arrival
    status: int


@dataclass(slots=True)
class Faults:
    """The fault knobs every fake has; each fake answers them as its vendor would."""

    #: The next N requests answer the vendor's 5xx.
    fail_5xx: int = 0
    #: Every Nth request answers the vendor's 429.
    rate_limit_every: int | None = None
    #: The wait an injected 429 asks for, where the vendor says how long.
    retry_after: int = 1
    #: The vendor's own limit, `(requests, seconds)`: more in a sliding window answer 429.
    max_rate: tuple[int, float] | None = None
    #: The vendor's own limit of requests in flight at once: more answer 429.
    max_connections: int | None = None
    #: Every answer comes this much later (to make requests overlap).
    latency_seconds: float = 0.0
    #: Searches treat `*` and `%` in the searched value as wildcards, as some vendors' do: a
    #: search for `*@example.com` finds everyone at example.com (see `search_matches`).
    wildcard_search: bool = False


class FakeServer(ABC):
    """A real HTTP server on a free loopback port, running in its own thread and loop.

    A fake is a dataclass: its fields are the vendor account's settings (e.g. its API key).
    """

    #: The knobs a fresh fake (and `reset_faults`) starts with: the vendor's own limits.
    default_faults: ClassVar[Faults] = Faults()
    #: The path every `@route` is under, e.g. "/api/v2".
    prefix: ClassVar[str] = ""
    #: The vendor's answer to missing or wrong credentials.
    unauthorised: ClassVar[Answer]
    #: The vendor's answer to an injected server failure (`faults.fail_5xx`).
    server_error: ClassVar[Answer]
    #: The vendor's answer to too many requests, with its own headers and body.
    too_many: ClassVar[Answer]

    def __post_init__(self) -> None:
        self.requests: list[LoggedRequest] = []
        self.faults = replace(self.default_faults)
        #: `(method, route)` of every call that passed auth, e.g. `("DELETE", "/contacts/{id}")`.
        self.endpoints: list[tuple[str, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._lock = threading.Lock()
        self._in_flight = self._max_in_flight = 0
        self._count = 0
        self.reset()

    @abstractmethod
    def reset(self) -> None:
        """Seed the fake's data afresh; no injected faults, an empty log (`reset_faults`)."""

    @abstractmethod
    def authorised(self, request: web.Request) -> bool:
        """Whether the request carries the right credentials."""

    def too_many_answer(self) -> Answer:
        """The 429 to give now: `too_many`, unless the fake's settings choose another."""
        return self.too_many

    def _limited(self, wait: int) -> web.Response:
        limit = self.faults.max_rate[0] if self.faults.max_rate else None
        return self.too_many_answer().response(wait, limit)

    def rate_headers(self) -> dict[str, str]:
        """Headers the vendor puts on every answer (e.g. requests left); none by default."""
        return {}

    def window(self) -> tuple[int, int] | None:
        """Under the vendor's own limit (`faults.max_rate`): (limit, requests left now)."""
        if self.faults.max_rate is None:
            return None
        limit, seconds = self.faults.max_rate
        return limit, max(0, limit - len(self.recent(seconds)))

    # ------------------------------------------------------------------------ faults

    async def before(self, request: web.Request) -> web.StreamResponse | None:
        """Latency, injected faults, the vendor's own limits, then auth; None: route answers."""
        faults = self.faults
        with self._lock:
            self._count += 1
            count, in_flight = self._count, self._in_flight
        if faults.latency_seconds:
            await asyncio.sleep(faults.latency_seconds)
        if faults.fail_5xx > 0:
            faults.fail_5xx -= 1
            return self.server_error.response()
        if faults.max_connections is not None and in_flight > faults.max_connections:
            return self._limited(faults.retry_after)
        if faults.rate_limit_every and count % faults.rate_limit_every == 0:
            return self._limited(faults.retry_after)
        if faults.max_rate is not None:
            limit, seconds = faults.max_rate
            recent = self.recent(seconds)
            if len(recent) >= limit:
                return self._limited(max(1, math.ceil(recent[0] + seconds - time.monotonic())))
        if not self.authorised(request):
            return self.unauthorised.response()
        route = request.match_info.route.resource
        self.endpoints.append((request.method, route.canonical if route else request.path))
        return None

    def search_matches(self, stored: Any, wanted: str) -> bool:
        """Whether the vendor's search for `wanted` finds a record holding `stored`: equal
        ignoring case, or, with `faults.wildcard_search`, where `*` and `%` match any text."""
        if stored is None:
            return False
        text, wanted = str(stored).lower(), wanted.lower()
        if not self.faults.wildcard_search:
            return text == wanted
        pattern = ".*".join(re.escape(part) for part in re.split(r"[*%]", wanted))
        return re.fullmatch(pattern, text, re.DOTALL) is not None

    def reset_faults(self) -> None:
        """Back to the vendor's own limits, without injected faults; an empty request log."""
        self.faults = replace(self.default_faults)
        self.clear_log()

    def clear_log(self) -> None:
        """Forget the requests received so far (and the most seen at once)."""
        with self._lock:
            self.requests.clear()
            self.endpoints.clear()
            self._count = self._max_in_flight = 0

    @property
    def url(self) -> str:
        """The server's base URL, e.g. http://127.0.0.1:41234."""
        if self._port is None:
            raise RuntimeError("the fake server is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        """Start serving; returns once the port is open."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # surfaced to the starting thread below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        ready.wait(timeout=10)
        if failure:
            raise failure[0]
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} did not start within 10 s")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        # In the order the class defines them: a fixed path before a pattern that matches it.
        for cls in reversed(type(self).__mro__):
            for name, member in vars(cls).items():
                for method, path in getattr(member, "fake_routes", ()):
                    app.router.add_route(method, self.prefix + path, getattr(self, name))
        app.on_response_prepare.append(self._add_rate_headers)
        self._runner = web.AppRunner(app, access_log=None)  # its log line quotes the query
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def _add_rate_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(self.rate_headers())

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived = time.monotonic()
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        status = 500
        try:
            response = await self.before(request)
            if response is None:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
                self.requests.append(
                    LoggedRequest(
                        request.method, request.path, request.query_string, arrived, status
                    )
                )

    # ------------------------------------------------------------------ questions for tests

    def calls(self, method: str | None = None, path_prefix: str = "") -> list[LoggedRequest]:
        """Logged requests, optionally of one method and under one path prefix."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and r.path.startswith(path_prefix)
            ]

    def recent(self, seconds: float) -> list[float]:
        """Arrival times, oldest first, of the requests of the last `seconds` not refused 429."""
        now = time.monotonic()
        return sorted(r.at for r in self.calls() if now - r.at < seconds and r.status != 429)

    def max_in_window(self, seconds: float = 1.0, path_prefix: str = "") -> int:
        """The most requests that arrived within any window of `seconds` (sliding)."""
        times = sorted(r.at for r in self.calls(path_prefix=path_prefix))
        best = start = 0
        for end, at in enumerate(times):
            while at - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def max_concurrent(self) -> int:
        """The most requests that were being answered at the same time."""
        return self._max_in_flight


__all__ = [
    "RETRY_AFTER",
    "Answer",
    "FakeServer",
    "Faults",
    "LoggedRequest",
    "basic_credentials",
    "bearer_token",
    "json_object",
    "person",
    "route",
]
