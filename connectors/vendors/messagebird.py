"""MessageBird / Bird (SMS and e-mail): contacts by phone and by e-mail, with their messages.

Two APIs, one account (seed 002: "Messagebird voor SMS berichten en e-mails"):

- Legacy REST, `https://rest.messagebird.com`, `Authorization: AccessKey <key>`. Contacts are
  keyed by phone number (`msisdn`, a JSON number of E.164 digits) and hold no e-mail address.
  `GET /contacts?msisdn=` (limit/offset; envelope `{offset, limit, count, totalCount, links,
  items}`) finds them: the `msisdn` filter is known from the vendor's own SDK issue tracker
  (messagebird-nodejs#32), not from its reference page, so it is UNCONFIRMED. Every page is read
  and every contact compared to the subject's number exactly (`exact_matches`): if the filter
  were ignored the connector still reads only the subject's contact. A contact's messages are
  `GET /contacts/{id}/messages` (same envelope). Erasure: `DELETE /messages/{id}` ("delete a
  message from the dashboard", 204) for each message, then `DELETE /contacts/{id}` (204);
  404 means already gone. Errors: `{"errors": [{code, description, parameter}]}`; a wrong key
  answers 401 with code 2.
- Bird, `https://api.bird.com`, same header scheme, per workspace. `POST /workspaces/{ws}/
  contacts/search {"identifier": {"key": "emailaddress", "value": ...}}` -> `{results: [...]}`
  finds contacts by e-mail (compared exactly again: `attributes.emailaddress`). The subject's
  conversations are `GET /workspaces/{ws}/participants/emailaddress/{email}/conversations`, their
  messages `GET /workspaces/{ws}/conversations/{id}/messages` (both `limit` up to 100 and
  `pageToken` -> `nextPageToken`). Erasure deletes each message
  (`DELETE .../conversations/{id}/messages/{mid}`), then each conversation
  (`DELETE .../conversations/{id}`), then the contact (`DELETE /workspaces/{ws}/contacts/{id}`,
  204). Without `workspace_id` the Bird part is off and e-mail identifiers are not searched.

What the APIs cannot do, stated in every erasure's evidence: neither API documents whether a
deleted message is purged from the vendor's delivery and billing records (an SMS's recipient
number and time) or from backups, so permanence is UNCONFIRMED; the carriers that delivered an
SMS keep their own records, out of reach of any API (Art. 17(1) reaches what the controller's
processor holds; Art. 19 does not make the carriers recipients of ours).

Rate limit: the legacy API documents about 50 GET requests per second per account and 429 when
exceeded; whether it sends `Retry-After` is UNCONFIRMED: the client waits it out either way
(backoff, or the header when present).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from connectors.base import Result
from connectors.http import (
    Auth,
    CursorPaging,
    HttpClient,
    OffsetPaging,
    Paging,
    RateLimit,
    json_body,
)
from connectors.vendors.base import (
    RECORD_RIGHTS,
    HttpConnector,
    HttpSettings,
    erased,
    exact_matches,
    identifier_key,
)
from schemas.events import Evidence, Record, Subject

LEGACY_URL = "https://rest.messagebird.com"
BIRD_URL = "https://api.bird.com"
#: The most records a Bird listing returns per page (its documented `limit` maximum).
BIRD_PAGE_SIZE = 100
_CAVEAT = Evidence(
    kind="vendor_caveat",
    value="MessageBird/Bird do not document whether deleted messages are purged from delivery "
    "and billing records or backups (UNCONFIRMED); carriers keep their own delivery records",
)


class MessageBirdSettings(HttpSettings):
    """Register settings of a MessageBird / Bird account."""

    access_key: Annotated[str, Field(min_length=1, repr=False)]
    base_url: str = Field(default=LEGACY_URL, description="The legacy REST API.")
    workspace_id: str | None = Field(
        default=None, description="The Bird workspace; without it e-mail is not searched."
    )
    bird_access_key: str | None = Field(
        default=None, repr=False, description="Bird's access key, if not `access_key`."
    )
    bird_url: str = BIRD_URL
    rate_limit: RateLimit = RateLimit(requests=50, per_seconds=1.0)
    page_size: Annotated[int, Field(ge=1, le=100)] = 20

    def url(self) -> str:
        """The legacy REST API's base URL."""
        return self.base_url.rstrip("/")

    def auth(self) -> Auth:
        """`Authorization: AccessKey <key>`."""
        return _access_key(self.access_key)


def _access_key(key: str) -> Auth:
    return Auth(type="api_key", header="Authorization", prefix="AccessKey ", key=key)


@dataclass
class _Found:
    """The subject's records in both APIs, with the ids erasure needs."""

    records: list[Record] = field(default_factory=list)
    legacy_contacts: list[str] = field(default_factory=list)
    legacy_messages: list[str] = field(default_factory=list)
    bird_contacts: list[str] = field(default_factory=list)
    #: conversation id -> its message ids
    bird_conversations: dict[str, list[str]] = field(default_factory=dict)

    def add(self, collection: str, data: dict[str, Any]) -> None:
        self.records.append(Record(collection=collection, data=data))


class MessageBirdConnector(HttpConnector[MessageBirdSettings]):
    """MessageBird SMS contacts (by phone) and Bird contacts and conversations (by e-mail)."""

    capabilities = RECORD_RIGHTS
    description = "MessageBird / Bird (SMS, e-mail): contacts and their messages; erasure"

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        s = self.settings
        self._paging = OffsetPaging(page_size=s.page_size, total_path="totalCount")
        self._bird_paging: Paging = CursorPaging(
            cursor_path="nextPageToken",
            cursor_param="pageToken",
            limit_param="limit",
            page_size=BIRD_PAGE_SIZE,
        )
        self.bird: HttpClient | None = None
        if s.workspace_id is not None:
            self.bird = HttpClient(
                system,
                s.bird_url.rstrip("/"),
                _access_key(s.bird_access_key or s.access_key),
                s.rate_limit,
                s.retry,
                s.timeout_seconds,
            )

    async def aclose(self) -> None:
        """Close both clients."""
        await super().aclose()
        if self.bird is not None:
            await self.bird.aclose()

    # ----------------------------------------------------------------------- legacy (phone)

    async def _legacy(self, path: str, **values: Any) -> AsyncIterator[dict[str, Any]]:
        params = {"msisdn": "{msisdn}"} if "msisdn" in values else None
        async for item in self.http.records(
            "GET",
            path,
            path_params=values,
            params=params,
            paging=self._paging,
            records_path="items",
            absent=(404,),
        ):
            if isinstance(item, dict):
                yield item

    async def _find_by_phone(self, subject: Subject, found: _Found) -> None:
        contacts: dict[str, dict[str, Any]] = {}
        for phone in subject.values("phone"):
            digits = identifier_key("phone", phone)
            if digits is None:
                continue
            async for contact in self._legacy("/contacts", msisdn=digits):
                contacts.setdefault(str(contact.get("id")), contact)
        for contact in exact_matches(self.system, contacts.values(), {"msisdn": "phone"}, subject):
            cid = str(contact["id"])
            found.add("contacts", contact)
            found.legacy_contacts.append(cid)
            async for message in self._legacy("/contacts/{id}/messages", id=cid):
                found.add("messages", message)
                found.legacy_messages.append(str(message.get("id")))

    # ------------------------------------------------------------------------- Bird (e-mail)

    async def _bird_list(self, path: str, **values: Any) -> AsyncIterator[dict[str, Any]]:
        assert self.bird is not None
        async for item in self.bird.records(
            "GET",
            path,
            path_params={"ws": self.settings.workspace_id, **values},
            paging=self._bird_paging,
            records_path="results",
            absent=(404,),
        ):
            if isinstance(item, dict):
                yield item

    async def _find_by_email(self, subject: Subject, found: _Found) -> None:
        if self.bird is None:
            return
        emails = subject.values("email")
        contacts: dict[str, dict[str, Any]] = {}
        for email in emails:
            response = await self.bird.request(
                "POST",
                "/workspaces/{ws}/contacts/search",
                path_params={"ws": self.settings.workspace_id, "email": email},
                json={"identifier": {"key": "emailaddress", "value": "{email}"}},
            )
            body = json_body(response)
            results = body.get("results") if isinstance(body, dict) else None
            for contact in results or []:
                if isinstance(contact, dict):
                    contacts.setdefault(str(contact.get("id")), contact)
        fields = {"attributes.emailaddress": "email"}
        for contact in exact_matches(self.system, contacts.values(), fields, subject):
            found.add("bird_contacts", contact)
            found.bird_contacts.append(str(contact["id"]))
        wanted = {identifier_key("email", e) for e in emails}
        for email in emails:
            path = "/workspaces/{ws}/participants/emailaddress/{email}/conversations"
            async for conversation in self._bird_list(path, email=email):
                cid = str(conversation.get("id"))
                if cid in found.bird_conversations or not _takes_part(conversation, wanted):
                    continue
                found.add("bird_conversations", conversation)
                ids = found.bird_conversations[cid] = []
                messages = "/workspaces/{ws}/conversations/{id}/messages"
                async for message in self._bird_list(messages, id=cid):
                    found.add("bird_messages", message)
                    ids.append(str(message.get("id")))

    # ---------------------------------------------------------------------------- rights

    async def _find(self, subject: Subject) -> _Found:
        found = _Found()
        await self._find_by_phone(subject, found)
        await self._find_by_email(subject, found)
        return found

    async def access(self, subject: Subject) -> Result:
        """The subject's contacts and messages in both APIs."""
        return Result.found((await self._find(subject)).records)

    async def erase(self, subject: Subject) -> Result:
        """Delete the messages, then the conversations, then the contacts."""
        found = await self._find(subject)
        if not found.records:
            return Result.not_found("no contact or conversation with the subject's identifiers")
        deleted = {
            "messages": await self._delete_all(self.http, "/messages/{id}", found.legacy_messages),
            "contacts": await self._delete_all(self.http, "/contacts/{id}", found.legacy_contacts),
        }
        if self.bird is not None:
            deleted.update(await self._erase_bird(self.bird, found))
        if not any(deleted.values()):
            return Result.not_found("everything was already deleted")
        return erased(deleted, [_CAVEAT])

    async def _erase_bird(self, bird: HttpClient, found: _Found) -> dict[str, int]:
        prefix = "/workspaces/{ws}"
        messages = conversations = 0
        for cid, message_ids in found.bird_conversations.items():
            path = prefix + "/conversations/{cid}/messages/{id}"
            messages += await self._delete_all(bird, path, message_ids, cid=cid)
            conversations += await self._delete_all(bird, prefix + "/conversations/{id}", [cid])
        contacts = await self._delete_all(bird, prefix + "/contacts/{id}", found.bird_contacts)
        return {
            "bird_messages": messages,
            "bird_conversations": conversations,
            "bird_contacts": contacts,
        }

    async def _delete_all(
        self, client: HttpClient, path: str, ids: list[str], **values: Any
    ) -> int:
        """Delete each id; returns how many were there (404: already gone)."""
        done = 0
        for object_id in ids:
            response = await client.request(
                "DELETE",
                path,
                path_params={"ws": self.settings.workspace_id, "id": object_id, **values},
                expected=(200, 204, 404),
            )
            done += response.status_code != 404
        return done


def _takes_part(conversation: Mapping[str, Any], wanted: set[str | None]) -> bool:
    """Whether one of the conversation's featured participants is the subject, exactly (the
    vendor's lookup by identifier is not trusted to be exact; see `matches_subject`)."""
    for participant in conversation.get("featuredParticipants") or []:
        contact = participant.get("contact") if isinstance(participant, Mapping) else None
        if (
            isinstance(contact, Mapping)
            and contact.get("identifierKey") == "emailaddress"
            and identifier_key("email", contact.get("identifierValue")) in wanted
        ):
            return True
    return False


__all__ = [
    "BIRD_PAGE_SIZE",
    "BIRD_URL",
    "LEGACY_URL",
    "MessageBirdConnector",
    "MessageBirdSettings",
]
