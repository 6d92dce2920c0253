"""A strict fake of the Zendesk Support API (vendor-apis.md, Zendesk), served under /api/v2.

What it enforces:

- Basic auth `{email}/token:{api_token}` or a Bearer OAuth token; otherwise 401
  `{"error": "Couldn't authenticate you"}`;
- `GET /users/search?query=` matches *partially* (name, email, phone), as Zendesk does, and
  never returns deleted users;
- cursor paging on lists: `page[size]` (at most 100, else 400) + `page[after]`, answering
  `meta{has_more, after_cursor}` and `links{next}`; offset paging (`page`, `per_page`) beyond
  the first 10,000 records answers 400;
- `DELETE /tickets/{id}` (204) moves a ticket to `GET /deleted_tickets` (restorable with
  `PUT /deleted_tickets/{id}/restore`); `DELETE /deleted_tickets/{id}` answers a job status
  that goes queued -> working -> completed over `job_polls` polls of `GET /job_statuses/{id}`,
  and only then is the ticket gone;
- `DELETE /users/{id}` soft-deletes (listed in `GET /deleted_users`, restorable with
  `restore_user`); `DELETE /deleted_users/{id}` deletes permanently: the user stays as
  "Permanently Deleted User" without email, phone or identities, and gets a compliance
  deletion status (`GET /users/{id}/compliance_deletion_statuses`);
- tickets carry their people: `requester_id`, `submitter_id`, `email_cc_ids`, `follower_ids`
  and `collaborator_ids` (CCs and followers together, the older name); comments carry
  `author_id`, `body`, `html_body`, `plain_body`, `attachments` and `via`;
  `GET /users/{id}/tickets/ccd` lists the tickets a user is CC'd on;
  `GET /users/show_many?ids=` (at most 100 ids, else 400) answers the users it knows;
- `PUT /comment_redactions/{comment_id}` `{ticket_id, html_body, external_attachment_urls}`:
  the agent-workspace redaction Zendesk documents as current (the older
  `PUT /tickets/{id}/comments/{id}/redact` `{text}` "will eventually be deprecated", so it is
  not served). The `html_body` must be the comment's own with `<redact>` tags (and `redact`
  attributes) added, else 400 `InvalidValue`; each character inside the tags becomes `▇`;
  each attachment named in `external_attachment_urls` becomes `redacted.txt`. `redactions`
  lists `(ticket id, comment id)` of each call that redacted;
- `PUT /tickets/{id}` `{"ticket": {"email_ccs": [{"user_id", "action": "put"|"delete"}],
  "followers": [...]}}` adds or removes CCs and followers; anything else in it answers 422
  `RecordInvalid` (this fake updates nothing else). `ticket_updates` lists
  `(ticket id, body)` of each;
- `GET /search/export?query=&filter[type]=ticket&page[size]=` (Export Search Results): the
  `filter[type]` is required (else 400), cursor paging as the lists, results under `results`;
  the query's terms `type:ticket`, `status:<status>` and `updated<YYYY-MM-DD` /
  `created<...` (`>` too; before or after that day) are all applied, any other term answers
  400 (this fake searches no text); soft-deleted tickets are not found. Tickets carry
  `status`, `created_at` and `updated_at` (`add_ticket(age_days=..., status=...)`);
- 404 `{"error": "RecordNotFound", "description": "Not found"}` for anything unknown;
- rate limit `faults.max_rate=(requests, seconds)`: 429 with `Retry-After`; while it is set
  every answer carries `X-Rate-Limit` and `X-Rate-Limit-Remaining`;
- the fault knobs of every fake (`faults`; a 5xx is 503 `{"error": "ServiceUnavailable"}`);
  the request log of `FakeServer`.

Documented (vendor-apis.md, from Zendesk's API reference): auth schemes, user search,
identities, cursor paging and its limits, the 10,000-record offset limit, soft then permanent
deletion of users and tickets, job statuses, compliance deletion statuses, the 404 body, 429
with `Retry-After`; the ticket and comment fields above, the CCs and followers update (Zendesk
guide "Creating and updating tickets", Setting email CCs / followers), `tickets/ccd`,
`show_many`, the agent-workspace redaction and its `▇`. Unconfirmed:
`GET /users/{id}/tickets/requested` is not in the public spec (the fake serves it as the docs
describe it); the number of polls a job takes, the partial-match rules of search, the 400 for
an `html_body` that is not the comment's own, what a redacted attachment reads as and the
422's `details` are this fake's choices.
"""

from __future__ import annotations

import base64
import html
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
    bearer_token,
    json_object,
    person,
    route,
)

EMAIL = "agent@shop.example"
API_TOKEN = "zd-test-token"  # noqa: S105 - a fake's fixed test credential
OAUTH_TOKEN = "zd-oauth-token"  # noqa: S105
MAX_PAGE_SIZE = 100
MAX_OFFSET_RECORDS = 10_000
DELETED_NAME = "Permanently Deleted User"

SUBJECT_EMAIL = "femke.smit@example.nl"
SUBJECT_PHONE = "+31611122233"
SUBJECT_NAME = "Femke Smit"
#: The other customer on the tickets `add_shared_tickets` seeds, and what each of them wrote.
OTHER_NAME = "Jan Jansen"
OTHER_EMAIL = "jan.jansen@example.com"
OTHER_MESSAGE = "Jan here: my order 4471 went to Dorpsstraat 1, Delft"
SUBJECT_MESSAGE = "Femke: the blue parcel is mine"
AGENT_EMAIL = "support@shop.example"
REDACTED = "\u2587"  # ▇, what each redacted character reads as

_REDACT = re.compile(r"<redact>(.*?)</redact>", re.S)
_REDACT_ATTRIBUTE = re.compile(r"\s+redact(?=[\s/>])")
_TAG = re.compile(r"<[^>]*>")
_TERM = re.compile(r"^(?:type:(\w+)|status:(\w+)|(created|updated)([<>])(\d{4}-\d{2}-\d{2}))$")


def _not_found() -> web.Response:
    return web.json_response({"error": "RecordNotFound", "description": "Not found"}, status=404)


def _bad(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "description": description}, status=400)


def _invalid(details: dict[str, Any]) -> web.Response:
    return web.json_response(
        {"error": "RecordInvalid", "description": "Record validation errors", "details": details},
        status=422,
    )


def _before_or_after(stamp: str, operator: str, day: date) -> bool:
    """Whether a ticket's timestamp lies before (`<`) or after (`>`) the day."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).date()
    return moment < day if operator == "<" else moment > day


def _text(html_body: str) -> str:
    return html.unescape(_TAG.sub("", html_body))


@dataclass(eq=False)
class Zendesk(FakeServer):
    """The fake Zendesk account; see the module docstring for what it enforces."""

    email: str = EMAIL
    api_token: str = API_TOKEN
    oauth_token: str = OAUTH_TOKEN
    job_polls: int = 2

    prefix = "/api/v2"
    unauthorised = Answer(401, {"error": "Couldn't authenticate you"})
    server_error = Answer(503, {"error": "ServiceUnavailable"})
    too_many = Answer(
        429, {"error": "TooManyRequests", "description": "Rate limit exceeded"}, RETRY_AFTER
    )

    # ------------------------------------------------------------------------- seeding

    def reset(self) -> None:
        """Forget all data; empty logs, no faults."""
        self.users: dict[int, dict[str, Any]] = {}
        self.user_state: dict[int, str] = {}  # active | soft_deleted | permanently_deleted
        self.identities: dict[int, list[dict[str, Any]]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.deleted_tickets: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.compliance: dict[int, list[dict[str, Any]]] = {}
        self.redactions: list[tuple[int, int]] = []
        self.ticket_updates: list[tuple[int, dict[str, Any]]] = []
        self._ids = itertools.count(5001)  # ids of seeded records
        self.reset_faults()

    def add_user(
        self,
        name: str,
        email: str | None,
        phone: str | None = None,
        *,
        extra_emails: int = 0,
        role: str = "end-user",
    ) -> int:
        """Add a user (an end user unless `role` says "agent" or "admin") with an identity
        per email and phone; returns its id."""
        uid = next(self._ids)
        self.users[uid] = person(uid, name, email, phone, role=role, active=True)
        self.user_state[uid] = "active"
        values = [("email", email), ("phone_number", phone)]
        values += [("email", f"alias{n}.{uid}@mail.example") for n in range(extra_emails)]
        self.identities[uid] = [
            {"id": next(self._ids), "user_id": uid, "type": kind, "value": value}
            for kind, value in values
            if value
        ]
        return uid

    def add_ticket(
        self,
        requester_id: int,
        subject: str,
        *,
        comments: int = 1,
        said: list[tuple[int, str]] | None = None,
        ccs: tuple[int, ...] = (),
        followers: tuple[int, ...] = (),
        age_days: float = 1,
        status: str = "open",
    ) -> int:
        """Add a ticket requested by `requester_id` with `comments` comments by the requester,
        or the comments `said` as (author id, text), CC'ing `ccs` and followed by `followers`,
        in `status` and last updated `age_days` ago; returns its id."""
        tid = next(self._ids)
        when = (datetime.now(UTC) - timedelta(days=age_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        said = said or [(requester_id, f"Message {n}") for n in range(comments)]
        requester = self.users[requester_id]
        self.tickets[tid] = {
            "id": tid,
            "requester_id": requester_id,
            "submitter_id": requester_id,
            "assignee_id": None,
            "subject": subject,
            "raw_subject": subject,
            "description": said[0][1] if said else "",
            "status": status,
            "created_at": when,
            "updated_at": when,
            "email_cc_ids": list(ccs),
            "follower_ids": list(followers),
            "collaborator_ids": [*ccs, *followers],
            "via": self._via(requester),
        }
        self.comments[tid] = [self._comment(author, text) for author, text in said]
        return tid

    def _comment(self, author_id: int, text: str) -> dict[str, Any]:
        cid = next(self._ids)
        return {
            "id": cid,
            "type": "Comment",
            "author_id": author_id,
            "body": text,
            "html_body": f'<div class="zd-comment" dir="auto"><p>{html.escape(text)}</p></div>',
            "plain_body": text,
            "public": True,
            "attachments": [
                {
                    "id": cid + 100_000,
                    "file_name": f"photo-{cid}.jpg",
                    "content_url": f"https://shop.zendesk.com/attachments/token/{cid}/?name=photo.jpg",
                    "content_type": "image/jpeg",
                }
            ],
            "via": self._via(self.users[author_id]),
            "created_at": "2024-06-01T10:00:00Z",
        }

    @staticmethod
    def _via(author: dict[str, Any]) -> dict[str, Any]:
        sender = {"address": author["email"], "name": author["name"]}
        return {"channel": "email", "source": {"from": sender, "to": {}, "rel": None}}

    def add_shared_tickets(self, subject_id: int) -> dict[str, int]:
        """Seed the other customer, an agent, and two tickets the subject shares with the
        other customer: one the other requested with the subject CC'd ("cc"), one the subject
        requested with the other CC'd ("requested"); both hold a message of each and an
        agent's reply. Returns the ids by name (also "other" and "agent")."""
        other = self.add_user(OTHER_NAME, OTHER_EMAIL)
        agent = self.add_user("Support", AGENT_EMAIL, role="agent")
        said = [(other, OTHER_MESSAGE), (subject_id, SUBJECT_MESSAGE), (agent, "Shipped.")]
        cc = self.add_ticket(other, "Two parcels", said=said, ccs=(subject_id,), followers=(agent,))
        requested = self.add_ticket(
            subject_id, "Wrong address", said=[said[1], said[0], said[2]], ccs=(other,)
        )
        return {"other": other, "agent": agent, "cc": cc, "requested": requested}

    def restore_user(self, user_id: int) -> None:
        """Undo a soft delete (an agent can, until the user is permanently deleted)."""
        if self.user_state.get(user_id) != "soft_deleted":
            raise KeyError(user_id)
        self.user_state[user_id] = "active"
        self.users[user_id]["active"] = True

    # ------------------------------------------------------------------------ plumbing

    def rate_headers(self) -> dict[str, str]:
        """Under the account's rate limit: `X-Rate-Limit` and `X-Rate-Limit-Remaining`."""
        window = self.window()
        if window is None:
            return {}
        return {"X-Rate-Limit": str(window[0]), "X-Rate-Limit-Remaining": str(window[1])}

    def authorised(self, request: web.Request) -> bool:
        """Basic `{email}/token:{api_token}`, or the OAuth token as Bearer."""
        token = bearer_token(request)
        if token is not None:
            return token == self.oauth_token
        return basic_credentials(request) == (f"{self.email}/token", self.api_token)

    def _list(self, request: web.Request, key: str, items: list[dict[str, Any]]) -> web.Response:
        q = request.query
        try:
            if "page" in q or "per_page" in q:
                page, per_page = int(q.get("page", "1")), int(q.get("per_page", "100"))
                if not 1 <= per_page <= MAX_PAGE_SIZE or page < 1:
                    return _bad("InvalidPaginationParameter", "per_page must be 1-100")
                if page * per_page > MAX_OFFSET_RECORDS:
                    return _bad(
                        "InvalidPaginationParameter",
                        "Offset pagination is limited to the first 10,000 records; "
                        "use cursor pagination",
                    )
                start = (page - 1) * per_page
                more = start + per_page < len(items)
                following = str(request.url.update_query({"page": page + 1})) if more else None
                return web.json_response(
                    {
                        key: items[start : start + per_page],
                        "next_page": following,
                        "previous_page": None,
                        "count": len(items),
                    }
                )
            size = int(q.get("page[size]", "100"))
            after = q.get("page[after]")
            start = int(base64.b64decode(after).decode()) if after else 0
        except ValueError:
            return _bad("InvalidPaginationParameter", "invalid paging parameter")
        if not 1 <= size <= MAX_PAGE_SIZE:
            return _bad("InvalidPaginationParameter", "page[size] must be 1-100")
        end = start + size
        more = end < len(items)
        cursor = base64.b64encode(str(end).encode()).decode() if more else None
        following = (
            str(request.url.update_query({"page[size]": size, "page[after]": cursor or ""}))
            if more
            else None
        )
        return web.json_response(
            {
                key: items[start:end],
                "meta": {"has_more": more, "after_cursor": cursor, "before_cursor": None},
                "links": {"next": following, "prev": None},
            }
        )

    def _active_user(self, request: web.Request) -> int | None:
        try:
            uid = int(request.match_info["id"])
        except ValueError:
            return None
        return uid if self.user_state.get(uid) == "active" else None

    # -------------------------------------------------------------------------- routes

    @route("GET", "/users/search")
    async def _search(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "").lower()
        if not query:
            return _bad("InvalidValue", "query is required")
        wildcard = self.faults.wildcard_search
        found = [
            u
            for uid, u in self.users.items()
            if self.user_state[uid] == "active"
            and any(
                query in (u[f] or "").lower()
                or (wildcard and self.search_matches(u[f], f"*{query}*"))
                for f in ("name", "email", "phone")
            )
        ]
        return web.json_response(
            {"users": found, "next_page": None, "previous_page": None, "count": len(found)}
        )

    @route("GET", "/search/export")
    async def _search_export(self, request: web.Request) -> web.Response:
        if request.query.get("filter[type]") != "ticket":
            return _bad("InvalidValue", "filter[type] is required (this fake: ticket)")
        found = [t for t in self.tickets.values()]
        for term in request.query.get("query", "").split():
            match = _TERM.match(term)
            if match is None:
                return _bad("InvalidValue", "query term not supported by the fake")
            kind, status, field, operator, day = match.groups()
            if kind is not None and kind != "ticket":
                return _bad("InvalidValue", "type must match filter[type]")
            if status is not None:
                found = [t for t in found if t["status"] == status]
            if field is not None:
                bound = date.fromisoformat(day)
                found = [t for t in found if _before_or_after(t[f"{field}_at"], operator, bound)]
        return self._list(request, "results", sorted(found, key=lambda t: t["id"]))

    @route("GET", "/users/show_many")
    async def _show_many(self, request: web.Request) -> web.Response:
        try:
            wanted = [int(i) for i in request.query.get("ids", "").split(",") if i]
        except ValueError:
            return _bad("InvalidValue", "ids must be a comma-separated list of user ids")
        if not 1 <= len(wanted) <= MAX_PAGE_SIZE:
            return _bad("InvalidValue", "ids takes 1-100 user ids")
        return web.json_response({"users": [self.users[i] for i in wanted if i in self.users]})

    @route("GET", "/users/{id}")
    async def _user(self, request: web.Request) -> web.Response:
        uid = int(request.match_info["id"])
        if uid not in self.users:
            return _not_found()
        return web.json_response({"user": self.users[uid]})

    @route("GET", "/users/{id}/identities")
    async def _identities(self, request: web.Request) -> web.Response:
        uid = self._active_user(request)
        if uid is None:
            return _not_found()
        return self._list(request, "identities", self.identities.get(uid, []))

    @route("GET", "/users/{id}/tickets/requested")
    async def _requested(self, request: web.Request) -> web.Response:
        uid = self._active_user(request)
        if uid is None:
            return _not_found()
        tickets = [t for t in self.tickets.values() if t["requester_id"] == uid]
        return self._list(request, "tickets", sorted(tickets, key=lambda t: t["id"]))

    @route("GET", "/users/{id}/tickets/ccd")
    async def _ccd(self, request: web.Request) -> web.Response:
        uid = self._active_user(request)
        if uid is None:
            return _not_found()
        tickets = [t for t in self.tickets.values() if uid in t["email_cc_ids"]]
        return self._list(request, "tickets", sorted(tickets, key=lambda t: t["id"]))

    @route("PUT", "/tickets/{id}")
    async def _update_ticket(self, request: web.Request) -> web.Response:
        ticket = self.tickets.get(int(request.match_info["id"]))
        if ticket is None:
            return _not_found()
        body = await json_object(request, Answer(400, {"error": "InvalidJSON"}))
        update = body.get("ticket")
        if not isinstance(update, dict) or not update or set(update) - {"email_ccs", "followers"}:
            return _invalid({"ticket": [{"description": "only email_ccs and followers"}]})
        changes = [(field, change) for field in update for change in update[field] or []]
        if any(
            not isinstance(c, dict)
            or c.get("action") not in ("put", "delete")
            or "user_id" not in c
            for _, c in changes
        ):
            return _invalid({"ticket": [{"description": "each entry needs user_id and action"}]})
        for field, change in changes:
            key = "email_cc_ids" if field == "email_ccs" else "follower_ids"
            uid = int(change["user_id"])
            for listed in (ticket[key], ticket["collaborator_ids"]):
                if change["action"] == "delete" and uid in listed:
                    listed.remove(uid)
                elif change["action"] == "put" and uid not in listed:
                    listed.append(uid)
        self.ticket_updates.append((ticket["id"], body))
        return web.json_response({"ticket": ticket, "audit": {"ticket_id": ticket["id"]}})

    @route("PUT", "/comment_redactions/{id}")
    async def _redact_comment(self, request: web.Request) -> web.Response:
        body = await json_object(request, Answer(400, {"error": "InvalidJSON"}))
        try:
            tid, cid = int(body["ticket_id"]), int(request.match_info["id"])
        except (KeyError, TypeError, ValueError):
            return _bad("InvalidValue", "ticket_id is required")
        found = [c for c in self.comments.get(tid, []) if c["id"] == cid]
        if not found:
            return _not_found()
        comment = found[0]
        marked = str(body.get("html_body") or comment["html_body"])
        unmarked = _REDACT_ATTRIBUTE.sub("", _REDACT.sub(lambda m: m.group(1), marked))
        if unmarked != comment["html_body"]:
            return _bad("InvalidValue", "html_body must be the comment's html_body with redactions")
        urls = set(body.get("external_attachment_urls") or [])
        if urls - {a["content_url"] for a in comment["attachments"]}:
            return _bad("InvalidValue", "external_attachment_urls must be the comment's own")
        redacted = _REDACT.sub(lambda m: REDACTED * len(_text(m.group(1))), marked)
        redacted = _TAG.sub(
            lambda m: "" if _REDACT_ATTRIBUTE.search(m.group(0)) else m.group(0), redacted
        )
        comment |= {"html_body": redacted, "body": _text(redacted), "plain_body": _text(redacted)}
        for attachment in comment["attachments"]:
            if attachment["content_url"] in urls:
                attachment |= {"file_name": "redacted.txt", "content_type": "text/plain"}
        self.redactions.append((tid, cid))
        return web.json_response({"comment": comment})

    @route("GET", "/tickets/{id}/comments")
    async def _comments(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        if tid not in self.tickets:
            return _not_found()
        return self._list(request, "comments", self.comments.get(tid, []))

    @route("DELETE", "/tickets/{id}")
    async def _soft_delete_ticket(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        ticket = self.tickets.pop(tid, None)
        if ticket is None:
            return _not_found()
        self.deleted_tickets[tid] = ticket
        return web.Response(status=204)

    @route("GET", "/deleted_tickets")
    async def _deleted_ticket_list(self, request: web.Request) -> web.Response:
        listed = [
            {"id": t["id"], "subject": t["subject"], "previous_state": t["status"]}
            for t in self.deleted_tickets.values()
        ]
        return self._list(request, "deleted_tickets", listed)

    @route("PUT", "/deleted_tickets/{id}/restore")
    async def _restore_ticket(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        ticket = self.deleted_tickets.pop(tid, None)
        if ticket is None or any(j["ticket_id"] == tid for j in self.jobs.values()):
            if ticket is not None:
                self.deleted_tickets[tid] = ticket
            return _not_found()
        self.tickets[tid] = ticket
        return web.Response(status=200)

    @route("DELETE", "/deleted_tickets/{id}")
    async def _destroy_ticket(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        if tid not in self.deleted_tickets:
            return _not_found()  # never soft-deleted, or already gone for good
        job_id = f"job{next(self._ids)}"
        self.jobs[job_id] = {"ticket_id": tid, "polls": 0, "status": "queued"}
        return web.json_response({"job_status": self._job_body(request, job_id)})

    def _job_body(self, request: web.Request, job_id: str) -> dict[str, Any]:
        url = str(request.url.with_path(f"/api/v2/job_statuses/{job_id}").with_query(None))
        job = self.jobs[job_id]
        return {
            "id": job_id,
            "url": url,
            "status": job["status"],
            "total": 1,
            "progress": 1 if job["status"] == "completed" else 0,
        }

    @route("GET", "/job_statuses/{id}")
    async def _job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        job = self.jobs.get(job_id)
        if job is None:
            return _not_found()
        if job["status"] != "completed":
            job["polls"] += 1
            if job["polls"] >= self.job_polls:
                job["status"] = "completed"
                self.deleted_tickets.pop(job["ticket_id"], None)
                self.comments.pop(job["ticket_id"], None)
            else:
                job["status"] = "working"
        return web.json_response({"job_status": self._job_body(request, job_id)})

    @route("DELETE", "/users/{id}")
    async def _soft_delete_user(self, request: web.Request) -> web.Response:
        uid = self._active_user(request)
        if uid is None:
            return _not_found()
        self.user_state[uid] = "soft_deleted"
        self.users[uid]["active"] = False
        return web.json_response({"user": self.users[uid]})

    @route("GET", "/deleted_users")
    async def _deleted_users(self, request: web.Request) -> web.Response:
        listed = [u for uid, u in self.users.items() if self.user_state[uid] == "soft_deleted"]
        return self._list(request, "deleted_users", listed)

    @route("DELETE", "/deleted_users/{id}")
    async def _destroy_user(self, request: web.Request) -> web.Response:
        uid = int(request.match_info["id"])
        if self.user_state.get(uid) != "soft_deleted":
            return _not_found()
        self.user_state[uid] = "permanently_deleted"
        self.users[uid] |= {"name": DELETED_NAME, "email": None, "phone": None}
        self.identities.pop(uid, None)
        self.compliance[uid] = [
            {"action": "request_deletion", "application": "all", "user_id": uid},
            {"action": "complete", "application": "support", "user_id": uid},
        ]
        return web.json_response({"deleted_user": self.users[uid]})

    @route("GET", "/users/{id}/compliance_deletion_statuses")
    async def _compliance(self, request: web.Request) -> web.Response:
        uid = int(request.match_info["id"])
        if uid not in self.users:
            return _not_found()
        return web.json_response({"compliance_deletion_statuses": self.compliance.get(uid, [])})


__all__ = [
    "API_TOKEN",
    "DELETED_NAME",
    "EMAIL",
    "OAUTH_TOKEN",
    "OTHER_EMAIL",
    "OTHER_MESSAGE",
    "OTHER_NAME",
    "REDACTED",
    "SUBJECT_EMAIL",
    "SUBJECT_MESSAGE",
    "Zendesk",
]
