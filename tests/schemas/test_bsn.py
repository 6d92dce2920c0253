"""The BSN is refused everywhere (Art. 46 UAVG, Art. 87 GDPR), and never echoed when refused.

Art. 46(1) UAVG: a number the law prescribes to identify a person (the BSN) is used only to
carry out that law or for purposes the law sets. A data-subject request to a webshop is
neither, so an event naming or carrying a BSN is invalid: the orchestrator dead-letters it
(stage `body`) with a reason naming the rule and never the number.
"""

from __future__ import annotations

import itertools
import json
import random
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from orchestrator.status.masking import identifier_kinds, mask_identifiers
from orchestrator.status.tasks import TaskError, manual_outcome, waiting_task
from schemas.envelope import EnvelopeError, dead_letter_for, decode, encode
from schemas.events import (
    BSN_RULE,
    FieldChange,
    Identifier,
    RequestSubmitted,
    looks_like_bsn,
    names_bsn,
    passes_bsn_check,
)
from tests.orchestrator.test_tasks import MANUAL, status
from tests.schemas.conftest import request_submitted

#: Numbers that pass the 11-proef, with the weighted sum that proves it (a multiple of 11).
VALID = {
    "123456782": 154,  # 9+16+21+24+25+24+21+16-2
    "111222333": 66,  # 9+8+7+12+10+8+9+6-3
    "249566758": 220,  # 18+32+63+30+30+24+21+10-8
    "319072356": 154,  # 27+8+63+0+35+8+9+10-6
    "012345672": 110,  # an early eight-digit BSN with its leading zero
}
INVALID = [
    "123456789",  # the sum is 147 = 13 * 11 + 4
    "111222334",  # the last digit off by one
    "000000000",  # passes the sum, but nobody's number
    "12345678",  # eight digits
    "1234567820",  # ten digits
    "12345678a",
    "١٢٣٤٥٦٧٨٢",  # Arabic-Indic digits: str.isdigit() says yes, a BSN says no
    "",
]
BSN = "123456782"
BSN_TYPES = [
    "bsn",
    "BSN",
    "Bsn",
    " bsn ",
    "bsn_nummer",
    "BSN-nummer",
    "bsnNumber",
    "patient_bsn",
    "patientBsn",
    "burgerservicenummer",
    "BurgerServiceNummer",
    "burger_service_nummer",
    "citizen_service_number",
    "Citizen-Service-Number",
    "sofinummer",
    "sofi_nummer",
]
NOT_BSN_TYPES = ["email", "phone", "customer_id", "account_id", "absent_days", "jobs_number"]


def _refusal(body: dict[str, object]) -> str:
    """The dead-letter reason the orchestrator would give for `body` (stage body)."""
    message = encode(request_submitted(), source="tests")
    raw = json.dumps(body, default=str).encode()
    with pytest.raises(EnvelopeError) as caught:
        decode(raw, message.headers, key=message.key)
    assert caught.value.stage == "body"
    record = SimpleNamespace(
        topic="dsr.requests.v1", partition=0, offset=7, key=message.key, value=raw, headers=[]
    )
    letter = dead_letter_for(record, stage="body", reason=str(caught.value))  # type: ignore[arg-type]
    return letter.reason


def _body(**changes: object) -> dict[str, object]:
    return {**request_submitted().model_dump(mode="json"), **changes}


def _with_identifier(identifier_type: str, value: str) -> dict[str, object]:
    return _body(subject={"identifiers": [{"type": identifier_type, "value": value}]})


def _assert_names_the_rule_not_the_value(reason: str, *values: str) -> None:
    assert "Art. 46 UAVG" in reason and "BSN" in reason, reason
    digits = [v.replace(".", "").replace(" ", "").replace("-", "") for v in values]
    for secret in {*values, *digits}:
        assert secret not in reason, reason


# --- the 11-proef ---------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "weighted_sum"), VALID.items())
def test_bsn_11_proef_accepts_valid_numbers(number: str, weighted_sum: int) -> None:
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    assert sum(w * int(d) for w, d in zip(weights, number, strict=True)) == weighted_sum
    assert weighted_sum % 11 == 0
    assert passes_bsn_check(number)


@pytest.mark.parametrize("number", INVALID)
def test_bsn_11_proef_rejects_invalid_numbers(number: str) -> None:
    assert not passes_bsn_check(number)


def test_bsn_11_proef_catches_every_single_mistyped_digit() -> None:
    """What the -1 weight is for: one wrong digit changes the sum by w*d, never a multiple of
    11, so a BSN with one digit mistyped never passes (and at most one last digit completes
    any eight)."""
    for number in VALID:
        for position, digit in itertools.product(range(9), "0123456789"):
            if number[position] != digit:
                typo = number[:position] + digit + number[position + 1 :]
                assert not passes_bsn_check(typo) or typo == "0" * 9, typo
    rng = random.Random(46)
    for _ in range(500):
        prefix = f"{rng.randrange(10**8):08d}"
        assert sum(passes_bsn_check(prefix + d) for d in "0123456789") <= 1


@pytest.mark.parametrize(
    "written", ["123456782", "123.456.782", "1234.56.782", "1234 56 782", "123-456-782"]
)
def test_bsn_is_recognised_as_people_write_it(written: str) -> None:
    assert looks_like_bsn(written)
    assert not looks_like_bsn(written.replace("2", "3"))


@pytest.mark.parametrize("name", BSN_TYPES)
def test_bsn_names_are_recognised_in_any_spelling(name: str) -> None:
    assert names_bsn(name)


@pytest.mark.parametrize("name", NOT_BSN_TYPES)
def test_other_names_are_not_taken_for_the_bsn(name: str) -> None:
    assert not names_bsn(name)


# --- identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize("identifier_type", BSN_TYPES)
@pytest.mark.parametrize("value", [BSN, "123.456.782", "not-a-number-at-all"])
def test_art_46_uavg_bsn_identifier_refused(identifier_type: str, value: str) -> None:
    """A BSN type is refused whatever its value, and the reason does not echo the value."""
    reason = _refusal(_with_identifier(identifier_type, value))
    assert "subject.identifiers.0.type" in reason
    _assert_names_the_rule_not_the_value(reason, value)


@pytest.mark.parametrize("identifier_type", ["customer_id", "account_id", "phone", "member_no"])
@pytest.mark.parametrize("value", [*VALID, "123.456.782", "1234 56 782", " 111-222-333 "])
def test_art_46_uavg_bsn_value_refused_for_any_identifier_type(
    identifier_type: str, value: str
) -> None:
    """Nine digits passing the 11-proef are a BSN, wherever a phone or customer id is expected."""
    reason = _refusal(_with_identifier(identifier_type, value))
    assert f"identifier of type {identifier_type!r} is refused" in reason
    assert "11-proef" in reason
    _assert_names_the_rule_not_the_value(reason, value)


def test_art_46_uavg_bsn_phone_refusal_says_how_to_write_a_phone_number() -> None:
    reason = _refusal(_with_identifier("phone", "111 222 333"))
    assert "international form (+31...)" in reason


@pytest.mark.parametrize(
    ("identifier_type", "value"),
    [
        ("customer_id", "123456789"),  # nine digits, 11-proef fails
        ("customer_id", "1234567820"),  # ten digits
        ("customer_id", "000000000"),
        ("customer_id", "C-123456782"),  # a prefixed customer number is not a bare BSN
        ("phone", "+31612345678"),
        ("phone", "06-12345678"),
        ("email", "jan@example.nl"),
    ],
)
def test_identifiers_that_are_not_a_bsn_are_accepted(identifier_type: str, value: str) -> None:
    assert Identifier(type=identifier_type, value=value).value


def test_pydantic_itself_would_echo_the_bsn_so_we_never_use_its_str() -> None:
    """Why every refusal goes through `describe_validation_error`: pydantic's own message
    quotes the input."""
    with pytest.raises(ValidationError) as caught:
        RequestSubmitted.model_validate(_with_identifier("customer_id", BSN))
    assert BSN in str(caught.value)
    _assert_names_the_rule_not_the_value(_refusal(_with_identifier("customer_id", BSN)), BSN)


def test_art_46_uavg_bsn_rule_message_names_the_fix() -> None:
    assert "e-mail address, phone number or customer number" in BSN_RULE


# --- rectification --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["bsn", "BSN", "burgerservicenummer", "citizen_service_number"])
def test_art_46_uavg_bsn_field_change_refused(field: str) -> None:
    """A correction of a BSN field is refused whatever the new value."""
    reason = _refusal(
        _body(type="rectification", changes=[{"field": field, "value": "anything at all"}])
    )
    assert "changes.0" in reason and "BSN field" in reason
    _assert_names_the_rule_not_the_value(reason, "anything at all")


@pytest.mark.parametrize(
    "value",
    [
        BSN,
        "123.456.782",
        123456782,
        {"national_id": "111222333"},
        {"bsn": "hidden"},
        ["a", {"ids": [{"Burgerservicenummer": 1}]}],
        [1, 2, 111222333],
    ],
)
def test_art_46_uavg_bsn_field_change_value_refused(value: object) -> None:
    """A new value that holds a BSN (nine digits passing the 11-proef, or a key naming it)."""
    reason = _refusal(
        _body(type="rectification", changes=[{"field": "customer_ref", "value": value}])
    )
    assert "changes.0" in reason and "11-proef" in reason
    _assert_names_the_rule_not_the_value(reason, "111222333", BSN)


@pytest.mark.parametrize(
    "value",
    ["+31687654321", "0612345678", "123456789", 123456789, 12345678, True, None, 1.5, {"a": [1]}],
)
def test_field_changes_without_a_bsn_are_accepted(value: object) -> None:
    assert FieldChange(field="phone", value=value).field == "phone"  # type: ignore[arg-type]


# --- free text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("BSN 123456782 gecontroleerd", "BSN ********* gecontroleerd"),
        ("bsn: 123.456.782.", "bsn: *********."),
        ("paspoort 1234.56.782 zwartgemaakt", "paspoort ********* zwartgemaakt"),
        ("nr 1234 56 782", "nr *********"),
        ("ref bsn111222333", "ref bsn*********"),
        ("case 2026 111-222-333", "case 2026 *********"),
        ("call 06-12345678 or BSN 012345672", "call ***78 or BSN *********"),
    ],
)
def test_art_46_uavg_bsn_masked_in_free_text(text: str, masked: str) -> None:
    assert mask_identifiers(text) == masked
    assert "BSN" in identifier_kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "job id 123456789",  # nine digits, 11-proef fails
        "ticket #00012345678",  # eleven digits
        "shredded 22-11-2026 1:30",  # a date and time is not a BSN
        "1.111.222.333 rows",  # part of a longer number
        "request web-2026-111222333",  # part of an id
        "12 34 56 782",  # not a way a BSN is written
    ],
)
def test_numbers_that_are_not_a_bsn_are_left_alone(text: str) -> None:
    assert mask_identifiers(text) == text
    assert "BSN" not in identifier_kinds(text)


def test_art_46_uavg_bsn_in_manual_evidence_refused() -> None:
    """An officer's evidence holding a BSN never reaches the status topic."""
    task = waiting_task(status("r-1", 10, archive=MANUAL), "archive", "r-1/archive")
    with pytest.raises(TaskError, match=r"personal data \(BSN\)") as caught:
        manual_outcome(task, "ID checked, BSN 1234.56.782 blacked out")
    assert "1234.56.782" not in str(caught.value) and BSN not in str(caught.value)
