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

Retention sweeps (Art. 5(1)(e) GDPR), tickets only: the filter API finds the tickets whose
`updated_at` (or `created_at`) lies before the cutoff, `GET /search/tickets?query="updated_at:<
'YYYY-MM-DD'"`. Its `:<` means "on or before", so the day before the cutoff is asked, and every
result is checked against its own date too. It answers 30 results a page, pages 1 to 10 only
(300 a query) with the `total`: a dry run counts the `total`; a sweep deletes what it lists and
asks again until nothing new comes back (the search index may lag a few minutes, so a ticket
deleted a moment ago can still be listed: it is not counted twice). Each is deleted with
`DELETE /tickets/{id}`, which moves it to the Trash; Freshdesk removes tickets from the Trash
for good after 30 days, and no API call is documented that does it at once (the evidence says
so). Contacts are not swept: a contact's `updated_at` does not move when it opens a ticket,
and its hard delete takes every ticket along, recent ones too; a contact rule becomes a manual
step.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, model_validator

from connectors.base import Result, SweepResult
from connectors.http import Auth, Page, PageNumberPaging, PageRequest, RateLimit
from connectors.vendors.base import (
    RECORD_RIGHTS,
    HttpConnector,
    HttpSettings,
    check_account,
    erased,
    exact_matches,
)
from connectors.vendors.sweep import Sweepable, expired_before, sweep_collections
from schemas.events import Evidence, Record, Subject
from schemas.sweeps import SweepCount, SweepRule

COLLECTIONS = ("contacts", "tickets", "conversations")

#: Long before any Freshdesk account existed: lists every ticket, not only the last 30 days'.
UPDATED_SINCE = "2000-01-01T00:00:00Z"
_CONVERSATIONS_PER_PAGE = 30  # fixed by Freshdesk; `per_page` is not documented there
_FILTER_PER_PAGE = 30  # the filter API's fixed page size
_FILTER_LAST_PAGE = 10  # the filter API answers pages 1 to 10 only
#: A contact's identifier fields: a search result counts only when one equals the subject's.
_IDENTIFIER_FIELDS = {
    "email": "email",
    "other_emails": "email",
    "phone": "phone",
    "mobile": "phone",
}
_TRASH = Evidence(
    kind="vendor_note",
    value="Freshdesk moves deleted tickets to the Trash and removes them for good after 30 "
    "days; 'Delete forever' in the Trash view removes them at once",
)


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


class _FilterPaging(PageNumberPaging):
    """The filter API's pages: `page` from 1 to 10, 30 results each, nothing after page 10."""

    def next(self, page: Page, request: PageRequest) -> PageRequest | None:
        """The next page, or None after a short page or page 10."""
        following = super().next(page, request)
        if following is None or int(following.params[self.page_param]) > _FILTER_LAST_PAGE:
            return None
        return following


class FreshdeskConnector(HttpConnector[FreshdeskSettings]):
    """Freshdesk support desk: contacts, tickets (also old and trashed), conversations."""

    capabilities = RECORD_RIGHTS
    sweeps = True
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
        return exact_matches(self.system, found.values(), _IDENTIFIER_FIELDS, subject)

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

    # ------------------------------------------------------------------------- sweeps

    async def _filtered(self, rule: SweepRule) -> tuple[int, list[int]]:
        """How many tickets the filter API finds dated before the cutoff, and the ids of the
        (at most 300) it lists."""
        last_day = (rule.cutoff - timedelta(days=1)).isoformat()  # `:<` includes the day
        listed = total = 0
        expired: list[int] = []
        async for page in self.http.paginate(
            "GET",
            "/search/tickets",
            params={"query": f"\"{rule.date_field}:<'{last_day}'\""},
            paging=_FilterPaging(page_size=_FILTER_PER_PAGE, size_param=None),
            records_path="results",
        ):
            total = max(total, int((page.body or {}).get("total") or 0))
            listed += len(page.records)
            expired += [
                int(t["id"])
                for t in page.records
                if expired_before(t.get(rule.date_field), rule.cutoff)
            ]
        return len(expired) + max(0, total - listed), expired

    async def _delete_ticket(self, ticket_id: int) -> bool:
        response = await self.http.request(
            "DELETE", "/tickets/{id}", path_params={"id": ticket_id}, expected=(204, 404)
        )
        return response.status_code == 204

    async def _sweep_tickets(self, rule: SweepRule, dry_run: bool) -> SweepCount:
        """Count the expired tickets; unless dry, delete them, 300 at a time."""
        expired, found = await self._filtered(rule)
        if dry_run:
            return SweepCount(collection="tickets", expired=expired)
        seen: set[int] = set()
        deleted = 0
        while fresh := [i for i in dict.fromkeys(found) if i not in seen]:
            seen.update(fresh)
            deleted += sum(await asyncio.gather(*(self._delete_ticket(i) for i in fresh)))
            _, found = await self._filtered(rule)
        return SweepCount(collection="tickets", expired=max(expired, len(seen)), deleted=deleted)

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """Delete the tickets the rules say have expired; contacts are a manual step."""
        return await sweep_collections(
            "Freshdesk",
            rules,
            {"tickets": Sweepable(("updated_at", "created_at"), self._sweep_tickets)},
            dry_run=dry_run,
            evidence=[_TRASH],
        )


__all__ = ["COLLECTIONS", "UPDATED_SINCE", "FreshdeskConnector", "FreshdeskSettings"]
