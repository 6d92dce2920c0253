"""A strict local fake of the Intercom REST API (contacts, conversations, tickets, notes, tags).

Documented behaviours it reproduces (vendor-apis.md, Intercom):

- `Authorization: Bearer <token>`; otherwise 401
  `{type:"error.list", request_id, errors:[{code:"unauthorized", message}]}`;
- `POST /contacts/search` `{"query":{"field","operator":"=","value"}, "pagination":{"per_page",
  "starting_after"}}` -> `{type:"list", data, total_count, pages:{..., next:{per_page,
  starting_after}}}`, default 50 per page, more than 150 answers 400 error.list;
- `POST /conversations/search` and `POST /tickets/search` on `contact_ids` (<= 150 per page,
  same cursor); search results carry no conversation parts;
- every search also on a date field (`created_at`, `updated_at`, ...) with `<` or `>` and a
  UNIX timestamp; contacts compare by UTC day, as documented ("Searching for Timestamp
  Fields": `> 1577869200`, 9:00 on 1 January, means from 2 January on); a date as text
  answers 400. `age(days)` is the timestamp of `days` ago, for seeding records of known ages;
- `GET /conversations/{id}` with its parts (the 500 most recent, as documented);
- `GET /contacts/{id}/notes` and `/tags`;
- `DELETE /contacts/{id}` -> 200 `{type:"contact", id, external_id, deleted:true}`; its notes and
  taggings go with it; its conversations and tickets do **not** (separate objects);
- `DELETE /conversations/{id}`, `DELETE /tickets/{id}`: permanent, 200 `{deleted:true}`;
- `POST /conversations/redact` `{type:"conversation_part", conversation_id,
  conversation_part_id}` or `{type:"source", conversation_id, source_id}` -> 200 with the
  conversation; a part without a body, one already redacted, or a source message a contact did
  not write answers 400 `conversation_part_not_redactable` (`redactions` lists them);
- 404 `{"type":"error.list","errors":[{"code":"not_found","message":"... Not Found"}]}`;
- `POST /contacts/{id}/archive`: archives, which is not deletion: the contact stays findable
  and `archived` lists it;
- 429 with `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (unix time).

UNCONFIRMED, recorded rather than enforced: whether `Intercom-Version` is required (requests
without it are answered; `versions` lists what each request sent); the page size of notes
(all are returned on one page); what a redacted part's body reads as (here: null).

The fault knobs of every fake (`faults`); a 5xx is 503 error.list `service_unavailable`.
`endpoints` lists `(method, route)` of every authenticated call.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from connectors.fakes.server import Answer, FakeServer, bearer_token, json_object, route

TOKEN = "dG9rOmZha2UtaW50ZXJjb20tdG9rZW4="  # noqa: S105 - a fake's fixed test credential
MAX_PER_PAGE = 150
DEFAULT_PER_PAGE = 50
MAX_PARTS = 500

SUBJECT_EMAIL = "anna.devries@example.nl"
SUBJECT_NAME = "Anna de Vries"
SUBJECT_ID = "6650a1b2c3d4e5f601"
#: The other person in the conversation shared with the subject, and what each of them wrote.
OTHER_ID = "6650a1b2c3d4e5f602"
OTHER_NAME = "Jan Jansen"
OTHER_EMAIL = "jan.jansen@example.com"
OTHER_MESSAGE = "<p>Jan here: send mine to Dorpsstraat 1, Delft</p>"
SUBJECT_MESSAGE = "<p>Anna: the blue one is mine</p>"
ADMIN_ID = "814860"
ADMIN_EMAIL = "support@shop.example"


_DAY = 86_400
#: The date fields the fake searches on, per searched model.
_DATES = ("created_at", "updated_at", "last_seen_at", "signed_up_at", "last_contacted_at")


def age(days: float) -> int:
    """The UNIX timestamp of `days` ago: the date of a record that old."""
    return int(time.time() - days * _DAY)


#: The request id of canned answers (a real one is fresh per answer).
REQUEST_ID = "000f1f2e3d4c5b6a7988"


def _error_list(code: str, message: str, request_id: str = REQUEST_ID) -> dict[str, Any]:
    return {
        "type": "error.list",
        "request_id": request_id,
        "errors": [{"code": code, "message": message}],
    }


def _invalid(message: str) -> Answer:
    return Answer(400, _error_list("parameter_invalid", message))


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(_error_list(code, message, uuid.uuid4().hex), status=status)


#: The 404 message of a delete, per kind of object.
_NOT_FOUND = {"conversations": "Resource Not Found", "tickets": "Ticket Not Found"}


@dataclass(eq=False)
class FakeIntercom(FakeServer):
    """The fake Intercom; see the module docstring for what it reproduces."""

    token: str = TOKEN

    unauthorised = Answer(401, _error_list("unauthorized", "Access Token Invalid"))
    server_error = Answer(503, _error_list("service_unavailable", "Service Unavailable"))
    too_many = Answer(
        429,
        _error_list("rate_limit_exceeded", "Exceeded rate limit"),
        {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{until}"},
    )

    def reset(self, conversations: int = 4) -> None:
        """Seed the subject (with `conversations` own conversations) and two other people; empty
        logs, no faults."""
        self.contacts: dict[str, dict[str, Any]] = {}
        self.conversations: dict[str, dict[str, Any]] = {}
        self.tickets: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.tags: dict[str, list[dict[str, Any]]] = {}
        for cid, email, name, phone in (
            (SUBJECT_ID, SUBJECT_EMAIL, SUBJECT_NAME, "+31612345678"),
            (OTHER_ID, OTHER_EMAIL, OTHER_NAME, None),
            ("6650a1b2c3d4e5f603", "piet.bakker@example.org", "Piet Bakker", None),
        ):
            self.contacts[cid] = {
                "type": "contact", "id": cid, "external_id": f"ext-{cid[-2:]}", "role": "user",
                "email": email, "name": name, "phone": phone, "archived": False,
                "created_at": age(30), "updated_at": age(1),
            }  # fmt: skip
        other = OTHER_ID
        for n in range(conversations):
            self.add_conversation(f"c{n}", [SUBJECT_ID], parts=3 if n else 20)
        self.add_conversation(
            "shared",
            [SUBJECT_ID, other],
            said=[(other, OTHER_MESSAGE), (SUBJECT_ID, SUBJECT_MESSAGE), (ADMIN_ID, "Shipped.")],
        )
        self.add_conversation("jan", [other], parts=1)
        self.tickets = {
            tid: {"type": "ticket", "id": tid, "ticket_attributes": {"_default_title_": title},
                  "contacts": {"type": "contact.list", "contacts": [{"id": owner}]},
                  "created_at": age(3), "updated_at": age(2)}
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
        self.versions: list[str | None] = []
        self.archived: list[str] = []
        #: `(conversation id, part or source id)` of every redaction.
        self.redactions: list[tuple[str, str]] = []
        self.reset_faults()

    def add_conversation(
        self,
        cid: str,
        contacts: list[str],
        parts: int = 1,
        said: list[tuple[str, str]] | None = None,
        *,
        age_days: float = 1,
    ) -> None:
        """Add a conversation the first of `contacts` opened, with `parts` admin replies, or
        the parts `said` as (author id, body), last updated `age_days` ago."""
        said = said or [(ADMIN_ID, f"Reply {n}") for n in range(parts)]
        self.conversations[cid] = {
            "type": "conversation",
            "id": cid,
            "created_at": min(1717200000, age(age_days)),
            "updated_at": age(age_days),
            "source": {"type": "conversation", "id": f"{cid}-s", "redacted": False,
                       "author": self._author(contacts[0]),
                       "body": "<p>Hello, where is my order?</p>"},
            "contacts": {"type": "contact.list", "contacts": [{"id": c} for c in contacts]},
            "conversation_parts": {
                "type": "conversation_part.list",
                "conversation_parts": [
                    {"type": "conversation_part", "id": f"{cid}-p{n}", "part_type": "comment",
                     "created_at": 1717200060 + n, "author": self._author(author),
                     "body": body, "redacted": False}
                    for n, (author, body) in enumerate(said)
                ],
                "total_count": len(said),
            },
        }  # fmt: skip

    def _author(self, author_id: str) -> dict[str, Any]:
        if author_id == ADMIN_ID:
            return {"type": "admin", "id": ADMIN_ID, "name": "Support", "email": ADMIN_EMAIL}
        contact = self.contacts[author_id]
        return {"type": "user", "id": author_id, "name": contact["name"], "email": contact["email"]}

    # ------------------------------------------------------------------------ plumbing

    async def before(self, request: web.Request) -> web.StreamResponse | None:
        """Faults, limits and auth as every fake; then note the `Intercom-Version` sent."""
        answer = await super().before(request)
        if answer is None:
            self.versions.append(request.headers.get("Intercom-Version"))
        return answer

    def authorised(self, request: web.Request) -> bool:
        """The bearer token."""
        return bearer_token(request) == self.token

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return await json_object(request, _invalid("Invalid JSON body"))

    @staticmethod
    def _query_value(body: dict[str, Any], field: str) -> str:
        query = body.get("query") or {}
        if query.get("field") != field or query.get("operator") != "=":
            raise _invalid("query not supported by the fake").refusal()
        return str(query.get("value", ""))

    @staticmethod
    def _matcher(
        body: dict[str, Any], people: str | None, *, by_day: bool = False
    ) -> Callable[[dict[str, Any]], bool]:
        """Which records a search's query selects: those whose contacts include the value of
        the `people` field (`contact_ids`), or whose date field lies before (`<`) or after
        (`>`) a UNIX timestamp (compared by UTC day when `by_day`)."""
        query = body.get("query") or {}
        if people and query.get("operator") == "=" and query.get("field") == people:
            wanted = str(query.get("value", ""))
            return lambda item: any(c["id"] == wanted for c in item["contacts"]["contacts"])
        name, operator, value = query.get("field"), query.get("operator"), query.get("value")
        if name not in _DATES or operator not in ("<", ">"):
            raise _invalid("query not supported by the fake").refusal()
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(f"{name} must be a UNIX timestamp").refusal()

        def day(moment: int) -> int:
            return moment // _DAY * _DAY if by_day else moment

        limit = day(value)
        if operator == "<":
            return lambda item: item.get(name) is not None and day(item[name]) < limit
        return lambda item: item.get(name) is not None and day(item[name]) > limit

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
            raise Answer(404, _error_list("not_found", "Contact Not Found")).refusal()
        return contact

    # ------------------------------------------------------------------------- routes

    @route("POST", "/contacts/search")
    async def _search_contacts(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if (body.get("query") or {}).get("field") == "email":
            email = self._query_value(body, "email")
            found = [c for c in self.contacts.values() if self.search_matches(c["email"], email)]
        else:
            dated = self._matcher(body, None, by_day=True)
            found = [c for c in self.contacts.values() if dated(c)]
        return self._page(body, found, "data", "list")

    @route("POST", "/conversations/search")
    async def _search_conversations(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        selected = self._matcher(body, "contact_ids")
        found = []
        for conversation in self.conversations.values():
            if selected(conversation):
                brief = {k: v for k, v in conversation.items() if k != "conversation_parts"}
                found.append(brief)  # search results carry no parts
        return self._page(body, found, "conversations", "conversation.list")

    @route("POST", "/tickets/search")
    async def _search_tickets(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        selected = self._matcher(body, "contact_ids")
        found = [t for t in self.tickets.values() if selected(t)]
        return self._page(body, found, "tickets", "ticket.list")

    @route("GET", "/conversations/{id}")
    async def _conversation(self, request: web.Request) -> web.Response:
        conversation = self.conversations.get(request.match_info["id"])
        if conversation is None:
            return _error(404, "not_found", "Resource Not Found")
        full = copy.deepcopy(conversation)
        parts = full["conversation_parts"]
        parts["conversation_parts"] = parts["conversation_parts"][-MAX_PARTS:]
        return web.json_response(full)

    @route("POST", "/conversations/redact")
    async def _redact(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        conversation = self.conversations.get(str(body.get("conversation_id")))
        if conversation is None:
            return _error(404, "not_found", "Resource Not Found")
        if body.get("type") == "source":
            message = conversation["source"]
            if str(body.get("source_id")) != message["id"]:
                return _error(404, "not_found", "Source Not Found")
            by_contact = message["author"]["type"] in ("user", "lead", "contact")
        elif body.get("type") == "conversation_part":
            parts = conversation["conversation_parts"]["conversation_parts"]
            found = [p for p in parts if p["id"] == str(body.get("conversation_part_id"))]
            if not found:
                return _error(404, "not_found", "Conversation Part Not Found")
            message, by_contact = found[0], True
        else:
            return _error(400, "parameter_invalid", "type must be conversation_part or source")
        if not message.get("body") or message.get("redacted") or not by_contact:
            return _error(400, "conversation_part_not_redactable", "Part can't be redacted")
        message["body"], message["redacted"] = None, True
        self.redactions.append((conversation["id"], message["id"]))
        return web.json_response(copy.deepcopy(conversation))

    @route("DELETE", "/conversations/{id}")
    @route("DELETE", "/tickets/{id}")
    async def _delete(self, request: web.Request) -> web.Response:
        kind, object_id = request.path.split("/")[1], request.match_info["id"]
        found = (self.conversations if kind == "conversations" else self.tickets).pop(
            object_id, None
        )
        if found is None:
            return _error(404, "not_found", _NOT_FOUND[kind])
        return web.json_response({"id": object_id, "object": kind[:-1], "deleted": True})

    @route("GET", "/contacts/{id}/notes")
    async def _notes(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        notes = copy.deepcopy(self.notes.get(contact["id"], []))
        pages = {"type": "pages", "next": None, "page": 1, "per_page": 50, "total_pages": 1}
        return web.json_response(
            {"type": "list", "data": notes, "total_count": len(notes), "pages": pages}
        )

    @route("GET", "/contacts/{id}/tags")
    async def _tags(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        return web.json_response(
            {"type": "list", "data": copy.deepcopy(self.tags.get(contact["id"], []))}
        )

    @route("DELETE", "/contacts/{id}")
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

    @route("POST", "/contacts/{id}/archive")
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
    "OTHER_EMAIL",
    "OTHER_ID",
    "OTHER_MESSAGE",
    "OTHER_NAME",
    "SUBJECT_EMAIL",
    "SUBJECT_EXPECTED",
    "SUBJECT_ID",
    "SUBJECT_MESSAGE",
    "SUBJECT_NAME",
    "TOKEN",
    "FakeIntercom",
    "age",
]
