"""Requests waiting on the subject: when to remind them, and when to warn early. Pure functions.

A request for a right that needs an identity check waits for the subject to send what the
ID-request letter asked for (`orchestrator.lifecycle.verification`); one charged a fee waits for
the payment (Art. 12(5)(a) GDPR). The deadline keeps running meanwhile (Art. 12(3); see
docs/officers.md, "Identity verification"), and at the deadline an unverified request is
refused. So the subject gets one reminder letter after `Policy.reminder_after` (14 days by
default) without a verification, and the officers' status says so a configurable number of days
before the deadline (`Policy.waiting_warning_days`, 14 by default): earlier than the ordinary
due-soon warning, because the request cannot go on until the subject acts, and whatever the
systems need to do still has to fit in after that.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from schemas.events import RequestStatus

#: Statuses in which a request waits for the subject to act, not for the controller.
WAITING_ON_SUBJECT = frozenset({RequestStatus.AWAITING_VERIFICATION, RequestStatus.AWAITING_FEE})


def waits_on_subject(status: RequestStatus | None) -> bool:
    """True when a request in `status` cannot go on until the subject acts."""
    return status in WAITING_ON_SUBJECT


def reminder_due_at(
    status: RequestStatus | None,
    id_requested_at: datetime | None,
    reminded_at: datetime | None,
    after: timedelta | None,
) -> datetime | None:
    """When the subject is reminded of the identity verification asked for; None: never (no
    reminder configured, not waiting for a verification, or reminded already: once only)."""
    if (
        after is None
        or status != RequestStatus.AWAITING_VERIFICATION
        or id_requested_at is None
        or reminded_at is not None
    ):
        return None
    return id_requested_at + after


def warning_from(deadline: datetime, days: int) -> datetime:
    """The first moment of the day `days` before the deadline's day, in the deadline's zone
    (the same counting as the due-soon warning)."""
    first_day = deadline.date() - timedelta(days=days)
    return datetime.combine(first_day, time.min, tzinfo=deadline.tzinfo)


__all__ = ["WAITING_ON_SUBJECT", "reminder_due_at", "waits_on_subject", "warning_from"]
