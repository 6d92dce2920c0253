"""Mailchimp (mailing tool): access, erasure, objection and consent withdrawal over API 3.0.

Finding the subject: a member's id is the MD5 of the lower-cased email address, so for every
email identifier the connector asks each audience (`GET /lists`, paged with count/offset)
for `GET /lists/{list_id}/members/{hash}`; 404 means not a member. This per-audience lookup
is used rather than `/search-members`, whose full-text search may miss or cap results;
the lookups of all audiences run concurrently, within the connection cap. The hash is
personal data too: it only ever goes into the URL, never into a message.

Access reads, per membership, the member (`members`) and its `activity-feed` (`activity`),
`events`, `notes`, `tags` and `goals` listings (paged with count/offset, `total_items`).

Erasure: `POST /lists/{list_id}/members/{hash}/actions/delete-permanent` (204) in every
audience where the subject is a member, archived members included. `DELETE .../members/{hash}`
only archives, so it is never used. Mailchimp then refuses to re-add the address.

Objection and consent withdrawal: `PATCH .../members/{hash}` `{"status": "unsubscribed"}` in
every audience where the member is subscribed, pending or transactional; nothing is deleted
(counts.suppressed = audiences changed). Archived and cleaned members receive no mail already.

Rate limit: at most 10 concurrent connections per API key (429 with no headers and maybe no
body), shared with the customer's other integrations: the default cap here is 5 connections,
and a 429 is retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, model_validator

from connectors.base import Result
from connectors.http import Auth, OffsetPaging, RateLimit
from connectors.vendors.base import HttpSettings, MailingConnector, matches_subject
from schemas.events import Counts, Evidence, Record, Subject

MAX_COUNT = 1000
#: Member listings: endpoint -> (key in the response, collection).
RELATED = {
    "activity-feed": ("activity", "activity"),
    "events": ("events", "events"),
    "notes": ("notes", "notes"),
    "tags": ("tags", "tags"),
    "goals": ("goals", "goals"),
}
MEMBER = "/lists/{list_id}/members/{hash}"
#: Statuses that still allow mail to be sent; objection moves them to unsubscribed.
MAILABLE = frozenset({"subscribed", "pending", "transactional"})


class MailchimpSettings(HttpSettings):
    """Register settings of a Mailchimp account."""

    api_key: Annotated[str, Field(min_length=1, repr=False, description="e.g. abc123...-us6")]
    base_url: str | None = Field(
        default=None, description="Override of https://{dc}.api.mailchimp.com/3.0 (tests)"
    )
    rate_limit: RateLimit = RateLimit(concurrency=5)
    page_size: Annotated[int, Field(ge=1, le=MAX_COUNT)] = MAX_COUNT

    @model_validator(mode="after")
    def _datacenter(self) -> MailchimpSettings:
        _, dash, dc = self.api_key.rpartition("-")
        if self.base_url is None and not (dash and dc.isalnum()):
            # Messages never quote the key: it is a secret.
            raise ValueError("api_key must end in '-<datacenter>' (e.g. -us6) or give base_url")
        return self

    def url(self) -> str:
        """The API base URL."""
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://{self.api_key.rpartition('-')[2]}.api.mailchimp.com/3.0"

    def auth(self) -> Auth:
        """Basic auth with the API key as password (any user name)."""
        return Auth(type="basic", username="dsr", password=self.api_key)


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address (personal data: never log it)."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpConnector(MailingConnector[MailchimpSettings]):
    """Mailchimp audience members with their activity, events, notes, tags and goals."""

    description = "Mailchimp (API 3.0): members in every audience; delete-permanent; unsubscribe"

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self._paging = OffsetPaging(
            limit_param="count", page_size=self.settings.page_size, total_path="total_items"
        )

    async def _list(self, path: str, key: str, **values: Any) -> list[dict[str, Any]]:
        found = await self.http.all_records(
            "GET", path, path_params=values, paging=self._paging, records_path=key, absent=(404,)
        )
        return [r for r in found if isinstance(r, dict)]

    async def _member(self, list_id: str, member_hash: str) -> dict[str, Any] | None:
        response = await self.http.request(
            "GET",
            MEMBER,
            path_params={"list_id": list_id, "hash": member_hash},
            expected=(200, 404),
        )
        if response.status_code == 404:
            return None
        body = response.json()
        return body if isinstance(body, dict) else None

    async def _memberships(self, subject: Subject) -> list[tuple[str, str, dict[str, Any]]]:
        """(audience id, hash, member) for every audience the subject is a member of."""
        audiences = [str(a["id"]) for a in await self._list("/lists", "lists") if "id" in a]
        hashes = sorted({subscriber_hash(e) for e in subject.values("email")})
        pairs = [(list_id, h) for h in hashes for list_id in audiences]
        members = await asyncio.gather(*(self._member(list_id, h) for list_id, h in pairs))
        return [
            (lid, h, m)
            for (lid, h), m in zip(pairs, members, strict=True)
            if m is not None and matches_subject(m, {"email_address": "email"}, subject)
        ]

    async def access(self, subject: Subject) -> Result:
        """Every membership of the subject with its related listings."""
        memberships = await self._memberships(subject)

        async def related(list_id: str, member_hash: str) -> list[Record]:
            out = []
            for endpoint, (key, collection) in RELATED.items():
                items = await self._list(
                    MEMBER + "/" + endpoint, key, list_id=list_id, hash=member_hash
                )
                out += [Record(collection=collection, data=item) for item in items]
            return out

        found = await asyncio.gather(*(related(lid, h) for lid, h, _ in memberships))
        records = [Record(collection="members", data=m) for _, _, m in memberships]
        for group in found:
            records += group
        return Result.found(records)

    async def erase(self, subject: Subject) -> Result:
        """Permanently delete the subject from every audience it is a member of."""
        memberships = await self._memberships(subject)
        deleted = 0
        for list_id, member_hash, _ in memberships:
            response = await self.http.request(
                "POST",
                MEMBER + "/actions/delete-permanent",
                path_params={"list_id": list_id, "hash": member_hash},
                expected=(204, 200, 404),
            )
            deleted += response.status_code != 404  # 404: deleted meanwhile
        if not deleted:
            return Result.not_found("not a member of any audience")
        return Result.completed(
            Counts(deleted=deleted),
            evidence=[
                Evidence(kind="audiences_permanently_deleted", value=str(deleted)),
                Evidence(kind="method", value="delete-permanent (not archive)"),
            ],
        )

    async def unsubscribe_everywhere(self, subject: Subject) -> Result:
        """Unsubscribe the subject in every audience where mail still goes; nothing is deleted."""
        memberships = await self._memberships(subject)
        if not memberships:
            return Result.not_found("not a member of any audience")
        changed = 0
        for list_id, member_hash, member in memberships:
            if member.get("status") not in MAILABLE:
                continue  # already unsubscribed, cleaned or archived: no mail goes out
            await self.http.request(
                "PATCH",
                MEMBER,
                path_params={"list_id": list_id, "hash": member_hash},
                json={"status": "unsubscribed"},
            )
            changed += 1
        return Result.completed(
            Counts(found=len(memberships), suppressed=changed),
            evidence=[Evidence(kind="audiences_unsubscribed", value=str(changed))],
        )


__all__ = ["MailchimpConnector", "MailchimpSettings", "subscriber_hash"]
