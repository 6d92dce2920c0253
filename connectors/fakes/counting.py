"""A fake vendor that counts calls per account, to check a rate budget from the vendor's side.

One server holds several vendor accounts (`/api/<account>/...`), one per system under test, so a
test can ask how many calls one system made in any window (`max_in_window_of`) and how many were
in flight at once (`max_concurrent_of`), from the fake's own log of arrival times; never from
the client's timings. The fake does not refuse calls over a limit (no 429): it only counts, so
an overrun shows in the counts instead of being hidden by retries.

Its API: `GET /api/<account>/people?email=...` answers `pages` pages of `per_page` records of
the subject, paged by a `page` cursor (`next` in the body): an access task costs exactly
`pages` calls. `spec()` is the declarative connector spec for it, with a given rate limit.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.fakes.server import RETRY_AFTER, Answer, FakeServer, bearer_token, route

TOKEN = "counting-test-token"  # noqa: S105 - a fake's fixed test credential


def spec(requests: int, per_seconds: float, concurrency: int | None = None) -> dict[str, Any]:
    """The `rest` connector spec of one account: access only, `requests` per `per_seconds`."""
    limit: dict[str, Any] = {"requests": requests, "per_seconds": per_seconds}
    if concurrency is not None:
        limit["concurrency"] = concurrency
    return {
        "name": "counting-vendor",
        "description": "A fake vendor that counts calls",
        "base_url": "http://127.0.0.1:9/api/unset",  # overridden by settings.base_url
        "auth": {"type": "bearer", "token": "{credentials.token}"},
        "rate_limit": limit,
        "retry": {"attempts": 2, "backoff_seconds": 0.1},
        "rights": ["access"],
        "find": {
            "method": "GET",
            "path": "/people",
            "params": {"email": "{email}"},
            "records_path": "people",
            "id_field": "id",
            "collection": "people",
            "paging": {"type": "cursor", "cursor_path": "next", "cursor_param": "page"},
        },
    }


@dataclass(eq=False)
class CountingVendor(FakeServer):
    """The counting fake; see the module docstring."""

    token: str = TOKEN
    pages: int = 2
    per_page: int = 2
    #: Each answer's delay, so calls overlap and a concurrency cap shows.
    answer_seconds: float = 0.02
    _account_in_flight: Counter[str] = field(default_factory=Counter, init=False, repr=False)
    _most: Counter[str] = field(default_factory=Counter, init=False, repr=False)
    _account_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    prefix = "/api"
    unauthorised = Answer(401, {"error": "unauthorized"})
    server_error = Answer(503, {"error": "unavailable"})
    too_many = Answer(429, {"error": "rate_limited"}, RETRY_AFTER)

    def reset(self) -> None:
        """No data to seed: every subject has `pages` pages of records; an empty log."""
        self.reset_faults()

    def authorised(self, request: web.Request) -> bool:
        """The bearer token."""
        return bearer_token(request) == self.token

    @route("GET", "/{account}/people")
    async def _people(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        email = request.query.get("email")
        if not email:
            return web.json_response({"error": "email is required"}, status=400)
        try:
            page = int(request.query.get("page", "1"))
        except ValueError:
            return web.json_response({"error": "page must be a number"}, status=400)
        with self._account_lock:
            self._account_in_flight[account] += 1
            self._most[account] = max(self._most[account], self._account_in_flight[account])
        try:
            await asyncio.sleep(self.answer_seconds)
        finally:
            with self._account_lock:
                self._account_in_flight[account] -= 1
        people = [{"id": f"{page}-{n}", "email": email, "page": page} for n in range(self.per_page)]
        following = page + 1 if page < self.pages else None
        return web.json_response({"people": people, "next": following})

    def calls_of(self, account: str) -> int:
        """How many calls the account received."""
        return len(self.calls(path_prefix=f"{self.prefix}/{account}/"))

    def max_in_window_of(self, account: str, seconds: float) -> int:
        """The most calls to the account that arrived within any window of `seconds`."""
        return self.max_in_window(seconds, path_prefix=f"{self.prefix}/{account}/")

    def max_concurrent_of(self, account: str) -> int:
        """The most calls to the account answered at the same time."""
        with self._account_lock:
            return self._most[account]


__all__ = ["TOKEN", "CountingVendor", "spec"]
