"""What every built-in REST vendor connector shares: its settings' common part and its client.

A vendor connector names its settings model, which says where the API is (`url()`) and how
to sign in (`auth()`); the base builds the one `HttpClient` (limits, retries, paging) from it
and closes it with the connector. The vendor module is then only the vendor's own calls.
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Connector, Result
from connectors.http import Auth, HttpClient, RateLimit, RetryPolicy, lookup
from schemas.events import (
    Counts,
    Evidence,
    IdentifierType,
    OutcomeStatus,
    RequestType,
    Subject,
)

log = logging.getLogger(__name__)

_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

#: The rights of a vendor that holds records about people: read them, hand them over, erase.
RECORD_RIGHTS = frozenset({RequestType.ACCESS, RequestType.PORTABILITY, RequestType.ERASURE})
#: A mailing tool's rights: those, and stopping the mailings on objection or withdrawal.
MAILING_RIGHTS = RECORD_RIGHTS | {RequestType.OBJECTION, RequestType.CONSENT_WITHDRAWAL}


class HttpSettings(BaseModel):
    """The settings every REST vendor has besides where and who: limits, retries, timeout."""

    model_config = ConfigDict(extra="forbid")
    rate_limit: RateLimit = RateLimit()
    retry: RetryPolicy = RetryPolicy()
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0

    @abstractmethod
    def url(self) -> str:
        """The API base URL."""

    @abstractmethod
    def auth(self) -> Auth:
        """How requests authenticate."""


def check_account(name: str, subdomain: str | None, base_url: str | None) -> None:
    """An account on the vendor's host is named by exactly one of its subdomain (the setting
    `name`, e.g. 'acme' for acme.zendesk.com) and a `base_url`; raises ValueError otherwise."""
    if (subdomain is None) == (base_url is None):
        raise ValueError(f"give exactly one of {name} and base_url")
    if subdomain is not None and not _SUBDOMAIN.match(subdomain):
        raise ValueError(f"{name} must be the account's subdomain, e.g. 'acme'")


HttpSettingsT = TypeVar("HttpSettingsT", bound=HttpSettings)


class HttpConnector(Connector[HttpSettingsT]):
    """A connector for one vendor's REST API; `self.http` is its client, closed with it."""

    #: Headers every request carries, e.g. the vendor's API version.
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        s = self.settings
        self.http = HttpClient(
            system,
            s.url(),
            s.auth(),
            s.rate_limit,
            s.retry,
            s.timeout_seconds,
            headers=self.headers,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


class MailingConnector(HttpConnector[HttpSettingsT]):
    """A mailing tool: objection and consent withdrawal both unsubscribe from every list."""

    capabilities: ClassVar[frozenset[RequestType]] = MAILING_RIGHTS

    @abstractmethod
    async def unsubscribe_everywhere(self, subject: Subject) -> Result:
        """Stop every mailing to the subject; nothing is deleted."""

    async def object(self, subject: Subject) -> Result:
        """Unsubscribe the subject everywhere (objection to direct marketing)."""
        return await self.unsubscribe_everywhere(subject)

    async def withdraw_consent(self, subject: Subject) -> Result:
        """Unsubscribe the subject everywhere (consent to mailings withdrawn)."""
        return await self.unsubscribe_everywhere(subject)


# ------------------------------------------------------------------------- exact matches

_NOT_DIGITS = re.compile(r"\D")
RecordT = TypeVar("RecordT", bound=Mapping[str, Any])


def identifier_key(identifier_type: str, value: Any) -> str | None:
    """How a value of `identifier_type` is compared: an e-mail address ignoring case, a phone
    number as its E.164 digits (no `+`, spaces or punctuation; a leading international `00`
    counts as `+`), anything else as written; None when there is no value to compare."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    if identifier_type == IdentifierType.EMAIL:
        text = text.lower()
    elif identifier_type == IdentifierType.PHONE:
        digits = _NOT_DIGITS.sub("", text)
        text = digits[2:] if digits.startswith("00") and not text.startswith("+") else digits
    return text or None


def matches_subject(record: Any, fields: Mapping[str, str], subject: Subject) -> bool:
    """Whether one of the record's identifier `fields` (dotted path -> identifier type; a
    field may hold a list) equals one of the subject's identifiers of that type exactly.

    A vendor's search is not trusted to have done this: a fuzzy search returns partial
    matches, and one that treats `*` or `%` as a wildcard returns other people for an
    address such as `*@example.com`. Handing those over or erasing them is an unauthorised
    disclosure or an accidental destruction of another person's data: a personal data breach
    (Art. 4(12), Art. 5(1)(f) GDPR), and a copy that harms others (Art. 15(4)).
    """
    for path, identifier_type in fields.items():
        wanted = {identifier_key(identifier_type, v) for v in subject.values(identifier_type)}
        wanted.discard(None)
        found = lookup(record, path) if isinstance(record, Mapping) else None
        values = found if isinstance(found, list) else [found]
        if wanted and any(identifier_key(identifier_type, v) in wanted for v in values):
            return True
    return False


def exact_matches(
    system: str, records: Iterable[RecordT], fields: Mapping[str, str], subject: Subject
) -> list[RecordT]:
    """The search results that are the subject's by an exact identifier (`matches_subject`);
    the rest are dropped, and only their number is logged."""
    listed = list(records)
    kept = [record for record in listed if matches_subject(record, fields, subject)]
    if len(kept) < len(listed):
        log.info(
            "%s: dropped %d of %d search results: no identifier equals the subject's exactly",
            system,
            len(listed) - len(kept),
            len(listed),
        )
    return kept


def erased_per_collection(deleted: Mapping[str, int]) -> list[Evidence]:
    """What an erasure deleted, one evidence item per collection (`tickets_deleted: 3`).

    `Counts` holds totals only, and a certificate must state what was erased in each
    collection (Art. 17(1), Art. 5(2) GDPR), records the vendor removed with their parent
    included.
    """
    return _per_collection(deleted, "deleted")


def erased(deleted: Mapping[str, int], evidence: Sequence[Evidence] = ()) -> Result:
    """Completed with `deleted` (records per collection) counted and itemised as evidence."""
    total = sum(deleted.values())
    return Result.completed(
        Counts(found=total, deleted=total),
        evidence=erased_per_collection(deleted) + list(evidence),
    )


def pointer(*tokens: str | int) -> str:
    """The RFC 6901 JSON Pointer to the value under `tokens` (keys and list indexes), for
    `Record.others`: `~` is written `~0` and `/` is written `~1`."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def mentions(data: Any, needles: Collection[str], at: tuple[str | int, ...] = ()) -> list[str]:
    """Pointers to the strings in `data` that contain any of `needles` (ignoring case): where
    a free text names a person, e.g. another contact's e-mail address in a deal's notes."""
    wanted = [n.lower() for n in needles if n]
    if isinstance(data, str):
        text = data.lower()
        return [pointer(*at)] if at and any(n in text for n in wanted) else []
    if isinstance(data, Mapping):
        items: Iterable[tuple[str | int, Any]] = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return []
    return [p for key, value in items for p in mentions(value, wanted, (*at, key))]


@dataclass
class Erasure:
    """An erasure under way: the subject's own ids (e.g. its contacts) and what was done.

    An object shared with other people (a conversation, a deal with two buyers) is not the
    subject's to delete: the subject's part of it is redacted, or the subject's link to it
    removed, by the vendor's own means. What the other people wrote is their personal data
    (Art. 4(1) GDPR), not the subject's, so it is neither erased nor reported "retained":
    Art. 17(1) reaches the subject's data only. Whatever of the subject's the vendor's API
    cannot remove is a manual step with exact instructions, never a retained item: a
    `RetainedItem` needs a legal duty to keep (the register's retention rules).
    """

    mine: set[str]
    #: Records deleted, per collection (`tickets_deleted: 3`).
    erased: Counter[str] = field(default_factory=Counter)
    #: The subject's parts of shared objects made unreadable (`conversation_parts_redacted: 2`).
    redacted: Counter[str] = field(default_factory=Counter)
    #: The subject's links to other people's objects removed (`deal_associations_removed: 1`).
    unlinked: Counter[str] = field(default_factory=Counter)
    #: What a person must still do in the vendor's own interface, one step each.
    manual: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        """Records deleted, all collections together."""
        return sum(self.erased.values())

    def split(self, linked: Mapping[str, Collection[str]]) -> tuple[list[str], list[str]]:
        """The records of `linked` (record id -> ids of the people it is linked to) that are
        the subject's alone, and those shared with other people."""
        owned = [record for record, people in linked.items() if set(people) <= self.mine]
        return owned, [record for record in linked if record not in owned]

    def result(self, evidence: Sequence[Evidence]) -> Result:
        """Completed with the counts (manual action required while steps are left), or not
        found when nothing was there any more."""
        done = self.deleted + sum(self.redacted.values()) + sum(self.unlinked.values())
        if done == 0 and not self.manual:
            return Result.not_found()  # everything went meanwhile (a concurrent attempt)
        counts = Counts(deleted=self.deleted, anonymised=sum(self.redacted.values()))
        itemised = (
            erased_per_collection(self.erased)
            + _per_collection(self.redacted, "redacted")
            + _per_collection(self.unlinked, "removed")
            + list(evidence)
        )
        if self.manual:
            return Result(
                OutcomeStatus.MANUAL_ACTION_REQUIRED,
                counts,
                evidence=itemised,
                instructions="\n".join(self.manual),
                reason="the API cannot remove all of the subject's data in shared objects",
            )
        return Result.completed(counts, evidence=itemised)


def _per_collection(counts: Mapping[str, int], done: str) -> list[Evidence]:
    return [Evidence(kind=f"{name}_{done}", value=str(n)) for name, n in counts.items() if n]


__all__ = [
    "MAILING_RIGHTS",
    "RECORD_RIGHTS",
    "Erasure",
    "HttpConnector",
    "HttpSettings",
    "MailingConnector",
    "check_account",
    "erased",
    "erased_per_collection",
    "exact_matches",
    "identifier_key",
    "matches_subject",
    "mentions",
    "pointer",
]
