"""Freshdesk (Freshworks support desk): the built-in spec `connectors/specs/freshdesk.yaml`.

Access (contacts by email, phone and mobile, soft-deleted ones too; their tickets, old and
trashed ones too; every ticket's conversations), portability, erasure (the contact's hard
delete, counting the tickets and conversations it takes along) and retention sweeps of
tickets (the filter API, 300 results a query) are declared there, with the vendor facts
behind each choice. This module names the class the register's `freshdesk` entry point loads
and checks that the account is named by exactly one of its subdomain and a base URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from pydantic import model_validator

from connectors.vendors.base import check_account
from connectors.vendors.spec import SpecConnector, SpecSettings


class _Account(SpecSettings):
    """Exactly one of `domain` and `base_url`."""

    if TYPE_CHECKING:  # declared in the spec
        domain: str | None
        base_url: str | None

    @model_validator(mode="after")
    def _where(self) -> Self:
        check_account("domain", self.domain, self.base_url)
        return self


class FreshdeskConnector(SpecConnector, spec="freshdesk", settings=_Account):
    """Freshdesk support desk: contacts, tickets (also old and trashed), conversations."""


#: The register settings: domain or base_url, api_key, page_size, rate_limit, retry, timeout.
FreshdeskSettings = FreshdeskConnector.settings_model
_SPEC = FreshdeskConnector.default_spec
#: The collections access exports.
COLLECTIONS = tuple(dict.fromkeys(_SPEC.collection_names()))
#: Long before any Freshdesk account existed: lists every ticket, not only the last 30 days'.
UPDATED_SINCE = str(_SPEC.related[0].params["updated_since"])

__all__ = ["COLLECTIONS", "UPDATED_SINCE", "FreshdeskConnector", "FreshdeskSettings"]
