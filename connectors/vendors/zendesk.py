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

Other people (Art. 15(4), Art. 4(1) GDPR): the subject's tickets are those it requested and
those it is CC'd on (`GET /users/{id}/tickets/ccd`). A ticket is shared when another end user
is on it: requester, submitter, CC, or the author of a comment (agents are staff, found with
`GET /users/show_many?ids=`, at most 100 ids a call). In a shared ticket `Record.others`
points at the other people's ids (`requester_id`, `submitter_id`, `email_cc_ids/0`, ...),
at the title, description and sender (`via`) when another person opened it, and at every
comment someone other than the subject wrote (author, bodies, attachments, `via`, metadata):
an agent's reply there may address or describe the other person. Ids, times and the
subject's own comments stay, so the copy reads as a conversation.

A shared ticket is not deleted (the rest is the other people's): each comment the subject
wrote is redacted with `PUT /comment_redactions/{comment_id}` (the agent-workspace
redaction, which Zendesk recommends over the older `.../comments/{id}/redact` it will
deprecate; its text wrapped in `<redact>`, its attachments named in
`external_attachment_urls`), and the subject is removed from the CCs and followers with
`PUT /tickets/{id}` (`email_ccs`/`followers`, `action: "delete"`). A shared ticket the subject
requested or submitted stays linked to it through that field, which only a person can
re-assign: that is a manual step, never a retained item.

A 404 at any step means already gone. `GET /users/{id}/tickets/requested` is UNCONFIRMED in
the vendor's spec (vendor-apis.md); it is the documented path in Zendesk's guides.

Retention sweeps (Art. 5(1)(e) GDPR), tickets only: closed tickets last updated (or created)
before the cutoff are found with the Export Search Results endpoint, `GET /search/export?
query=type:ticket status:closed updated<YYYY-MM-DD&filter[type]=ticket` (cursor paging with
`page[size]`, no 1,000-result limit as `GET /search` has), each checked against its own date
too, and deleted by the erasure's path: `DELETE /tickets/{id}`, `DELETE /deleted_tickets/{id}`
and its job polled until completed. A ticket not closed is still being handled and is kept.
Users are not swept (an end user's `updated_at` says nothing of its tickets): a manual step.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, model_validator

from connectors.base import ConnectorError, Result, SweepResult
from connectors.http import Auth, JobPolling, NextUrlPaging, RateLimit, json_body
from connectors.vendors.base import (
    RECORD_RIGHTS,
    Erasure,
    HttpConnector,
    HttpSettings,
    check_account,
    matches_subject,
    pointer,
)
from connectors.vendors.sweep import Sweepable, delete_each, expired_before, sweep_collections
from schemas.events import Evidence, Record, Subject
from schemas.sweeps import SweepCount, SweepRule

COLLECTIONS = ("users", "identities", "tickets", "comments")

#: A user's identifier fields, and the identifier type each kind of identity holds.
_USER_FIELDS = {"email": "email", "phone": "phone"}
_IDENTITY_TYPES = {"email": "email", "phone_number": "phone"}
_CURSOR = NextUrlPaging(next_path="links.next", has_more_path="meta.has_more")
_SHOW_MANY = 100  # ids per `GET /users/show_many`, Zendesk's maximum
#: A ticket's single people and its lists of people.
_PERSON = ("requester_id", "submitter_id")
_PEOPLE = ("email_cc_ids", "collaborator_ids", "follower_ids")
#: What another person's comment, or a ticket another person opened, says of them.
_WRITTEN = ("author_id", "body", "html_body", "plain_body", "attachments", "via", "metadata")
_OPENED = ("subject", "raw_subject", "description", "via")
_TAG = re.compile(r"(<[^>]*>)")
_REDACTED = "\u2587"  # ▇: what Zendesk writes for each redacted character
_ELEMENT = re.compile(r"^<(a|img)\b", re.I)
#: A ticket's date fields a sweep can use, and their names in a search query.
_SWEEP_DATES = {"updated_at": "updated", "created_at": "created"}
_PERMANENT = Evidence(
    kind="zendesk_permanent_ticket_deletion",
    value="each ticket soft-deleted, then deleted permanently (DELETE /deleted_tickets/{id}); "
    "every vendor job polled until completed",
)


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


def _is_subject(user: dict[str, Any], identities: list[dict[str, Any]], subject: Subject) -> bool:
    """Whether the user's primary email or phone, or one of its identities, is one of the
    subject's identifiers exactly: the search matches partially."""
    return matches_subject(user, _USER_FIELDS, subject) or any(
        matches_subject(i, {"value": _IDENTITY_TYPES[str(i.get("type"))]}, subject)
        for i in identities
        if str(i.get("type")) in _IDENTITY_TYPES
    )


def _id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _people(ticket: dict[str, Any], comments: list[dict[str, Any]]) -> set[int]:
    """Everyone on a ticket: requester, submitter, CCs, followers and comment authors."""
    found: list[Any] = [ticket.get(k) for k in _PERSON]
    found += [i for k in _PEOPLE for i in ticket.get(k) or []]
    found += [c.get("author_id") for c in comments]
    return {i for i in map(_id, found) if i is not None}


def _present(data: dict[str, Any], keys: Iterable[str]) -> list[str]:
    return [pointer(k) for k in keys if k in data]


@dataclass
class _Ticket:
    """A ticket of the subject's, its comments, and the other end users on it."""

    data: dict[str, Any]
    comments: list[dict[str, Any]]
    others: set[int]

    def records(self, mine: set[int]) -> list[Record]:
        """The ticket and its comments, what concerns other people marked (Art. 15(4))."""
        data, others = self.data, self.others
        marks = [pointer(k) for k in _PERSON if others and _id(data.get(k)) in others]
        marks += [
            pointer(k, n)
            for k in _PEOPLE
            for n, i in enumerate(data.get(k) or [])
            if _id(i) in others
        ]
        if others and _id(data.get("requester_id")) not in mine:
            marks += _present(data, _OPENED)  # another person opened it, in their words
        shared = bool(others)
        return [Record(collection="tickets", data=data, others=marks)] + [
            Record(
                collection="comments",
                data=c,
                others=_present(c, _WRITTEN)
                if shared and _id(c.get("author_id")) not in mine
                else [],
            )
            for c in self.comments
        ]


def _marked_for_redaction(html_body: str) -> str:
    """The comment's `html_body` with all its text inside `<redact>` tags and its links and
    images given the `redact` attribute: the whole comment made unreadable."""
    pieces = []
    for piece in _TAG.split(html_body):
        if _ELEMENT.match(piece):
            piece = _ELEMENT.sub(r"<\1 redact", piece, count=1)
        elif piece.strip() and not piece.startswith("<"):
            piece = f"<redact>{piece}</redact>"
        pieces.append(piece)
    return "".join(pieces)


def _redactable(comment: dict[str, Any]) -> bool:
    """Whether a comment still has text or attachments to redact (not done before)."""
    text = str(comment.get("plain_body") or comment.get("body") or "")
    unread = text.replace(_REDACTED, "").strip()
    return bool(unread) or any(
        a.get("file_name") != "redacted.txt" for a in comment.get("attachments") or []
    )


class ZendeskConnector(HttpConnector[ZendeskSettings]):
    """Zendesk Support: users, identities, requested tickets, comments; permanent deletion."""

    capabilities = RECORD_RIGHTS
    sweeps = True
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
        candidates: dict[int, dict[str, Any]] = {}
        for value in [*sorted({*subject.values("email")}), *sorted({*subject.values("phone")})]:
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
            if _is_subject(user, identities, subject):
                matched.append((user, identities))
        return matched

    async def _tickets(self, user_id: int) -> list[dict[str, Any]]:
        """The tickets a user requested, then those it is CC'd on."""
        requested = await self._list("/users/{id}/tickets/requested", "tickets", id=user_id)
        return requested + await self._list("/users/{id}/tickets/ccd", "tickets", id=user_id)

    async def _comments(self, tickets: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Each ticket's comments, in the order of `tickets`."""
        # One listing per ticket: side by side; the HTTP layer's limiter keeps the rate.
        return await asyncio.gather(
            *(self._list("/tickets/{id}/comments", "comments", id=t["id"]) for t in tickets)
        )

    async def _staff(self, user_ids: set[int]) -> set[int]:
        """Which of `user_ids` are the account's agents or admins (not other customers)."""
        ordered = sorted(user_ids)
        staff: set[int] = set()
        for start in range(0, len(ordered), _SHOW_MANY):
            chunk = ",".join(str(i) for i in ordered[start : start + _SHOW_MANY])
            response = await self.http.request("GET", "/users/show_many", params={"ids": chunk})
            users = (json_body(response) or {}).get("users") or []
            staff |= {int(u["id"]) for u in users if u.get("role") in ("agent", "admin")}
        return staff

    async def _shared(self, mine: set[int], users: list[dict[str, Any]]) -> list[_Ticket]:
        """Every ticket of the subject's users once, with its comments and the other end
        users on it (an id Zendesk no longer knows counts as another person)."""
        listed: dict[int, dict[str, Any]] = {}
        for user in users:
            for ticket in await self._tickets(int(user["id"])):
                listed.setdefault(int(ticket["id"]), ticket)
        tickets = list(listed.values())
        comments = await self._comments(tickets)
        people = [_people(t, c) for t, c in zip(tickets, comments, strict=True)]
        staff = await self._staff(set().union(*people) - mine)
        return [
            _Ticket(t, c, p - mine - staff)
            for t, c, p in zip(tickets, comments, people, strict=True)
        ]

    async def access(self, subject: Subject) -> Result:
        """Every user, identity, ticket and comment of the subject, other people's parts of
        shared tickets marked."""
        users = await self._users(subject)
        mine = {int(u["id"]) for u, _ in users}
        records: list[Record] = []
        for user, identities in users:
            records.append(Record(collection="users", data=user))
            records += [Record(collection="identities", data=i) for i in identities]
        for ticket in await self._shared(mine, [u for u, _ in users]):
            records += ticket.records(mine)
        return Result.found(records)

    # ------------------------------------------------------------------------- erasure

    async def _destroy_ticket(self, ticket_id: int) -> tuple[str, str] | None:
        """Soft-delete, then permanently delete one ticket; the vendor job's id and final
        status, or None when it was deleted permanently already."""
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
        return str(job_id), status

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

    async def _redact(self, ticket_id: int, comment: dict[str, Any]) -> bool:
        """Redact one of the subject's comments whole; False when it went meanwhile (404)."""
        urls = [a["content_url"] for a in comment.get("attachments") or [] if a.get("content_url")]
        body: dict[str, Any] = {
            "ticket_id": ticket_id,
            "html_body": _marked_for_redaction(str(comment.get("html_body") or "")),
        }
        if urls:
            body["external_attachment_urls"] = urls
        response = await self.http.request(
            "PUT",
            "/comment_redactions/{id}",
            path_params={"id": comment["id"]},
            json=body,
            expected=(200, 404),
        )
        return response.status_code == 200

    async def _release(self, erasure: Erasure, mine: set[int], ticket: _Ticket) -> None:
        """Take the subject's part out of a ticket shared with other people."""
        data, tid = ticket.data, int(ticket.data["id"])
        done = [
            await self._redact(tid, c)
            for c in ticket.comments
            if _id(c.get("author_id")) in mine and _redactable(c)
        ]
        erasure.redacted["comments"] += sum(done)
        on = {k: {i for i in data.get(k) or [] if _id(i) in mine} for k in _PEOPLE}
        followers = sorted(on["follower_ids"])
        # `collaborator_ids` is the older name of CCs and followers together.
        ccs = sorted((on["email_cc_ids"] | on["collaborator_ids"]) - on["follower_ids"])
        update = {
            key: [{"user_id": i, "action": "delete"} for i in ids]
            for key, ids in (("email_ccs", ccs), ("followers", followers))
            if ids
        }
        if update:
            response = await self.http.request(
                "PUT",
                "/tickets/{id}",
                path_params={"id": tid},
                json={"ticket": update},
                expected=(200, 404),
            )
            if response.status_code == 200:
                erasure.unlinked.update(ccs=len(ccs), followers=len(followers))
        opened = [k.removesuffix("_id") for k in _PERSON if _id(data.get(k)) in mine]
        if opened:
            erasure.manual.append(
                f"Zendesk ticket {tid} is shared with other people and the subject is its "
                f"{' and '.join(opened)}; the subject's comments in it are redacted. In Zendesk, "
                "open the ticket, change Requester to another person on it, and change the "
                "title if it describes the subject (agent workspace: select the text, 'Redact'); "
                "the ticket stays, as the other people's messages are theirs."
            )

    async def erase(self, subject: Subject) -> Result:
        """Permanently delete the subject's own tickets, take its part out of tickets shared
        with other people, then permanently delete the subject's users."""
        users = await self._users(subject)
        if not users:
            return Result.not_found("no Zendesk user of the subject (or already deleted)")
        mine = {int(u["id"]) for u, _ in users}
        erasure = Erasure({str(i) for i in mine})
        tickets = await self._shared(mine, [u for u, _ in users])
        owned = [t for t in tickets if not t.others]
        evidence: list[Evidence] = []
        jobs = await asyncio.gather(*(self._destroy_ticket(int(t.data["id"])) for t in owned))
        for job, ticket in zip(jobs, owned, strict=True):
            if job is not None:  # None: permanently deleted already
                # A ticket's comments go with it: counted, so the certificate states them.
                erasure.erased.update(tickets=1, comments=len(ticket.comments))
                job_id, status = job
                evidence.append(
                    Evidence(
                        kind="vendor_job_id",
                        value=f"{job_id} (ticket {ticket.data['id']}): {status}",
                    )
                )
        for ticket in tickets:
            if ticket.others:
                await self._release(erasure, mine, ticket)
        for user, identities in users:
            evidence += await self._destroy_user(int(user["id"]))
            erasure.erased.update(users=1, identities=len(identities))
        return erasure.result(evidence)

    # ------------------------------------------------------------------------- sweeps

    async def _sweep_tickets(self, rule: SweepRule, dry_run: bool) -> SweepCount:
        """Closed tickets dated before the cutoff; deleted permanently unless dry."""
        field = rule.date_field
        found = await self.http.all_records(
            "GET",
            "/search/export",
            params={
                "query": f"type:ticket status:closed {_SWEEP_DATES[field]}<{rule.cutoff}",
                "filter[type]": "ticket",
                "page[size]": self.settings.page_size,
            },
            paging=_CURSOR,
            records_path="results",
        )
        expired = [
            int(t["id"])
            for t in found
            if t.get("status") == "closed" and expired_before(t.get(field), rule.cutoff)
        ]

        async def destroy(ticket_id: int) -> bool:
            return await self._destroy_ticket(ticket_id) is not None

        return await delete_each("tickets", expired, destroy, dry_run=dry_run)

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """Permanently delete the closed tickets the rules say have expired; users are a
        manual step."""
        return await sweep_collections(
            "Zendesk",
            rules,
            {"tickets": Sweepable(_SWEEP_DATES, self._sweep_tickets)},
            dry_run=dry_run,
            evidence=[_PERMANENT],
        )


__all__ = ["COLLECTIONS", "ZendeskConnector", "ZendeskSettings"]
