"""Mailchimp (mailing tool): the built-in spec `connectors/specs/mailchimp.yaml`.

Access, portability, erasure (`delete-permanent` in every audience, never the archiving
DELETE), objection and consent withdrawal (unsubscribe where mail still goes) are declared
there, with the vendor facts behind each choice. This module names the class the register's
`mailchimp` entry point loads, and adds what the spec cannot declare: the API key's
datacenter, which is part of the API's host name.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Self

from pydantic import computed_field, model_validator

from connectors.http import render
from connectors.vendors.spec import SpecConnector, SpecSettings


class _Account(SpecSettings):
    """The API key's datacenter, checked: `abc123-us6` is served by us6.api.mailchimp.com."""

    if TYPE_CHECKING:  # declared in the spec
        api_key: str
        base_url: str | None

    @computed_field  # type: ignore[prop-decorator]  # the spec's base_url uses it
    @property
    def datacenter(self) -> str:
        """What follows the key's last '-', e.g. us6."""
        return self.api_key.rpartition("-")[2]

    @model_validator(mode="after")
    def _datacenter(self) -> Self:
        _, dash, dc = self.api_key.rpartition("-")
        if self.base_url is None and not (dash and dc.isalnum()):
            # Messages never quote the key: it is a secret.
            raise ValueError("api_key must end in '-<datacenter>' (e.g. -us6) or give base_url")
        return self

    def url(self) -> str:
        """The API base URL."""
        template = MailchimpConnector.default_spec.base_url or ""
        return self.base_url or render(template, {"settings": self.model_dump()})


class MailchimpConnector(SpecConnector, spec="mailchimp", settings=_Account):
    """Mailchimp audience members with their activity, events, notes, tags and goals."""


#: The register settings: api_key, base_url, page_size, rate_limit, retry, timeout_seconds.
MailchimpSettings = MailchimpConnector.settings_model


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address (personal data: never log it)."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


__all__ = ["MailchimpConnector", "MailchimpSettings", "subscriber_hash"]
