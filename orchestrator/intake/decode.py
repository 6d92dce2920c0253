"""What comes in on the input topics: decode it, check its signature, route it, or turn it away.

Each record of the requests and outcomes topics is decoded once, straight into its model
(`schemas.envelope.decode`). Request events must be signed by a known publisher, checked before
the body is even parsed; outcomes likewise, by the connector worker group that serves the
outcome's system (or a person allowed to complete tasks), so only verified outcomes reach the
lifecycle and the certificates it issues. A record that is not a valid event is turned away as
a dead letter; one on the wrong partition is rerouted to the partition that holds its
request's state, so one worker sees all of a request's events.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, cast

from aiokafka.partitioner import murmur2

from orchestrator.lifecycle.reducer import InputEvent
from schemas.envelope import EnvelopeError, KafkaRecord, RawEvent, decode, header_dict
from schemas.events import TaskOutcome
from schemas.primitives.signing import RequestVerifier
from schemas.sweeps import SweepApproved, SweepOutcome, SweepRequested
from schemas.topics import OUTCOMES, REQUESTS

#: A retention sweep's events on the input topics (`schemas.sweeps`).
SweepInput = SweepRequested | SweepApproved | SweepOutcome
SWEEP_INPUT = (SweepRequested, SweepApproved, SweepOutcome)

#: Where a dead letter was refused (`schemas.events.DeadLetter.stage`).
Stage = Literal["envelope", "signature", "body", "process"]


@functools.lru_cache(maxsize=65536)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for a key (cached: it is
    computed in pure Python, and every event of a request asks for the same key)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Refused:
    """A record to dead-letter, with the stage that refused it and why (no personal data)."""

    record: KafkaRecord
    stage: Stage
    reason: str
    ce_type: str | None = None
    #: The record holds data we may not keep (a BSN): the dead letter leaves its value out.
    withhold: bool = False


@dataclass(frozen=True, slots=True)
class Misrouted:
    """A valid event on another partition than its request's (or sweep's): it moves there."""

    record: KafkaRecord
    request_id: str  # or the sweep id


@dataclass(slots=True)
class Intake:
    """One batch sorted: valid events per request (in arrival order), and what was turned away."""

    by_request: dict[str, list[tuple[KafkaRecord, InputEvent]]] = field(default_factory=dict)
    #: In arrival order, so reroutes keep the order their events came in.
    turned_away: list[Refused | Misrouted] = field(default_factory=list)
    #: Retention sweeps' events (requested, approved, outcomes), in batch order.
    sweeps: list[tuple[KafkaRecord, SweepInput]] = field(default_factory=list)


def sort_batch(
    records: Iterable[KafkaRecord],
    verify: Callable[[RawEvent], None],
    partitions: int,
) -> Intake:
    """Decode a batch of input records; every event must pass `verify` (its signature), an
    outcome also `RequestVerifier.check_system` (signed by the group serving its system)."""
    intake = Intake()
    by_request = intake.by_request
    for record in records:
        is_request = record.topic == REQUESTS.name
        try:
            envelope = decode(
                record.value,
                record.headers,
                key=record.key,
                expect=REQUESTS.events if is_request else OUTCOMES.events,
                verify=verify,
            )
            if isinstance(envelope.body, TaskOutcome | SweepOutcome) and isinstance(
                verify, RequestVerifier
            ):
                verify.check_system(
                    header_dict(record.headers), envelope.body.system, envelope.type
                )
        except EnvelopeError as exc:
            stage = cast(Stage, exc.stage)  # EnvelopeError uses no other
            refused = Refused(record, stage, str(exc), exc.ce_type, exc.withhold)
            intake.turned_away.append(refused)
            continue
        if isinstance(envelope.body, SWEEP_INPUT):
            sweep_id = envelope.body.sweep_id
            if record.partition != partition_for(sweep_id, partitions):
                # A sweep's state lives on its sweep id's partition, as a request's does.
                intake.turned_away.append(Misrouted(record, sweep_id))
            else:
                intake.sweeps.append((record, envelope.body))
            continue
        body: InputEvent = envelope.body  # type: ignore[assignment]
        request_id = body.request_id
        if record.partition != partition_for(request_id, partitions):
            # Produced with another partitioner (or no key).
            intake.turned_away.append(Misrouted(record, request_id))
            continue
        by_request.setdefault(request_id, []).append((record, body))
    return intake


__all__ = [
    "SWEEP_INPUT",
    "Intake",
    "Misrouted",
    "Refused",
    "Stage",
    "SweepInput",
    "partition_for",
    "sort_batch",
]
