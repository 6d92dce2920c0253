"""Zendesk Support: users, their identities, requested tickets and comments; permanent delete.

Access: `GET /users/search?query=` per email address and phone number. Zendesk matches the
query *partially* (any name, email or phone containing it), so a user only counts as the
subject when its primary email/phone or one of its identities equals an identifier exactly.
Then per user: identities, requested tickets and every ticket's comments, all with cursor
paging (`page[size]` <= 100, the next page from `links.next` while `meta.has_more`). Cursor
paging, not offset paging: Zendesk refuses offsets beyond the first 10,000 records.

Erasure, in this order (the user must still exist to list its tickets):

1. every requested ticket: `DELETE /tickets/{id}` (soft, 204), then
   `DELETE /deleted_tickets/{id}`, which answers a job; `GET /job_statuses/{id}` is polled
   until `completed` (evidence: `vendor_job_id`);
2. the user: `DELETE /users/{id}` (soft, restorable) then `DELETE /deleted_users/{id}`
   (permanent: Zendesk keeps a "Permanently Deleted User" shell without personal data);
3. `GET /users/{id}/compliance_deletion_statuses` is recorded as evidence of progress.

Comments go with their ticket and identities with their user; they are listed first and
reported deleted per collection, so the certificate counts them.

A 404 at any step means already gone. `GET /users/{id}/tickets/requested` is UNCONFIRMED in
the vendor's spec (vendor-apis.md); it is the documented path in Zendesk's guides.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, model_validator

from connectors.base import ConnectorError, Result
from connectors.http import Auth, JobPolling, NextUrlPaging, RateLimit, json_body
from connectors.vendors.base import (
    RECORD_RIGHTS,
    HttpConnector,
    HttpSettings,
    check_account,
    erased,
)
from schemas.events import Evidence, Record, Subject

COLLECTIONS = ("users", "identities", "tickets", "comments")

_PHONE_STRIP = re.compile(r"[\s().\-]")
_CURSOR = NextUrlPaging(next_path="links.next", has_more_path="meta.has_more")


class ZendeskSettings(HttpSettings):
    """Register settings of a Zendesk system."""

    subdomain: str | None = Field(default=None, description="'acme' for acme.zendesk.com")
    base_url: str | None = Field(default=None, description="Overrides subdomain (tests).")
    email: str | None = Field(default=None, description="Agent email, with api_token.")
    api_token: str | None = Field(default=None, repr=False)
    oauth_token: str | None = Field(default=None, repr=False, description="Instead of a token.")
    # Zendesk's smallest plan allows 200 requests per minute per account.
    rate_limit: RateLimit = RateLimit(requests=200, per_seconds=60.0, concurrency=4)
    page_size: Annotated[int, Field(ge=1, le=100)] = 100
    job_poll_seconds: Annotated[float, Field(ge=0)] = 1.0
    job_poll_attempts: Annotated[int, Field(ge=1)] = 120

    @model_validator(mode="after")
    def _check(self) -> ZendeskSettings:
        check_account("subdomain", self.subdomain, self.base_url)
        token_auth = self.email is not None and self.api_token is not None
        if token_auth == (self.oauth_token is not None):
            raise ValueError("give either email and api_token, or oauth_token")
        return self

    def url(self) -> str:
        """The API base URL."""
        return self.base_url or f"https://{self.subdomain}.zendesk.com/api/v2"

    def auth(self) -> Auth:
        """Basic `{email}/token:{api_token}`, or Bearer."""
        if self.oauth_token is not None:
            return Auth(type="bearer", token=self.oauth_token)
        return Auth(type="basic", username=f"{self.email}/token", password=self.api_token)


def _phone(value: Any) -> str:
    return _PHONE_STRIP.sub("", str(value or ""))


class ZendeskConnector(HttpConnector[ZendeskSettings]):
    """Zendesk Support: users, identities, requested tickets, comments; permanent deletion."""

    capabilities = RECORD_RIGHTS
    description = "Zendesk Support: users, tickets, comments; permanent delete with job polling"

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self._job = JobPolling(
            poll="/job_statuses/{job_id}",
            status_path="job_status.status",
            failed=["failed", "killed"],
            interval_seconds=self.settings.job_poll_seconds,
            timeout_seconds=None,
            attempts=self.settings.job_poll_attempts,
        )

    # ------------------------------------------------------------------------- reading

    async def _list(self, template: str, key: str, **path_params: Any) -> list[dict[str, Any]]:
        return await self.http.all_records(
            "GET",
            template,
            path_params=path_params,
            params={"page[size]": self.settings.page_size},
            paging=_CURSOR,
            records_path=key,
            absent=(404,),  # deleted meanwhile: nothing there
        )

    async def _users(self, subject: Subject) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """The subject's users, each with its identities, matched exactly."""
        emails = {v.lower() for v in subject.values("email")}
        phones = {_phone(v) for v in subject.values("phone")}
        candidates: dict[int, dict[str, Any]] = {}
        for value in [*sorted(emails), *sorted(phones)]:
            async for user in self.http.records(
                "GET",
                "/users/search",
                path_params={"value": value},
                params={"query": "{value}"},
                records_path="users",
            ):
                candidates.setdefault(int(user["id"]), user)
        matched = []
        for uid, user in candidates.items():
            identities = await self._list("/users/{id}/identities", "identities", id=uid)
            values = [("email", user.get("email")), ("phone_number", user.get("phone"))]
            values += [(str(i.get("type")), i.get("value")) for i in identities]
            if any(
                (kind == "email" and str(value or "").lower() in emails)
                or (kind == "phone_number" and value and _phone(value) in phones)
                for kind, value in values
            ):
                matched.append((user, identities))
        return matched

    async def _tickets(self, user_id: int) -> list[dict[str, Any]]:
        return await self._list("/users/{id}/tickets/requested", "tickets", id=user_id)

    async def _comments(self, tickets: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Each ticket's comments, in the order of `tickets`."""
        # One listing per ticket: side by side; the HTTP layer's limiter keeps the rate.
        return await asyncio.gather(
            *(self._list("/tickets/{id}/comments", "comments", id=t["id"]) for t in tickets)
        )

    async def access(self, subject: Subject) -> Result:
        """Every user, identity, requested ticket and comment of the subject."""
        records: list[Record] = []
        for user, identities in await self._users(subject):
            records.append(Record(collection="users", data=user))
            records += [Record(collection="identities", data=i) for i in identities]
            tickets = await self._tickets(int(user["id"]))
            records += [Record(collection="tickets", data=t) for t in tickets]
            for comments in await self._comments(tickets):
                records += [Record(collection="comments", data=c) for c in comments]
        return Result.found(records)

    # ------------------------------------------------------------------------- erasure

    async def _destroy_ticket(self, ticket_id: int) -> Evidence | None:
        """Soft-delete, then permanently delete one ticket; the job's evidence, or None."""
        ids = {"id": ticket_id}
        await self.http.request(
            "DELETE", "/tickets/{id}", path_params=ids, expected=(200, 204, 404)
        )
        response = await self.http.request(
            "DELETE", "/deleted_tickets/{id}", path_params=ids, expected=(200, 404)
        )
        if response.status_code == 404:
            return None  # permanently deleted already
        job = (json_body(response) or {}).get("job_status") or {}
        job_id = job.get("id")
        if not job_id:
            raise ConnectorError(
                f"{self.system}: DELETE /deleted_tickets/{{id}} answered no job status",
                retryable=True,
            )
        status = await self.http.wait_for_job(
            self._job,
            {"job_id": job_id},
            what="DELETE /deleted_tickets/{id}",
            status=job.get("status"),
        )
        return Evidence(kind="vendor_job_id", value=f"{job_id} (ticket {ticket_id}): {status}")

    async def _destroy_user(self, user_id: int) -> list[Evidence]:
        ids = {"id": user_id}
        await self.http.request("DELETE", "/users/{id}", path_params=ids, expected=(200, 204, 404))
        response = await self.http.request(
            "DELETE", "/deleted_users/{id}", path_params=ids, expected=(200, 204, 404)
        )
        evidence = [
            Evidence(
                kind="zendesk_permanent_user_deletion",
                value=f"user {user_id}: {response.status_code}",
            )
        ]
        statuses = await self.http.request(
            "GET",
            "/users/{id}/compliance_deletion_statuses",
            path_params=ids,
            expected=(200, 404),
        )
        found = (json_body(statuses) or {}).get("compliance_deletion_statuses") or []
        summary = ", ".join(f"{s.get('application')}:{s.get('action')}" for s in found)
        evidence.append(
            Evidence(
                kind="zendesk_compliance_deletion_status",
                value=f"user {user_id}: {summary or 'none reported yet'}",
            )
        )
        return evidence

    async def erase(self, subject: Subject) -> Result:
        """Permanently delete the subject's tickets, then the subject's users."""
        users = await self._users(subject)
        if not users:
            return Result.not_found("no Zendesk user of the subject (or already deleted)")
        evidence: list[Evidence] = []
        deleted: Counter[str] = Counter()
        for user, identities in users:
            uid = int(user["id"])
            listed = await self._tickets(uid)
            # A ticket's comments go with it, a user's identities with the user: count them
            # first, so the certificate states everything that went.
            comments = await self._comments(listed)
            jobs = await asyncio.gather(*(self._destroy_ticket(int(t["id"])) for t in listed))
            for job, said in zip(jobs, comments, strict=True):
                if job is not None:  # None: permanently deleted already
                    deleted.update(tickets=1, comments=len(said))
                    evidence.append(job)
            evidence += await self._destroy_user(uid)
            deleted.update(users=1, identities=len(identities))
        return erased(deleted, evidence)


__all__ = ["COLLECTIONS", "ZendeskConnector", "ZendeskSettings"]
