"""Zendesk hooks (`connectors/specs/zendesk.yaml`): exact matches and other people's tickets.

Matching. Zendesk's user search matches partially; a user is the subject's only when its
primary email or phone, or one of its identities (`GET /users/{id}/identities`), equals one of
the subject's identifiers exactly (Art. 4(12), Art. 5(1)(f) GDPR: another person's data handed
over or erased is a breach).

Other people (Art. 15(4), Art. 4(1) GDPR). A ticket is shared when another end user is on it:
requester, submitter, CC, follower, or the author of a comment (agents and admins are staff,
found with `GET /users/show_many?ids=`, at most 100 ids a call; an id Zendesk no longer knows
counts as another person). In a shared ticket `Record.others` points at the other people's ids
(`requester_id`, `submitter_id`, `email_cc_ids/0`, ...), at the title, description and sender
(`via`) when another person opened it, and at every comment someone other than the subject
wrote (author, bodies, attachments, `via`, metadata): an agent's reply there may address or
describe the other person. Ids, times and the subject's own comments stay, so the copy reads
as a conversation. A ticket listed twice (requested and CC'd, or under two of the subject's
users) is exported and handled once.

A shared ticket is not deleted (the rest is the other people's, Art. 17(1) reaches the
subject's data only): each comment the subject wrote is redacted with
`PUT /comment_redactions/{comment_id}` (the agent-workspace redaction, which Zendesk recommends
over the older `.../comments/{id}/redact` it will deprecate; its text wrapped in `<redact>`,
its attachments named in `external_attachment_urls`), and the subject is removed from the CCs
and followers with `PUT /tickets/{id}` (`email_ccs`/`followers`, `action: "delete"`). A shared
ticket the subject requested or submitted stays linked to it through that field, which only a
person can re-assign: a manual step, never a retained item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from connectors.http import HttpClient, NextUrlPaging, json_body
from connectors.vendors.base import matches_subject, pointer
from connectors.vendors.spec import FoundRecord, HookContext
from schemas.events import Evidence, Record, Subject

_CURSOR = NextUrlPaging(next_path="links.next", has_more_path="meta.has_more")
_SHOW_MANY = 100  # ids per `GET /users/show_many`, Zendesk's maximum
#: A user's identifier fields, and the identifier type each kind of identity holds.
_USER_FIELDS = {"email": "email", "phone": "phone"}
_IDENTITY_TYPES = {"email": "email", "phone_number": "phone"}
#: A ticket's single people and its lists of people.
_PERSON = ("requester_id", "submitter_id")
_PEOPLE = ("email_cc_ids", "collaborator_ids", "follower_ids")
#: What another person's comment, or a ticket another person opened, says of them.
_WRITTEN = ("author_id", "body", "html_body", "plain_body", "attachments", "via", "metadata")
_OPENED = ("subject", "raw_subject", "description", "via")
_TAG = re.compile(r"(<[^>]*>)")
_REDACTED = "\u2587"  # ▇: what Zendesk writes for each redacted character
_ELEMENT = re.compile(r"^<(a|img)\b", re.I)


def _id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _client(context: HookContext) -> HttpClient:
    assert context.client is not None  # the spec has a base_url
    return context.client


async def match(record: dict[str, Any], subject: Subject, context: HookContext) -> bool:
    """Whether a search result is the subject's: its primary email or phone, else one of its
    identities, equals an identifier exactly (the search matches partially)."""
    if matches_subject(record, _USER_FIELDS, subject):
        return True
    identities = await _client(context).all_records(
        "GET",
        "/users/{id}/identities",
        path_params={"id": record.get("id")},
        params={"page[size]": context.settings["page_size"]},
        paging=_CURSOR,
        records_path="identities",
        absent=(404,),
    )
    return any(
        matches_subject(i, {"value": _IDENTITY_TYPES[str(i.get("type"))]}, subject)
        for i in identities
        if str(i.get("type")) in _IDENTITY_TYPES
    )


# ------------------------------------------------------------------------- other people


def _present(data: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [pointer(k) for k in keys if k in data]


@dataclass
class _Ticket:
    """A ticket of the subject's (the engine's related record), its comments, the other end
    users on it."""

    node: Any
    comments: list[dict[str, Any]]
    others: set[int] = field(default_factory=set)

    def people(self) -> set[int]:
        """Everyone on it: requester, submitter, CCs, followers and comment authors."""
        data = self.node.record
        found: list[Any] = [data.get(k) for k in _PERSON]
        found += [i for k in _PEOPLE for i in data.get(k) or []]
        found += [c.get("author_id") for c in self.comments]
        return {i for i in map(_id, found) if i is not None}

    def marks(self, mine: set[int]) -> list[str]:
        """Pointers to what of the ticket is other people's (Art. 15(4) GDPR)."""
        data, others = self.node.record, self.others
        if not others:
            return []
        found = [pointer(k) for k in _PERSON if _id(data.get(k)) in others]
        found += [
            pointer(k, n)
            for k in _PEOPLE
            for n, i in enumerate(data.get(k) or [])
            if _id(i) in others
        ]
        if _id(data.get("requester_id")) not in mine:
            found += _present(data, _OPENED)  # another person opened it, in their words
        return found


@dataclass
class _Sharing:
    """The tickets of one found user not handled before in this task, by record object."""

    related: list[Any]
    mine: set[int]
    tickets: list[_Ticket]
    #: id() of each ticket and comment object to export -> its ticket.
    owner: dict[int, _Ticket]


async def _staff(context: HookContext, user_ids: set[int]) -> set[int]:
    """Which of `user_ids` are the account's agents or admins (asked once per task)."""
    known: dict[int, bool] = context.state.setdefault("staff", {})
    ordered = sorted(user_ids - set(known))
    for start in range(0, len(ordered), _SHOW_MANY):
        chunk = ordered[start : start + _SHOW_MANY]
        response = await _client(context).request(
            "GET", "/users/show_many", params={"ids": ",".join(map(str, chunk))}
        )
        users = (json_body(response) or {}).get("users") or []
        agents = {int(u["id"]) for u in users if u.get("role") in ("agent", "admin")}
        known.update({i: i in agents for i in chunk})
    return {i for i in user_ids if known.get(i)}


async def _sharing(context: HookContext) -> _Sharing:
    """The current found user's tickets with the other people on each, worked out once."""
    done: _Sharing | None = context.state.get("sharing")
    if done is not None and done.related is context.related:
        return done
    mine = {i for i in (_id(f.record.get("id")) for f in context.found) if i is not None}
    seen: set[int] = context.state.setdefault("tickets", set())
    tickets: list[_Ticket] = []
    for node in context.related:
        tid = _id(node.record.get("id"))
        if node.collection != "tickets" or tid is None or tid in seen:
            continue
        seen.add(tid)
        comments = [
            c.record for c in context.related if c.collection == "comments" and c.parent is node
        ]
        tickets.append(_Ticket(node, comments))
    people = [t.people() for t in tickets]
    staff = await _staff(context, set().union(*people) - mine)
    owner: dict[int, _Ticket] = {}
    for ticket, on in zip(tickets, people, strict=True):
        ticket.others = on - mine - staff
        owner[id(ticket.node.record)] = ticket
        owner.update({id(c): ticket for c in ticket.comments})
    done = _Sharing(context.related, mine, tickets, owner)
    context.state["sharing"] = done
    return done


async def post_process(
    collection: str, data: dict[str, Any], context: HookContext
) -> Record | None:
    """Tickets and comments with what is other people's marked; a duplicate left out."""
    if collection not in ("tickets", "comments"):
        return Record(collection=collection, data=data)
    sharing = await _sharing(context)
    ticket = sharing.owner.get(id(data))
    if ticket is None:
        return None  # listed before (requested and CC'd): exported once
    if collection == "tickets":
        return Record(collection=collection, data=data, others=ticket.marks(sharing.mine))
    theirs = bool(ticket.others) and _id(data.get("author_id")) not in sharing.mine
    return Record(
        collection=collection, data=data, others=_present(data, _WRITTEN) if theirs else []
    )


# ------------------------------------------------------------------------------ erasure


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


async def _redact(context: HookContext, ticket_id: int, comment: dict[str, Any]) -> bool:
    """Redact one of the subject's comments whole; False when it went meanwhile (404)."""
    urls = [a["content_url"] for a in comment.get("attachments") or [] if a.get("content_url")]
    body: dict[str, Any] = {
        "ticket_id": ticket_id,
        "html_body": _marked_for_redaction(str(comment.get("html_body") or "")),
    }
    if urls:
        body["external_attachment_urls"] = urls
    response = await _client(context).request(
        "PUT",
        "/comment_redactions/{id}",
        path_params={"id": comment["id"]},
        json=body,
        expected=(200, 404),
    )
    return response.status_code == 200


async def _unlink(context: HookContext, mine: set[int], ticket: _Ticket) -> None:
    """Take the subject off the ticket's CCs and followers, by the documented update."""
    data, tid = ticket.node.record, int(ticket.node.record["id"])
    on = {k: {i for i in data.get(k) or [] if _id(i) in mine} for k in _PEOPLE}
    followers = sorted(on["follower_ids"])
    # `collaborator_ids` is the older name of CCs and followers together.
    ccs = sorted((on["email_cc_ids"] | on["collaborator_ids"]) - on["follower_ids"])
    update = {
        key: [{"user_id": i, "action": "delete"} for i in ids]
        for key, ids in (("email_ccs", ccs), ("followers", followers))
        if ids
    }
    if not update:
        return
    response = await _client(context).request(
        "PUT",
        "/tickets/{id}",
        path_params={"id": tid},
        json={"ticket": update},
        expected=(200, 404),
    )
    if response.status_code == 200:
        context.erasure.unlinked.update(ccs=len(ccs), followers=len(followers))


async def _release(context: HookContext, mine: set[int], ticket: _Ticket) -> None:
    """Take the subject's part out of a ticket shared with other people."""
    data, tid = ticket.node.record, int(ticket.node.record["id"])
    done = [
        await _redact(context, tid, c)
        for c in ticket.comments
        if _id(c.get("author_id")) in mine and _redactable(c)
    ]
    context.erasure.redacted["comments"] += sum(done)
    await _unlink(context, mine, ticket)
    opened = [k.removesuffix("_id") for k in _PERSON if _id(data.get(k)) in mine]
    if opened:
        context.erasure.manual.append(
            f"Zendesk ticket {tid} is shared with other people and the subject is its "
            f"{' and '.join(opened)}; the subject's comments in it are redacted. In Zendesk, "
            "open the ticket, change Requester to another person on it, and change the "
            "title if it describes the subject (agent workspace: select the text, 'Redact'); "
            "the ticket stays, as the other people's messages are theirs."
        )


async def erase_record(found: FoundRecord, context: HookContext) -> bool:
    """Release the user's shared tickets and mark every ticket `shared` for the erase steps,
    which then delete the user's own tickets and the user (False: the steps still run)."""
    sharing = await _sharing(context)
    for ticket in sharing.tickets:
        ticket.node.values["shared"] = bool(ticket.others)
        if ticket.others:
            await _release(context, sharing.mine, ticket)
    return False


async def after_erase(found: FoundRecord, context: HookContext) -> None:
    """Zendesk's compliance deletion statuses of the deleted user, as evidence of progress."""
    user_id = found.record.get("id")
    response = await _client(context).request(
        "GET",
        "/users/{id}/compliance_deletion_statuses",
        path_params={"id": user_id},
        expected=(200, 404),
    )
    statuses = (json_body(response) or {}).get("compliance_deletion_statuses") or []
    summary = ", ".join(f"{s.get('application')}:{s.get('action')}" for s in statuses)
    context.evidence.append(
        Evidence(
            kind="zendesk_compliance_deletion_status",
            value=f"user {user_id}: {summary or 'none reported yet'}",
        )
    )
