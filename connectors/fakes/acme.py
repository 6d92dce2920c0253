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
- the fault knobs of every fake (`faults`, see `connectors.fakes.server.Faults`): a 429 says
  how long to wait in `Retry-After`, or in an `X-RateLimit-Reset` epoch / delta header with
  `rate_limit_style`; a 5xx is 503 `{"error": "unavailable", ...}`;
- the request log of `FakeServer` counts requests per time window, so a test can assert the
  client never exceeded its configured rate.

Seeded in memory with six people; the subject of most tests, Anna de Vries, has two contact
records (a duplicate, as CRMs often hold), notes across several cursor pages, tickets and
activities across several pages. Other people's data must survive every test.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Literal

from aiohttp import web

from connectors.fakes.server import RETRY_AFTER, Answer, FakeServer, bearer_token, route

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


#: Where a 429 says how long to wait, per `rate_limit_style`.
_WAIT_HEADERS = {
    "retry_after": RETRY_AFTER,
    "reset_epoch": {"X-RateLimit-Reset": "{until}"},
    "reset_delta": {"X-RateLimit-Reset": "{wait}"},
}


def _error(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


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


@dataclass(eq=False)
class AcmeCRM(FakeServer):
    """The fake Acme CRM; see the module docstring for what it reproduces."""

    token: str = TOKEN
    async_delete: bool = False
    job_polls: int = 2
    job_fails: bool = False
    rate_limit_style: Literal["retry_after", "reset_epoch", "reset_delta"] = "retry_after"

    prefix = "/api"
    unauthorised = Answer(401, {"error": "unauthorized", "message": "Invalid bearer token"})
    server_error = Answer(503, {"error": "unavailable", "message": "try again later"})
    too_many = Answer(429, {"error": "rate_limited", "message": "Too many requests"})

    def reset(self) -> None:
        """Fresh seed and no jobs, empty logs, no faults."""
        self.data = _seed()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.reset_faults()

    # ------------------------------------------------------------------------ plumbing

    def authorised(self, request: web.Request) -> bool:
        """The bearer token."""
        return bearer_token(request) == self.token

    def too_many_answer(self) -> Answer:
        """429 with the wait in the header `rate_limit_style` names."""
        return replace(self.too_many, headers=_WAIT_HEADERS[self.rate_limit_style])

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

    @route("GET", "/contacts")
    async def _search(self, request: web.Request) -> web.Response:
        limit = _int(request, "limit", 20)
        offset = _int(request, "offset", 0)
        if not 1 <= limit <= MAX_LIMIT:
            return _error(
                400, {"error": "invalid_request", "message": f"limit must be 1-{MAX_LIMIT}"}
            )
        found = self.data["contacts"]
        for key in ("email", "phone"):
            if key in request.query:
                found = [c for c in found if self.search_matches(c[key], request.query[key])]
        page = copy.deepcopy(found[offset : offset + limit])
        return web.json_response(
            {"contacts": page, "meta": {"total": len(found), "limit": limit, "offset": offset}}
        )

    @route("GET", "/contacts/{id}")
    async def _get_contact(self, request: web.Request) -> web.Response:
        return web.json_response({"contact": self._contact(request)})

    @route("DELETE", "/contacts/{id}")
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

    @route("GET", "/jobs/{job_id}")
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

    @route("GET", "/contacts/{id}/notes")
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

    @route("GET", "/contacts/{id}/tickets")
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

    @route("GET", "/contacts/{id}/activities")
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
