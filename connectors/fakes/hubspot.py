"""A strict local fake of the HubSpot CRM API (contacts, associations v4, GDPR delete).

Documented behaviours it reproduces (vendor-apis.md, HubSpot):

- `Authorization: Bearer <token>`; otherwise 401 `{status:"error", message, correlationId,
  category:"INVALID_AUTHENTICATION"}`;
- `POST /crm/v3/objects/contacts/search` with `filterGroups` (operator EQ), `properties`,
  `limit` (<= 200, else 400 `category:"VALIDATION_ERROR"`) and the `after` cursor; the next
  cursor in `paging.next.after`; archived contacts are not found;
- `GET /crm/v4/objects/{from}/{id}/associations/{to}` with `limit` (default 500) and `after`;
- `POST /crm/v3/objects/{type}/batch/read` `{inputs:[{id}], properties}`; only the requested
  properties come back (plus `hs_object_id`), as with the real API;
- `GET /crm/v3/properties/{type}`: the property names of an object type;
- `DELETE /crm/v4/objects/{from}/{id}/associations/{to}/{toId}` -> 204: removes every
  association between the two records ("Remove association between records"); `unlinked`
  lists them;
- `POST /crm/v3/objects/contacts/gdpr-delete` -> 204 without a body, by `objectId` or by email
  with `idProperty: "email"`; by email an unknown address answers 204 too and is **added to a
  blocklist** (`blocklist`), so it never says "not found";
- plain `DELETE /crm/v3/objects/{type}/{id}` and `batch/archive` only archive (restorable for 90
  days): the record stays in `data` with `archived: true`, and `plain_deletes` lists them;
- 429 `{"status":"error","errorType":"RATE_LIMIT","policyName":"SECONDLY",...}` with the
  `X-HubSpot-RateLimit-*` headers.

UNCONFIRMED, so the fake takes the strict side:

- whether gdpr-delete removes associated deals, tickets and engagements: here it does not
  (only the associations go), so a connector must handle them itself;
- `Retry-After` on 429: never sent, so a client must back off by itself;
- the batch read/archive limit: 100 inputs (more answers 400);
- `POST /crm/v4/associations/{from}/{to}/batch/read`: all associations of each input at once.

The fault knobs of every fake (`faults`; `max_rate` is the vendor's own SECONDLY policy); a 5xx
is 502 `category:"INTERNAL_ERROR"`. `endpoints` lists `(method, route)` of every answered call.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from connectors.fakes.server import Answer, FakeServer, bearer_token, json_object, route

TOKEN = "pat-eu1-fake-hubspot-token"  # noqa: S105 - a fake's fixed test credential
MAX_SEARCH_LIMIT = 200
MAX_ASSOCIATION_LIMIT = 500
MAX_BATCH = 100
OBJECT_TYPES = ("contacts", "deals", "tickets", "notes", "emails", "calls", "meetings")
ENGAGEMENT_TYPES = OBJECT_TYPES[1:]

SUBJECT_EMAIL = "anna.devries@example.nl"
SUBJECT_NAME = "de Vries"
SUBJECT_NOTES = 60
#: The other contact the subject shares a deal and an e-mail with.
OTHER_EMAIL = "jan.jansen@example.com"
OTHER_NAME = "Jan Jansen"
OTHER_PHONE = "+31687654321"


def _record(object_id: str, **properties: Any) -> dict[str, Any]:
    return {
        "id": object_id,
        "properties": {"hs_object_id": object_id, **properties},
        "createdAt": "2024-03-01T10:00:00.000Z",
        "updatedAt": "2024-06-01T10:00:00.000Z",
        "archived": False,
    }


def seed() -> tuple[dict[str, dict[str, dict[str, Any]]], set[tuple[str, str, str]]]:
    """Objects per type and associations `(contact id, type, object id)`."""
    data: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in OBJECT_TYPES}
    links: set[tuple[str, str, str]] = set()

    def add(object_type: str, object_id: str, *contacts: str, **properties: Any) -> None:
        data[object_type][object_id] = _record(object_id, **properties)
        for contact in contacts:
            links.add((contact, object_type, object_id))

    add("contacts", "501", email=SUBJECT_EMAIL, firstname="Anna", lastname="de Vries",
        phone="+31612345678", city="Utrecht")  # fmt: skip
    add("contacts", "502", email=OTHER_EMAIL, firstname="Jan", lastname="Jansen", phone=OTHER_PHONE)
    add("contacts", "503", email="piet.bakker@example.org", firstname="Piet", lastname="Bakker")
    add("deals", "701", "501", dealname="Webshop order 1", amount="120")
    add("deals", "702", "501", dealname="Webshop order 2", amount="80")
    # Shared with Jan: the deal's notes and one e-mail name him.
    add("deals", "703", "501", "502", dealname="Shared family deal", amount="300",
        description=f"Split with {OTHER_NAME}, {OTHER_EMAIL}")  # fmt: skip
    add("deals", "704", "502", dealname="Jan's deal", amount="50")
    add("tickets", "801", "501", subject="Where is my parcel?")
    add("tickets", "802", "501", subject="Refund please")
    add("tickets", "803", "503", subject="Other person's ticket")
    for n in range(SUBJECT_NOTES):
        add("notes", str(9000 + n), "501", hs_note_body=f"Called about order {n}")
    add("notes", "9900", "502", hs_note_body="Prefers phone")
    for n in range(2):  # sent by the shop (HubSpot's direction EMAIL)
        add("emails", str(6000 + n), "501", hs_email_subject=f"Your order {n}",
            hs_email_direction="EMAIL")  # fmt: skip
    add("emails", "6002", "501", hs_email_subject="Question about order 2",
        hs_email_direction="INCOMING_EMAIL", hs_email_text="Can I change the address?")  # fmt: skip
    add("emails", "6003", "501", "502", hs_email_subject="Our family order",
        hs_email_direction="INCOMING_EMAIL", hs_email_from_email=OTHER_EMAIL,
        hs_email_text=f"{OTHER_NAME} here, call {OTHER_PHONE}")  # fmt: skip
    add("calls", "6100", "501", hs_call_title="Intake")
    add("calls", "6101", "501", hs_call_title="Follow-up")
    add("meetings", "6200", "501", hs_meeting_title="Demo")
    add("meetings", "6201", "503", hs_meeting_title="Piet's demo")
    return data, links


#: What the subject's access must find, per collection (the shared deal and e-mail included).
SUBJECT_EXPECTED = {
    "contacts": 1,
    "deals": 3,
    "tickets": 2,
    "notes": SUBJECT_NOTES,
    "emails": 4,
    "calls": 2,
    "meetings": 1,
}
#: The records the subject shares with another contact: erasure removes the association.
SUBJECT_SHARED = {"deals": ["703"], "emails": ["6003"]}
#: What erasure deletes: the contact and every record associated with it alone.
SUBJECT_ERASED = sum(SUBJECT_EXPECTED.values()) - 2


#: The correlation id of canned answers (a real one is a fresh UUID per answer).
CORRELATION_ID = "2f6c1c6e-4b3a-4f6e-9d3c-000000000000"


def _error_body(message: str, category: str, correlation_id: str = CORRELATION_ID) -> Any:
    return {
        "status": "error",
        "message": message,
        "correlationId": correlation_id,
        "category": category,
    }


def _invalid(message: str) -> Answer:
    return Answer(400, _error_body(message, "VALIDATION_ERROR"))


def _error(status: int, message: str, category: str) -> web.Response:
    return web.json_response(_error_body(message, category, str(uuid.uuid4())), status=status)


@dataclass(eq=False)
class FakeHubSpot(FakeServer):
    """The fake HubSpot; see the module docstring for what it reproduces."""

    token: str = TOKEN

    unauthorised = Answer(
        401,
        _error_body("Authentication credentials not found.", "INVALID_AUTHENTICATION"),
    )
    server_error = Answer(502, _error_body("Bad gateway", "INTERNAL_ERROR"))
    #: No Retry-After: whether HubSpot sends one is UNCONFIRMED, so the client must back off.
    too_many = Answer(
        429,
        {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": CORRELATION_ID,
            "policyName": "SECONDLY",
            "requestId": CORRELATION_ID,
        },
        {
            "X-HubSpot-RateLimit-Daily": "250000",
            "X-HubSpot-RateLimit-Daily-Remaining": "249000",
            "X-HubSpot-RateLimit-Secondly": "10",
            "X-HubSpot-RateLimit-Secondly-Remaining": "0",
        },
    )

    def reset(self) -> None:
        """Fresh seed, empty blocklist and logs, no faults."""
        self.data, self.links = seed()
        self.blocklist: list[str] = []
        self.plain_deletes: list[tuple[str, str]] = []
        self.gdpr_deleted: list[str] = []
        #: `(from type, from id, to type, to id)` of every association removed.
        self.unlinked: list[tuple[str, str, str, str]] = []
        self.reset_faults()

    # ------------------------------------------------------------------------ plumbing

    def authorised(self, request: web.Request) -> bool:
        """The bearer token."""
        return bearer_token(request) == self.token

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return await json_object(request, _invalid("Invalid JSON: expected an object"))

    def _type(self, request: web.Request, key: str = "type") -> str:
        object_type = request.match_info[key]
        if object_type not in OBJECT_TYPES:
            raise _invalid("Unknown object type").refusal()
        return object_type

    def _live(self, object_type: str, object_id: str) -> dict[str, Any] | None:
        found = self.data[object_type].get(object_id)
        return found if found is not None and not found["archived"] else None

    @staticmethod
    def _view(record: dict[str, Any], wanted: list[str] | None) -> dict[str, Any]:
        view = copy.deepcopy(record)
        names = set(wanted or ["email", "firstname", "lastname"]) | {"hs_object_id"}
        view["properties"] = {k: v for k, v in record["properties"].items() if k in names}
        return view

    # ------------------------------------------------------------------------- routes

    @route("POST", "/crm/v3/objects/contacts/search")
    async def _search(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
            return _error(
                400,
                f"limit must be between 1 and {MAX_SEARCH_LIMIT}",
                "VALIDATION_ERROR",
            )
        after = int(body.get("after") or 0)
        groups = body.get("filterGroups") or []
        found = []
        for record in self.data["contacts"].values():
            if record["archived"]:
                continue
            for group in groups:
                if all(self._matches(record, f) for f in group.get("filters", [])):
                    found.append(record)
                    break
        page = found[after : after + limit]
        result: dict[str, Any] = {
            "total": len(found),
            "results": [self._view(r, body.get("properties")) for r in page],
        }
        if after + limit < len(found):
            result["paging"] = {"next": {"after": str(after + limit), "link": "?after="}}
        return web.json_response(result)

    def _matches(self, record: dict[str, Any], condition: dict[str, Any]) -> bool:
        if condition.get("operator") != "EQ":
            raise _invalid("operator not supported by the fake").refusal()
        value = record["properties"].get(condition.get("propertyName"))
        return self.search_matches(value, str(condition.get("value", "")))

    @route("GET", "/crm/v3/properties/{type}")
    async def _properties(self, request: web.Request) -> web.Response:
        object_type = self._type(request)
        names = sorted({k for r in self.data[object_type].values() for k in r["properties"]})
        return web.json_response({"results": [{"name": n, "type": "string"} for n in names]})

    @route("POST", "/crm/v3/objects/{type}/batch/read")
    async def _batch_read(self, request: web.Request) -> web.Response:
        object_type = self._type(request)
        body = await self._body(request)
        inputs = body.get("inputs") or []
        if len(inputs) > MAX_BATCH:
            return _error(400, f"at most {MAX_BATCH} inputs", "VALIDATION_ERROR")
        results, missing = [], []
        for item in inputs:
            record = self._live(object_type, str(item.get("id")))
            if record is None:
                missing.append(str(item.get("id")))
            else:
                results.append(self._view(record, body.get("properties")))
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            answer["numErrors"] = 1
            answer["errors"] = [
                {"status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": missing}}
            ]
            return web.json_response(answer, status=207)
        return web.json_response(answer)

    def _archive(self, object_type: str, object_id: str) -> bool:
        record = self._live(object_type, object_id)
        if record is None:
            return False
        record["archived"] = True  # restorable for 90 days: not an erasure
        self.plain_deletes.append((object_type, object_id))
        return True

    @route("DELETE", "/crm/v3/objects/{type}/{id}")
    async def _delete(self, request: web.Request) -> web.Response:
        object_type = self._type(request)
        self._archive(object_type, request.match_info["id"])
        return web.Response(status=204)  # HubSpot answers 204 even for an unknown id

    @route("POST", "/crm/v3/objects/{type}/batch/archive")
    async def _batch_archive(self, request: web.Request) -> web.Response:
        object_type = self._type(request)
        inputs = (await self._body(request)).get("inputs") or []
        if len(inputs) > MAX_BATCH:
            return _error(400, f"at most {MAX_BATCH} inputs", "VALIDATION_ERROR")
        for item in inputs:
            self._archive(object_type, str(item.get("id")))
        return web.Response(status=204)

    @route("POST", "/crm/v3/objects/contacts/gdpr-delete")
    async def _gdpr_delete(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        object_id = str(body.get("objectId") or "")
        if body.get("idProperty") == "email":
            matches = [
                r
                for r in self.data["contacts"].values()
                if str(r["properties"].get("email", "")).lower() == object_id.lower()
            ]
            if not matches:
                self.blocklist.append(object_id.lower())  # never "not found": blocklisted
                return web.Response(status=204)
            object_id = matches[0]["id"]
        elif body.get("idProperty") not in (None, "hs_object_id"):
            return _error(400, "unsupported idProperty", "VALIDATION_ERROR")
        if object_id not in self.data["contacts"]:
            return _error(404, "resource not found", "OBJECT_NOT_FOUND")
        # Permanent: the contact goes, and so do its associations. Associated deals, tickets
        # and engagements stay (UNCONFIRMED upstream; the strict reading).
        del self.data["contacts"][object_id]
        self.links = {link for link in self.links if link[0] != object_id}
        self.gdpr_deleted.append(object_id)
        return web.Response(status=204)

    def _associated(self, from_type: str, object_id: str, to_type: str) -> list[str]:
        if from_type == "contacts":
            ids = [o for c, t, o in self.links if c == object_id and t == to_type]
            return sorted(i for i in ids if self._live(to_type, i) is not None)
        if to_type == "contacts":
            ids = [c for c, t, o in self.links if t == from_type and o == object_id]
            return sorted(i for i in ids if self._live("contacts", i) is not None)
        return []

    @staticmethod
    def _association(to_id: str) -> dict[str, Any]:
        kind = {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": None}
        return {"toObjectId": int(to_id), "associationTypes": [kind]}

    @route("GET", "/crm/v4/objects/{from}/{id}/associations/{to}")
    async def _associations(self, request: web.Request) -> web.Response:
        from_type, to_type = self._type(request, "from"), self._type(request, "to")
        object_id = request.match_info["id"]
        if self._live(from_type, object_id) is None:
            return _error(404, "resource not found", "OBJECT_NOT_FOUND")
        try:
            limit = int(request.query.get("limit", MAX_ASSOCIATION_LIMIT))
            after = int(request.query.get("after", "0"))
        except ValueError:
            return _error(400, "limit and after must be numbers", "VALIDATION_ERROR")
        if not 1 <= limit <= MAX_ASSOCIATION_LIMIT:
            return _error(400, "limit out of range", "VALIDATION_ERROR")
        ids = self._associated(from_type, object_id, to_type)
        page = ids[after : after + limit]
        result: dict[str, Any] = {"results": [self._association(i) for i in page]}
        if after + limit < len(ids):
            result["paging"] = {"next": {"after": str(after + limit), "link": "?after="}}
        return web.json_response(result)

    @route("DELETE", "/crm/v4/objects/{from}/{id}/associations/{to}/{to_id}")
    async def _unlink(self, request: web.Request) -> web.Response:
        from_type, to_type = self._type(request, "from"), self._type(request, "to")
        from_id, to_id = request.match_info["id"], request.match_info["to_id"]
        link = None  # only links to contacts are modelled
        if from_type == "contacts":
            link = (from_id, to_type, to_id)
        elif to_type == "contacts":
            link = (to_id, from_type, from_id)
        if link in self.links:
            self.links.discard(link)
            self.unlinked.append((from_type, from_id, to_type, to_id))
        return web.Response(status=204)  # every association between the two records is gone

    @route("POST", "/crm/v4/associations/{from}/{to}/batch/read")
    async def _associations_batch(self, request: web.Request) -> web.Response:
        from_type, to_type = self._type(request, "from"), self._type(request, "to")
        inputs = (await self._body(request)).get("inputs") or []
        if len(inputs) > MAX_BATCH:
            return _error(400, f"at most {MAX_BATCH} inputs", "VALIDATION_ERROR")
        results = []
        for item in inputs:
            object_id = str(item.get("id"))
            if self._live(from_type, object_id) is None:
                continue
            to = [self._association(i) for i in self._associated(from_type, object_id, to_type)]
            results.append({"from": {"id": object_id}, "to": to})
        return web.json_response({"status": "COMPLETE", "results": results})


__all__ = [
    "MAX_BATCH",
    "MAX_SEARCH_LIMIT",
    "OBJECT_TYPES",
    "OTHER_EMAIL",
    "OTHER_NAME",
    "OTHER_PHONE",
    "SUBJECT_EMAIL",
    "SUBJECT_ERASED",
    "SUBJECT_EXPECTED",
    "SUBJECT_SHARED",
    "TOKEN",
    "FakeHubSpot",
    "seed",
]
