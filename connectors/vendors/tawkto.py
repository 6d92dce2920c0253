"""Tawk.to (live chat): a manual-task connector.

Tawk.to offers its REST API only on request, and its methods for search, paging and deletion
are not publicly documented (vendor-apis.md: UNCONFIRMED), so no request is automated here.
Every right becomes a manual task whose instructions walk a person through the Tawk.to
dashboard; `dsr tasks complete` then records what they did as evidence.

Retention sweeps are not automated either (`sweeps` stays False, for the same reason): the
runtime turns each into a manual sweep task that states the rule and cutoff.

The instructions never contain the subject's identifiers (they travel on the status topic):
they refer to the request, whose details the privacy officer has in the case file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from connectors.base import Connector, Result
from schemas.events import FieldChange, RequestType, Subject


class TawkToSettings(BaseModel):
    """Where the person does the work."""

    model_config = ConfigDict(extra="forbid")
    dashboard_url: str = "https://dashboard.tawk.to"
    property_name: str | None = None


_FIND = (
    "Sign in to {dashboard}{property}. Open Inbox and search for the requester's email address "
    "and phone number (from the request's case file)."
)


class TawkToConnector(Connector[TawkToSettings]):
    """Chat history in Tawk.to, handled by a person in the Tawk.to dashboard."""

    capabilities: ClassVar[frozenset[RequestType]] = frozenset(RequestType)
    description = "Tawk.to live chat: manual tasks with dashboard instructions (no public API)"

    def _steps(self, *steps: str) -> Result:
        settings = self.settings
        where = f" (property {settings.property_name!r})" if settings.property_name else ""
        first = _FIND.format(dashboard=settings.dashboard_url, property=where)
        numbered = [f"{n}. {step}" for n, step in enumerate((first, *steps), start=1)]
        return Result.manual(" ".join(numbered))

    async def access(self, subject: Subject) -> Result:
        """Export the requester's chats and contact details."""
        return self._steps(
            "For every chat found, open it and use 'Download transcript'; open the contact and "
            "note its fields (name, email, phone, IP address, location).",
            "Add the transcripts and contact details to the export for this request.",
        )

    async def erase(self, subject: Subject) -> Result:
        """Delete the requester's chats and contact."""
        return self._steps(
            "Select every chat found and delete it (Inbox > select > Delete); empty the trash.",
            "Open Contacts, find the same person and delete the contact.",
            "Search again to confirm nothing is left; note how many chats you deleted.",
        )

    async def rectify(self, subject: Subject, changes: Sequence[FieldChange]) -> Result:
        """Correct the requester's contact details."""
        fields = ", ".join(sorted({c.field for c in changes})) or "the requested fields"
        return self._steps(f"Open Contacts, find the person and correct: {fields}.")

    async def restrict(self, subject: Subject) -> Result:
        """Stop using the chats while they are kept."""
        return self._steps(
            "Tag every chat found 'processing-restricted' and do not use them further.",
        )

    async def object(self, subject: Subject) -> Result:
        """Stop processing objected to (e.g. chat-based marketing)."""
        return self._steps(
            "Remove the contact from any targeted chat triggers or campaigns; tag the contact "
            "'objected'.",
        )

    async def withdraw_consent(self, subject: Subject) -> Result:
        """Stop consent-based processing."""
        return self._steps(
            "Remove the contact from consent-based chat campaigns and tag it 'consent-withdrawn'.",
        )


__all__ = ["TawkToConnector", "TawkToSettings"]
