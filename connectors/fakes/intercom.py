"""A strict local fake of the Intercom REST API (contacts, conversations, tickets, notes, tags).

Documented behaviours it reproduces (vendor-apis.md, Intercom):

- `Authorization: Bearer <token>`; otherwise 401
  `{type:"error.list", request_id, errors:[{code:"unauthorized", message}]}`;
- `POST /contacts/search` `{"query":{"field","operator":"=","value"}, "pagination":{"per_page",
  "starting_after"}}` -> `{type:"list", data, total_count, pages:{..., next:{per_page,
  starting_after}}}`, default 50 per page, more than 150 answers 400 error.list;
- `POST /conversations/search` and `POST /tickets/search` on `contact_ids` (<= 150 per page,
  same cursor); search results carry no conversation parts;
- `GET /conversations/{id}` with its parts (the 500 most recent, as documented);
- `GET /contacts/{id}/notes` and `/tags`;
- `DELETE /contacts/{id}` -> 200 `{type:"contact", id, external_id, deleted:true}`; its notes and
  taggings go with it; its conversations and tickets do **not** (separate objects);
- `DELETE /conversations/{id}`, `DELETE /tickets/{id}`: permanent, 200 `{deleted:true}`;
- 404 `{"type":"error.list","errors":[{"code":"not_found","message":"... Not Found"}]}`;
- `POST /contacts/{id}/archive`: archives, which is not deletion: the contact stays findable
  and `archived` lists it;
- 429 with `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (unix time).

UNCONFIRMED, recorded rather than enforced: whether `Intercom-Version` is required (requests
without it are answered; `versions` lists what each request sent); the page size of notes
(all are returned on one page).

Fault injection like the Acme fake: `rate_limit_every=N`, `fail_5xx_times=N`, `max_rate`.
`endpoints` lists `(method, route)` of every authenticated call.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from aiohttp import web

from connectors.fakes.server import FakeServer

TOKEN = "dG9rOmZha2UtaW50ZXJjb20tdG9rZW4="  # noqa: S105 - a fake's fixed test credential
MAX_PER_PAGE = 150
DEFAULT_PER_PAGE = 50
MAX_PARTS = 500

SUBJECT_EMAIL = "anna.devries@example.nl"
SUBJECT_NAME = "Anna de Vries"
SUBJECT_ID = "6650a1b2c3d4e5f601"


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = {
        "type": "error.list",
        "request_id": uuid.uuid4().hex,
        "errors": [{"code": code, "message": message}],
    }
    return web.json_response(body, status=status, headers=headers)


class FakeIntercom(FakeServer):
    """The fake Intercom; see the module docstring for what it reproduces."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        rate_limit_every: int | None = None,
        fail_5xx_times: int = 0,
        max_rate: tuple[int, float] | None = None,
    ) -> None:
        super().__init__()
        self.endpoints: list[tuple[str, str]] = []
        self.versions: list[str | None] = []
        self.archived: list[str] = []
        self.reset()
        self.token = token
        self.rate_limit_every = rate_limit_every
        self.fail_5xx_times = fail_5xx_times
        self.max_rate = max_rate

    def reset(self, conversations: int = 4) -> None:
        """Seed the subject (with `conversations` own conversations) and two other people."""
        self.contacts: dict[str, dict[str, Any]] = {}
        self.conversations: dict[str, dict[str, Any]] = {}
        self.tickets: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.tags: dict[str, list[dict[str, Any]]] = {}
        for cid, email, name, phone in (
            (SUBJECT_ID, SUBJECT_EMAIL, SUBJECT_NAME, "+31612345678"),
            ("6650a1b2c3d4e5f602", "jan.jansen@example.com", "Jan Jansen", None),
            ("6650a1b2c3d4e5f603", "piet.bakker@example.org", "Piet Bakker", None),
        ):
            self.contacts[cid] = {
                "type": "contact", "id": cid, "external_id": f"ext-{cid[-2:]}", "role": "user",
                "email": email, "name": name, "phone": phone, "archived": False,
            }  # fmt: skip
        other = "6650a1b2c3d4e5f602"
        for n in range(conversations):
            self.add_conversation(f"c{n}", [SUBJECT_ID], parts=3 if n else 20)
        self.add_conversation("shared", [SUBJECT_ID, other], parts=2)
        self.add_conversation("jan", [other], parts=1)
        self.tickets = {
            tid: {"type": "ticket", "id": tid, "ticket_attributes": {"_default_title_": title},
                  "contacts": {"type": "contact.list", "contacts": [{"id": owner}]}}
            for tid, owner, title in (("t1", SUBJECT_ID, "Parcel lost"),
                                      ("t2", SUBJECT_ID, "Refund"), ("t3", other, "Other"))
        }  # fmt: skip
        self.notes = {
            SUBJECT_ID: [{"type": "note", "id": f"n{n}", "body": f"Called {n}"} for n in range(3)],
            other: [{"type": "note", "id": "n9", "body": "Prefers phone"}],
        }
        self.tags = {
            SUBJECT_ID: [{"type": "tag", "id": "17", "name": "vip"},
                         {"type": "tag", "id": "18", "name": "webshop"}],
        }  # fmt: skip
        self.endpoints = []
        self.versions = []
        self.archived = []
        with self._lock:
            self.requests.clear()
        self._count = self._served_5xx = 0
        self.rate_limit_every = None
        self.max_rate = None
        self.fail_5xx_times = 0

    def add_conversation(self, cid: str, contacts: list[str], parts: int = 1) -> None:
        """Add a conversation between the given contacts and an admin."""
        self.conversations[cid] = {
            "type": "conversation",
            "id": cid,
            "created_at": 1717200000,
            "source": {"type": "conversation", "body": "<p>Hello, where is my order?</p>"},
            "contacts": {"type": "contact.list", "contacts": [{"id": c} for c in contacts]},
            "conversation_parts": {
                "type": "conversation_part.list",
                "conversation_parts": [
                    {"type": "conversation_part", "id": f"{cid}-p{n}", "body": f"Reply {n}"}
                    for n in range(parts)
                ],
                "total_count": parts,
            },
        }

    # ------------------------------------------------------------------------ plumbing

    def routes(self, app: web.Application) -> None:
        """The Intercom routes the connector uses, plus archive."""
        r = app.router
        r.add_post("/contacts/search", self._search_contacts)
        r.add_delete("/contacts/{id}", self._delete_contact)
        r.add_post("/contacts/{id}/archive", self._archive)
        r.add_get("/contacts/{id}/notes", self._notes)
        r.add_get("/contacts/{id}/tags", self._tags)
        r.add_post("/conversations/search", self._search_conversations)
        r.add_get("/conversations/{id}", self._conversation)
        r.add_delete("/conversations/{id}", self._delete_conversation)
        r.add_post("/tickets/search", self._search_tickets)
        r.add_delete("/tickets/{id}", self._delete_ticket)

    async def before(self, request: web.Request) -> web.StreamResponse | None:
        """Injected faults, the vendor's own rate limit, then auth."""
        self._count += 1
        if self._served_5xx < self.fail_5xx_times:
            self._served_5xx += 1
            return _error(503, "service_unavailable", "Service Unavailable")
        if self.rate_limit_every and self._count % self.rate_limit_every == 0:
            return self._too_many()
        if self.max_rate is not None:
            limit, seconds = self.max_rate
            now = time.monotonic()
            recent = [r for r in self.calls() if now - r.at < seconds and r.status != 429]
            if len(recent) >= limit:
                return self._too_many()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized", "Access Token Invalid")
        self.versions.append(request.headers.get("Intercom-Version"))
        route = request.match_info.route.resource
        self.endpoints.append((request.method, route.canonical if route else request.path))
        return None

    def _too_many(self) -> web.Response:
        headers = {
            "X-RateLimit-Limit": "1000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + 1),
        }
        return _error(429, "rate_limit_exceeded", "Exceeded rate limit", **headers)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text='{"type":"error.list","errors":[{"code":"parameter_invalid",'
                '"message":"Invalid JSON body"}]}',
                content_type="application/json",
            )
        return body

    @staticmethod
    def _query_value(body: dict[str, Any], field: str) -> str:
        query = body.get("query") or {}
        if query.get("field") != field or query.get("operator") != "=":
            raise web.HTTPBadRequest(
                text='{"type":"error.list","errors":[{"code":"parameter_invalid",'
                '"message":"query not supported by the fake"}]}',
                content_type="application/json",
            )
        return str(query.get("value", ""))

    @staticmethod
    def _page(
        body: dict[str, Any], items: list[dict[str, Any]], key: str, list_type: str
    ) -> web.Response:
        pagination = body.get("pagination") or {}
        per_page = pagination.get("per_page", DEFAULT_PER_PAGE)
        if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
            return _error(400, "parameter_invalid", f"per_page must be 1-{MAX_PER_PAGE}")
        cursor = pagination.get("starting_after")
        start = 0
        if cursor:
            ids = [i["id"] for i in items]
            if cursor not in ids:
                return _error(400, "parameter_invalid", "starting_after is invalid")
            start = ids.index(cursor) + 1
        page = copy.deepcopy(items[start : start + per_page])
        total_pages = max(1, -(-len(items) // per_page))
        pages: dict[str, Any] = {
            "type": "pages",
            "page": start // per_page + 1,
            "per_page": per_page,
            "total_pages": total_pages,
        }
        if start + per_page < len(items) and page:
            pages["next"] = {"per_page": per_page, "starting_after": page[-1]["id"]}
        return web.json_response(
            {"type": list_type, key: page, "total_count": len(items), "pages": pages}
        )

    def _contact(self, request: web.Request) -> dict[str, Any]:
        contact = self.contacts.get(request.match_info["id"])
        if contact is None:
            raise web.HTTPNotFound(
                text='{"type":"error.list","errors":[{"code":"not_found",'
                '"message":"Contact Not Found"}]}',
                content_type="application/json",
            )
        return contact

    # ------------------------------------------------------------------------- routes

    async def _search_contacts(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        email = self._query_value(body, "email").lower()
        found = [c for c in self.contacts.values() if (c["email"] or "").lower() == email]
        return self._page(body, found, "data", "list")

    async def _search_conversations(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        contact = self._query_value(body, "contact_ids")
        found = []
        for conversation in self.conversations.values():
            if any(c["id"] == contact for c in conversation["contacts"]["contacts"]):
                brief = {k: v for k, v in conversation.items() if k != "conversation_parts"}
                found.append(brief)  # search results carry no parts
        return self._page(body, found, "conversations", "conversation.list")

    async def _search_tickets(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        contact = self._query_value(body, "contact_ids")
        found = [
            t
            for t in self.tickets.values()
            if any(c["id"] == contact for c in t["contacts"]["contacts"])
        ]
        return self._page(body, found, "tickets", "ticket.list")

    async def _conversation(self, request: web.Request) -> web.Response:
        conversation = self.conversations.get(request.match_info["id"])
        if conversation is None:
            return _error(404, "not_found", "Resource Not Found")
        full = copy.deepcopy(conversation)
        parts = full["conversation_parts"]
        parts["conversation_parts"] = parts["conversation_parts"][-MAX_PARTS:]
        return web.json_response(full)

    async def _delete_conversation(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        if self.conversations.pop(cid, None) is None:
            return _error(404, "not_found", "Resource Not Found")
        return web.json_response({"id": cid, "object": "conversation", "deleted": True})

    async def _delete_ticket(self, request: web.Request) -> web.Response:
        tid = request.match_info["id"]
        if self.tickets.pop(tid, None) is None:
            return _error(404, "not_found", "Ticket Not Found")
        return web.json_response({"id": tid, "object": "ticket", "deleted": True})

    async def _notes(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        notes = copy.deepcopy(self.notes.get(contact["id"], []))
        pages = {"type": "pages", "next": None, "page": 1, "per_page": 50, "total_pages": 1}
        return web.json_response(
            {"type": "list", "data": notes, "total_count": len(notes), "pages": pages}
        )

    async def _tags(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        return web.json_response(
            {"type": "list", "data": copy.deepcopy(self.tags.get(contact["id"], []))}
        )

    async def _delete_contact(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        del self.contacts[contact["id"]]
        self.notes.pop(contact["id"], None)
        self.tags.pop(contact["id"], None)
        return web.json_response(
            {
                "type": "contact",
                "id": contact["id"],
                "external_id": contact["external_id"],
                "deleted": True,
            }
        )

    async def _archive(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        contact["archived"] = True  # not deletion: it stays, and stays findable
        self.archived.append(contact["id"])
        return web.json_response(
            {"type": "contact", "id": contact["id"], "external_id": contact["external_id"],
             "archived": True}
        )  # fmt: skip


#: What the subject's access finds with the default seed (the shared conversation included).
SUBJECT_EXPECTED = {"contacts": 1, "conversations": 5, "tickets": 2, "notes": 3, "tags": 2}

__all__ = [
    "MAX_PER_PAGE",
    "SUBJECT_EMAIL",
    "SUBJECT_EXPECTED",
    "SUBJECT_ID",
    "SUBJECT_NAME",
    "TOKEN",
    "FakeIntercom",
]
