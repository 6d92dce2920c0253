"""Topic names: one topic per kind of event, versioned, keyed by request id."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from schemas import events, gateway, sweeps
from schemas.envelope import TYPE_OF


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic of ours: its name, what it carries and who writes it."""

    name: str
    events: tuple[type[BaseModel], ...]
    description: str
    #: Topic configs it is created with (e.g. compaction), before any given at creation.
    configs: dict[str, str] = field(default_factory=dict)


REQUESTS = Topic(
    "dsr.requests.v1",
    (
        events.RequestSubmitted,
        events.IdentityVerified,
        events.DeadlineExtended,
        events.DecisionRecorded,
        events.DeliveryRecorded,
        sweeps.SweepRequested,
        sweeps.SweepApproved,
    ),
    "Requests, identity verifications, deadline extensions, officers' decisions and "
    "deliveries, and retention sweeps started and approved, published by intake services, "
    "the dashboard and the CLI.",
)
TASKS = Topic(
    "dsr.tasks.v1",
    (events.TaskDispatched, sweeps.SweepDispatched),
    "One task per request and system, and one per retention sweep, for connector workers.",
)
OUTCOMES = Topic(
    "dsr.outcomes.v1",
    (events.TaskOutcome, sweeps.SweepOutcome),
    "What each connector reports for each task and each sweep.",
)
STATUS = Topic(
    "dsr.status.v1",
    (events.RequestStatusChanged, sweeps.SweepStatusChanged),
    "Every state change of every request and every sweep; carries no personal data.",
)
DEAD_LETTER = Topic(
    "dsr.deadletter.v1",
    (events.DeadLetter,),
    "Events that could not be processed, with the reason.",
)

INTAKE = Topic(
    "dsr.intake.v1",
    (gateway.IntakeRecorded,),
    "What the HTTP intake process accepted (body hashes for idempotency, OpenDSR requests "
    "received as a processor); compacted, keyed by request id; no personal data.",
    {"cleanup.policy": "compact"},
)
OPENDSR_CALLBACKS = Topic(
    "dsr.opendsr.callbacks.v1",
    (gateway.OpenDsrCallbackReceived,),
    "Verified status callbacks from OpenDSR processors, for the connector workers that wait "
    "for them.",
)

ALL_TOPICS: tuple[Topic, ...] = (
    REQUESTS,
    TASKS,
    OUTCOMES,
    STATUS,
    DEAD_LETTER,
    INTAKE,
    OPENDSR_CALLBACKS,
)
#: Event types a signature is required for: everything on the requests topic.
REQUEST_EVENT_TYPES: tuple[str, ...] = tuple(TYPE_OF[model] for model in REQUESTS.events)
#: Request event types a publisher may send only when its `events` allow-list names them.
DECISION_EVENT_TYPES: tuple[str, ...] = (
    TYPE_OF[events.DecisionRecorded],
    TYPE_OF[events.DeliveryRecorded],
    # A sweep deletes data nobody asked to erase: only publishers allowed to decide start one.
    TYPE_OF[sweeps.SweepRequested],
    TYPE_OF[sweeps.SweepApproved],
)
#: What a publisher may send when the publisher keys file gives no `events` for it: new
#: requests only. Least privilege: a web form that can submit cannot also verify an identity,
#: extend a deadline, decide, deliver or sweep; each of those needs its type in `events`.
DEFAULT_PUBLISHER_EVENTS: tuple[str, ...] = (TYPE_OF[events.RequestSubmitted],)
#: A RequestSubmitted saying `verification.verified: true` is an identity verification too:
#: honoured only from a publisher allowed this type.
IDENTITY_VERIFIED_EVENT_TYPE: str = TYPE_OF[events.IdentityVerified]

__all__ = [
    "ALL_TOPICS",
    "DEAD_LETTER",
    "DECISION_EVENT_TYPES",
    "DEFAULT_PUBLISHER_EVENTS",
    "IDENTITY_VERIFIED_EVENT_TYPE",
    "INTAKE",
    "OPENDSR_CALLBACKS",
    "OUTCOMES",
    "REQUESTS",
    "STATUS",
    "TASKS",
    "Topic",
]
