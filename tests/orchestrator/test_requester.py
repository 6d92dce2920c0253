"""The requester is not always the subject: a parent, guardian or representative with a mandate,
or a child asking themself (EDPB Guidelines 01/2022 on requests via third parties; Art. 12(1)
and recital 58 GDPR; Art. 8 GDPR and Art. 5 UAVG for the age of 16), without Kafka."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from orchestrator.artifacts import letters
from orchestrator.cli import requests as cli_requests
from orchestrator.lifecycle.reducer import RequestState, fingerprint, submit, tick
from schemas.events import Requester, RequesterKind, RequestStatus, RequestSubmitted
from tests.orchestrator.test_documents import REGISTER, _text
from tests.orchestrator.test_lifecycle import EMAIL, NOW, SYSTEMS, ctx, request

MANDATE = "dms://mandates/2026/0142"


def _state(requester: Requester, verified: bool = False, **overrides: object) -> RequestState:
    state, _ = submit(None, request(verified, requester=requester, **overrides), ctx())
    assert state is not None
    return state


def _refused(requester: Requester, language: str) -> RequestState:
    state = _state(requester, language=language)
    assert state.deadline is not None
    state, _ = tick(state, ctx(state.deadline.replace(year=state.deadline.year + 1)))
    assert state.status == RequestStatus.REFUSED
    return state


# ---------------------------------------------------------------------------------------------
# The model


def test_requester_defaults_to_the_subject_so_existing_publishers_keep_working() -> None:
    body = request().model_dump(mode="json", exclude={"requester"})
    parsed = RequestSubmitted.model_validate(body)
    assert parsed.requester == Requester(kind=RequesterKind.SELF)
    assert not parsed.requester.subject_is_child and parsed.requester.mandate_ref is None


@pytest.mark.parametrize("kind", ["parent_or_guardian", "representative"])
def test_edpb_01_2022_request_on_behalf_needs_a_mandate_reference(kind: str) -> None:
    """EDPB Guidelines 01/2022 (requests via third parties / proxies): the controller must be
    able to show the requester may act for the subject; the mandate is referred to, not sent."""
    with pytest.raises(ValidationError, match="needs 'mandate_ref'"):
        Requester.model_validate({"kind": kind})
    ok = Requester.model_validate({"kind": kind, "mandate_ref": MANDATE})
    assert ok.mandate_ref == MANDATE


def test_a_mandate_reference_without_someone_acting_on_behalf_is_refused() -> None:
    with pytest.raises(ValidationError, match="only for a request made on someone else's"):
        Requester(mandate_ref=MANDATE)


def test_a_blank_or_oversized_mandate_reference_is_refused() -> None:
    for bad in ("", " dms://x", "x" * 257):
        with pytest.raises(ValidationError):
            Requester(kind=RequesterKind.REPRESENTATIVE, mandate_ref=bad)


def test_art_8_art_5_uavg_a_childs_own_request_is_allowed() -> None:
    """Art. 8 GDPR / Art. 5 UAVG set 16 as the age of consent for information society
    services; they do not take the rights of Art. 15-22 from a child. A child may ask."""
    state = _state(Requester(subject_is_child=True), verified=True, type="access")
    assert state.status == RequestStatus.IN_PROGRESS


def test_invalid_requester_makes_the_whole_request_invalid_without_echoing_the_subject() -> None:
    body = request().model_dump(mode="json")
    body["requester"] = {"kind": "representative"}
    with pytest.raises(ValidationError) as caught:
        RequestSubmitted.model_validate(body)
    assert "mandate_ref" in str(caught.value) and EMAIL not in str(caught.value)


def test_fingerprint_of_a_request_by_the_subject_is_unchanged_by_the_new_field() -> None:
    """Requests stored before `requester` existed keep their digest: a re-send is harmless."""
    own = request()
    legacy = hashlib.sha256(own.model_dump_json(exclude={"requester"}).encode()).hexdigest()
    assert fingerprint(own) == legacy
    other = request(requester=Requester(kind="representative", mandate_ref=MANDATE))
    assert fingerprint(other) != legacy  # a different requester is a different request


# ---------------------------------------------------------------------------------------------
# The lifecycle: status events carry the kind only; the tasks concern the subject


def test_status_events_carry_the_requester_kind_only() -> None:
    requester = Requester(kind="representative", mandate_ref=MANDATE, subject_is_child=True)
    _, effects = submit(None, request(True, requester=requester), ctx())
    [status] = effects.statuses
    assert status.requester_kind == RequesterKind.REPRESENTATIVE
    dumped = status.model_dump_json()
    assert MANDATE not in dumped and EMAIL not in dumped


def test_tasks_concern_the_subject_not_the_requester() -> None:
    requester = Requester(kind="parent_or_guardian", mandate_ref=MANDATE)
    _, effects = submit(None, request(True, requester=requester), ctx())
    assert [t.system for t in effects.tasks] == list(SYSTEMS)
    for task in effects.tasks:
        assert task.subject.first("email") == EMAIL
        assert MANDATE not in task.model_dump_json()


# ---------------------------------------------------------------------------------------------
# Letters go to the requester


@pytest.mark.parametrize("language", ["nl", "en"])
@pytest.mark.parametrize("kind", ["parent_or_guardian", "representative"])
def test_letters_are_addressed_to_the_requester_on_behalf_of_the_subject(
    kind: str, language: str
) -> None:
    requester = Requester.model_validate({"kind": kind, "mandate_ref": MANDATE})
    for letter, state in (
        ("refusal", _refused(requester, language)),
        ("id_request", _state(requester, language=language)),
    ):
        page = letters.render(letter, state, REGISTER, now=NOW)  # type: ignore[arg-type]
        text = _text(page)
        assert f'data-requester="{kind}"' in page and "data-plain-language" not in page
        assert MANDATE not in page and EMAIL not in page
        if language == "nl":
            assert "de betrokkene" in text and "niet over u" in text
        else:
            assert "the data subject" in text and "not you" in text


def test_letters_to_the_subject_themself_say_nothing_about_a_requester() -> None:
    page = letters.render("id_request", _state(Requester()), REGISTER, now=NOW)
    assert "data-requester" not in page and "data-plain-language" not in page


@pytest.mark.parametrize("language", ["nl", "en"])
def test_art_12_1_recital_58_letters_to_a_child_begin_in_plain_language(language: str) -> None:
    """Art. 12(1) GDPR: information "in particular for any information addressed specifically to
    a child" in clear and plain language; recital 58: language "that the child can easily
    understand". A child who asked themself gets a short summary in everyday words first."""
    child = Requester(subject_is_child=True)
    for letter, state in (
        ("refusal", _refused(child, language)),
        ("id_request", _state(child, language=language)),
        ("reminder", _state(child, language=language)),
    ):
        page = letters.render(letter, state, REGISTER, now=NOW)  # type: ignore[arg-type]
        text = _text(page)
        assert "data-plain-language" in page and f'data-plain="{letter}"' in page
        if language == "nl":
            assert "Je hebt ons gevraagd" in text and "iemand die je vertrouwt" in text
        else:
            assert "You asked us" in text and "someone you trust" in text


def test_a_parent_for_a_child_reads_the_parent_wording_not_the_childs() -> None:
    parent = Requester(kind="parent_or_guardian", mandate_ref=MANDATE, subject_is_child=True)
    page = letters.render("id_request", _state(parent, language="en"), REGISTER, now=NOW)
    assert 'data-requester="parent_or_guardian"' in page and "data-plain-language" not in page
    assert "The data subject is a child" in _text(page)


# ---------------------------------------------------------------------------------------------
# dsr submit


def test_cli_builds_the_requester_from_its_flags() -> None:
    built = cli_requests._requester("representative", MANDATE, False)
    assert built == Requester(kind="representative", mandate_ref=MANDATE)
    assert cli_requests._requester("self", None, True).subject_is_child


def test_cli_submit_on_behalf_without_a_mandate_is_a_clear_error() -> None:
    from orchestrator.cli import main

    result = CliRunner().invoke(
        main,
        ["submit", "--type", "access", "--email", EMAIL, "--requester-kind", "representative"],
    )
    assert result.exit_code != 0
    assert "mandate_ref" in result.output and EMAIL not in result.output
