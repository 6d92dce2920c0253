"""HubSpot (CRM): contacts and their deals, tickets and engagements, erased with GDPR delete.

Access: the subject's contacts are found with the search API (email EQ, `after` paging), then
their deals, tickets, notes, emails, calls and meetings through the v4 associations API and
read in batches, each with every property the account defines.

Erasure, and why in this order:

1. Search first. `gdpr-delete` by email never says "not found": HubSpot *adds an unknown
   address to a blocklist* so it can never be created again. That is a side effect we must not
   cause for someone who was never a contact, and it would make a second erasure look like a
   first. So an address that search does not find is reported `not_found`, with no call.
2. Records associated with the subject's contacts *only* (deals, tickets, engagements) are
   deleted explicitly: it is UNCONFIRMED whether gdpr-delete removes them. A record also
   associated with another contact (e.g. a deal with two buyers) is that person's too and is
   not deleted: the subject's association with it is removed
   (`DELETE /crm/v4/objects/contacts/{id}/associations/{type}/{toId}`, 204, "Remove
   association between records"), counted as `deal_associations_removed` etc. Where such a
   record's text still names the subject (e-mail, phone or full name), the API cannot take out
   only the subject's words: that is a manual step naming the record and its fields.
   HubSpot offers no permanent delete for these objects: `batch/archive` moves them to the
   recycle bin, from which they are purged after 90 days (evidence says so).
3. `POST /crm/v3/objects/contacts/gdpr-delete {"objectId": id}` (204) for each contact: the
   permanent delete. Never the plain `DELETE /crm/v3/objects/contacts/{id}`, which is
   restorable for 90 days. HubSpot finishes the purge (engagements, form submissions, email
   tracking) up to 30 days later; the evidence says so.

Other people (Art. 15(4) GDPR): a record associated with another contact too is exported with
`Record.others` pointing at each property whose text names that contact (e-mail, phone, full
name; read from the contact) and, for an e-mail that contact sent, at its subject and text.

Batch limits are UNCONFIRMED; 100 inputs per batch is assumed (`batch_size`). HubSpot sends
`Retry-After` on 429 only UNCONFIRMED: without it the HTTP layer backs off exponentially.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import Field

from connectors.base import Result
from connectors.http import Auth, CursorPaging, RateLimit
from connectors.vendors.base import (
    RECORD_RIGHTS,
    Erasure,
    HttpConnector,
    HttpSettings,
    exact_matches,
    mentions,
)
from schemas.events import Evidence, Record, Subject

#: Objects associated with a contact that access exports and erasure handles.
RELATED_TYPES = ("deals", "tickets", "notes", "emails", "calls", "meetings")
COLLECTIONS = ("contacts", *RELATED_TYPES)

#: An engagement another contact wrote: who wrote it, and the properties that hold the message.
_AUTHORED = {
    "emails": ("hs_email_from_email", ("hs_email_subject", "hs_email_text", "hs_email_html"))
}
_SEARCH = "/crm/v3/objects/contacts/search"
_SEARCH_LIMIT = 200  # the documented maximum


class HubSpotSettings(HttpSettings):
    """Register settings of a HubSpot system."""

    token: str = Field(repr=False, min_length=1, description="Private app or OAuth token.")
    base_url: str = "https://api.hubapi.com"
    # Search allows 4 requests per second per token, the lowest tier 100 per 10 s: 4/s keeps
    # within both without a second limiter.
    rate_limit: RateLimit = RateLimit(requests=4, per_seconds=1.0, concurrency=4)
    associations_page_size: Annotated[int, Field(ge=1, le=500)] = 500
    batch_size: Annotated[int, Field(ge=1, le=100)] = 100

    def url(self) -> str:
        """The API base URL."""
        return self.base_url

    def auth(self) -> Auth:
        """A bearer token."""
        return Auth(type="bearer", token=self.token)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _identifiers(contacts: Iterable[dict[str, Any]]) -> list[str]:
    """What names a contact in free text: its e-mail, phone numbers and full name."""
    found: list[str] = []
    for contact in contacts:
        p = contact.get("properties") or {}
        found += [str(p[k]) for k in ("email", "phone", "mobilephone") if p.get(k)]
        name = " ".join(str(p[k]) for k in ("firstname", "lastname") if p.get(k))
        found += [name] if " " in name else []  # a first name alone matches too much
    return found


def _others(object_type: str, record: dict[str, Any], people: list[str]) -> list[str]:
    """Pointers to what concerns other contacts in a shared record (Art. 15(4) GDPR)."""
    properties = record.get("properties") or {}
    marks = mentions(properties, people, ("properties",))
    sender, message = _AUTHORED.get(object_type, ("", ()))
    if str(properties.get(sender) or "").lower() in {p.lower() for p in people}:
        marks += [f"/properties/{k}" for k in message if k in properties]
    return sorted(set(marks))


class HubSpotConnector(HttpConnector[HubSpotSettings]):
    """HubSpot CRM: contacts with their associated records; erasure by GDPR delete."""

    capabilities = RECORD_RIGHTS
    description = "HubSpot CRM: contacts, deals, tickets, engagements; GDPR delete"

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self._properties: dict[str, list[str]] = {}

    # ------------------------------------------------------------------------- reading

    async def _property_names(self, object_type: str) -> list[str]:
        # Search and batch read return a few default properties unless asked for each by name.
        if object_type not in self._properties:
            found = await self.http.all_records(
                "GET", "/crm/v3/properties/{type}", path_params={"type": object_type},
                records_path="results",
            )  # fmt: skip
            self._properties[object_type] = [str(p["name"]) for p in found]
        return self._properties[object_type]

    async def _contacts(self, subject: Subject) -> list[dict[str, Any]]:
        properties = await self._property_names("contacts")
        found: dict[str, dict[str, Any]] = {}
        for email in subject.values("email"):
            body = {
                "filterGroups": [
                    {"filters": [{"propertyName": "email", "operator": "EQ", "value": "{email}"}]}
                ],
                "properties": properties,
            }
            paging = CursorPaging(
                cursor_path="paging.next.after",
                cursor_param="after",
                send_in="body",
                limit_param="limit",
                page_size=_SEARCH_LIMIT,
            )
            async for contact in self.http.records(
                "POST",
                _SEARCH,
                path_params={"email": email},
                json=body,
                paging=paging,
                records_path="results",
            ):
                found.setdefault(str(contact["id"]), contact)
        return exact_matches(self.system, found.values(), {"properties.email": "email"}, subject)

    async def _associated(self, contact_id: str, object_type: str) -> list[str]:
        paging = CursorPaging(
            cursor_path="paging.next.after",
            cursor_param="after",
            limit_param="limit",
            page_size=self.settings.associations_page_size,
        )
        links = await self.http.all_records(
            "GET",
            "/crm/v4/objects/contacts/{id}/associations/{type}",
            path_params={"id": contact_id, "type": object_type},
            paging=paging,
            records_path="results",
            absent=(404,),  # the contact went meanwhile
        )
        return [str(link["toObjectId"]) for link in links]

    async def _related_ids(self, contacts: list[dict[str, Any]]) -> dict[str, list[str]]:
        related: dict[str, list[str]] = {}
        for object_type in RELATED_TYPES:
            ids: dict[str, None] = {}  # ordered set: a record may link to two of the contacts
            for contact in contacts:
                for object_id in await self._associated(str(contact["id"]), object_type):
                    ids[object_id] = None
            related[object_type] = list(ids)
        return related

    async def _batch_read(self, object_type: str, ids: list[str]) -> list[dict[str, Any]]:
        properties = await self._property_names(object_type)
        out: list[dict[str, Any]] = []
        for chunk in _chunks(ids, self.settings.batch_size):
            out += await self.http.all_records(
                "POST",
                "/crm/v3/objects/{type}/batch/read",
                path_params={"type": object_type},
                json={"inputs": [{"id": i} for i in chunk], "properties": properties},
                records_path="results",
                expected=(200, 207),  # 207: some ids went meanwhile
            )
        return out

    async def _shared(
        self, related: dict[str, list[str]], mine: set[str]
    ) -> tuple[dict[str, dict[str, set[str]]], list[dict[str, Any]]]:
        """Per object type the contacts of each record, and the other contacts among them."""
        linked = {t: await self._linked_contacts(t, ids) for t, ids in related.items() if ids}
        others = sorted({c for per in linked.values() for people in per.values() for c in people}
                        - mine)  # fmt: skip
        return linked, await self._batch_read("contacts", others)

    async def access(self, subject: Subject) -> Result:
        """Every contact of the subject and every record associated with it; in records
        shared with other contacts, what concerns those marked."""
        contacts = await self._contacts(subject)
        if not contacts:
            return Result.not_found()
        mine = {str(c["id"]) for c in contacts}
        records = [Record(collection="contacts", data=c) for c in contacts]
        related = await self._related_ids(contacts)
        linked, others = await self._shared(related, mine)
        people = _identifiers(others)
        for object_type, ids in related.items():
            for record in await self._batch_read(object_type, ids):
                shared = not linked[object_type].get(str(record["id"]), set()) <= mine
                marks = _others(object_type, record, people) if shared else []
                records.append(Record(collection=object_type, data=record, others=marks))
        return Result.found(records)

    # ------------------------------------------------------------------------- erasure

    async def _linked_contacts(self, object_type: str, ids: list[str]) -> dict[str, set[str]]:
        """For each record, the contacts it is associated with."""
        linked: dict[str, set[str]] = {i: set() for i in ids}
        for chunk in _chunks(ids, self.settings.batch_size):
            async for row in self.http.records(
                "POST",
                "/crm/v4/associations/{type}/contacts/batch/read",
                path_params={"type": object_type},
                json={"inputs": [{"id": i} for i in chunk]},
                records_path="results",
                expected=(200, 207),
            ):
                source = str(row["from"]["id"])
                linked.setdefault(source, set()).update(str(t["toObjectId"]) for t in row["to"])
        return linked

    async def _unlink(
        self, erasure: Erasure, object_type: str, shared: dict[str, set[str]], subject: list[str]
    ) -> None:
        """Remove the subject's associations with records shared with other contacts; a record
        whose text still names the subject becomes a manual step."""
        for object_id, people in shared.items():
            for contact_id in sorted(people & erasure.mine):
                await self.http.request(
                    "DELETE",
                    "/crm/v4/objects/contacts/{id}/associations/{type}/{to}",
                    path_params={"id": contact_id, "type": object_type, "to": object_id},
                    expected=(204, 404),  # 404: either record went meanwhile
                )
                erasure.unlinked[f"{object_type.removesuffix('s')}_associations"] += 1
        for record in await self._batch_read(object_type, list(shared)):
            named = mentions(record.get("properties") or {}, subject)
            if named:
                fields = ", ".join(sorted(p.removeprefix("/") for p in named))
                erasure.manual.append(
                    f"HubSpot {object_type.removesuffix('s')} {record['id']} is shared with "
                    f"another contact and still names the subject in: {fields}. Open it in "
                    "HubSpot and remove the subject's details from those fields."
                )

    async def erase(self, subject: Subject) -> Result:
        """Delete records owned by the subject alone, unlink shared ones, then GDPR-delete
        each contact."""
        contacts = await self._contacts(subject)
        if not contacts:
            # Deliberately no gdpr-delete by email: it would blocklist an unknown address.
            return Result.not_found()
        erasure = Erasure({str(c["id"]) for c in contacts})
        for object_type, ids in (await self._related_ids(contacts)).items():
            if not ids:
                continue
            linked = await self._linked_contacts(object_type, ids)
            owned, shared = erasure.split({i: linked.get(i, set()) for i in ids})
            for chunk in _chunks(owned, self.settings.batch_size):
                await self.http.request(
                    "POST",
                    "/crm/v3/objects/{type}/batch/archive",
                    path_params={"type": object_type},
                    json={"inputs": [{"id": i} for i in chunk]},
                    expected=(204,),
                )
            erasure.erased[object_type] += len(owned)
            if shared:
                people = {i: linked.get(i, set()) for i in shared}
                await self._unlink(erasure, object_type, people, _identifiers(contacts))
        mine = sorted(erasure.mine)
        for contact_id in mine:
            response = await self.http.request(
                "POST",
                "/crm/v3/objects/contacts/gdpr-delete",
                json={"objectId": contact_id},
                expected=(204, 404),  # 404: deleted meanwhile (a concurrent attempt)
            )
            erasure.erased["contacts"] += response.status_code == 204
        return erasure.result(
            [
                Evidence(
                    kind="vendor_note",
                    value=f"HubSpot GDPR delete of {len(mine)} contact(s) accepted (204); "
                    "HubSpot completes the purge up to 30 days later",
                ),
                Evidence(
                    kind="vendor_note",
                    value=f"{erasure.deleted - len(mine)} associated record(s) archived; HubSpot "
                    "purges archived records from its recycle bin after 90 days",
                ),
            ]
        )


__all__ = ["COLLECTIONS", "HubSpotConnector", "HubSpotSettings"]
