"""What every built-in REST vendor connector shares: its settings' common part and its client.

A vendor connector names its settings model, which says where the API is (`url()`) and how
to sign in (`auth()`); the base builds the one `HttpClient` (limits, retries, paging) from it
and closes it with the connector. The vendor module is then only the vendor's own calls.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Connector, Result
from connectors.http import Auth, HttpClient, RateLimit, RetryPolicy
from schemas.events import Counts, Evidence, RequestType, RetainedItem, Subject

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


def erased_per_collection(deleted: Mapping[str, int]) -> list[Evidence]:
    """What an erasure deleted, one evidence item per collection (`tickets_deleted: 3`).

    `Counts` holds totals only, and a certificate must state what was erased in each
    collection (Art. 17(1), Art. 5(2) GDPR), records the vendor removed with their parent
    included.
    """
    return [Evidence(kind=f"{name}_deleted", value=str(n)) for name, n in deleted.items() if n]


def erased(deleted: Mapping[str, int], evidence: Sequence[Evidence] = ()) -> Result:
    """Completed with `deleted` (records per collection) counted and itemised as evidence."""
    total = sum(deleted.values())
    return Result.completed(
        Counts(found=total, deleted=total),
        evidence=erased_per_collection(deleted) + list(evidence),
    )


@dataclass
class Erasure:
    """An erasure under way: the subject's own ids (e.g. its contacts), the records deleted
    per collection, and the records kept because they are linked to other people too."""

    mine: set[str]
    erased: Counter[str] = field(default_factory=Counter)
    retained: list[RetainedItem] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        """Records deleted, all collections together."""
        return sum(self.erased.values())

    def split(
        self, collection: str, linked: Mapping[str, Collection[str]], reason: str
    ) -> list[str]:
        """The records (of `linked`: record id -> ids of the people it is linked to) that are
        the subject's alone; the shared ones are reported kept, with `reason`."""
        owned = [record for record, people in linked.items() if set(people) <= self.mine]
        self.keep_shared(collection, len(linked) - len(owned), reason)
        return owned

    def keep_shared(self, collection: str, count: int, reason: str) -> None:
        """Report `count` records of `collection` kept: they are other people's data too."""
        if count:
            self.retained.append(
                RetainedItem(
                    collection=collection,
                    count=count,
                    legal_basis="Art. 17(1) GDPR does not extend to other data subjects",
                    reason=reason,
                )
            )

    def result(self, evidence: Sequence[Evidence]) -> Result:
        """Completed with the counts, or not found when nothing was there any more."""
        if self.deleted == 0 and not self.retained:
            return Result.not_found()  # everything went meanwhile (a concurrent attempt)
        retained = sum(r.count for r in self.retained)
        return Result.completed(
            Counts(deleted=self.deleted, retained=retained),
            retained=self.retained,
            evidence=erased_per_collection(self.erased) + list(evidence),
        )


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
]
