"""Topic names: one topic per kind of event, versioned, keyed by request id."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas import events
from schemas.envelope import TYPE_OF


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic of ours: its name, what it carries and who writes it."""

    name: str
    events: tuple[type[BaseModel], ...]
    description: str


REQUESTS = Topic(
    "dsr.requests.v1",
    (
        events.RequestSubmitted,
        events.IdentityVerified,
        events.DeadlineExtended,
        events.DecisionRecorded,
        events.DeliveryRecorded,
    ),
    "Requests, identity verifications, deadline extensions, officers' decisions and "
    "deliveries, published by intake services, the dashboard and the CLI.",
)
TASKS = Topic(
    "dsr.tasks.v1",
    (events.TaskDispatched,),
    "One task per request and system, for connector workers.",
)
OUTCOMES = Topic(
    "dsr.outcomes.v1", (events.TaskOutcome,), "What each connector reports for each task."
)
STATUS = Topic(
    "dsr.status.v1",
    (events.RequestStatusChanged,),
    "Every state change of every request; carries no personal data.",
)
DEAD_LETTER = Topic(
    "dsr.deadletter.v1",
    (events.DeadLetter,),
    "Events that could not be processed, with the reason.",
)

ALL_TOPICS: tuple[Topic, ...] = (REQUESTS, TASKS, OUTCOMES, STATUS, DEAD_LETTER)
#: Event types a signature is required for: everything on the requests topic.
REQUEST_EVENT_TYPES: tuple[str, ...] = tuple(TYPE_OF[model] for model in REQUESTS.events)
#: Request event types a publisher may send only when its `events` allow-list names them.
DECISION_EVENT_TYPES: tuple[str, ...] = (
    TYPE_OF[events.DecisionRecorded],
    TYPE_OF[events.DeliveryRecorded],
)
#: What a publisher may send when the publisher keys file gives no `events` for it.
DEFAULT_PUBLISHER_EVENTS: tuple[str, ...] = tuple(
    t for t in REQUEST_EVENT_TYPES if t not in DECISION_EVENT_TYPES
)

__all__ = [
    "ALL_TOPICS",
    "DEAD_LETTER",
    "DECISION_EVENT_TYPES",
    "DEFAULT_PUBLISHER_EVENTS",
    "OUTCOMES",
    "REQUESTS",
    "STATUS",
    "TASKS",
    "Topic",
]
