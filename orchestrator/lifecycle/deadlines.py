"""Deadlines (Art. 12(3) GDPR): one month from receipt at most, extendable once.

How "one month" is counted: the GDPR sets no rule of its own, so Regulation (EEC, Euratom)
No 1182/71 on periods, dates and time limits applies (as the EDPB Guidelines 01/2022 on the
right of access, on the time limit of Art. 12(3), say):

- Art. 3(1), second subparagraph: the day of receipt does not count; the period runs from the
  next day.
- Art. 3(2)(b): a period in days ends with the expiry of the last hour of its last day.
- Art. 3(2)(c): a period in weeks or months ends with the expiry of the last hour of the day in
  the last week or month with the same weekday or date as the day of receipt; where that month
  has no such date, with the expiry of the last day of that month (received 31 January: the
  deadline is the end of 28 February, or 29 February in a leap year).
- Art. 3(4) would move a deadline falling on a Saturday, Sunday or public holiday to the end of
  the next working day. We do not: our deadline is never later than the law's, and no calendar
  of public holidays is needed.

Days are counted in the controller's time zone (`DeadlinePolicy.zone`, Europe/Amsterdam by
default), so a request received at 00:30 in Amsterdam counts from that day, not from the day
before in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

#: The controller's time zone, where calendar days are counted.
DEFAULT_ZONE = "Europe/Amsterdam"

_POLICY = re.compile(r"^\s*(\d+)\s*(month|months|week|weeks|day|days)\s*$", re.IGNORECASE)
#: The longest policy per unit that stays within one month (Art. 12(3)). Thirty days can still
#: run past a short month (February); `DeadlinePolicy.deadline` caps it at the month.
_LONGEST = {"months": 1, "weeks": 4, "days": 30}
ART_12_3 = (
    "Art. 12(3) GDPR: a request is answered without undue delay and in any event within one "
    "month of receipt"
)


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """How long a controller takes to answer: at most one month from receipt (Art. 12(3))."""

    amount: int = 1
    unit: str = "months"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_ZONE))

    @classmethod
    def parse(cls, text: str, zone: str = DEFAULT_ZONE) -> DeadlinePolicy:
        """Read '1 month', '4 weeks', '30 days' or shorter; refuse anything over one month."""
        match = _POLICY.match(text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(
                f"deadline policy {text!r} is not understood; "
                "use e.g. '1 month', '4 weeks', '30 days'"
            )
        amount, unit = int(match.group(1)), match.group(2).lower().rstrip("s") + "s"
        if amount > _LONGEST[unit]:
            raise ValueError(
                f"deadline policy {text!r} is longer than one month; {ART_12_3}. Use at most "
                "'1 month', '4 weeks' or '30 days'; a complex request gets its own extension "
                "(`dsr extend`), before its deadline"
            )
        return cls(amount, unit, time_zone(zone))

    def deadline(self, received_at: datetime) -> datetime:
        """The deadline for a request received at `received_at`: never past the statutory month."""
        if self.unit == "months":
            own = period_end(received_at, self.zone, months=self.amount)
        else:
            days = self.amount * 7 if self.unit == "weeks" else self.amount
            own = period_end(received_at, self.zone, days=days)
        return min(own, statutory_deadline(received_at, self.zone))

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or a ValueError that says what to give instead."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Amsterdam'"
        ) from None


def period_end(
    received_at: datetime, zone: ZoneInfo, *, months: int = 0, days: int = 0
) -> datetime:
    """The end of a period counted from receipt, by Regulation 1182/71 Art. 3(1), 3(2)(b)-(c).

    The day of receipt does not count; the period ends with the last moment of the day with the
    same date `months` later (the month's last day where it has no such date), then `days` on.
    """
    received_on = received_at.astimezone(zone).date()
    last_day = received_on + relativedelta(months=months) + timedelta(days=days)
    return datetime.combine(last_day, time.max, tzinfo=zone)


def statutory_deadline(
    received_at: datetime, zone: ZoneInfo, extension_months: int = 0
) -> datetime:
    """The latest answer Art. 12(3) allows: one month from receipt, plus an extension's months.

    An extension adds "two further months" at most to the one-month period, so both are counted
    from receipt as one period (Regulation 1182/71 Art. 3(2)(c)): received 31 January, extended
    by two months, the deadline is the end of 30 April.
    """
    return period_end(received_at, zone, months=1 + extension_months)


_PERIOD = re.compile(
    r"^\s*(\d+)\s*(second|seconds|minute|minutes|hour|hours|day|days|week|weeks|month|months)\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of time such as a retention window: '30 days', '6 months', '0 seconds'."""

    amount: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> Period:
        """Read 'N seconds|minutes|hours|days|weeks|months'."""
        match = _PERIOD.match(text)
        if not match:
            raise ValueError(
                f"period {text!r} is not understood; use e.g. '30 days', '6 months', '12 hours'"
            )
        return cls(int(match.group(1)), match.group(2).lower().rstrip("s") + "s")

    def after(self, moment: datetime) -> datetime:
        """The moment this period after `moment` (calendar months for months)."""
        if self.unit == "months":
            return add_months(moment, self.amount)
        return moment + timedelta(**{self.unit: self.amount})

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar-month arithmetic: 31 January + 1 month is the last day of February."""
    return moment + relativedelta(months=months)


def days_left(deadline: datetime, now: datetime) -> int:
    """Whole calendar days until the deadline's date (negative once it has passed)."""
    return (deadline.date() - now.astimezone(deadline.tzinfo).date()).days


def is_overdue(deadline: datetime, now: datetime) -> bool:
    """True once the deadline has passed."""
    return now > deadline


__all__ = [
    "ART_12_3",
    "DEFAULT_ZONE",
    "DeadlinePolicy",
    "Period",
    "add_months",
    "days_left",
    "is_overdue",
    "period_end",
    "statutory_deadline",
    "time_zone",
]
