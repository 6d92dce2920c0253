"""ZIVVER (secure e-mail and file transfer): a manual-task connector.

Seed 002 names ZIVVER "voor veilige e-mail en datatransport". ZIVVER's own documentation
(docs.zivver.com, admin manual) offers no API to search or erase one person's data: an
organisation's "Zivver API key" serves as the password of the FTP export of all messages
("Export user data", per account, per month, per conversation, as EML; off by default, Support
turns it on); deleting a message for everyone is the sender's "revoke for recipients and
sender" (or the organisation's revocation policy); an administrator can delete accounts, not
other people's messages. So no request is automated here: every right becomes a manual task
whose instructions say what to do in the ZIVVER WebApp, and `dsr tasks complete` records it.

What ZIVVER keeps regardless, stated in the instructions so the officer can tell the subject:
the audit and communication log is kept six years and cannot be shortened (ZIVVER: "Zivver data
access, retention, and deletion"); it records that a message was sent, not its content.

The instructions never contain the subject's identifiers (they travel on the status topic):
they refer to the request, whose details the privacy officer has in the case file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from connectors.base import Connector, Result
from schemas.events import FieldChange, RequestType, Subject


class ZivverSettings(BaseModel):
    """Where the person does the work."""

    model_config = ConfigDict(extra="forbid")
    webapp_url: str = "https://app.zivver.com"
    #: The accounts (mailboxes) that correspond with data subjects, e.g. a functional account.
    mailboxes: list[str] = []


_FIND = (
    "Sign in to the ZIVVER WebApp ({webapp}){where}. In each mailbox, search the conversations "
    "for the requester's e-mail address and phone number (from the request's case file), in "
    "Inbox, Sent and Archive; note every conversation found and who sent each message."
)
_AUDIT = (
    "Note for the answer: ZIVVER keeps its audit and communication log (that a message was "
    "sent, to whom, when; not its content) for six years; it cannot be shortened or erased "
    "per person."
)


class ZivverConnector(Connector[ZivverSettings]):
    """Secure e-mail in ZIVVER, handled by a person in the ZIVVER WebApp."""

    capabilities: ClassVar[frozenset[RequestType]] = frozenset(RequestType)
    description = "ZIVVER secure e-mail: manual tasks with WebApp instructions (no public API)"

    def _steps(self, *steps: str) -> Result:
        settings = self.settings
        where = f", mailboxes {', '.join(settings.mailboxes)}" if settings.mailboxes else ""
        first = _FIND.format(webapp=settings.webapp_url, where=where)
        numbered = [f"{n}. {step}" for n, step in enumerate((first, *steps), start=1)]
        return Result.manual(" ".join(numbered))

    async def access(self, subject: Subject) -> Result:
        """Export the requester's conversations as EML."""
        return self._steps(
            "Open each conversation found and save every message with its attachments; if "
            "there are many, an administrator can take them from the FTP export ('Export user "
            "data', EML files per account, month and conversation): take only these "
            "conversations.",
            "Attach the EML files to this request's task.",
            _AUDIT,
        )

    async def portability(self, subject: Subject) -> Result:
        """The messages the requester sent us, as EML (Art. 20(1): what they provided)."""
        return self._steps(
            "Save only the messages the requester wrote, with their attachments.",
            "Attach the EML files to this request's task.",
        )

    async def erase(self, subject: Subject) -> Result:
        """Revoke our messages for everyone and delete the conversations from our mailboxes."""
        return self._steps(
            "For every message our staff sent the requester: let its sender revoke it "
            "immediately for recipients and sender (ZIVVER's message revocation; this deletes "
            "the content for everyone).",
            "Delete every conversation found from our mailboxes, then empty Trash.",
            "Messages the requester sent us cannot be revoked by us: deleting them from our "
            "mailboxes is what we can do; say so in the answer.",
            "Search again to confirm nothing is left; note how many conversations you "
            "deleted and how many messages you revoked.",
            _AUDIT,
        )

    async def rectify(self, subject: Subject, changes: Sequence[FieldChange]) -> Result:
        """Correct the requester's details where ZIVVER keeps them."""
        fields = ", ".join(sorted({c.field for c in changes})) or "the requested fields"
        return self._steps(
            f"Sent messages cannot be edited; correct {fields} in the recipient's saved "
            "verification method (Organization Settings > Recipient verification), if any.",
        )

    async def restrict(self, subject: Subject) -> Result:
        """Stop using the conversations while they are kept."""
        return self._steps(
            "List every conversation found in the case file as restricted; do not use, "
            "forward or answer them (except to the requester) until the restriction is lifted.",
        )

    async def object(self, subject: Subject) -> Result:
        """Stop the processing objected to."""
        return self._steps("Send no further messages to the requester except their answer.")

    async def withdraw_consent(self, subject: Subject) -> Result:
        """Stop consent-based processing (ZIVVER carries none by itself)."""
        return self._steps(
            "Send no further consent-based messages to the requester (e.g. newsletters).",
        )


__all__ = ["ZivverConnector", "ZivverSettings"]
