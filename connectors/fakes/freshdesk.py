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
- `GET /search/tickets?query="updated_at:<'YYYY-MM-DD'"` (the filter API; also `created_at`,
  `:>`): the query in double quotes, else 400; `:<` and `:>` include the day ("less/greater
  than or equal to"); 30 results a page, `page` 1 to 10 only (else 400), answering
  `{"results": [...], "total": N}`; tickets in the Trash are not found;
- `DELETE /tickets/{id}`: 204, the ticket moves to the Trash (listed with `filter=deleted`,
  recorded in `ticket_deletes`); 404 for an unknown ticket or one in the Trash already;
- `DELETE /contacts/{id}`: a restorable soft delete (`PUT /contacts/{id}/restore`), recorded;
  `DELETE /contacts/{id}/hard_delete`: 400 unless `force=true` or soft-deleted first, then 204
  and the contact's tickets and conversations are gone; 404 for an unknown contact;
- a per-account rate limit (`faults.max_rate=(requests, seconds)`, a minute at the vendor)
  answering 429 with `Retry-After`; while it is set every answer carries `X-RateLimit-Total`,
  `X-RateLimit-Remaining` and `X-RateLimit-Used-CurrentRequest`;
- the fault knobs of every fake (`faults`); a 5xx is 503 `{"code": "service_unavailable"}`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.fakes.server import (
    RETRY_AFTER,
    Answer,
    FakeServer,
    basic_credentials,
    person,
    route,
)

API_KEY = "fd-test-key"
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
CONVERSATIONS_PER_PAGE = 30
RECENT_DAYS = 30
FILTER_PER_PAGE = 30
FILTER_LAST_PAGE = 10
_FILTER = re.compile(r"^\"(created_at|updated_at):([<>])'(\d{4}-\d{2}-\d{2})'\"$")

SUBJECT_EMAIL = "femke.smit@example.nl"
SUBJECT_PHONE = "+31611122233"
SUBJECT_NAME = "Femke Smit"


#: The values of `state` on contacts and `filter` on tickets; "deleted" shows the deleted ones.
_STATES = ("blocked", "deleted", "unverified", "verified")
_FILTERS = ("new_and_my_open", "watching", "spam", "deleted")


def _has_email(contact: dict[str, Any], email: str) -> bool:
    return (contact["email"] or "").lower() == email.lower()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _invalid(field: str, message: str, code: str = "invalid_value") -> Answer:
    body = {
        "description": "Validation failed",
        "errors": [{"field": field, "message": message, "code": code}],
    }
    return Answer(400, body)


def _validation(field: str, message: str, code: str = "invalid_value") -> web.Response:
    return _invalid(field, message, code).response()


def _not_found() -> web.Response:
    return web.json_response({"code": "not_found", "message": "Record not found"}, status=404)


@dataclass(eq=False)
class Freshdesk(FakeServer):
    """The fake Freshdesk account; see the module docstring for what it enforces."""

    api_key: str = API_KEY
    link_header: bool = True

    prefix = "/api/v2"
    unauthorised = Answer(
        401,
        {
            "code": "invalid_credentials",
            "message": "You have to be logged in to perform this action.",
        },
    )
    server_error = Answer(503, {"code": "service_unavailable"})
    too_many = Answer(
        429,
        {"code": "rate_limit_exceeded", "message": "You have exceeded the limit."},
        RETRY_AFTER,
    )

    # ------------------------------------------------------------------------- seeding

    def reset(self) -> None:
        """Forget all data and history of deletions; empty logs, no faults."""
        self.contacts: dict[int, dict[str, Any]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.conversations: dict[int, list[dict[str, Any]]] = {}
        self.soft_deleted: list[int] = []  # contact ids, in order of soft deletion
        self.hard_deleted: list[int] = []
        self.ticket_deletes: list[int] = []  # ticket ids, in order of deletion
        self._ids = itertools.count(1001)  # ids of seeded records
        self.reset_faults()

    def add_contact(
        self, name: str, email: str | None, phone: str | None = None, *, deleted: bool = False
    ) -> int:
        """Add a contact; returns its id."""
        cid = next(self._ids)
        created = _iso(datetime.now(UTC))
        self.contacts[cid] = person(
            cid, name, email, phone, mobile=None, active=True, deleted=deleted, created_at=created
        )
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
        tid = next(self._ids)
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
            {
                "id": next(self._ids),
                "ticket_id": tid,
                "body_text": f"Reply {n}",
                "incoming": n % 2 == 0,
                "private": False,
            }
            for n in range(conversations)
        ]
        return tid

    # ------------------------------------------------------------------------ plumbing

    def rate_headers(self) -> dict[str, str]:
        """Under the account's rate limit: `X-RateLimit-Total`, `-Remaining`, `-Used-...`."""
        window = self.window()
        if window is None:
            return {}
        limit, left = window
        return {
            "X-RateLimit-Total": str(limit),
            "X-RateLimit-Remaining": str(left),
            "X-RateLimit-Used-CurrentRequest": "1",
        }

    def authorised(self, request: web.Request) -> bool:
        """Basic auth with the API key as user (any password)."""
        credentials = basic_credentials(request)
        return credentials is not None and credentials[0] == self.api_key

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

    @staticmethod
    def _view(request: web.Request, param: str, views: tuple[str, ...], items: Any) -> list[Any]:
        """The items a listing's `param` shows: the deleted ones only with `param=deleted`."""
        view = request.query.get(param)
        if view not in (None, *views):
            raise _invalid(param, "It should be one of these values: ...").refusal()
        return [item for item in items if item["deleted"] == (view == "deleted")]

    @route("GET", "/contacts")
    async def _list_contacts(self, request: web.Request) -> web.Response:
        found = self._view(request, "state", _STATES, self.contacts.values())
        q = request.query
        for key in ("email", "phone", "mobile"):
            if key in q:
                found = [c for c in found if self.search_matches(c[key], q[key])]
        return self._paged(request, found, DEFAULT_PER_PAGE)

    @route("GET", "/tickets")
    async def _list_tickets(self, request: web.Request) -> web.Response:
        found = self._view(request, "filter", _FILTERS, self.tickets.values())
        q = request.query
        if "requester_id" in q:
            found = [t for t in found if str(t["requester_id"]) == q["requester_id"]]
        if "email" in q:
            ids = {c["id"] for c in self.contacts.values() if _has_email(c, q["email"])}
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

    @route("GET", "/tickets/{id}/conversations")
    async def _conversations(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        if tid not in self.tickets:
            return _not_found()
        return self._paged(
            request, self.conversations.get(tid, []), CONVERSATIONS_PER_PAGE, allow_size=False
        )

    @route("GET", "/search/tickets")
    async def _filter_tickets(self, request: web.Request) -> web.Response:
        found = _FILTER.match(request.query.get("query", ""))
        if found is None:
            return _validation("query", "It should be a valid query in double quotes")
        field, operator, day = found.group(1), found.group(2), date.fromisoformat(found.group(3))
        try:
            page = int(request.query.get("page", "1"))
        except ValueError:
            page = 0
        if not 1 <= page <= FILTER_LAST_PAGE:
            return _validation("page", f"It should be between 1 and {FILTER_LAST_PAGE}")
        matched = [
            t
            for t in sorted(self.tickets.values(), key=lambda t: t["id"])
            if not t["deleted"]
            and (
                _parse(t[field]).date() <= day
                if operator == "<"
                else _parse(t[field]).date() >= day
            )
        ]
        start = (page - 1) * FILTER_PER_PAGE
        return web.json_response(
            {"results": matched[start : start + FILTER_PER_PAGE], "total": len(matched)}
        )

    @route("DELETE", "/tickets/{id}")
    async def _delete_ticket(self, request: web.Request) -> web.Response:
        try:
            ticket = self.tickets.get(int(request.match_info["id"]))
        except ValueError:
            ticket = None
        if ticket is None or ticket["deleted"]:
            return _not_found()
        ticket["deleted"] = True
        self.ticket_deletes.append(ticket["id"])
        return web.Response(status=204)

    def _contact(self, request: web.Request) -> dict[str, Any] | None:
        try:
            return self.contacts.get(int(request.match_info["id"]))
        except ValueError:
            return None

    @route("DELETE", "/contacts/{id}")
    async def _soft_delete(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        if contact is None or contact["deleted"]:
            return _not_found()
        contact["deleted"] = True
        self.soft_deleted.append(contact["id"])
        return web.Response(status=204)

    @route("PUT", "/contacts/{id}/restore")
    async def _restore(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        if contact is None or not contact["deleted"]:
            return _not_found()
        contact["deleted"] = False
        return web.Response(status=204)

    @route("DELETE", "/contacts/{id}/hard_delete")
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
