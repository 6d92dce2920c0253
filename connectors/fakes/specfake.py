"""A fake "Deskly" vendor: a support desk and a mailing tool, for the spec's features.

Strict where it matters, like the vendors the spec stands in for (Freshdesk, Zendesk,
Mailchimp); every path is under `/api`:

- bearer auth, else 401 `{"error": "unauthorized"}`; the fault knobs of every fake;
- `GET /users?email=|phone=|mobile=[&state=deleted]`: a *partial* search (a user whose field
  contains the value), active users only unless `state=deleted` (soft-deleted ones only);
  `{users: [...]}`;
- `GET /users/{id}/tickets?page=&per_page=` (at most 2 a page): the tickets the user requested
  *and* those it is CC'd on (`requester_id` tells them apart); `{tickets: [...]}`;
- `GET /tickets/{id}/conversations`: `{conversations: [...]}`;
- `DELETE /tickets/{id}`: 202 `{job: {id, status: queued}}`; `GET /jobs/{id}` answers
  `running` until `job_polls` polls, then `completed` (the ticket and its conversations go);
- `DELETE /users/{id}`: 204, or 404 `{"error": "not_found"}` once gone;
- `POST /users/{id}/unsubscribe` (objection, logged in `unsubscribed`), `PUT /users/{id}`
  `{user: {...}}` (rectification, restriction; logged in `updates`);
- `GET /lists` and `GET /lists/{list_id}/members/{md5 of the lower-cased email}` (404: not a
  member); `POST .../members/{hash}/actions/delete-permanent` 204 (logged in `forgotten`).

Seeded: the subject Femke de Vries has an active user (1), a soft-deleted one (2) and one known
by mobile only (3); user 5's address merely contains hers (a partial match). User 1 requested
tickets 10 and 11 (conversations 3 and 1) and ticket 12, shared with Jan (CC); she is CC'd on
Jan's ticket 20. She is a member of audiences a1 and c3 of three.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from connectors.fakes.server import RETRY_AFTER, Answer, FakeServer, bearer_token, route
from connectors.vendors.base import identifier_key

TOKEN = "deskly-test-token"  # noqa: S105 - a fake's fixed test credential
SUBJECT_EMAIL = "femke@example.nl"
SUBJECT_PHONE = "+31612345678"
PER_PAGE = 2


def member_hash(email: str) -> str:
    """The mailing side's member id: MD5 of the lower-cased address."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


def _seed() -> dict[str, Any]:
    users = [
        {"id": 1, "name": "Femke de Vries", "email": "Femke@example.nl", "phone": SUBJECT_PHONE,
         "mobile": None, "deleted": False, "subscribed": True},
        {"id": 2, "name": "Femke de Vries", "email": SUBJECT_EMAIL, "phone": None,
         "mobile": None, "deleted": True, "subscribed": False},
        {"id": 3, "name": "F. de Vries", "email": "f.devries@work.example", "phone": None,
         "mobile": "0031 6 1234 5678", "deleted": False, "subscribed": False},
        {"id": 4, "name": "Jan Jansen", "email": "jan@example.com", "phone": "+31687654321",
         "mobile": None, "deleted": False, "subscribed": True},
        {"id": 5, "name": "Not Femke", "email": "xfemke@example.nl", "phone": None,
         "mobile": None, "deleted": False, "subscribed": True},
    ]  # fmt: skip
    tickets = [
        {"id": 10, "requester_id": 1, "subject": "Parcel late", "cc_ids": []},
        {"id": 11, "requester_id": 1, "subject": "Invoice", "cc_ids": []},
        {"id": 12, "requester_id": 1, "subject": "Group order", "cc_ids": [4]},
        {"id": 20, "requester_id": 4, "subject": "Jan's question", "cc_ids": [1]},
        {"id": 21, "requester_id": 4, "subject": "Jan alone", "cc_ids": []},
    ]
    conversations = {10: 3, 11: 1, 12: 2, 20: 1, 21: 2}
    talks = [
        {"id": ticket * 100 + n, "ticket_id": ticket, "body": f"Message {n}"}
        for ticket, count in conversations.items()
        for n in range(count)
    ]
    femke, jan = member_hash(SUBJECT_EMAIL), member_hash("jan@example.com")
    members = {
        ("a1", femke): {"email_address": SUBJECT_EMAIL, "status": "subscribed"},
        ("c3", femke): {"email_address": SUBJECT_EMAIL, "status": "subscribed"},
        ("a1", jan): {"email_address": "jan@example.com", "status": "subscribed"},
    }
    for (_, key), member in members.items():
        member["id"] = key
    return {"users": users, "tickets": tickets, "conversations": talks, "members": members}


def _error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


@dataclass(eq=False)
class Deskly(FakeServer):
    """The fake Deskly account; see the module docstring."""

    token: str = TOKEN
    job_polls: int = 2

    prefix = "/api"
    unauthorised = Answer(401, {"error": "unauthorized"})
    server_error = Answer(503, {"error": "unavailable"})
    too_many = Answer(429, {"error": "rate_limited"}, RETRY_AFTER)

    def reset(self) -> None:
        """Fresh data, empty logs, no faults."""
        self.data = _seed()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.unsubscribed: list[int] = []
        self.updates: list[tuple[int, dict[str, Any]]] = []
        self.forgotten: list[tuple[str, str]] = []
        self._job_ids = itertools.count(1)
        self.reset_faults()

    def authorised(self, request: web.Request) -> bool:
        """The bearer token."""
        return bearer_token(request) == self.token

    def _user(self, request: web.Request) -> dict[str, Any]:
        wanted = request.match_info["id"]
        for user in self.data["users"]:
            if str(user["id"]) == wanted:
                return user
        raise web.HTTPNotFound(text='{"error": "not_found"}', content_type="application/json")

    # ------------------------------------------------------------------------- desk

    @route("GET", "/users")
    async def _search(self, request: web.Request) -> web.Response:
        deleted = request.query.get("state") == "deleted"
        found = [u for u in self.data["users"] if u["deleted"] == deleted]
        for key in ("email", "phone", "mobile"):
            if key in request.query:
                kind = "email" if key == "email" else "phone"
                wanted = identifier_key(kind, request.query[key]) or ""
                found = [u for u in found if wanted in (identifier_key(kind, u[key]) or "")]
        return web.json_response({"users": copy.deepcopy(found)})

    @route("GET", "/users/{id}/tickets")
    async def _tickets(self, request: web.Request) -> web.Response:
        uid = self._user(request)["id"]
        page = int(request.query.get("page", 1))
        size = int(request.query.get("per_page", PER_PAGE))
        if size > PER_PAGE:
            return _error(400, "per_page too large")
        mine = [t for t in self.data["tickets"] if uid == t["requester_id"] or uid in t["cc_ids"]]
        return web.json_response({"tickets": mine[(page - 1) * size : page * size]})

    @route("GET", "/tickets/{id}/conversations")
    async def _conversations(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        if not any(t["id"] == tid for t in self.data["tickets"]):
            return _error(404, "not_found")
        talks = [c for c in self.data["conversations"] if c["ticket_id"] == tid]
        return web.json_response({"conversations": talks})

    @route("DELETE", "/tickets/{id}")
    async def _delete_ticket(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        if not any(t["id"] == tid for t in self.data["tickets"]):
            return _error(404, "not_found")
        job_id = f"job-{next(self._job_ids)}"
        self.jobs[job_id] = {"ticket": tid, "polls": 0}
        return web.json_response({"job": {"id": job_id, "status": "queued"}}, status=202)

    @route("GET", "/jobs/{job_id}")
    async def _job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return _error(404, "not_found")
        job["polls"] += 1
        if job["polls"] < self.job_polls:
            return web.json_response({"status": "running"})
        self._drop_ticket(job["ticket"])
        return web.json_response({"status": "completed"})

    def _drop_ticket(self, tid: int) -> None:
        self.data["tickets"] = [t for t in self.data["tickets"] if t["id"] != tid]
        self.data["conversations"] = [
            c for c in self.data["conversations"] if c["ticket_id"] != tid
        ]

    @route("DELETE", "/users/{id}")
    async def _delete_user(self, request: web.Request) -> web.Response:
        user = self._user(request)
        self.data["users"].remove(user)
        return web.Response(status=204)

    @route("POST", "/users/{id}/unsubscribe")
    async def _unsubscribe(self, request: web.Request) -> web.Response:
        user = self._user(request)
        user["subscribed"] = False
        self.unsubscribed.append(user["id"])
        return web.json_response({"user": user})

    @route("PUT", "/users/{id}")
    async def _update(self, request: web.Request) -> web.Response:
        user = self._user(request)
        body = await request.json()
        changes = body.get("user") if isinstance(body, dict) else None
        if not isinstance(changes, dict) or not changes or "id" in changes:
            return _error(422, "user: give the fields to change")
        user.update(changes)
        self.updates.append((user["id"], changes))
        return web.json_response({"user": user})

    # ---------------------------------------------------------------------- mailing

    @route("GET", "/lists")
    async def _lists(self, request: web.Request) -> web.Response:
        return web.json_response({"lists": [{"id": i} for i in ("a1", "b2", "c3")]})

    @route("GET", "/lists/{list_id}/members/{hash}")
    async def _member(self, request: web.Request) -> web.Response:
        key = (request.match_info["list_id"], request.match_info["hash"])
        member = self.data["members"].get(key)
        return _error(404, "not_found") if member is None else web.json_response(member)

    @route("POST", "/lists/{list_id}/members/{hash}/actions/delete-permanent")
    async def _forget(self, request: web.Request) -> web.Response:
        key = (request.match_info["list_id"], request.match_info["hash"])
        if self.data["members"].pop(key, None) is None:
            return _error(404, "not_found")
        self.forgotten.append(key)
        return web.Response(status=204)


__all__ = ["SUBJECT_EMAIL", "SUBJECT_PHONE", "TOKEN", "Deskly", "member_hash"]
