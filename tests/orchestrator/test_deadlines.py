"""Deadline arithmetic by calendar month (Art. 12(3) GDPR)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.lifecycle.deadlines import DeadlinePolicy, add_months, days_left, is_overdue


def at(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received", "months", "expected"),
    [
        (at(2026, 1, 31), 1, at(2026, 2, 28)),
        (at(2028, 1, 31), 1, at(2028, 2, 29)),  # leap year
        (at(2026, 3, 31), 1, at(2026, 4, 30)),
        (at(2026, 1, 15), 1, at(2026, 2, 15)),
        (at(2026, 12, 15), 1, at(2027, 1, 15)),
        (at(2026, 1, 31), 3, at(2026, 4, 30)),  # one month plus a two-month extension
    ],
)
def test_add_months(received: datetime, months: int, expected: datetime) -> None:
    assert add_months(received, months) == expected


@pytest.mark.parametrize(
    ("text", "received", "expected"),
    [
        ("1 month", at(2026, 1, 31), at(2026, 2, 28)),
        ("4 weeks", at(2026, 1, 1), at(2026, 1, 29)),
        ("30 days", at(2026, 1, 1), at(2026, 1, 31)),
        ("2 Months", at(2026, 1, 1), at(2026, 3, 1)),
    ],
)
def test_policy(text: str, received: datetime, expected: datetime) -> None:
    assert DeadlinePolicy.parse(text).deadline(received) == expected


@pytest.mark.parametrize("text", ["", "month", "0 days", "one month", "3 fortnights"])
def test_policy_rejects_nonsense_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. '1 month'"):
        DeadlinePolicy.parse(text)


def test_days_left_and_overdue() -> None:
    deadline = at(2026, 2, 28)
    assert days_left(deadline, at(2026, 2, 20)) == 8
    assert days_left(deadline, at(2026, 2, 28, 23)) == 0
    assert days_left(deadline, at(2026, 3, 2)) == -2
    assert not is_overdue(deadline, at(2026, 2, 28, 9))
    assert is_overdue(deadline, at(2026, 2, 28, 11))
