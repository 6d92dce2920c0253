"""A strict fake of MessageBird's legacy REST API and Bird's contacts and conversations API.

One server answers both hosts' paths (the connector's `base_url` and `bird_url` both point
at it). What it reproduces, from vendor-apis.md and the vendors' docs and SDKs:

- auth: `Authorization: AccessKey <key>` on every call, else 401 with the legacy error body
  `{"errors": [{"code": 2, "description": "Request not allowed (incorrect access_key)",
  "parameter": "access_key"}]}` (Bird's own 401 body is UNCONFIRMED; the same is used);
- legacy `GET /contacts` with `limit` (default 20; above 100 clamped, the nastier case as the
  maximum is UNCONFIRMED) and `offset`, the envelope `{offset, limit, count, totalCount, links,
  items}`; `msisdn=` filters on the number's digits (`ignores_msisdn_filter=True` lists every
  contact, as if the undocumented filter did not exist); `msisdn` is a JSON number;
- legacy `GET /contacts/{id}/messages` (same envelope), `DELETE /messages/{id}` and
  `DELETE /contacts/{id}`: 204 with an empty body, or 404 `{"errors": [{"code": 20,
  "description": "... not found", "parameter": null}]}`; deleting a contact leaves its
  messages (they are separate objects in the dashboard);
- Bird `POST /workspaces/{ws}/contacts/search {"identifier": {"key", "value"}}` ->
  `{"results": [...]}` (key `emailaddress`, value compared ignoring case; a body without both
  answers 400); an unknown workspace answers 404;
- Bird `GET /workspaces/{ws}/participants/emailaddress/{email}/conversations` and
  `GET /workspaces/{ws}/conversations/{id}/messages`: `limit` (1-100, default 10, else 400)
  and `pageToken` -> `{results, nextPageToken}`; `DELETE .../conversations/{id}/messages/{mid}`,
  `DELETE .../conversations/{id}` and `DELETE /workspaces/{ws}/contacts/{id}`: 204, or 404;
  Bird's error body `{"code": ..., "message": ...}` is UNCONFIRMED;
- 429 with the legacy error body and `Retry-After` (whether the vendor sends the header is
  UNCONFIRMED); its documented 50 GET requests per second per account (`faults.max_rate`);
  a 5xx is 500 with the legacy error body.

Seeded: three SMS contacts and two Bird contacts; the subject (Anna de Vries, +31 6 1234 5678,
anna.devries@example.nl) has one SMS contact with 25 messages (two pages of 20), one Bird contact
and one e-mail conversation of three messages. Another person's conversation and contact stay.
"""

from __future__ import annotations

import base64
import copy
import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from connectors.fakes.server import RETRY_AFTER, Answer, FakeServer, Faults, json_object, route

ACCESS_KEY = "live_test_messagebird_key_0123"  # a fake's fixed test credential
WORKSPACE = "a1405560-c8d3-4b1a-877d-3f449ad95352"
SUBJECT_EMAIL = "anna.devries@example.nl"
SUBJECT_PHONE = "+31 6 1234 5678"
SUBJECT_MESSAGES = 25
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


def _legacy_error(code: int, description: str, parameter: str | None = None) -> dict[str, Any]:
    return {"errors": [{"code": code, "description": description, "parameter": parameter}]}


def _sms(n: int, contact: str, number: int) -> dict[str, Any]:
    return {
        "id": f"msg{contact}{n:03d}",
        "direction": "mt",
        "type": "sms",
        "originator": "Webwinkel",
        "body": f"Uw bestelling {n} is onderweg",
        "createdDatetime": "2024-03-01T10:00:00+00:00",
        "recipients": {"totalCount": 1, "items": [{"recipient": number, "status": "delivered"}]},
    }


def _legacy_contact(cid: str, number: int, first: str, last: str, messages: int) -> dict[str, Any]:
    return {
        "id": cid,
        "msisdn": number,
        "firstName": first,
        "lastName": last,
        "customDetails": {"custom1": None, "custom2": None, "custom3": None, "custom4": None},
        "groups": {"totalCount": 0},
        "messages": {"totalCount": messages},
        "createdDatetime": "2024-01-10T09:00:00+00:00",
        "updatedDatetime": None,
    }


def _bird_contact(cid: str, email: str, name: str) -> dict[str, Any]:
    return {
        "id": cid,
        "computedDisplayName": name,
        "featuredIdentifiers": [{"key": "emailaddress", "value": email}],
        "identifierCount": 1,
        "attributes": {"emailaddress": [email], "displayName": name},
        "createdAt": "2024-02-01T12:00:00.000Z",
        "updatedAt": "2024-02-01T12:00:00.000Z",
    }


def _conversation(cid: str, email: str, name: str, topic: str) -> dict[str, Any]:
    participant = {"identifierKey": "emailaddress", "identifierValue": email}
    return {
        "id": cid,
        "name": topic,
        "status": "active",
        "featuredParticipants": [{"displayName": name, "type": "contact", "contact": participant}],
        "createdAt": "2024-02-02T08:00:00.000Z",
    }


def _email(cid: str, n: int, email: str, text: str) -> dict[str, Any]:
    return {
        "id": f"{cid}-m{n}",
        "conversationId": cid,
        "recipients": [{"type": "to", "identifierKey": "emailaddress", "identifierValue": email}],
        "status": "delivered",
        "body": {"type": "text", "text": {"text": text}},
        "createdAt": f"2024-02-0{n + 2}T08:00:00.000Z",
    }


def seed() -> dict[str, Any]:
    """The fake's initial data; the subject's SMS contact is `c-anna`, Bird contact `b-anna`."""
    anna, jan = 31612345678, 31687654321
    contacts = [
        _legacy_contact("c-anna", anna, "Anna", "de Vries", SUBJECT_MESSAGES),
        _legacy_contact("c-jan", jan, "Jan", "Jansen", 2),
        _legacy_contact("c-piet", 32470123456, "Piet", "Peeters", 0),
    ]
    messages = {
        "c-anna": [_sms(n, "anna", anna) for n in range(SUBJECT_MESSAGES)],
        "c-jan": [_sms(n, "jan", jan) for n in range(2)],
    }
    other = "jan.jansen@example.com"
    conversations = [
        _conversation("conv-anna", SUBJECT_EMAIL, "Anna de Vries", "Uw retour"),
        _conversation("conv-jan", other, "Jan Jansen", "Factuur"),
    ]
    emails = {
        "conv-anna": [_email("conv-anna", n, SUBJECT_EMAIL, f"Retour {n}") for n in range(3)],
        "conv-jan": [_email("conv-jan", 0, other, "Uw factuur")],
    }
    return {
        "contacts": contacts,
        "messages": messages,
        "bird_contacts": [
            _bird_contact("b-anna", "Anna.deVries@example.nl", "Anna de Vries"),
            _bird_contact("b-jan", other, "Jan Jansen"),
        ],
        "conversations": conversations,
        "conversation_messages": emails,
    }


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value) if ch.isdigit())


@dataclass(eq=False)
class MessageBird(FakeServer):
    """The fake MessageBird / Bird account; see the module docstring."""

    access_key: str = ACCESS_KEY
    workspace: str = WORKSPACE
    ignores_msisdn_filter: bool = False

    #: The vendor's documented limit: about 50 GET requests per second per account.
    default_faults: ClassVar[Faults] = Faults(max_rate=(50, 1.0))
    unauthorised = Answer(
        401, _legacy_error(2, "Request not allowed (incorrect access_key)", "access_key")
    )
    server_error = Answer(500, _legacy_error(99, "Internal error"))
    too_many = Answer(429, _legacy_error(98, "Too many requests"), RETRY_AFTER)

    def reset(self) -> None:
        """Fresh data, empty logs, the vendor's own limit and no injected faults."""
        self.data = seed()
        self.deleted: list[tuple[str, str]] = []  # (kind, id) of every deletion
        self._ids = itertools.count(1)
        self.reset_faults()

    def authorised(self, request: web.Request) -> bool:
        """`Authorization: AccessKey <key>` with the account's key."""
        return request.headers.get("Authorization") == f"AccessKey {self.access_key}"

    # ----------------------------------------------------------------- legacy REST API

    def _legacy_page(self, request: web.Request, items: list[Any]) -> web.Response:
        try:
            limit = min(int(request.query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
            offset = int(request.query.get("offset", 0))
        except ValueError:
            return web.json_response(_legacy_error(9, "limit/offset must be numbers"), status=422)
        if limit < 1 or offset < 0:
            return web.json_response(_legacy_error(9, "invalid limit or offset"), status=422)
        page = copy.deepcopy(items[offset : offset + limit])
        return web.json_response(
            {
                "offset": offset,
                "limit": limit,
                "count": len(page),
                "totalCount": len(items),
                "links": {"first": None, "previous": None, "next": None, "last": None},
                "items": page,
            }
        )

    def _not_found(self, what: str) -> web.Response:
        return web.json_response(_legacy_error(20, f"{what} not found"), status=404)

    def _contact(self, cid: str) -> dict[str, Any] | None:
        return next((c for c in self.data["contacts"] if c["id"] == cid), None)

    @route("GET", "/contacts")
    async def _contacts(self, request: web.Request) -> web.Response:
        found = self.data["contacts"]
        if "msisdn" in request.query and not self.ignores_msisdn_filter:
            wanted = _digits(request.query["msisdn"])
            found = [c for c in found if _digits(c["msisdn"]) == wanted]
        return self._legacy_page(request, found)

    @route("GET", "/contacts/{id}/messages")
    async def _contact_messages(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        if self._contact(cid) is None:
            return self._not_found("contact")
        return self._legacy_page(request, self.data["messages"].get(cid, []))

    @route("DELETE", "/contacts/{id}")
    async def _delete_contact(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        if self._contact(cid) is None:
            return self._not_found("contact")
        self.data["contacts"] = [c for c in self.data["contacts"] if c["id"] != cid]
        self.deleted.append(("contact", cid))
        return web.Response(status=204)

    @route("DELETE", "/messages/{id}")
    async def _delete_message(self, request: web.Request) -> web.Response:
        mid = request.match_info["id"]
        for owner, messages in self.data["messages"].items():
            if any(m["id"] == mid for m in messages):
                self.data["messages"][owner] = [m for m in messages if m["id"] != mid]
                self.deleted.append(("message", mid))
                return web.Response(status=204)
        return self._not_found("message")

    # --------------------------------------------------------------------------- Bird API

    def _bird_error(self, status: int, code: str, message: str) -> web.HTTPException:
        return Answer(status, {"code": code, "message": message}).refusal()

    def _workspace(self, request: web.Request) -> None:
        if request.match_info["ws"] != self.workspace:
            raise self._bird_error(404, "NotFound", "The contact or workspace was not found.")

    def _bird_page(self, request: web.Request, items: list[Any]) -> web.Response:
        try:
            limit = int(request.query.get("limit", 10))
            start = (
                int(base64.b64decode(request.query["pageToken"]))
                if ("pageToken" in request.query)
                else 0
            )
        except ValueError:
            raise self._bird_error(
                400, "InvalidParameter", "limit or pageToken is invalid"
            ) from None
        if not 1 <= limit <= MAX_LIMIT:
            raise self._bird_error(400, "InvalidParameter", "limit must be between 1 and 100")
        end = start + limit
        body: dict[str, Any] = {"results": copy.deepcopy(items[start:end])}
        if end < len(items):
            body["nextPageToken"] = base64.b64encode(str(end).encode()).decode()
        return web.json_response(body)

    @route("POST", "/workspaces/{ws}/contacts/search")
    async def _search(self, request: web.Request) -> web.Response:
        self._workspace(request)
        refusal = Answer(400, {"code": "InvalidPayload", "message": "identifier is required"})
        identifier = (await json_object(request, refusal)).get("identifier")
        if (
            not isinstance(identifier, dict)
            or not identifier.get("key")
            or not identifier.get("value")
        ):
            raise refusal.refusal()
        key, value = identifier["key"], str(identifier["value"])
        found = [
            c
            for c in self.data["bird_contacts"]
            if any(self.search_matches(v, value) for v in c["attributes"].get(key, []))
        ]
        return web.json_response({"results": copy.deepcopy(found)})

    @route("GET", "/workspaces/{ws}/participants/{key}/{value}/conversations")
    async def _participant_conversations(self, request: web.Request) -> web.Response:
        self._workspace(request)
        key, value = request.match_info["key"], request.match_info["value"]
        found = [
            c
            for c in self.data["conversations"]
            if any(
                p["contact"]["identifierKey"] == key
                and self.search_matches(p["contact"]["identifierValue"], value)
                for p in c["featuredParticipants"]
            )
        ]
        return self._bird_page(request, found)

    def _conversation(self, cid: str) -> dict[str, Any]:
        found = next((c for c in self.data["conversations"] if c["id"] == cid), None)
        if found is None:
            raise self._bird_error(404, "NotFound", "The conversation was not found.")
        return found

    @route("GET", "/workspaces/{ws}/conversations/{id}/messages")
    async def _conversation_messages(self, request: web.Request) -> web.Response:
        self._workspace(request)
        cid = self._conversation(request.match_info["id"])["id"]
        return self._bird_page(request, self.data["conversation_messages"].get(cid, []))

    @route("DELETE", "/workspaces/{ws}/conversations/{cid}/messages/{id}")
    async def _delete_conversation_message(self, request: web.Request) -> web.Response:
        self._workspace(request)
        cid, mid = request.match_info["cid"], request.match_info["id"]
        messages = self.data["conversation_messages"].get(cid, [])
        if not any(m["id"] == mid for m in messages):
            raise self._bird_error(404, "NotFound", "The message was not found.")
        self.data["conversation_messages"][cid] = [m for m in messages if m["id"] != mid]
        self.deleted.append(("conversation_message", mid))
        return web.Response(status=204)

    @route("DELETE", "/workspaces/{ws}/conversations/{id}")
    async def _delete_conversation(self, request: web.Request) -> web.Response:
        self._workspace(request)
        cid = self._conversation(request.match_info["id"])["id"]
        self.data["conversations"] = [c for c in self.data["conversations"] if c["id"] != cid]
        self.data["conversation_messages"].pop(cid, None)
        self.deleted.append(("conversation", cid))
        return web.Response(status=204)

    @route("DELETE", "/workspaces/{ws}/contacts/{id}")
    async def _delete_bird_contact(self, request: web.Request) -> web.Response:
        self._workspace(request)
        cid = request.match_info["id"]
        if not any(c["id"] == cid for c in self.data["bird_contacts"]):
            raise self._bird_error(404, "NotFound", "The contact or workspace was not found.")
        self.data["bird_contacts"] = [c for c in self.data["bird_contacts"] if c["id"] != cid]
        self.deleted.append(("bird_contact", cid))
        return web.Response(status=204)


__all__ = [
    "ACCESS_KEY",
    "SUBJECT_EMAIL",
    "SUBJECT_MESSAGES",
    "SUBJECT_PHONE",
    "WORKSPACE",
    "MessageBird",
    "seed",
]
