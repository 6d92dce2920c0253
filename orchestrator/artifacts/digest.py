"""What the report says about one exported collection: counts, dates and a readable listing.

The export computes a digest per system and collection while it spools the records (one pass,
memory bounded by `LISTING_LIMIT`), so the report can open with a summary (which systems hold
what, how much, since when) and list the records in a readable table beside the JSON and CSV
files, without reading the records twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

#: Records listed per collection in the report; the JSON and CSV files hold them all.
LISTING_LIMIT = 50
#: Epoch numbers above this are milliseconds (1e11 seconds is the year 5138).
_MILLISECONDS = 10**11


@dataclass(slots=True)
class CollectionDigest:
    """One collection of one system as exported (after redaction and portability filtering)."""

    system: str
    collection: str
    count: int = 0
    earliest: date | None = None
    latest: date | None = None
    fields: dict[str, None] = field(default_factory=dict)  # every key seen, first-seen order
    sample: list[dict[str, Any]] = field(default_factory=list)
    held: int = 0  # records held back for an officer's review (Art. 15(4) GDPR)
    redacted: int = 0  # records in which other people's data was redacted

    def add(self, data: dict[str, Any], when: date | None) -> None:
        """Count one exported record; keep it for the listing while there is room."""
        self.count += 1
        if not self.fields.keys() >= data.keys():  # a new key (a set test: no dict made)
            self.fields.update(dict.fromkeys(data))
        if len(self.sample) < LISTING_LIMIT:
            self.sample.append(data)
        if when is not None:
            self.earliest = when if self.earliest is None else min(self.earliest, when)
            self.latest = when if self.latest is None else max(self.latest, when)


def record_date(value: Any) -> date | None:
    """The date a record's date field holds: ISO 8601 text ("2024-03-01T10:00:00.000Z",
    "2024-03-01") or epoch seconds or milliseconds (number or digits); None for anything else.

    Connectors pass vendor values through as they are, so this never raises.
    """
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, str):
            text = value.strip()
            if not text.isdigit():
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00", 1))
                return parsed.date()
            value = int(text)
        if isinstance(value, int | float):
            seconds = value / 1000 if abs(value) >= _MILLISECONDS else value
            return datetime.fromtimestamp(seconds, UTC).date()
    except (ValueError, OverflowError, OSError):
        return None
    return None


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One member of the archive as listed in the manifest."""

    path: str
    sha256: str
    records: int | None
    bytes: int
    system: str | None = None
    collection: str | None = None


__all__ = ["LISTING_LIMIT", "CollectionDigest", "ExportFile", "record_date"]
