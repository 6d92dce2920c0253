"""Intercom (chat): contacts, conversations with their parts, tickets, notes and tags.

Access: the subject's contacts are found with `POST /contacts/search` (email "="), then per
contact its conversations (`POST /conversations/search` on `contact_ids`, then
`GET /conversations/{id}` for the parts, which search leaves out), tickets
(`POST /tickets/search`), notes and tags. Intercom returns the 500 most recent parts of a
conversation; older parts of a longer conversation cannot be read through the API.

Erasure: conversations and tickets are separate objects that outlive their contact, so they
are deleted first (`DELETE /conversations/{id}`, `DELETE /tickets/{id}`: permanent), then the
contact (`DELETE /contacts/{id}` -> `deleted: true`; Intercom destroys it after a 7-day grace
period, with its notes and taggings). A conversation that also involves another contact is
someone else's too: it is kept and reported as retained. A 404 means already gone. Never
`POST /contacts/{id}/archive`: archiving keeps the data and is not an erasure.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from connectors.base import Result
from connectors.http import Auth, CursorPaging, RateLimit, json_body
from connectors.vendors.base import RECORD_RIGHTS, Erasure, HttpConnector, HttpSettings
from schemas.events import Evidence, Record, Subject

REGIONS = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}
API_VERSION = "2.14"
_PER_PAGE = 150  # the documented maximum of the search endpoints


class IntercomSettings(HttpSettings):
    """Register settings of an Intercom workspace."""

    token: str = Field(repr=False, min_length=1, description="Access token of the app.")
    region: Literal["us", "eu", "au"] = "us"
    base_url: str | None = Field(default=None, description="Overrides the region's URL.")
    # Intercom allows about 10,000 calls per minute per app, counted in 10-second windows;
    # 50/s stays well below it and leaves room for the workspace's other integrations.
    rate_limit: RateLimit = RateLimit(requests=50, per_seconds=1.0, concurrency=5)

    def url(self) -> str:
        """The region's API URL, unless `base_url` overrides it."""
        return self.base_url or REGIONS[self.region]

    def auth(self) -> Auth:
        """The app's access token as a bearer token."""
        return Auth(type="bearer", token=self.token)


def _search_paging() -> CursorPaging:
    return CursorPaging(
        cursor_path="pages.next.starting_after",
        cursor_param="pagination.starting_after",
        send_in="body",
        limit_param="pagination.per_page",
        page_size=_PER_PAGE,
    )


def _query(field: str) -> dict[str, Any]:
    return {"query": {"field": field, "operator": "=", "value": "{value}"}}


class IntercomConnector(HttpConnector[IntercomSettings]):
    """Intercom: contacts, conversations, tickets, notes, tags; permanent deletes."""

    capabilities = RECORD_RIGHTS
    description = "Intercom chat: contacts, conversations, tickets, notes, tags; deletion"
    headers = {"Intercom-Version": API_VERSION, "Accept": "application/json"}

    async def _search(self, path: str, field: str, value: str, key: str) -> list[dict[str, Any]]:
        return await self.http.all_records(
            "POST",
            path,
            path_params={"value": value},
            json=_query(field),
            paging=_search_paging(),
            records_path=key,
        )

    async def _contacts(self, subject: Subject) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for email in subject.values("email"):
            for contact in await self._search("/contacts/search", "email", email, "data"):
                found.setdefault(str(contact["id"]), contact)
        return list(found.values())

    async def _related(
        self, contacts: list[dict[str, Any]], path: str, key: str
    ) -> dict[str, dict[str, Any]]:
        """Conversations or tickets of any of the contacts, by id."""
        found: dict[str, dict[str, Any]] = {}
        for contact in contacts:
            for item in await self._search(path, "contact_ids", str(contact["id"]), key):
                found.setdefault(str(item["id"]), item)
        return found

    async def _conversation(self, conversation_id: str) -> dict[str, Any] | None:
        response = await self.http.request(
            "GET",
            "/conversations/{id}",
            path_params={"id": conversation_id},
            expected=(200, 404),  # 404: deleted meanwhile
        )
        body = json_body(response)
        return body if response.status_code == 200 and isinstance(body, dict) else None

    async def _list(self, contact_id: str, what: str) -> list[dict[str, Any]]:
        return await self.http.all_records(
            "GET",
            f"/contacts/{{id}}/{what}",
            path_params={"id": contact_id},
            records_path="data",
            absent=(404,),
        )

    async def access(self, subject: Subject) -> Result:
        """Every contact of the subject with its conversations, tickets, notes and tags."""
        contacts = await self._contacts(subject)
        if not contacts:
            return Result.not_found()
        records = [Record(collection="contacts", data=c) for c in contacts]
        listed = await self._related(contacts, "/conversations/search", "conversations")
        # The limiter bounds concurrency and rate; gather only keeps its slots busy.
        full = await asyncio.gather(*(self._conversation(cid) for cid in listed))
        records += [Record(collection="conversations", data=c) for c in full if c is not None]
        tickets = await self._related(contacts, "/tickets/search", "tickets")
        records += [Record(collection="tickets", data=t) for t in tickets.values()]
        for contact in contacts:
            for what in ("notes", "tags"):
                for item in await self._list(str(contact["id"]), what):
                    records.append(Record(collection=what, data=item))
        return Result.found(records)

    async def _delete(self, kind: str, object_id: str) -> bool:
        """Delete one object permanently; False when it was already gone (404)."""
        response = await self.http.request(
            "DELETE",
            f"/{kind}/{{id}}",
            path_params={"id": object_id},
            expected=(200, 404),
        )
        return response.status_code == 200

    async def erase(self, subject: Subject) -> Result:
        """Delete the subject's conversations and tickets, then its contacts."""
        contacts = await self._contacts(subject)
        if not contacts:
            return Result.not_found()
        erasure = Erasure({str(c["id"]) for c in contacts})
        for path, kind in (
            ("/conversations/search", "conversations"),
            ("/tickets/search", "tickets"),
        ):
            items = await self._related(contacts, path, kind)
            people = {
                object_id: [str(c["id"]) for c in (item.get("contacts") or {}).get("contacts", [])]
                for object_id, item in items.items()
            }
            reason = "also involves other contacts; delete by hand if the subject's part must go"
            owned = erasure.split(kind, people, reason)
            done = await asyncio.gather(*(self._delete(kind, i) for i in owned))
            erasure.erased[kind] += sum(done)
        contacts_deleted = 0
        for contact_id in sorted(erasure.mine):
            contacts_deleted += await self._delete("contacts", contact_id)
        erasure.erased["contacts"] += contacts_deleted
        return erasure.result(
            [
                Evidence(
                    kind="vendor_note",
                    value=f"Intercom confirmed deletion of {contacts_deleted} contact(s); "
                    "they are destroyed with their notes after a 7-day grace period",
                )
            ]
        )


__all__ = ["REGIONS", "IntercomConnector", "IntercomSettings"]
