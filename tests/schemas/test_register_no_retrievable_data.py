"""A processing with nothing retrievable (Google reCAPTCHA in seed 001): the register states it
with its reason, no task is created for it, and the Art. 15 report explains it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.artifacts.report import render_report
from orchestrator.lifecycle.reducer import Context, Policy, RequestState, submit
from schemas.events import OutcomeStatus, RequestStatus, SystemProgress
from schemas.register import RegisterError, parse_register
from tests import factories

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
AGREEMENT = {"signed_on": "2024-01-15", "reference": "VO-2024-01"}
SHOP = {
    "name": "shop",
    "kind": "database",
    "connector": "memory",
    "data_categories": [{"nl": "bestellingen", "en": "orders"}],
    "purposes": [{"name": {"nl": "bestellen", "en": "ordering"}, "legal_basis": "contract"}],
    "retention": {"nl": "7 jaar", "en": "7 years"},
    "profiling": "none",
}
RECAPTCHA: dict[str, Any] = {
    "name": "recaptcha",
    "title": "Google reCAPTCHA",
    "processor": {"name": "Google Ireland Limited", "agreement": AGREEMENT},
    "purposes": [
        {
            "name": {"nl": "spam weren", "en": "keeping spam out"},
            "legal_basis": "legitimate_interests",
            "legitimate_interest": {"nl": "formulieren zonder spam", "en": "forms without spam"},
        }
    ],
    "data_categories": [{"nl": "muisbewegingen", "en": "mouse movements"}],
    "retention": {"nl": "wij bewaren niets", "en": "we keep nothing"},
    "location": {"region": "US", "transfer_mechanism": "EU-U.S. Data Privacy Framework"},
    "reason": {"nl": "wij krijgen alleen een oordeel terug", "en": "we only get a verdict back"},
}
REGISTER = parse_register({"systems": [SHOP], "not_retrievable": [RECAPTCHA]})


def test_art_11_2_an_entry_states_why_nothing_is_retrievable() -> None:
    (entry,) = REGISTER.not_retrievable
    assert entry.display_name == "Google reCAPTCHA"
    without_reason = {k: v for k, v in RECAPTCHA.items() if k != "reason"}
    with pytest.raises(RegisterError, match="reason"):
        parse_register({"systems": [SHOP], "not_retrievable": [without_reason]})


def test_a_name_is_either_a_system_or_not_retrievable() -> None:
    with pytest.raises(RegisterError, match="'shop' is used twice"):
        parse_register({"systems": [SHOP], "not_retrievable": [{**RECAPTCHA, "name": "shop"}]})


def test_outside_the_eea_it_needs_a_transfer_safeguard() -> None:
    """Art. 44-46 GDPR: the same rule as for a system."""
    bare = {**RECAPTCHA, "location": {"region": "US"}}
    with pytest.raises(RegisterError, match="transfer_mechanism"):
        parse_register({"systems": [SHOP], "not_retrievable": [bare]})


def test_no_task_is_created_for_it() -> None:
    """The fan-out dispatches a task per name in `Register.names` (`orchestrator.fanout.app`)."""
    assert REGISTER.names == ["shop"]
    context = Context(systems=tuple(REGISTER.names), policy=Policy(), now=NOW)
    request = factories.request("req-nr-1", "jan@example.nl", received_at=NOW)
    _, effects = submit(None, request, context)
    assert [task.system for task in effects.tasks] == ["shop"]


@pytest.mark.parametrize(
    ("language", "heading", "reason"),
    [
        ("nl", "niets over u kunnen terugvinden", "wij krijgen alleen een oordeel terug"),
        ("en", "cannot find anything about you", "we only get a verdict back"),
    ],
)
def test_art_15_the_report_names_it_with_its_reason(
    language: str, heading: str, reason: str
) -> None:
    request = factories.request("req-nr-2", "jan@example.nl", received_at=NOW)
    state = RequestState(
        request_id=request.request_id,
        request=request.model_copy(update={"language": language}),
        status=RequestStatus.COMPLETED,
        systems={"shop": SystemProgress(status=OutcomeStatus.NOT_FOUND)},
    )
    report = render_report(
        state, REGISTER.systems, {}, language=language, generated_at=NOW, register=REGISTER
    )
    assert heading in report and reason in report
    assert 'data-not-retrievable-entry="recaptcha"' in report
    assert "Google Ireland Limited" in report
    assert "EU-U.S. Data Privacy Framework" in report  # the transfer, Art. 15(2)


def test_a_register_without_such_entries_renders_no_section() -> None:
    plain = parse_register({"systems": [SHOP]})
    request = factories.request("req-nr-3", "jan@example.nl", received_at=NOW)
    state = RequestState(request_id=request.request_id, request=request, systems={})
    report = render_report(
        state, plain.systems, {}, language="en", generated_at=NOW, register=plain
    )
    assert "data-not-retrievable" not in report
