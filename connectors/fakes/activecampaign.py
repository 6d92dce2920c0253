"""A strict fake of the ActiveCampaign API v3, as vendor-apis.md describes it.

What it reproduces (everything under `/api/3`):

- auth: the `Api-Token` header must hold the key, else 401 `{"message": ...}` (the real API
  answers 401/403 with a `message`; the code is UNCONFIRMED, both are "credentials");
- `GET /contacts?filters[updated_before]=|filters[created_before]=` (YYYY-MM-DD, else 400):
  the contacts whose `udate` / `cdate` falls on or before that day. Whether the vendor includes
  the day itself is UNCONFIRMED; the fake does (the nastier case: a client trusting the filter
  would delete a day early). `add_contact(email, age_days=...)` seeds a contact of known age;
- `GET /contacts?email=` (case-insensitive) with `limit` (default 20, max 100) + `offset`
  paging and `meta.total`; every related listing pages the same way. A `limit` above 100 is
  clamped to 100 (`over_limit="clamp"`, the default) or answered 400 (`"error"`): which one
  the vendor does is UNCONFIRMED, a clamp is the nastier case (a client asking for more
  stops early on the "short" page);
- `/contacts/{id}/{contactLists,contactAutomations,fieldValues,notes,deals,contactDeals,
  contactLogs,trackingLogs,bounceLogs,geoIps,contactGoals,scoreValues,accountContacts}` and
  `GET /activities?contact={id}`; an unknown contact answers 404 `{"message": ...}`;
- `DELETE /contacts/{id}`: 200 `{}` (recorded in `deleted_contacts`), or 404
  `{"message": "No result found for contact with id N"}`; it removes the contact's related
  data but NOT its deals (separate records);
  `DELETE /notes/{id}` and `DELETE /deals/{id}` likewise;
- `POST /contactLists {"contactList": {"list", "contact", "status"}}` changes a subscription
  (status 1 active, 2 unsubscribed); every change is kept in `subscription_changes`;
- the vendor's limit of 5 requests per second (sliding, per account; `faults.max_rate`): 429
  with `Retry-After`, `RateLimit-Limit`, `RateLimit-Remaining` (`limited_status=503` answers
  like the old report says instead);
- the fault knobs of every fake (`faults`); a 5xx is 500 `{"message": ...}`; the request log
  of `FakeServer` (method, path, time, status).

Seeded with four contacts; the subject (Anna de Vries) has notes across several pages, two
deals she is the primary contact of, one deal she is a secondary contact on, three lists.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

from aiohttp import web

from connectors.fakes.server import RETRY_AFTER, Answer, FakeServer, Faults, route
from connectors.vendors.activecampaign import RELATED

API_KEY = "ac-test-key-0123456789"  # a fake's fixed test credential
MAX_LIMIT = 100
DEFAULT_LIMIT = 20

SUBJECT_EMAIL = "anna.devries@example.nl"

#: Related listings kept per contact: the documented ones (as the connector names them, from
#: vendor-apis.md) besides notes, deals and contactLists, which this fake keeps globally.
PER_CONTACT = tuple(n for n in RELATED if n not in ("notes", "deals", "contactLists"))


def seed() -> dict[str, Any]:
    """The fake's initial data; the subject is contact 11."""
    contacts = [
        {"id": "11", "email": "Anna.deVries@example.nl", "phone": "+31612345678",
         "firstName": "Anna", "lastName": "de Vries"},
        {"id": "12", "email": "jan.jansen@example.com", "phone": "",
         "firstName": "Jan", "lastName": "Jansen"},
        {"id": "13", "email": "piet.bakker@example.org", "phone": "",
         "firstName": "Piet", "lastName": "Bakker"},
        {"id": "14", "email": "sofie.peeters@example.be", "phone": "",
         "firstName": "Sofie", "lastName": "Peeters"},
    ]  # fmt: skip
    for c in contacts:
        c.update({"cdate": "2024-01-01T10:00:00-06:00", "udate": _stamp(datetime.now(UTC)),
                  "deleted": "0", "anonymized": "0"})  # fmt: skip
    related: dict[str, dict[str, list[dict[str, Any]]]] = {
        "11": {
            "fieldValues": [{"id": "501", "field": "1", "value": "Utrecht"}],
            "contactDeals": [{"id": "601", "deal": "701", "role": "1"},
                             {"id": "602", "deal": "702", "role": "1"},
                             {"id": "603", "deal": "703", "role": "2"}],
            "trackingLogs": [{"id": str(800 + n), "type": "open"} for n in range(3)],
            "geoIps": [{"id": "901", "ip4": "192.0.2.10"}],
            "scoreValues": [{"id": "951", "score": "1", "scoreValue": "10"}],
        },
        "12": {"fieldValues": [{"id": "502", "field": "1", "value": "Leiden"}],
               "trackingLogs": [{"id": "810", "type": "click"}]},
    }  # fmt: skip
    notes = [{"id": str(300 + n), "note": f"Called about order {n}", "relid": "11",
              "reltype": "Subscriber"} for n in range(5)]  # fmt: skip
    notes.append({"id": "399", "note": "VIP", "relid": "12", "reltype": "Subscriber"})
    deals = [
        {"id": "701", "title": "Webshop renewal", "contact": "11", "value": "1000"},
        {"id": "702", "title": "Workshop", "contact": "11", "value": "250"},
        {"id": "703", "title": "Company deal", "contact": "12", "value": "9000"},
    ]
    lists = [
        {"id": str(400 + n), "contact": c, "list": lst, "status": "1"}
        for n, (c, lst) in enumerate([("11", "1"), ("11", "2"), ("11", "3"), ("12", "1")])
    ]
    activities = [{"id": str(450 + n), "contact": "11", "reference_type": "Open"} for n in (0, 1)]
    return {
        "contacts": contacts,
        "related": related,
        "notes": notes,
        "deals": deals,
        "contactLists": lists,
        "activities": activities,
    }


def _stamp(moment: datetime) -> str:
    """A date as ActiveCampaign writes it: ISO 8601 with the account's offset (US Central)."""
    return moment.astimezone(_CENTRAL).isoformat(timespec="seconds")


_CENTRAL = timezone(timedelta(hours=-6))
#: The date filters of `GET /contacts` and the contact field each one reads.
_BEFORE = {"filters[updated_before]": "udate", "filters[created_before]": "cdate"}


def _message(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


@dataclass(eq=False)
class ActiveCampaign(FakeServer):
    """The fake ActiveCampaign account; see the module docstring."""

    api_key: str = API_KEY
    limited_status: int = 429
    over_limit: Literal["clamp", "error"] = "clamp"

    #: The vendor's own limit: 5 requests per second per account.
    default_faults: ClassVar[Faults] = Faults(max_rate=(5, 1.0))
    prefix = "/api/3"
    unauthorised = Answer(401, {"message": "No Result found for Subscriber with id 0"})
    server_error = Answer(500, {"message": "Internal Server Error"})
    too_many = Answer(
        429,
        {"message": "Too Many Requests"},
        {**RETRY_AFTER, "RateLimit-Limit": "{limit}", "RateLimit-Remaining": "0"},
    )

    def reset(self) -> None:
        """Fresh data, empty logs, the vendor's own limit and no injected faults."""
        self.data = seed()
        self.subscription_changes: list[dict[str, str]] = []
        self.deleted_contacts: list[str] = []
        self._ids = itertools.count(20)
        self.reset_faults()

    def add_contact(self, email: str, *, age_days: float) -> str:
        """Add a contact created and last updated `age_days` ago; returns its id."""
        cid = str(next(self._ids))
        when = _stamp(datetime.now(UTC) - timedelta(days=age_days))
        self.data["contacts"].append(
            {"id": cid, "email": email, "phone": "", "firstName": "", "lastName": "",
             "cdate": when, "udate": when, "deleted": "0", "anonymized": "0"}
        )  # fmt: skip
        return cid

    def authorised(self, request: web.Request) -> bool:
        """The API key in the `Api-Token` header."""
        return request.headers.get("Api-Token") == self.api_key

    def too_many_answer(self) -> Answer:
        """429, or `limited_status` (503 as an old report says), with the `RateLimit-*` headers."""
        return replace(self.too_many, status=self.limited_status)

    # ------------------------------------------------------------------------ helpers

    def _page(self, request: web.Request, key: str, items: list[Any]) -> web.Response:
        try:
            limit = int(request.query.get("limit", DEFAULT_LIMIT))
            offset = int(request.query.get("offset", 0))
        except ValueError:
            return _message(400, "limit and offset must be numbers")
        if limit > MAX_LIMIT:
            if self.over_limit == "error":
                return _message(400, f"limit must not exceed {MAX_LIMIT}")
            limit = MAX_LIMIT
        if limit < 1 or offset < 0:
            return _message(400, "invalid limit or offset")
        return web.json_response(
            {
                key: copy.deepcopy(items[offset : offset + limit]),
                "meta": {
                    "total": str(len(items)),
                    "page_input": {"limit": limit, "offset": offset},
                },
            }
        )

    def _contact(self, contact_id: str) -> dict[str, Any] | None:
        return next((c for c in self.data["contacts"] if c["id"] == contact_id), None)

    def _gone(self, kind: str, object_id: str) -> web.Response:
        return _message(404, f"No result found for {kind} with id {object_id}")

    # ------------------------------------------------------------------------- routes

    @route("GET", "/contacts")
    async def _search(self, request: web.Request) -> web.Response:
        found = self.data["contacts"]
        if "email" in request.query:
            wanted = request.query["email"]
            found = [c for c in found if self.search_matches(c["email"], wanted)]
        for param, field in _BEFORE.items():
            if param in request.query:
                try:
                    last = date.fromisoformat(request.query[param])
                except ValueError:
                    return _message(400, f"{param} must be a date (YYYY-MM-DD)")
                found = [c for c in found if datetime.fromisoformat(c[field]).date() <= last]
        return self._page(request, "contacts", found)

    @route("GET", "/contacts/{id}")
    async def _get_contact(self, request: web.Request) -> web.Response:
        contact = self._contact(request.match_info["id"])
        if contact is None:
            return self._gone("contact", request.match_info["id"])
        return web.json_response({"contact": contact})

    @route("GET", "/contacts/{id}/{related}")
    async def _related(self, request: web.Request) -> web.Response:
        contact_id, name = request.match_info["id"], request.match_info["related"]
        if self._contact(contact_id) is None:
            return self._gone("contact", contact_id)
        if name == "notes":
            items = [n for n in self.data["notes"] if n["relid"] == contact_id]
        elif name == "deals":
            items = [d for d in self.data["deals"] if d["contact"] == contact_id]
        elif name == "contactLists":
            items = [s for s in self.data["contactLists"] if s["contact"] == contact_id]
        elif name in PER_CONTACT:
            items = self.data["related"].get(contact_id, {}).get(name, [])
        else:
            return _message(404, "Not Found")
        return self._page(request, name, items)

    @route("GET", "/activities")
    async def _activities(self, request: web.Request) -> web.Response:
        contact_id = request.query.get("contact")
        items = [a for a in self.data["activities"] if a["contact"] == contact_id]
        return self._page(request, "activities", items)

    @route("DELETE", "/contacts/{id}")
    async def _delete_contact(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["id"]
        if self._contact(contact_id) is None:
            return self._gone("contact", contact_id)
        self.data["contacts"] = [c for c in self.data["contacts"] if c["id"] != contact_id]
        self.deleted_contacts.append(contact_id)
        self.data["related"].pop(contact_id, None)
        # Deals are separate records: they survive their contact (vendor-apis.md).
        for key in ("notes",):
            self.data[key] = [n for n in self.data[key] if n["relid"] != contact_id]
        for key in ("contactLists", "activities"):
            self.data[key] = [s for s in self.data[key] if s["contact"] != contact_id]
        return web.json_response({})

    @route("DELETE", "/notes/{id}")
    @route("DELETE", "/deals/{id}")
    async def _delete(self, request: web.Request) -> web.Response:
        kind = request.path.removeprefix(self.prefix).split("/")[1]
        object_id = request.match_info["id"]
        if not any(item["id"] == object_id for item in self.data[kind]):
            return self._gone(kind[:-1], object_id)
        self.data[kind] = [item for item in self.data[kind] if item["id"] != object_id]
        return web.json_response({})

    @route("POST", "/contactLists")
    async def _subscription(self, request: web.Request) -> web.Response:
        try:
            body = (await request.json())["contactList"]
            contact_id, list_id, status = (
                str(body["contact"]),
                str(body["list"]),
                str(body["status"]),
            )
        except (ValueError, KeyError, TypeError):
            return _message(422, "contactList.list, contact and status are required")
        if self._contact(contact_id) is None:
            return self._gone("contact", contact_id)
        self.subscription_changes.append({"contact": contact_id, "list": list_id, "status": status})
        for sub in self.data["contactLists"]:
            if sub["contact"] == contact_id and sub["list"] == list_id:
                sub["status"] = status
                break
        else:
            sub = {"id": str(480 + len(self.subscription_changes)), "contact": contact_id,
                   "list": list_id, "status": status}  # fmt: skip
            self.data["contactLists"].append(sub)
        return web.json_response({"contactList": sub}, status=201)


__all__ = ["API_KEY", "MAX_LIMIT", "PER_CONTACT", "SUBJECT_EMAIL", "ActiveCampaign", "seed"]
