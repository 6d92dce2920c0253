"""A strict fake of the Mailchimp Marketing API 3.0, as vendor-apis.md describes it.

What it reproduces (everything under `/3.0`):

- Basic auth, any user name, the API key as password; anything else answers 401
  `application/problem+json` `{type, title, status, detail, instance}`, as every error does;
- audiences: `GET /lists` with `count` (default 10, max 1000: more answers 400) + `offset`
  and `total_items`;
- members by id = MD5 of the lower-cased email: `GET /lists/{list_id}/members/{hash}`, 404
  when not a member (so a wrong hash, e.g. of the unlowered address, finds nothing);
  `GET /search-members?query=` with `exact_matches`;
- member listings `activity-feed` (key `activity`), `events`, `notes`, `tags`, `goals`, each
  paged with `count` + `offset` + `total_items`;
- `POST .../members/{hash}/actions/delete-permanent`: 204; afterwards GET answers 404 and
  re-adding (`POST /lists/{id}/members`, `PUT .../members/{hash}`) answers 400 "Forgotten
  Email Not Subscribed"; `DELETE .../members/{hash}` only archives (status `archived`, the
  member and its data stay), and is recorded in `archived`;
- `PATCH .../members/{hash}` changes the status; every change is kept in `status_changes`;
- the vendor's limit of 10 concurrent connections (`faults.max_connections`): the 11th
  request in flight answers 429 with an empty body and no rate-limit headers
  (`faults.latency_seconds` makes requests overlap);
- the fault knobs of every fake (`faults`; every 429 is that bare one, a 5xx is a 500
  problem), and the request log of `FakeServer`.

Documented (vendor-apis.md, from Mailchimp's OpenAPI spec and docs): auth, MD5 member ids,
`count`/`offset` paging and its maximum, `delete-permanent` and its after-effects, DELETE as
archive, problem+json errors, the 10-connection limit with a bare 429. Unconfirmed, chosen by
this fake: the exact keys and default page sizes of the member sub-listings, and the 400 body
text beyond its title.

Seeded with three audiences (plus `extra_audiences` empty ones); the subject (Anna de Vries)
is a member of audiences a1 and a3, with activity across several pages.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from connectors.fakes.server import Answer, FakeServer, Faults, basic_credentials, route

API_KEY = "0123456789abcdef0123456789abcdef-us6"  # a fake's fixed test credential
MAX_COUNT = 1000
DEFAULT_COUNT = 10
MAX_CONNECTIONS = 10
PROBLEM = "application/problem+json"
SUBJECT_EMAIL = "anna.devries@example.nl"
RELATED = {"activity-feed": "activity", "events": "events", "notes": "notes", "tags": "tags"}
RELATED_KEYS = {**RELATED, "goals": "goals"}


def member_id(email: str) -> str:
    """Mailchimp's member id (subscriber hash): MD5 of the lower-cased address."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


def _member(list_id: str, email: str, status: str, **related: list[Any]) -> dict[str, Any]:
    return {
        "id": member_id(email),
        "email_address": email,
        "list_id": list_id,
        "status": status,
        "merge_fields": {"FNAME": email.split(".")[0].title(), "LNAME": ""},
        "related": {key: related.get(key, []) for key in RELATED_KEYS.values()},
    }


def seed(extra_audiences: int = 0) -> dict[str, Any]:
    """The fake's data: audiences by id, each with members by hash."""
    anna = "Anna.deVries@example.nl"  # stored as typed; the hash is of the lowered form
    lists: dict[str, dict[str, Any]] = {
        "a1": {"id": "a1", "name": "Newsletter", "members": {}},
        "a2": {"id": "a2", "name": "Webshop customers", "members": {}},
        "a3": {"id": "a3", "name": "Events", "members": {}},
    }
    for n in range(extra_audiences):
        lists[f"x{n}"] = {"id": f"x{n}", "name": f"Audience {n}", "members": {}}
    members = [
        _member(
            "a1",
            anna,
            "subscribed",
            activity=[{"activity_type": "open", "campaign_id": f"c{n}"} for n in range(5)],
            notes=[{"id": 1, "note": "Asked about Anna de Vries' order"}, {"id": 2, "note": "x"}],
            tags=[{"id": 11, "name": "vip"}, {"id": 12, "name": "nl"}, {"id": 13, "name": "b2c"}],
            events=[{"name": "purchase", "occurred_at": "2024-03-01T10:00:00+00:00"}],
        ),
        _member("a1", "jan.jansen@example.com", "subscribed", tags=[{"id": 14, "name": "nl"}]),
        _member("a2", "jan.jansen@example.com", "unsubscribed"),
        _member(
            "a3",
            anna,
            "subscribed",
            activity=[{"activity_type": "click", "campaign_id": "c9"}] * 2,
            tags=[{"id": 15, "name": "fair"}],
        ),
        _member("a3", "piet.bakker@example.org", "pending"),
    ]
    for m in members:
        lists[m["list_id"]]["members"][m["id"]] = m
    return {"lists": lists}


def _problem_body(status: int, title: str, detail: str, instance: str = "") -> dict[str, Any]:
    return {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }


def _problem(status: int, title: str, detail: str, instance: str = "") -> web.Response:
    body = _problem_body(status, title, detail, instance)
    return Answer(status, body, content_type=PROBLEM).response()


def _public(member: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in member.items() if k != "related"}


@dataclass(eq=False)
class Mailchimp(FakeServer):
    """The fake Mailchimp account; see the module docstring."""

    api_key: str = API_KEY

    #: The vendor's own limit: 10 connections at once per API key.
    default_faults: ClassVar[Faults] = Faults(max_connections=MAX_CONNECTIONS)
    prefix = "/3.0"
    unauthorised = Answer(
        401,
        _problem_body(
            401,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        ),
        content_type=PROBLEM,
    )
    server_error = Answer(
        500,
        _problem_body(500, "Internal Server Error", "An unexpected error occurred."),
        content_type=PROBLEM,
    )
    too_many = Answer(429)  # no headers, empty body, as the vendor answers

    def reset(self, extra_audiences: int = 0) -> None:
        """Fresh data (with `extra_audiences` empty audiences), empty logs, the vendor's own
        limit and no injected faults."""
        self.data = seed(extra_audiences)
        self.forgotten: set[tuple[str, str]] = set()
        self.archived: list[tuple[str, str]] = []
        self.status_changes: list[tuple[str, str, str]] = []
        self.reset_faults()

    def authorised(self, request: web.Request) -> bool:
        """Basic auth with the API key as password (any user name)."""
        credentials = basic_credentials(request)
        return credentials is not None and credentials[1] == self.api_key

    # ------------------------------------------------------------------------ helpers

    def _page(self, request: web.Request, key: str, items: list[Any]) -> web.Response:
        try:
            count = int(request.query.get("count", DEFAULT_COUNT))
            offset = int(request.query.get("offset", 0))
        except ValueError:
            return _problem(400, "Invalid Resource", "count and offset must be integers")
        if not 1 <= count <= MAX_COUNT or offset < 0:
            return _problem(
                400, "Invalid Resource", f"count must be between 1 and {MAX_COUNT}", request.path
            )
        page = copy.deepcopy(items[offset : offset + count])
        return web.json_response({key: page, "total_items": len(items)})

    def _find(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        audience = self.data["lists"].get(request.match_info["list_id"])
        if audience is None:
            return None, _problem(
                404, "Resource Not Found", "The requested resource could not be found."
            )
        member = audience["members"].get(request.match_info["hash"])
        if member is None:
            return None, _problem(
                404, "Resource Not Found", "The requested resource could not be found."
            )
        return member, None

    def _forgotten_answer(self, request: web.Request) -> web.Response:
        return _problem(
            400,
            "Forgotten Email Not Subscribed",
            "This contact was permanently deleted and cannot be re-imported.",
            request.path,
        )

    # ------------------------------------------------------------------------- routes

    @route("GET", "/lists")
    async def _lists(self, request: web.Request) -> web.Response:
        lists = [{"id": a["id"], "name": a["name"]} for a in self.data["lists"].values()]
        return self._page(request, "lists", lists)

    @route("GET", "/search-members")
    async def _search(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "").lower()
        found = [
            _public(m)
            for a in self.data["lists"].values()
            for m in a["members"].values()
            if m["email_address"].lower() == query
        ]
        return web.json_response(
            {
                "exact_matches": {"members": found, "total_items": len(found)},
                "full_search": {"members": [], "total_items": 0},
            }
        )

    @route("GET", "/lists/{list_id}/members/{hash}")
    async def _get(self, request: web.Request) -> web.Response:
        member, missing = self._find(request)
        return missing or web.json_response(_public(member or {}))

    @route("GET", "/lists/{list_id}/members/{hash}/{related}")
    async def _related(self, request: web.Request) -> web.Response:
        member, missing = self._find(request)
        if missing is not None or member is None:
            return missing or _problem(404, "Resource Not Found", "")
        key = RELATED_KEYS.get(request.match_info["related"])
        if key is None:
            return _problem(404, "Resource Not Found", "The requested resource could not be found.")
        return self._page(request, key, member["related"][key])

    @route("POST", "/lists/{list_id}/members")
    async def _add(self, request: web.Request) -> web.Response:
        list_id = request.match_info["list_id"]
        audience = self.data["lists"].get(list_id)
        body = await request.json()
        email = str(body.get("email_address", ""))
        if audience is None or not email:
            return _problem(400, "Invalid Resource", "email_address and a valid list are required")
        if (list_id, member_id(email)) in self.forgotten:
            return self._forgotten_answer(request)
        if member_id(email) in audience["members"]:
            return _problem(400, "Member Exists", "This address is already a list member.")
        member = _member(list_id, email, str(body.get("status", "subscribed")))
        audience["members"][member["id"]] = member
        return web.json_response(_public(member))

    @route("PUT", "/lists/{list_id}/members/{hash}")
    async def _put(self, request: web.Request) -> web.Response:
        key = (request.match_info["list_id"], request.match_info["hash"])
        if key in self.forgotten:
            return self._forgotten_answer(request)
        return _problem(400, "Invalid Resource", "Not supported by this fake.")

    @route("PATCH", "/lists/{list_id}/members/{hash}")
    async def _patch(self, request: web.Request) -> web.Response:
        member, missing = self._find(request)
        if missing is not None or member is None:
            return missing or _problem(404, "Resource Not Found", "")
        status = (await request.json()).get("status")
        if status not in ("subscribed", "unsubscribed", "cleaned", "pending", "transactional"):
            return _problem(
                400, "Invalid Resource", "The resource submitted could not be validated."
            )
        member["status"] = status
        self.status_changes.append((member["list_id"], member["id"], status))
        return web.json_response(_public(member))

    @route("DELETE", "/lists/{list_id}/members/{hash}")
    async def _archive(self, request: web.Request) -> web.Response:
        member, missing = self._find(request)
        if missing is not None or member is None:
            return missing or _problem(404, "Resource Not Found", "")
        member["status"] = "archived"  # data stays: DELETE only archives
        self.archived.append((member["list_id"], member["id"]))
        return web.Response(status=204)

    @route("POST", "/lists/{list_id}/members/{hash}/actions/delete-permanent")
    async def _forget(self, request: web.Request) -> web.Response:
        member, missing = self._find(request)
        if missing is not None or member is None:
            return missing or _problem(404, "Resource Not Found", "")
        del self.data["lists"][member["list_id"]]["members"][member["id"]]
        self.forgotten.add((member["list_id"], member["id"]))
        return web.Response(status=204)


__all__ = [
    "API_KEY",
    "MAX_CONNECTIONS",
    "MAX_COUNT",
    "SUBJECT_EMAIL",
    "Mailchimp",
    "member_id",
    "seed",
]
