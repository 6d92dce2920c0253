"""Intercom (chat): contacts, conversations with their parts, tickets, notes and tags.

Access: the subject's contacts are found with `POST /contacts/search` (email "="), then per
contact its conversations (`POST /conversations/search` on `contact_ids`, then
`GET /conversations/{id}` for the parts, which search leaves out), tickets
(`POST /tickets/search`), notes and tags. Intercom returns the 500 most recent parts of a
conversation; older parts of a longer conversation cannot be read through the API.

Other people (Art. 15(4) GDPR): a conversation or ticket that also involves another contact
is exported with `Record.others` pointing at that contact's entry in `contacts` and at every
message (author, body, attachments) someone other than the subject wrote in it, the opening
message included; ids, times and the subject's own messages stay, so the copy reads as a
conversation. The controller's teammates' answers in a shared conversation are marked too:
they may address or describe the other person.

Erasure: conversations and tickets are separate objects that outlive their contact, so they
are deleted first (`DELETE /conversations/{id}`, `DELETE /tickets/{id}`: permanent), then the
contact (`DELETE /contacts/{id}` -> `deleted: true`; Intercom destroys it after a 7-day grace
period, with its notes and taggings). A conversation that also involves another contact is not
deleted (the rest is the other person's): the subject's own messages in it are redacted with
`POST /conversations/redact` (parts, and the opening message if the subject wrote it). What
the API cannot reach becomes a manual step: messages older than the 500 it returns, and a
shared ticket (the API redacts conversations only). A 404 means already gone. Never
`POST /contacts/{id}/archive`: archiving keeps the data and is not an erasure.

Retention sweeps (Art. 5(1)(e) GDPR): conversations, tickets and contacts whose date field is
before the cutoff are found with the same search endpoints (`{"field": "updated_at",
"operator": "<", "value": <the cutoff's UTC midnight, epoch seconds>}`) and deleted by the
erasure's paths. Intercom compares a contact's timestamps by UTC day, so "before the cutoff's
midnight" is exact for contacts too. A conversation shared by several contacts is deleted when
it has expired (sweeps are about age, not about a person). A deleted contact is destroyed with
its notes and taggings after Intercom's 7-day grace period; the evidence says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from connectors.base import Result, SweepResult
from connectors.http import Auth, CursorPaging, RateLimit, json_body
from connectors.vendors.base import (
    RECORD_RIGHTS,
    Erasure,
    HttpConnector,
    HttpSettings,
    exact_matches,
    pointer,
)
from connectors.vendors.sweep import Sweepable, delete_each, midnight, sweep_collections
from schemas.events import Evidence, Record, Subject
from schemas.sweeps import SweepCount, SweepRule

REGIONS = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}
API_VERSION = "2.14"
_PER_PAGE = 150  # the documented maximum of the search endpoints
#: What a sweep searches per collection: the search path, where its records are, and the date
#: fields the search accepts (Intercom's "accepted fields" of each model).
_SWEEPS = {
    "conversations": ("/conversations/search", "conversations", ("created_at", "updated_at")),
    "tickets": ("/tickets/search", "tickets", ("created_at", "updated_at")),
    "contacts": (
        "/contacts/search",
        "data",
        ("created_at", "updated_at", "last_seen_at", "signed_up_at", "last_contacted_at"),
    ),
}


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


def _query(field: str, operator: str = "=") -> dict[str, Any]:
    return {"query": {"field": field, "operator": operator, "value": "{value}"}}


def _people(item: dict[str, Any]) -> list[str]:
    """The ids of the contacts a conversation or ticket involves."""
    return [str(c["id"]) for c in (item.get("contacts") or {}).get("contacts", [])]


def _parts(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    listed = (conversation.get("conversation_parts") or {}).get("conversation_parts")
    return listed if isinstance(listed, list) else []


def _written_by(message: dict[str, Any], mine: set[str]) -> bool:
    """Whether one of the subject's contacts wrote `message` (a part or the source)."""
    author = message.get("author") or {}
    return author.get("type") in ("user", "lead", "contact") and str(author.get("id")) in mine


def _others(item: dict[str, Any], mine: set[str]) -> list[str]:
    """Pointers to what concerns other people in a shared conversation or ticket: the other
    contacts' entries and every message someone else wrote (Art. 15(4) GDPR)."""
    people = _people(item)
    if set(people) <= mine:
        return []  # the subject's alone
    marks = [pointer("contacts", "contacts", i) for i, c in enumerate(people) if c not in mine]
    source = item.get("source")
    if isinstance(source, dict) and not _written_by(source, mine):
        marks += [pointer("source", k) for k in ("author", "body", "subject", "attachments")
                  if k in source]  # fmt: skip
    for i, part in enumerate(_parts(item)):
        if not _written_by(part, mine):
            marks += [pointer("conversation_parts", "conversation_parts", i, k)
                      for k in ("author", "body", "attachments") if k in part]  # fmt: skip
    return marks


def _redactable(message: dict[str, Any], mine: set[str]) -> bool:
    return _written_by(message, mine) and bool(message.get("body")) and not message.get("redacted")


class IntercomConnector(HttpConnector[IntercomSettings]):
    """Intercom: contacts, conversations, tickets, notes, tags; permanent deletes."""

    capabilities = RECORD_RIGHTS
    sweeps = True
    description = "Intercom chat: contacts, conversations, tickets, notes, tags; deletion"
    headers = {"Intercom-Version": API_VERSION, "Accept": "application/json"}

    async def _search(
        self, path: str, field: str, value: str | int, key: str, operator: str = "="
    ) -> list[dict[str, Any]]:
        return await self.http.all_records(
            "POST",
            path,
            path_params={"value": value},
            json=_query(field, operator),
            paging=_search_paging(),
            records_path=key,
        )

    async def _contacts(self, subject: Subject) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for email in subject.values("email"):
            for contact in await self._search("/contacts/search", "email", email, "data"):
                found.setdefault(str(contact["id"]), contact)
        return exact_matches(self.system, found.values(), {"email": "email"}, subject)

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
        mine = {str(c["id"]) for c in contacts}
        records = [Record(collection="contacts", data=c) for c in contacts]
        listed = await self._related(contacts, "/conversations/search", "conversations")
        # The limiter bounds concurrency and rate; gather only keeps its slots busy.
        full = await asyncio.gather(*(self._conversation(cid) for cid in listed))
        records += [
            Record(collection="conversations", data=c, others=_others(c, mine))
            for c in full
            if c is not None
        ]
        tickets = await self._related(contacts, "/tickets/search", "tickets")
        records += [
            Record(collection="tickets", data=t, others=_others(t, mine)) for t in tickets.values()
        ]
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

    async def _redact(self, conversation_id: str, message: dict[str, Any], source: bool) -> bool:
        """Redact one message of the subject's; False when it went meanwhile (404)."""
        kind, key = (
            ("source", "source_id") if source else ("conversation_part", "conversation_part_id")
        )
        response = await self.http.request(
            "POST",
            "/conversations/redact",
            json={"type": kind, "conversation_id": conversation_id, key: str(message["id"])},
            expected=(200, 404),
        )
        return response.status_code == 200

    async def _redact_shared(self, erasure: Erasure, conversation_id: str) -> None:
        """Redact the subject's messages in a conversation shared with other people."""
        conversation = await self._conversation(conversation_id)
        if conversation is None:
            return
        mine = erasure.mine
        parts = _parts(conversation)
        source = conversation.get("source")
        done = 0
        if isinstance(source, dict) and _redactable(source, mine):
            done += await self._redact(conversation_id, source, source=True)
        for part in parts:
            if _redactable(part, mine):
                done += await self._redact(conversation_id, part, source=False)
        erasure.redacted["conversation_parts"] += done  # the opening message counted as one
        total = (conversation.get("conversation_parts") or {}).get("total_count", len(parts))
        if isinstance(total, int) and total > len(parts):
            erasure.manual.append(
                f"Intercom conversation {conversation_id} has {total} messages and the API "
                f"returns only the {len(parts)} most recent: in the Intercom inbox, open the "
                "conversation and delete each older message the subject wrote (message menu, "
                "'Delete')."
            )

    async def erase(self, subject: Subject) -> Result:
        """Delete the subject's own conversations and tickets, redact its messages in shared
        conversations, then delete its contacts."""
        contacts = await self._contacts(subject)
        if not contacts:
            return Result.not_found()
        erasure = Erasure({str(c["id"]) for c in contacts})
        for path, kind in (
            ("/conversations/search", "conversations"),
            ("/tickets/search", "tickets"),
        ):
            items = await self._related(contacts, path, kind)
            owned, shared = erasure.split({i: _people(item) for i, item in items.items()})
            done = await asyncio.gather(*(self._delete(kind, i) for i in owned))
            erasure.erased[kind] += sum(done)
            for object_id in shared:
                if kind == "conversations":
                    await self._redact_shared(erasure, object_id)
                else:
                    erasure.manual.append(
                        f"Intercom ticket {object_id} also involves other contacts and the API "
                        "cannot redact tickets: in Intercom, open the ticket, delete each "
                        "message the subject wrote and remove the subject from its customers."
                    )
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

    # ------------------------------------------------------------------------- sweeps

    async def _sweep_one(self, rule: SweepRule, dry_run: bool) -> SweepCount:
        """Find one collection's records dated before the cutoff; delete them unless dry."""
        path, key, _ = _SWEEPS[rule.collection]
        before = int(midnight(rule.cutoff).timestamp())
        found = await self._search(path, rule.date_field, before, key, operator="<")
        return await delete_each(
            rule.collection,
            (str(item["id"]) for item in found),
            lambda object_id: self._delete(rule.collection, object_id),
            dry_run=dry_run,
        )

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """Delete the conversations, tickets and contacts the rules say have expired."""
        return await sweep_collections(
            "Intercom",
            rules,
            {name: Sweepable(fields, self._sweep_one) for name, (_, _, fields) in _SWEEPS.items()},
            dry_run=dry_run,
            evidence=[
                Evidence(
                    kind="vendor_note",
                    value="Intercom destroys deleted contacts with their notes and tags after "
                    "a 7-day grace period; conversations and tickets are deleted at once",
                )
            ],
        )


__all__ = ["REGIONS", "IntercomConnector", "IntercomSettings"]
