"""Issue 13's loose ends: whom the answer is e-mailed to, and when the retention period starts.

Delivery goes to the requester (Art. 12(1), 12(3) GDPR; EDPB Guidelines 01/2022 on requests via
third parties); shredding counts from delivery, so an answered but undelivered request keeps its
export until the subject has it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.artifacts.delivery import ForSomeoneElse, answer_address
from orchestrator.lifecycle.deadlines import Period
from orchestrator.lifecycle.reducer import (
    Context,
    Policy,
    RequestState,
    deliver,
    delivery_failed,
    next_check,
    record_outcome,
    shred_at,
    submit,
    tick,
)
from schemas.events import Requester, RequesterKind, RequestStatus, StatusTrigger
from tests.orchestrator.test_delivery import Inbox, _mailer, delivery, smtp_server
from tests.orchestrator.test_lifecycle import EMAIL, NOW, SYSTEMS, outcome, request

POLICY = Policy(shred_after=Period.parse("30 days"), task_timeout=timedelta(days=365))
MANDATE = "dms://mandates/2026/0142"


def ctx(days: float = 0) -> Context:
    return Context(systems=SYSTEMS, policy=POLICY, now=NOW + timedelta(days=days))


def answered(kind: str = "access", requester: Requester | None = None) -> RequestState:
    """A request whose systems are all done: completed, its answer not yet delivered."""
    extra = {} if requester is None else {"requester": requester}
    state, _ = submit(None, request(type=kind, **extra), ctx())
    for system in SYSTEMS:
        state, _ = record_outcome(state, outcome(system, action=kind), ctx())
    assert state is not None and state.status == RequestStatus.COMPLETED
    return state


# -- whom the answer is e-mailed to ----------------------------------------------------------


def test_art_12_1_answer_to_a_self_request_goes_to_the_subject(tmp_path: Path) -> None:
    """Art. 12(1) GDPR: the answer is given to the person who asked; here the subject."""
    child = Requester(kind=RequesterKind.SELF, subject_is_child=True)
    assert answer_address(answered()) == answer_address(answered(requester=child)) == EMAIL
    with smtp_server() as (inbox, port):
        event = asyncio.run(_mailer(tmp_path, port).deliver(answered(), []))
        assert event is not None
        assert {tuple(to) for to, _ in inbox.messages} == {(EMAIL,)}


@pytest.mark.parametrize("kind", [RequesterKind.PARENT_OR_GUARDIAN, RequesterKind.REPRESENTATIVE])
def test_art_12_1_answer_for_a_requester_on_behalf_is_not_mailed_to_the_subject(
    tmp_path: Path, kind: RequesterKind
) -> None:
    """Art. 12(1) GDPR and EDPB Guidelines 01/2022 (requests via third parties): the letters go
    to the parent, guardian or representative who asked. The request holds no address of
    theirs, so nothing is e-mailed (least of all to the subject) and the request says why: the
    officer delivers by post, ZIVVER or in person and records it."""
    state = answered(requester=Requester(kind=kind, mandate_ref=MANDATE))
    with smtp_server() as (inbox, port):
        with pytest.raises(ForSomeoneElse) as refused:
            asyncio.run(_mailer(tmp_path, port).deliver(state, []))
        assert _nothing_sent(inbox)
    message = str(refused.value)
    assert kind.value.replace("_", " ") in message and EMAIL not in message
    # What the fan-out does with it: the request stays undelivered, its status says why.
    effects = delivery_failed(state, message, ctx())
    [status] = effects.statuses
    assert status.trigger == StatusTrigger.DELIVERY_FAILED
    assert status.status == RequestStatus.COMPLETED
    reason = status.reason or ""
    assert "not e-mailed to the subject" in reason and "dsr deliver" in reason
    assert EMAIL not in reason and MANDATE not in reason
    assert not (tmp_path / "delivery-codes").exists()  # no one-time code was issued either


def _nothing_sent(inbox: Inbox) -> bool:
    return inbox.messages == []


# -- when shredding is due ---------------------------------------------------------------------


def test_art_12_3_undelivered_request_is_never_shredded() -> None:
    """Art. 12(3) GDPR: a request is answered only once delivered; its data and export stay until
    then, however long past the retention period after finishing."""
    state = answered()
    assert shred_at(state, POLICY) is None
    when = next_check(state, POLICY)
    assert when is not None and when < NOW + timedelta(days=30)  # the deadline, not shredding
    state, _ = tick(state, ctx(40))  # overdue
    later, effects = tick(state, ctx(400))
    assert not effects.shred and later.shredded_at is None and later.request is not None
    assert next_check(later, POLICY) is None  # overdue flagged: nothing left until delivery


def test_art_5_1_e_shred_period_counts_from_delivery() -> None:
    """Art. 5(1)(e) GDPR (storage limitation) with Art. 12(3): the retention period starts when
    the subject has the answer, so the export link sent at delivery keeps working."""
    state, _ = deliver(answered(), delivery(at=NOW + timedelta(days=20)), ctx(20))
    assert state is not None and state.status == RequestStatus.DELIVERED
    due = NOW + timedelta(days=50)
    assert shred_at(state, POLICY) == next_check(state, POLICY) == due
    kept, effects = tick(state, ctx(49))
    assert not effects.shred and kept.request is not None
    gone, effects = tick(kept, ctx(50))
    assert effects.shred and gone.shredded_at is not None and gone.request is None
    assert "after the request was delivered" in (effects.statuses[-1].reason or "")


def test_a_delivery_dated_before_finishing_does_not_shorten_the_period() -> None:
    state, _ = deliver(answered(), delivery(at=NOW - timedelta(days=5)), ctx())
    assert state is not None and shred_at(state, POLICY) == NOW + timedelta(days=30)


def test_a_failed_request_counts_from_finishing() -> None:
    """Nothing to deliver (every system failed): the period counts from when it was final."""
    state, _ = submit(None, request(type="access"), ctx())
    for system in SYSTEMS:
        state, _ = record_outcome(
            state, outcome(system, "failed", action="access", reason="down"), ctx()
        )
    assert state is not None and state.status == RequestStatus.FAILED
    assert shred_at(state, POLICY) == NOW + timedelta(days=30)
