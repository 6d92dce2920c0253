"""A base for local fakes of vendor APIs: a real aiohttp server on 127.0.0.1 in a thread.

Connector tests run without internet against a fake that reproduces the vendor's shapes (auth
header, paging, 429 and its headers, error bodies, 204/404). The fake is a real HTTP server on
a free loopback port, so the connector's whole HTTP stack runs as in production. It runs its
own event loop in a background thread, so a test may call `asyncio.run` as often as it likes.

Subclass `FakeServer`, add routes in `routes()`, and use it as a context manager:

    with AcmeCRM() as acme:
        connector = DeclarativeConnector("crm", {"spec": ..., "base_url": acme.url})

Every request is logged (method, path without query, monotonic time, status) so tests can
count calls and check the client's rate: `max_in_window(1.0)`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request the fake received."""

    method: str
    path: str
    query: str
    at: float  # time.monotonic() on arrival
    status: int


class FakeServer:
    """A real HTTP server on a free loopback port, running in its own thread and loop."""

    def __init__(self) -> None:
        self.requests: list[LoggedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._lock = threading.Lock()
        self._in_flight = self._max_in_flight = 0

    def routes(self, app: web.Application) -> None:
        """Add the fake's routes; override in subclasses."""

    async def before(self, request: web.Request) -> web.StreamResponse | None:
        """Answer before routing (fault injection, auth); None lets the route answer."""
        return None

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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)  # its log line quotes the query
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

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


__all__ = ["FakeServer", "LoggedRequest"]
