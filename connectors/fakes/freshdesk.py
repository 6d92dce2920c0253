"""A strict fake of the Freshdesk API v2 (vendor-apis.md, Freshdesk), served under /api/v2.

What it enforces, as the vendor documents it (UNCONFIRMED points marked in vendor-apis.md are
reproduced the way the connector must cope with them, not relied on):

- Basic auth with the API key as user (any password, "X" by convention); otherwise 401
  `{"code": "invalid_credentials", "message": "You have to be logged in ..."}`;
- `GET /contacts?email=|phone=|mobile=|state=`: a plain JSON array; deleted contacts only with
  `state=deleted`;
- `GET /tickets?email=|requester_id=&updated_since=&filter=deleted`: without `updated_since`
  only tickets created in the last 30 days; trashed tickets only with `filter=deleted`;
- `page`/`per_page` paging (default 30, `per_page` above 100 answers 400 "Validation failed"),
  with a `Link: <...>; rel="next"` header while more follow (`link_header=False` drops it);
- `GET /tickets/{id}/conversations`: 30 per page, `page=`;
- `DELETE /contacts/{id}`: a restorable soft delete (`PUT /contacts/{id}/restore`), recorded;
  `DELETE /contacts/{id}/hard_delete`: 400 unless `force=true` or soft-deleted first, then 204
  and the contact's tickets and conversations are gone; 404 for an unknown contact;
- a per-account rate limit (`max_rate=(requests, seconds)`, a minute at the vendor) answering
  429 with `Retry-After`; every answer carries `X-RateLimit-Total`, `X-RateLimit-Remaining`
  and `X-RateLimit-Used-CurrentRequest`;
- fault knobs: `rate_limit_every=N` (every Nth request 429), `fail_5xx=N` (first N answer 503).
"""

from __future__ import annotations

import base64
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.fakes.server import FakeServer

API_KEY = "fd-test-key"
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
CONVERSATIONS_PER_PAGE = 30
RECENT_DAYS = 30

SUBJECT_EMAIL = "femke.smit@example.nl"
SUBJECT_PHONE = "+31611122233"
SUBJECT_NAME = "Femke Smit"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _validation(field: str, message: str, code: str = "invalid_value") -> web.Response:
    body = {
        "description": "Validation failed",
        "errors": [{"field": field, "message": message, "code": code}],
    }
    return web.json_response(body, status=400)


def _not_found() -> web.Response:
    return web.json_response({"code": "not_found", "message": "Record not found"}, status=404)


class Freshdesk(FakeServer):
    """The fake Freshdesk account; see the module docstring for what it enforces."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        max_rate: tuple[int, float] | None = None,
        rate_limit_every: int | None = None,
        retry_after: int = 1,
        fail_5xx: int = 0,
        link_header: bool = True,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.max_rate = max_rate
        self.rate_limit_every = rate_limit_every
        self.retry_after = retry_after
        self.fail_5xx = fail_5xx
        self.link_header = link_header
        self.contacts: dict[int, dict[str, Any]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.conversations: dict[int, list[dict[str, Any]]] = {}
        self.soft_deleted: list[int] = []  # contact ids, in order of soft deletion
        self.hard_deleted: list[int] = []
        self._count = 0
        self._served_5xx = 0
        self._next_id = 1000

    # ------------------------------------------------------------------------- seeding

    def reset(self) -> None:
        """Forget all data and history of deletions (not the request log)."""
        self.contacts, self.tickets, self.conversations = {}, {}, {}
        self.soft_deleted, self.hard_deleted = [], []

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_contact(
        self, name: str, email: str | None, phone: str | None = None, *, deleted: bool = False
    ) -> int:
        """Add a contact; returns its id."""
        cid = self._id()
        self.contacts[cid] = {
            "id": cid,
            "name": name,
            "email": email,
            "phone": phone,
            "mobile": None,
            "active": True,
            "deleted": deleted,
            "created_at": _iso(datetime.now(UTC)),
        }
        return cid

    def add_ticket(
        self,
        requester_id: int,
        subject: str,
        *,
        age_days: float = 1,
        deleted: bool = False,
        conversations: int = 0,
    ) -> int:
        """Add a ticket created (and last updated) `age_days` ago; returns its id."""
        tid = self._id()
        when = _iso(datetime.now(UTC) - timedelta(days=age_days))
        self.tickets[tid] = {
            "id": tid,
            "requester_id": requester_id,
            "subject": subject,
            "status": 2,
            "deleted": deleted,
            "created_at": when,
            "updated_at": when,
        }
        self.conversations[tid] = [
            {"id": self._id(), "ticket_id": tid, "body_text": f"Reply {n}", "incoming": n % 2 == 0}
            for n in range(conversations)
        ]
        return tid

    # ------------------------------------------------------------------------ plumbing

    def routes(self, app: web.Application) -> None:
        """The Freshdesk API under /api/v2."""
        app.router.add_get("/api/v2/contacts", self._list_contacts)
        app.router.add_delete("/api/v2/contacts/{id}", self._soft_delete)
        app.router.add_put("/api/v2/contacts/{id}/restore", self._restore)
        app.router.add_delete("/api/v2/contacts/{id}/hard_delete", self._hard_delete)
        app.router.add_get("/api/v2/tickets", self._list_tickets)
        app.router.add_get("/api/v2/tickets/{id}/conversations", self._conversations)
        app.on_response_prepare.append(self._rate_headers)

    def _recent(self, seconds: float) -> int:
        now = time.monotonic()
        return sum(1 for r in self.calls() if now - r.at < seconds and r.status != 429)

    async def _rate_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.max_rate is not None:
            limit, seconds = self.max_rate
            response.headers["X-RateLimit-Total"] = str(limit)
            response.headers["X-RateLimit-Remaining"] = str(max(0, limit - self._recent(seconds)))
            response.headers["X-RateLimit-Used-CurrentRequest"] = "1"

    def _too_many(self, wait: int) -> web.Response:
        body = {"code": "rate_limit_exceeded", "message": "You have exceeded the limit."}
        return web.json_response(body, status=429, headers={"Retry-After": str(wait)})

    async def before(self, request: web.Request) -> web.StreamResponse | None:
        """Injected faults, the account's rate limit, then auth."""
        self._count += 1
        if self._served_5xx < self.fail_5xx:
            self._served_5xx += 1
            return web.json_response({"code": "service_unavailable"}, status=503)
        if self.rate_limit_every and self._count % self.rate_limit_every == 0:
            return self._too_many(self.retry_after)
        if self.max_rate is not None:
            limit, seconds = self.max_rate
            now = time.monotonic()
            recent = sorted(r.at for r in self.calls() if now - r.at < seconds and r.status != 429)
            if len(recent) >= limit:
                return self._too_many(max(1, math.ceil(recent[0] + seconds - now)))
        if not self._authorised(request.headers.get("Authorization", "")):
            body = {
                "code": "invalid_credentials",
                "message": "You have to be logged in to perform this action.",
            }
            return web.json_response(body, status=401)
        return None

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, _password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return user == self.api_key

    def _paged(
        self,
        request: web.Request,
        items: list[dict[str, Any]],
        default: int,
        *,
        allow_size: bool = True,
    ) -> web.Response:
        try:
            page = int(request.query.get("page", "1"))
            per_page = int(request.query.get("per_page", str(default))) if allow_size else default
        except ValueError:
            return _validation("page", "It should be a/an Positive Integer", "datatype_mismatch")
        if per_page > MAX_PER_PAGE or per_page < 1:
            return _validation("per_page", f"It should be between 1 and {MAX_PER_PAGE}")
        if page < 1:
            return _validation("page", "It should be a/an Positive Integer", "datatype_mismatch")
        start = (page - 1) * per_page
        headers = {}
        if self.link_header and start + per_page < len(items):
            following = request.url.update_query({"page": page + 1})
            headers["Link"] = f'<{following}>; rel="next"'
        return web.json_response(items[start : start + per_page], headers=headers)

    # -------------------------------------------------------------------------- routes

    async def _list_contacts(self, request: web.Request) -> web.Response:
        q = request.query
        state = q.get("state")
        if state not in (None, "blocked", "deleted", "unverified", "verified"):
            return _validation("state", "It should be one of these values: ...")
        found = [c for c in self.contacts.values() if c["deleted"] == (state == "deleted")]
        if "email" in q:
            found = [c for c in found if (c["email"] or "").lower() == q["email"].lower()]
        for key in ("phone", "mobile"):
            if key in q:
                found = [c for c in found if c[key] == q[key]]
        return self._paged(request, found, DEFAULT_PER_PAGE)

    async def _list_tickets(self, request: web.Request) -> web.Response:
        q = request.query
        filter_ = q.get("filter")
        if filter_ not in (None, "new_and_my_open", "watching", "spam", "deleted"):
            return _validation("filter", "It should be one of these values: ...")
        found = [t for t in self.tickets.values() if t["deleted"] == (filter_ == "deleted")]
        if "requester_id" in q:
            found = [t for t in found if str(t["requester_id"]) == q["requester_id"]]
        if "email" in q:
            ids = {
                c["id"]
                for c in self.contacts.values()
                if (c["email"] or "").lower() == q["email"].lower()
            }
            found = [t for t in found if t["requester_id"] in ids]
        if "updated_since" in q:
            try:
                since = _parse(q["updated_since"])
            except ValueError:
                return _validation("updated_since", "It should be a/an date format")
            found = [t for t in found if _parse(t["updated_at"]) >= since]
        else:
            # The vendor's default: only tickets created in the last 30 days.
            cutoff = datetime.now(UTC) - timedelta(days=RECENT_DAYS)
            found = [t for t in found if _parse(t["created_at"]) >= cutoff]
        found.sort(key=lambda t: t["id"])
        return self._paged(request, found, DEFAULT_PER_PAGE)

    async def _conversations(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        if tid not in self.tickets:
            return _not_found()
        return self._paged(
            request, self.conversations.get(tid, []), CONVERSATIONS_PER_PAGE, allow_size=False
        )

    def _contact(self, request: web.Request) -> dict[str, Any] | None:
        try:
            return self.contacts.get(int(request.match_info["id"]))
        except ValueError:
            return None

    async def _soft_delete(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        if contact is None or contact["deleted"]:
            return _not_found()
        contact["deleted"] = True
        self.soft_deleted.append(contact["id"])
        return web.Response(status=204)

    async def _restore(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        if contact is None or not contact["deleted"]:
            return _not_found()
        contact["deleted"] = False
        return web.Response(status=204)

    async def _hard_delete(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        if contact is None:
            return _not_found()
        if request.query.get("force") != "true" and not contact["deleted"]:
            return _validation(
                "contact_id",
                "You can't hard delete a contact which isn't soft deleted. Pass force=true.",
            )
        cid = contact["id"]
        del self.contacts[cid]
        for tid in [t for t, ticket in self.tickets.items() if ticket["requester_id"] == cid]:
            del self.tickets[tid]
            self.conversations.pop(tid, None)
        self.hard_deleted.append(cid)
        return web.Response(status=204)


__all__ = ["API_KEY", "SUBJECT_EMAIL", "SUBJECT_NAME", "SUBJECT_PHONE", "Freshdesk"]
