"""Zendesk Support: the built-in spec `connectors/specs/zendesk.yaml` and its hooks.

The spec declares the search, the listings (identities, requested and CC'd tickets, their
comments; cursor paging), the permanent erasure (tickets soft-deleted, then deleted for good
with the vendor's job polled; the user, then `DELETE /deleted_users/{id}`) and the retention
sweeps of closed tickets. `connectors/specs/zendesk_hooks.py` holds what a declaration cannot
say: the exact match on a user's identities, other people on shared tickets (Art. 15(4),
Art. 17(1) GDPR: marked in the export, the subject's comments redacted, the subject taken off
CCs and followers, a manual step where it requested the ticket) and the compliance deletion
status. This module adds the account settings a template cannot check: exactly one of a
subdomain and a base_url, and either an agent's email with an API token or an OAuth token.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from connectors.http import Auth
from connectors.vendors.base import check_account
from connectors.vendors.spec import SpecConnector, SpecSettings

COLLECTIONS = ("users", "identities", "tickets", "comments")


class ZendeskAccount(SpecSettings):
    """Where the account is and how to sign in; the spec declares the other settings."""

    subdomain: str | None = Field(default=None, description="'acme' for acme.zendesk.com")
    base_url: str | None = Field(default=None, description="Overrides subdomain (tests).")
    email: str | None = Field(default=None, description="Agent email, with api_token.")
    api_token: str | None = Field(default=None, repr=False)
    oauth_token: str | None = Field(default=None, repr=False, description="Instead of a token.")

    @model_validator(mode="after")
    def _check(self) -> ZendeskAccount:
        check_account("subdomain", self.subdomain, self.base_url)
        token_auth = self.email is not None and self.api_token is not None
        if token_auth == (self.oauth_token is not None):
            raise ValueError("give either email and api_token, or oauth_token")
        return self

    def auth(self) -> Auth:
        """Basic `{email}/token:{api_token}`, or Bearer."""
        if self.oauth_token is not None:
            return Auth(type="bearer", token=self.oauth_token)
        return Auth(type="basic", username=f"{self.email}/token", password=self.api_token)


class ZendeskConnector(SpecConnector, spec="zendesk", settings=ZendeskAccount):
    """Zendesk Support: users, identities, requested tickets, comments; permanent deletion."""


#: The register settings: the account's, page_size, job polling, rate_limit, retry, timeout.
ZendeskSettings = ZendeskConnector.settings_model

__all__ = ["COLLECTIONS", "ZendeskAccount", "ZendeskConnector", "ZendeskSettings"]
