"""How a request's state is stored in the orchestrator's table: sealed, or as a shredded stub.

The table's changelog is a Kafka topic, and it keeps every version of every value. A state
holds the request body with the subject's identifiers, so it is stored sealed with the
request's data key. Beside the seal, in the clear, only what the deadline timer needs without
opening it and nothing personal: request id, type, status and when it finished.

Once the request is shredded its entry becomes a stub in the clear (`lifecycle.shredded`):
the older, sealed versions further back in the changelog can no longer be opened by anyone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from orchestrator.lifecycle.delivery import awaits_delivery
from orchestrator.lifecycle.reducer import RequestState
from schemas.envelope import describe_validation_error
from schemas.events import RequestStatus, RequestType
from schemas.primitives.sealing import (
    DataKeyDestroyed,
    DataKeys,
    SealedValue,
    SealingError,
    context,
    open_sealed,
    seal,
)


def _context(request_id: str) -> bytes:
    return context("state", request_id)


def encode_state(state: RequestState, keys: DataKeys) -> str:
    """The table value for a state: sealed (the data key is created on first use), or the stub."""
    if state.shredded_at is not None:
        stub = state.model_dump(mode="json", exclude_defaults=True)
        return json.dumps({"shredded": True, **stub})
    key = keys.create(state.request_id)
    # Defaults left out: a system's progress is 250 bytes in full and 20 while pending, and a
    # request to 200 systems is written back on every batch of its outcomes. Read back, the
    # model fills them in again, so states written either way open alike.
    plaintext = state.model_dump_json(exclude_defaults=True).encode()
    sealed = seal(key, plaintext, _context(state.request_id))
    envelope = {
        "request_id": state.request_id,
        "type": state.request.type.value if state.request else None,
        "status": state.status.value if state.status else None,
        "finished_at": state.finished_at.isoformat() if state.finished_at else None,
        # Answered but not delivered: the timer must still watch its deadline (Art. 12(3)).
        "awaits_delivery": awaits_delivery(state.status, state.delivery) and not state.overdue_sent,
        "sealed": sealed.model_dump(),
    }
    return json.dumps(envelope)


class StateInvalid(SealingError):
    """A stored state opens but no longer validates (written by an older version whose rules
    were looser, e.g. before BSN identifiers were refused); the request cannot go on."""


def decode_state(raw: str, keys: DataKeys) -> RequestState:
    """The state in a table value; raises a `SealingError` when it cannot be opened.

    A sealed value whose key was destroyed (the orchestrator stopped half-way through
    shredding) reads as the stub of a shredded request. A state that opens but no longer
    validates raises `StateInvalid` (a `SealingError`), so the agent dead-letters the
    request's events and the timer skips it instead of stopping the worker.
    """
    try:
        return _decode_state(raw, keys)
    except ValidationError as exc:
        # describe_validation_error names fields and rules, never the values.
        raise StateInvalid(
            f"the stored state no longer validates: {describe_validation_error(exc)}"
        ) from None


def _decode_state(raw: str, keys: DataKeys) -> RequestState:
    data = json.loads(raw)
    if data.get("shredded"):
        return RequestState.model_validate({k: v for k, v in data.items() if k != "shredded"})
    if "sealed" not in data:  # written before states were sealed
        return RequestState.model_validate(data)
    request_id = data["request_id"]
    try:
        key = keys.get(request_id)
    except DataKeyDestroyed:
        return _stub(data)
    plaintext = open_sealed(key, SealedValue.model_validate(data["sealed"]), _context(request_id))
    return RequestState.model_validate_json(plaintext)


def watch_view(raw: str, keys: DataKeys) -> RequestState:
    """Enough of a state for the deadline timer: final states are not opened (there can be
    many; all the timer needs of them is when they finished), unless their answer still awaits
    delivery before an overdue flag (`orchestrator.lifecycle.delivery`)."""
    data = json.loads(raw)
    status = data.get("status")
    final = status is not None and RequestStatus(status).is_final
    if "sealed" in data and final and not data.get("awaits_delivery"):
        return RequestState(
            request_id=data["request_id"],
            request_type=data.get("type"),
            status=data["status"],
            finished_at=data.get("finished_at"),
        )
    return decode_state(raw, keys)


def _stub(data: dict[str, Any]) -> RequestState:
    status = data.get("status")
    return RequestState(
        request_id=data["request_id"],
        request_type=RequestType(data["type"]) if data.get("type") else None,
        status=RequestStatus(status) if status else None,
        finished_at=data.get("finished_at"),
        shredded_at=datetime.now(UTC),
    )


__all__ = ["StateInvalid", "decode_state", "encode_state", "watch_view"]
