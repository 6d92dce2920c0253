"""ActiveCampaign (mailing tool): access, erasure, objection and consent withdrawal over API v3.

Finding the subject: `GET /contacts?email=` for every email identifier (limit/offset paging,
`meta.total`). Access then reads, per contact, the contact itself and every related listing
(`/contacts/{id}/{contactLists,contactAutomations,fieldValues,notes,deals,contactDeals,
contactLogs,trackingLogs,bounceLogs,geoIps,contactGoals,scoreValues,accountContacts}`) plus
`GET /activities?contact={id}`; each collection is named after its endpoint.

Deals: `/contacts/{id}/deals` (deals whose primary contact is the subject) is read as the
`deals` collection and `/contacts/{id}/contactDeals` (the subject's links to deals, also as a
secondary contact) as `contactDeals`. Deals are separate records that survive their contact,
so erasure deletes the deals whose primary contact is the subject (`DELETE /deals/{id}`) and
the notes on the contact (`DELETE /notes/{id}`), then the contact (`DELETE /contacts/{id}`,
200 `{}`; 404 means already gone). Deals where the subject is only a secondary contact belong
to someone else and are kept; the link goes with the contact.

UNCONFIRMED: v3 has no GDPR/forget endpoint, and whether deleting a contact purges its tracking
logs for good is not documented; erasure says so in its evidence.

Objection and consent withdrawal unsubscribe the contact from every list it is on
(`POST /contactLists` with status 2) and delete nothing: counts.suppressed = lists changed.

Retention sweeps (Art. 5(1)(e) GDPR): contacts last updated (`udate`) or created (`cdate`)
before the cutoff are listed with the documented filter of `GET /contacts`,
`filters[updated_before]` / `filters[created_before]` (YYYY-MM-DD), and deleted by the erasure's
`DELETE /contacts/{id}`. Whether the filter includes the cutoff day is UNCONFIRMED, so every
contact listed is checked against its own date as well: only those dated before the cutoff go.
All are listed before the first is deleted: deleting while paging by offset would skip some.
Deals are separate records with their own dates: a sweep of contacts leaves them.

Rate limit: 5 requests/second per account (client-side limiter); 429 with `Retry-After` is
waited out, and so is a 503 (an old report says the vendor limits with 503).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field

from connectors.base import Result, SweepResult
from connectors.http import Auth, OffsetPaging, RateLimit
from connectors.vendors.base import HttpSettings, MailingConnector, exact_matches
from connectors.vendors.sweep import Sweepable, delete_each, expired_before, sweep_collections
from schemas.events import Counts, Evidence, Record, Subject
from schemas.sweeps import SweepCount, SweepRule

#: Related listings under /contacts/{id}/, each a collection of the same name.
RELATED = (
    "contactLists",
    "contactAutomations",
    "fieldValues",
    "notes",
    "deals",
    "contactDeals",
    "contactLogs",
    "trackingLogs",
    "bounceLogs",
    "geoIps",
    "contactGoals",
    "scoreValues",
    "accountContacts",
)
MAX_PAGE_SIZE = 100
UNSUBSCRIBED = 2
#: A contact's date fields and the `GET /contacts` filter that lists those before a day.
SWEEP_FILTERS = {"udate": "filters[updated_before]", "cdate": "filters[created_before]"}
_CAVEAT = Evidence(
    kind="vendor_caveat",
    value="ActiveCampaign v3 has no GDPR forget endpoint; whether deleting a "
    "contact purges its tracking logs permanently is UNCONFIRMED",
)


class ActiveCampaignSettings(HttpSettings):
    """Register settings of an ActiveCampaign account."""

    api_url: Annotated[str, Field(min_length=1, description="e.g. https://acme.api-us1.com/api/3")]
    api_key: Annotated[str, Field(min_length=1, repr=False)]
    rate_limit: RateLimit = RateLimit(requests=5, per_seconds=1.0)
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE

    def url(self) -> str:
        """The account's API URL."""
        return self.api_url.rstrip("/")

    def auth(self) -> Auth:
        """The API key in the `Api-Token` header."""
        return Auth(type="api_key", header="Api-Token", key=self.api_key)


class ActiveCampaignConnector(MailingConnector[ActiveCampaignSettings]):
    """ActiveCampaign contacts with their lists, deals, notes, logs and activities."""

    description = "ActiveCampaign (API v3): contacts and related records; unsubscribe all lists"
    sweeps = True

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self._paging = OffsetPaging(page_size=self.settings.page_size, total_path="meta.total")

    async def _list(
        self, path: str, key: str, *, params: dict[str, Any] | None = None, **values: Any
    ) -> AsyncIterator[dict[str, Any]]:
        async for record in self.http.records(
            "GET",
            path,
            path_params=values,
            params=params,
            paging=self._paging,
            records_path=key,
            absent=(404,),  # the contact went away meanwhile: nothing there
        ):
            if isinstance(record, dict):
                yield record

    async def _contacts(self, subject: Subject) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for email in subject.values("email"):
            async for contact in self._list(
                "/contacts", "contacts", params={"email": "{email}"}, email=email
            ):
                found.setdefault(str(contact.get("id")), contact)
        return exact_matches(self.system, found.values(), {"email": "email"}, subject)

    async def access(self, subject: Subject) -> Result:
        """Every contact of the subject with all related records."""
        records: list[Record] = []
        for contact in await self._contacts(subject):
            cid = contact["id"]
            records.append(Record(collection="contacts", data=contact))
            for name in RELATED:
                async for item in self._list(f"/contacts/{{id}}/{name}", name, id=cid):
                    records.append(Record(collection=name, data=item))
            async for item in self._list(
                "/activities", "activities", params={"contact": "{id}"}, id=cid
            ):
                records.append(Record(collection="activities", data=item))
        return Result.found(records)

    async def _delete(self, path: str, object_id: Any) -> bool:
        """Delete one object; False when it was already gone (404)."""
        response = await self.http.request(
            "DELETE", path, path_params={"id": object_id}, expected=(200, 204, 404)
        )
        return response.status_code != 404

    async def erase(self, subject: Subject) -> Result:
        """Delete the subject's own deals and notes, then the contacts."""
        contacts = await self._contacts(subject)
        if not contacts:
            return Result.not_found("no contact with the subject's email address")
        deleted = deals = notes = 0
        for contact in contacts:
            cid = str(contact["id"])
            owned = [
                d["id"]
                async for d in self._list("/contacts/{id}/deals", "deals", id=cid)
                if str(d.get("contact")) == cid
            ]
            note_ids = [n["id"] async for n in self._list("/contacts/{id}/notes", "notes", id=cid)]
            for deal_id in owned:
                deals += await self._delete("/deals/{id}", deal_id)
            for note_id in note_ids:
                notes += await self._delete("/notes/{id}", note_id)
            deleted += await self._delete("/contacts/{id}", cid)
        if deleted == 0 and deals == 0 and notes == 0:
            return Result.not_found("the contacts were already deleted")
        return Result.completed(
            Counts(deleted=deleted + deals + notes),
            evidence=[
                Evidence(kind="contacts_deleted", value=str(deleted)),
                Evidence(kind="deals_deleted", value=str(deals)),
                Evidence(kind="notes_deleted", value=str(notes)),
                _CAVEAT,
            ],
        )

    async def unsubscribe_everywhere(self, subject: Subject) -> Result:
        """Unsubscribe the subject from every list it is on; nothing is deleted."""
        contacts = await self._contacts(subject)
        if not contacts:
            return Result.not_found("no contact with the subject's email address")
        changed = 0
        for contact in contacts:
            cid = contact["id"]
            subscriptions = [
                s async for s in self._list("/contacts/{id}/contactLists", "contactLists", id=cid)
            ]
            for sub in subscriptions:
                if str(sub.get("status")) == str(UNSUBSCRIBED):
                    continue  # idempotent: a repeated task changes nothing
                await self.http.request(
                    "POST",
                    "/contactLists",
                    path_params={"list": sub.get("list"), "contact": cid},
                    json={
                        "contactList": {
                            "list": "{list}",
                            "contact": "{contact}",
                            "status": UNSUBSCRIBED,
                        }
                    },
                    expected=(200, 201),
                )
                changed += 1
        return Result.completed(
            Counts(found=len(contacts), suppressed=changed),
            evidence=[Evidence(kind="lists_unsubscribed", value=str(changed))],
        )

    async def _sweep_contacts(self, rule: SweepRule, dry_run: bool) -> SweepCount:
        """Contacts dated before the cutoff (the vendor's filter, then each one's own date)."""
        listed = self._list(
            "/contacts",
            "contacts",
            params={SWEEP_FILTERS[rule.date_field]: rule.cutoff.isoformat()},
        )
        expired = [
            str(c["id"])
            async for c in listed
            if expired_before(c.get(rule.date_field), rule.cutoff)
        ]
        return await delete_each(
            "contacts",
            expired,
            lambda cid: self._delete("/contacts/{id}", cid),
            dry_run=dry_run,
        )

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """Delete the contacts the rules say have expired."""
        return await sweep_collections(
            "ActiveCampaign",
            rules,
            {"contacts": Sweepable(SWEEP_FILTERS, self._sweep_contacts)},
            dry_run=dry_run,
            evidence=[_CAVEAT],
        )


__all__ = ["SWEEP_FILTERS", "ActiveCampaignConnector", "ActiveCampaignSettings"]
