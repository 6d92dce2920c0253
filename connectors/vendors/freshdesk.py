"""Freshdesk (Freshworks support desk): contacts, their tickets and conversations; hard delete.

Access: contacts are found by email, phone and mobile, both active ones and soft-deleted ones
(`state=deleted`: a soft-deleted contact still holds all its data). For each contact its
tickets are listed by `requester_id`, twice: the normal list and the trash (`filter=deleted`);
both with `updated_since=2000-01-01T00:00:00Z`, because without it Freshdesk lists only
tickets created in the last 30 days. Then every ticket's conversations.

Paging: `page` + `per_page` (at most 100). Whether Freshdesk sends `Link: rel="next"` is
UNCONFIRMED, so the connector goes on while a page is full *or* a next link is present, and
stops on a short page without one; an empty page always ends the listing.

Erasure: `DELETE /contacts/{id}/hard_delete?force=true` (204) for every contact found. It
removes the profile with its tickets, calls, forum posts, ratings, todos and notes. Never the
plain `DELETE /contacts/{id}`: that is a restorable soft delete. A 404 means already gone.
The contact's tickets and conversations are listed first, as access lists them, and reported
deleted per collection with the contact: the certificate must count what went with it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Annotated, Any

from pydantic import Field, model_validator

from connectors.base import Result
from connectors.http import Auth, Page, PageNumberPaging, PageRequest, RateLimit
from connectors.vendors.base import (
    RECORD_RIGHTS,
    HttpConnector,
    HttpSettings,
    check_account,
    erased,
)
from schemas.events import Evidence, Record, Subject

COLLECTIONS = ("contacts", "tickets", "conversations")

#: Long before any Freshdesk account existed: lists every ticket, not only the last 30 days'.
UPDATED_SINCE = "2000-01-01T00:00:00Z"
_CONVERSATIONS_PER_PAGE = 30  # fixed by Freshdesk; `per_page` is not documented there


class FreshdeskSettings(HttpSettings):
    """Register settings of a Freshdesk system."""

    domain: str | None = Field(default=None, description="'acme' for acme.freshdesk.com")
    base_url: str | None = Field(default=None, description="Overrides domain (tests, proxies).")
    api_key: str = Field(repr=False, min_length=1)
    # The smallest plan allows 50 requests per minute per account; a bigger plan may raise it.
    rate_limit: RateLimit = RateLimit(requests=50, per_seconds=60.0, concurrency=4)
    page_size: Annotated[int, Field(ge=1, le=100)] = 100

    @model_validator(mode="after")
    def _where(self) -> FreshdeskSettings:
        check_account("domain", self.domain, self.base_url)
        return self

    def url(self) -> str:
        """The API base URL."""
        return self.base_url or f"https://{self.domain}.freshdesk.com/api/v2"

    def auth(self) -> Auth:
        """The API key as the basic-auth user (Freshdesk style)."""
        return Auth(type="key_as_basic_user", key=self.api_key)


class _FullPageOrLink(PageNumberPaging):
    """Page numbers; go on after a full page or a `rel="next"` link, stop otherwise."""

    def next(self, page: Page, request: PageRequest) -> PageRequest | None:
        """The next page number, or None at the end."""
        if not page.records:
            return None
        linked = bool(page.response.links.get("next", {}).get("url"))
        if len(page.records) < self.page_size and not linked:
            return None
        number = int(request.params.get(self.page_param) or self.first_page) + 1
        return self._set(request, **{self.page_param: number})


class FreshdeskConnector(HttpConnector[FreshdeskSettings]):
    """Freshdesk support desk: contacts, tickets (also old and trashed), conversations."""

    capabilities = RECORD_RIGHTS
    description = "Freshdesk: contacts, tickets, conversations; permanent hard delete"

    # ------------------------------------------------------------------------- reading

    async def _contacts(self, subject: Subject) -> list[dict[str, Any]]:
        paging = _FullPageOrLink(page_size=self.settings.page_size)
        lookups = [("email", v) for v in subject.values("email")]
        lookups += [(key, v) for v in subject.values("phone") for key in ("phone", "mobile")]
        found: dict[int, dict[str, Any]] = {}
        for key, value in lookups:
            for state in (None, "deleted"):
                params = {key: "{value}"} | ({"state": state} if state else {})
                async for contact in self.http.records(
                    "GET", "/contacts", path_params={"value": value}, params=params, paging=paging
                ):
                    found.setdefault(int(contact["id"]), contact)
        return list(found.values())

    async def _tickets(self, contact_id: int) -> list[dict[str, Any]]:
        paging = _FullPageOrLink(page_size=self.settings.page_size)
        tickets: dict[int, dict[str, Any]] = {}
        for trash in (False, True):
            params: dict[str, Any] = {"requester_id": "{id}", "updated_since": UPDATED_SINCE}
            if trash:
                params["filter"] = "deleted"
            async for ticket in self.http.records(
                "GET", "/tickets", path_params={"id": contact_id}, params=params, paging=paging
            ):
                # Whether `filter=deleted` also honours `requester_id` is UNCONFIRMED: never
                # export (or count) someone else's ticket.
                if int(ticket.get("requester_id") or -1) == contact_id:
                    tickets.setdefault(int(ticket["id"]), ticket)
        return list(tickets.values())

    async def _conversations(self, ticket_id: int) -> list[dict[str, Any]]:
        paging = _FullPageOrLink(page_size=_CONVERSATIONS_PER_PAGE, size_param=None)
        return await self.http.all_records(
            "GET",
            "/tickets/{id}/conversations",
            path_params={"id": ticket_id},
            paging=paging,
            absent=(404,),  # the ticket went between listing and reading
        )

    async def _held(self, contact: dict[str, Any]) -> list[Record]:
        """The contact, its tickets (old and trashed too) and their conversations."""
        records = [Record(collection="contacts", data=contact)]
        tickets = await self._tickets(int(contact["id"]))
        records += [Record(collection="tickets", data=t) for t in tickets]
        # Conversations are one listing per ticket: run them side by side; the HTTP
        # layer's limiter keeps the account's rate.
        for conversations in await asyncio.gather(
            *(self._conversations(int(t["id"])) for t in tickets)
        ):
            records += [Record(collection="conversations", data=c) for c in conversations]
        return records

    async def access(self, subject: Subject) -> Result:
        """Every contact, ticket (old and trashed too) and conversation of the subject."""
        records: list[Record] = []
        for contact in await self._contacts(subject):
            records += await self._held(contact)
        return Result.found(records)

    # ------------------------------------------------------------------------- erasure

    async def erase(self, subject: Subject) -> Result:
        """Hard-delete every contact of the subject, with its tickets and conversations."""
        contacts = await self._contacts(subject)
        deleted: Counter[str] = Counter()
        evidence: list[Evidence] = []
        for contact in contacts:
            # The hard delete takes the tickets and conversations along: count them first
            # (as access finds them), so the certificate states everything that went.
            held = await self._held(contact)
            response = await self.http.request(
                "DELETE",
                "/contacts/{id}/hard_delete",
                path_params={"id": contact["id"]},
                params={"force": "true"},
                expected=(204, 404),
            )
            if response.status_code == 204:
                deleted.update(record.collection for record in held)
                evidence.append(
                    Evidence(kind="freshdesk_hard_delete", value=f"contact {contact['id']}: 204")
                )
        if not deleted:
            return Result.not_found("no Freshdesk contact of the subject (or already deleted)")
        if deleted["contacts"] != len(contacts):
            # Another task deleted some in between; the rest are gone as asked.
            evidence.append(Evidence(kind="freshdesk_hard_delete", value="some already gone"))
        return erased(deleted, evidence)


__all__ = ["COLLECTIONS", "UPDATED_SINCE", "FreshdeskConnector", "FreshdeskSettings"]
