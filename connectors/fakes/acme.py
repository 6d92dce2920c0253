"""A fake "Acme CRM" REST API, the vendor of `examples/connectors/acme.yaml`.

It reproduces the behaviours the HTTP layer must cope with, as real vendors show them:

- bearer auth: a missing or wrong token answers 401 `{"error": "unauthorized", ...}`;
- contacts searched by `email` (case-insensitive) or `phone`, offset paging `limit`/`offset`
  with `meta.total`; a `limit` above 100 answers 400 (ActiveCampaign style);
- notes per contact with cursor paging: `limit` + `after`, next cursor in `meta.next`;
- tickets per contact as a plain JSON array, paged by `page`/`per_page`, with a
  `Link: <...>; rel="next"` header while more pages follow (Freshdesk style);
- activities per contact with `page[size]`/`page[after]`, `meta.has_more` and the next URL in
  `links.next` (Zendesk style);
- `DELETE /contacts/{id}`: 200 `{}`, or 404 `{"message": "No result found ..."}` once gone;
  with `async_delete` a 202 with `{"job": {"id": ...}}` instead, done after `job_polls` polls of
  `GET /jobs/{id}` (or failed, with `job_fails`); deleting removes the contact's notes,
  tickets and activities;
- fault injection: `rate_limit_every=N` answers 429 on every Nth request (`Retry-After: 1`, or
  an `X-RateLimit-Reset` epoch / delta header with `rate_limit_style`), `fail_5xx_times=N`
  answers 503 to the first N requests, `max_rate=(requests, seconds)` answers 429 like a vendor
  enforcing its own limit, `latency_seconds` slows every answer (to observe concurrency);
- the request log of `FakeServer` counts requests per time window, so a test can assert the
  client never exceeded its configured rate.

Seeded in memory with six people; the subject of most tests, Anna de Vries, has two contact
records (a duplicate, as CRMs often hold), notes across several cursor pages, tickets and
activities across several pages. Other people's data must survive every test.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any, Literal

from aiohttp import web

from connectors.fakes.server import FakeServer

TOKEN = "acme-test-token"  # noqa: S105 - a fake's fixed test credential
MAX_LIMIT = 100

SUBJECT_EMAIL = "anna.devries@example.nl"
SUBJECT_PHONE = "+31612345678"


def _seed() -> dict[str, Any]:
    contacts = [
        {"id": 101, "email": "Anna.deVries@example.nl", "phone": SUBJECT_PHONE,
         "first_name": "Anna", "last_name": "de Vries", "source": "webshop"},
        {"id": 102, "email": SUBJECT_EMAIL, "phone": None,
         "first_name": "Anna", "last_name": "de Vries", "source": "newsletter import"},
        {"id": 103, "email": "jan.jansen@example.com", "phone": "+31687654321",
         "first_name": "Jan", "last_name": "Jansen", "source": "webshop"},
        {"id": 104, "email": "piet.bakker@example.org", "phone": None,
         "first_name": "Piet", "last_name": "Bakker", "source": "event"},
        {"id": 105, "email": "sofie.peeters@example.be", "phone": "+32470123456",
         "first_name": "Sofie", "last_name": "Peeters", "source": "webshop"},
        {"id": 106, "email": "m.elamrani@example.nl", "phone": None,
         "first_name": "Mohammed", "last_name": "El Amrani", "source": "support"},
    ]  # fmt: skip
    notes: dict[int, list[dict[str, Any]]] = {
        101: [{"id": 1000 + n, "body": f"Called about order {n}"} for n in range(1, 6)],
        102: [{"id": 1006, "body": "Signed up at the fair"}],
        103: [{"id": 1007, "body": "Prefers phone"}, {"id": 1008, "body": "VIP"}],
        105: [{"id": 1009, "body": "Moved to Antwerp"}],
        106: [{"id": 1010, "body": "Asked for invoice copy"}, {"id": 1011, "body": "Paid"}],
    }
    tickets = {
        101: [{"id": 2000 + n, "subject": f"Where is my parcel {n}?"} for n in range(1, 4)],
        103: [{"id": 2004, "subject": "Refund"}],
    }
    activities = {
        101: [{"id": 3000 + n, "kind": "email_opened", "n": n} for n in range(1, 4)],
        104: [{"id": 3004, "kind": "page_view", "n": 1}],
    }
    return {"contacts": contacts, "notes": notes, "tickets": tickets, "activities": activities}


def _error(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": "invalid_request", "message": "{name} must be a number"}}',
            content_type="application/json",
        ) from None


class AcmeCRM(FakeServer):
    """The fake Acme CRM; see the module docstring for what it reproduces."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        async_delete: bool = False,
        job_polls: int = 2,
        job_fails: bool = False,
        rate_limit_every: int | None = None,
        rate_limit_style: Literal["retry_after", "reset_epoch", "reset_delta"] = "retry_after",
        fail_5xx_times: int = 0,
        max_rate: tuple[int, float] | None = None,
        latency_seconds: float = 0.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.async_delete = async_delete
        self.job_polls = job_polls
        self.job_fails = job_fails
        self.rate_limit_every = rate_limit_every
        self.rate_limit_style = rate_limit_style
        self.fail_5xx_times = fail_5xx_times
        self.max_rate = max_rate
        self.latency_seconds = latency_seconds
        self.data = _seed()
        self.jobs: dict[str, dict[str, Any]] = {}
        self._count = 0
        self._served_5xx = 0

    # ------------------------------------------------------------------------ plumbing

    def routes(self, app: web.Application) -> None:
        """The Acme API under /api."""
        app.router.add_get("/api/contacts", self._search)
        app.router.add_get("/api/contacts/{id}", self._get_contact)
        app.router.add_delete("/api/contacts/{id}", self._delete_contact)
        app.router.add_get("/api/contacts/{id}/notes", self._notes)
        app.router.add_get("/api/contacts/{id}/tickets", self._tickets)
        app.router.add_get("/api/contacts/{id}/activities", self._activities)
        app.router.add_get("/api/jobs/{job_id}", self._job)

    async def before(self, request: web.Request) -> web.StreamResponse | None:
        """Latency, injected faults, the vendor's own rate limit, then auth."""
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        self._count += 1
        if self._served_5xx < self.fail_5xx_times:
            self._served_5xx += 1
            return _error(503, {"error": "unavailable", "message": "try again later"})
        if self.rate_limit_every and self._count % self.rate_limit_every == 0:
            return self._too_many()
        if self.max_rate is not None:
            limit, seconds = self.max_rate
            now = time.monotonic()
            recent = [r for r in self.calls() if now - r.at < seconds and r.status != 429]
            if len(recent) >= limit:
                return self._too_many()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, {"error": "unauthorized", "message": "Invalid bearer token"})
        return None

    def _too_many(self) -> web.Response:
        body = {"error": "rate_limited", "message": "Too many requests"}
        if self.rate_limit_style == "reset_epoch":
            return _error(429, body, **{"X-RateLimit-Reset": str(int(time.time()) + 2)})
        if self.rate_limit_style == "reset_delta":
            return _error(429, body, **{"X-RateLimit-Reset": "1"})
        return _error(429, body, **{"Retry-After": "1"})

    def _contact(self, request: web.Request) -> dict[str, Any]:
        wanted = request.match_info["id"]
        for contact in self.data["contacts"]:
            if str(contact["id"]) == wanted:
                return dict(contact)
        raise web.HTTPNotFound(
            text=f'{{"message": "No result found for contact with id {wanted}"}}',
            content_type="application/json",
        )

    # ------------------------------------------------------------------------- routes

    async def _search(self, request: web.Request) -> web.Response:
        limit = _int(request, "limit", 20)
        offset = _int(request, "offset", 0)
        if not 1 <= limit <= MAX_LIMIT:
            return _error(
                400, {"error": "invalid_request", "message": f"limit must be 1-{MAX_LIMIT}"}
            )
        found = self.data["contacts"]
        if "email" in request.query:
            email = request.query["email"].lower()
            found = [c for c in found if (c["email"] or "").lower() == email]
        if "phone" in request.query:
            found = [c for c in found if c["phone"] == request.query["phone"]]
        page = copy.deepcopy(found[offset : offset + limit])
        return web.json_response(
            {"contacts": page, "meta": {"total": len(found), "limit": limit, "offset": offset}}
        )

    async def _get_contact(self, request: web.Request) -> web.Response:
        return web.json_response({"contact": self._contact(request)})

    async def _delete_contact(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        if self.async_delete:
            job_id = f"job-{len(self.jobs) + 1}"
            self.jobs[job_id] = {"id": job_id, "contact": contact["id"], "polls": 0}
            return web.json_response({"job": {"id": job_id, "status": "queued"}}, status=202)
        self._erase(contact["id"])
        return web.json_response({})

    def _erase(self, contact_id: int) -> None:
        self.data["contacts"] = [c for c in self.data["contacts"] if c["id"] != contact_id]
        for related in ("notes", "tickets", "activities"):
            self.data[related].pop(contact_id, None)

    async def _job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return _error(404, {"message": "No such job"})
        job["polls"] += 1
        status = "running"
        if job["polls"] >= self.job_polls:
            status = "failed" if self.job_fails else "completed"
            if status == "completed":
                self._erase(job["contact"])
        return web.json_response({"id": job["id"], "status": status})

    async def _notes(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        limit = _int(request, "limit", 2)
        if not 1 <= limit <= 50:
            return _error(400, {"error": "invalid_request", "message": "limit must be 1-50"})
        start = int(request.query.get("after", "n0")[1:] or 0)
        notes = self.data["notes"].get(contact["id"], [])
        end = start + limit
        more = end < len(notes)
        return web.json_response(
            {"notes": notes[start:end], "meta": {"next": f"n{end}" if more else None}}
        )

    async def _tickets(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        page = _int(request, "page", 1)
        per_page = _int(request, "per_page", 2)
        if not 1 <= per_page <= MAX_LIMIT:
            return _error(400, {"description": "Validation failed", "errors": ["per_page"]})
        tickets = self.data["tickets"].get(contact["id"], [])
        start = (page - 1) * per_page
        headers = {}
        if start + per_page < len(tickets):
            following = request.url.update_query({"page": page + 1, "per_page": per_page})
            headers["Link"] = f'<{following}>; rel="next"'
        return web.json_response(tickets[start : start + per_page], headers=headers)

    async def _activities(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        size = _int(request, "page[size]", 2)
        after = int(request.query.get("page[after]", "0"))
        items = self.data["activities"].get(contact["id"], [])
        page = items[after : after + size]
        more = after + size < len(items)
        following = (
            str(request.url.update_query({"page[size]": size, "page[after]": after + size}))
            if more
            else None
        )
        return web.json_response(
            {
                "activities": page,
                "meta": {"has_more": more, "after_cursor": str(after + size) if more else None},
                "links": {"next": following},
            }
        )


__all__ = ["MAX_LIMIT", "SUBJECT_EMAIL", "SUBJECT_PHONE", "TOKEN", "AcmeCRM"]
