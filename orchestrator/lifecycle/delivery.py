"""Delivery of the answer to the subject: the legal rules, as pure functions.

Art. 12(3) GDPR: the controller "shall provide information on action taken on a request under
Articles 15 to 22 to the data subject without undue delay and in any event within one month of
receipt of the request". The information is provided when the subject has it, so a request is
answered when it is *delivered*, not when the systems are done: a request that is `completed`,
`partially_completed` or `refused` still runs against its deadline, and turns overdue like any
other, until it is `delivered` (by the orchestrator's e-mail, or an officer's `DeliveryRecorded`
for post, ZIVVER or in person). Art. 12(1): the information may be provided "in writing, or by
other means, including, where appropriate, by electronic means"; the channel used is recorded.

The reducer (`orchestrator.lifecycle.reducer.deliver`) asks `judge` what a delivery does. No I/O.
Status events carry the channel and who recorded it; never an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.events import DeliveryChannel, DeliveryRecorded, RequestStatus

#: Final statuses with an answer for the subject: they wait for delivery (Art. 12(3)).
DELIVERABLE = frozenset(
    {RequestStatus.COMPLETED, RequestStatus.PARTIALLY_COMPLETED, RequestStatus.REFUSED}
)
#: Who records a delivery the orchestrator made itself (by e-mail).
ORCHESTRATOR = "orchestrator"


@dataclass(frozen=True, slots=True)
class DeliveryVerdict:
    """What a delivery does: nothing (a re-delivery), refused (`dead_letter`), or `deliver`."""

    deliver: bool = False
    dead_letter: str | None = None


def awaits_delivery(status: RequestStatus | None, delivery: DeliveryRecorded | None) -> bool:
    """True while a request has an answer the subject does not have yet: its clock runs."""
    return status in DELIVERABLE and delivery is None


def judge(
    event: DeliveryRecorded,
    *,
    status: RequestStatus | None,
    delivery: DeliveryRecorded | None,
) -> DeliveryVerdict:
    """What recording `event` does to a request in `status` (None: no such request)."""
    rid = event.request_id
    if delivery is not None:
        if delivery == event:
            return DeliveryVerdict()  # a re-delivery of the same event
        return DeliveryVerdict(
            dead_letter=f"delivery of request {rid!r} refused: it was already delivered "
            f"({delivery.channel}, {delivery.delivered_at:%Y-%m-%d %H:%M %Z})"
        )
    if status is None:
        return DeliveryVerdict(dead_letter=f"delivery of request {rid!r} refused: no such request")
    if status not in DELIVERABLE:
        allowed = ", ".join(sorted(DELIVERABLE))
        return DeliveryVerdict(
            dead_letter=f"delivery of request {rid!r} refused: it has no answer to deliver yet "
            f"(status {status}); a request is delivered once it is {allowed}"
        )
    return DeliveryVerdict(deliver=True)


def status_reason(event: DeliveryRecorded) -> str:
    """The timeline entry of a delivery: the channel and who recorded it. No address."""
    how = "by e-mail" if event.channel == DeliveryChannel.EMAIL else f"via {event.channel}"
    return f"answer delivered to the subject {how} (recorded by {event.delivered_by}); Art. 12(3)"


def failure_reason(error: str) -> str:
    """The timeline entry of a failed e-mail delivery (`error` names no address)."""
    return (
        f"the answer could not be sent by e-mail ({error}); the deadline runs until it is "
        "delivered: send it another way and record it (dsr deliver)"
    )


def delivered_now(request_id: str, channel: DeliveryChannel, by: str) -> DeliveryRecorded:
    """The event that records a delivery made just now (by e-mail here, or by an officer)."""
    return DeliveryRecorded(
        request_id=request_id, channel=channel, delivered_by=by, delivered_at=datetime.now(UTC)
    )


__all__ = [
    "DELIVERABLE",
    "ORCHESTRATOR",
    "DeliveryVerdict",
    "awaits_delivery",
    "delivered_now",
    "failure_reason",
    "judge",
    "status_reason",
]
