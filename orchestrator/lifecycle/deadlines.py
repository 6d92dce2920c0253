"""Deadlines (Art. 12(3) GDPR): one month from receipt by default, extendable once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

_POLICY = re.compile(r"^\s*(\d+)\s*(month|months|week|weeks|day|days)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """How long a controller takes to answer: calendar months, weeks or days from receipt."""

    amount: int = 1
    unit: str = "months"

    @classmethod
    def parse(cls, text: str) -> DeadlinePolicy:
        """Read '1 month', '4 weeks' or '30 days'."""
        match = _POLICY.match(text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(
                f"deadline policy {text!r} is not understood; "
                "use e.g. '1 month', '4 weeks', '30 days'"
            )
        unit = match.group(2).lower().rstrip("s") + "s"
        return cls(int(match.group(1)), unit)

    def deadline(self, received_at: datetime) -> datetime:
        """The deadline for a request received at `received_at`."""
        if self.unit == "months":
            return add_months(received_at, self.amount)
        if self.unit == "weeks":
            return received_at + timedelta(weeks=self.amount)
        return received_at + timedelta(days=self.amount)

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"


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


__all__ = ["DeadlinePolicy", "Period", "add_months", "days_left", "is_overdue"]
