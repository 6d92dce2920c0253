"""Deadline arithmetic (Art. 12(3) GDPR), counted as Regulation 1182/71 Art. 3 counts periods."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from orchestrator.lifecycle.deadlines import (
    DeadlinePolicy,
    add_months,
    days_left,
    is_overdue,
    statutory_deadline,
)

AMS = ZoneInfo("Europe/Amsterdam")


def at(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def end_of(y: int, m: int, d: int) -> datetime:
    """The last moment of a calendar day in Amsterdam: where a period ends (Art. 3(2))."""
    return datetime.combine(datetime(y, m, d).date(), time.max, tzinfo=AMS)


@pytest.mark.parametrize(
    ("received", "months", "expected"),
    [
        (at(2026, 1, 31), 1, at(2026, 2, 28)),
        (at(2028, 1, 31), 1, at(2028, 2, 29)),  # leap year
        (at(2026, 3, 31), 1, at(2026, 4, 30)),
        (at(2026, 1, 15), 1, at(2026, 2, 15)),
        (at(2026, 12, 15), 1, at(2027, 1, 15)),
        (at(2026, 1, 31), 3, at(2026, 4, 30)),
    ],
)
def test_add_months(received: datetime, months: int, expected: datetime) -> None:
    assert add_months(received, months) == expected


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (at(2026, 1, 31), end_of(2026, 2, 28)),  # no 31 February: the month's last day
        (at(2028, 1, 31), end_of(2028, 2, 29)),  # leap year
        (at(2026, 3, 31), end_of(2026, 4, 30)),
        (at(2026, 1, 15), end_of(2026, 2, 15)),  # same date, end of that day
        (at(2026, 12, 15), end_of(2027, 1, 15)),  # across the year
        (at(2026, 2, 28), end_of(2026, 3, 28)),  # from the short month: the same date, not 31
        # 23:30 UTC on 31 January is 00:30 on 1 February in Amsterdam: counted from 1 February
        (datetime(2026, 1, 31, 23, 30, tzinfo=UTC), end_of(2026, 3, 1)),
    ],
)
def test_regulation_1182_71_art_3_2_c_one_month_ends_on_the_same_date_or_the_months_last_day(
    received: datetime, expected: datetime
) -> None:
    """Art. 3(1) and 3(2)(c): receipt day not counted; ends with the last hour of the same
    date one month on, or of the month's last day where it has no such date."""
    assert DeadlinePolicy.parse("1 month").deadline(received) == expected
    assert statutory_deadline(received, AMS) == expected


@pytest.mark.parametrize(
    ("text", "received", "expected"),
    [
        ("1 month", at(2026, 1, 31), end_of(2026, 2, 28)),
        ("1 Month", at(2026, 1, 15), end_of(2026, 2, 15)),
        ("4 weeks", at(2026, 1, 1), end_of(2026, 1, 29)),  # a Thursday: four Thursdays on
        ("30 days", at(2026, 1, 1), end_of(2026, 1, 31)),  # Art. 3(2)(b): 2 .. 31 January
        ("2 weeks", at(2026, 1, 1), end_of(2026, 1, 15)),
        ("10 days", at(2026, 1, 1), end_of(2026, 1, 11)),
        ("1 day", at(2026, 1, 1), end_of(2026, 1, 2)),
    ],
)
def test_policy(text: str, received: datetime, expected: datetime) -> None:
    assert DeadlinePolicy.parse(text).deadline(received) == expected


def test_art_12_3_thirty_days_never_run_past_the_statutory_month() -> None:
    """Thirty days from 31 January would end on 2 March; the law's month ends on 28 February."""
    assert DeadlinePolicy.parse("30 days").deadline(at(2026, 1, 31)) == end_of(2026, 2, 28)


@pytest.mark.parametrize("text", ["2 months", "3 months", "5 weeks", "31 days", "90 days"])
def test_art_12_3_policy_longer_than_one_month_refused(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        DeadlinePolicy.parse(text)
    message = str(refused.value)
    assert repr(text) in message and "longer than one month" in message
    assert "Art. 12(3) GDPR" in message and "within one month of receipt" in message


@pytest.mark.parametrize("text", ["", "month", "0 days", "one month", "3 fortnights"])
def test_policy_rejects_nonsense_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. '1 month'"):
        DeadlinePolicy.parse(text)


def test_policy_counts_days_in_its_time_zone() -> None:
    tokyo = DeadlinePolicy.parse("1 month", "Asia/Tokyo")
    # 20:00 UTC on 31 January is already 1 February in Tokyo
    deadline = tokyo.deadline(at(2026, 1, 31, 20))
    assert deadline == datetime.combine(
        datetime(2026, 3, 1).date(), time.max, tzinfo=ZoneInfo("Asia/Tokyo")
    )


@pytest.mark.parametrize(
    ("received", "months", "expected"),
    [
        (at(2026, 1, 31), 2, end_of(2026, 4, 30)),  # three months in all from receipt
        (at(2026, 1, 31), 1, end_of(2026, 3, 31)),
        (at(2026, 11, 30), 2, end_of(2027, 2, 28)),
    ],
)
def test_art_12_3_extension_counts_two_further_months_from_receipt(
    received: datetime, months: int, expected: datetime
) -> None:
    assert statutory_deadline(received, AMS, months) == expected


def test_days_left_and_overdue() -> None:
    deadline = end_of(2026, 2, 28)
    assert days_left(deadline, at(2026, 2, 20)) == 8
    assert days_left(deadline, at(2026, 2, 28, 22)) == 0
    assert days_left(deadline, at(2026, 3, 2)) == -2
    # the whole last day counts: 22:59 UTC is 23:59 in Amsterdam
    assert not is_overdue(deadline, datetime(2026, 2, 28, 22, 59, tzinfo=UTC))
    assert is_overdue(deadline, at(2026, 2, 28, 23))
