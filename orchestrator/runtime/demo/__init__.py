"""Demo data: the demo subject in four vendor fakes (default), or in four SQLite databases.

`dsr demo` starts local fakes of HubSpot, ActiveCampaign, Intercom and Freshdesk (the same
fakes the connector tests use, strict about auth, paging and rate limits), each holding the
demo subject among other people, and points the built-in connectors at them. `dsr demo --sql`
and the end-to-end tests use four SQLite databases instead. Both also have the company's own
order database (SQLite) with invoices under Dutch fiscal retention: its erasure keeps the
recent invoices and orders and reports them as retained.

`dsr demo --sweep` adds records of other (fictitious) people that have outlived the
register's retention periods (`seed_expired`, `vendor_fakes(aged=True)`), for the retention
sweeps of the systems with a `sweep` policy in the register to find.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.events import (
    Identifier,
    IdentityVerification,
    RequestSubmitted,
    Subject,
    VerificationMethod,
)

if TYPE_CHECKING:  # annotations only: the fakes (and aiohttp) load when the demo runs
    from connectors.fakes.freshdesk import Freshdesk
    from schemas.events import RequestType

#: The demo subject. Fictitious; used to check that identifiers never reach logs.
DEMO_EMAIL = "anna.devries@example.nl"
DEMO_PHONE = "+31612345678"
DEMO_SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value=DEMO_EMAIL),
        Identifier(type="phone", value=DEMO_PHONE),
    ]
)

_OTHERS = [
    ("Bram Jansen", "bram.jansen@example.nl", "+31687654321"),
    ("Chantal Bakker", "chantal@example.com", "+31611112222"),
]

_SCHEMAS = {
    "crm.db": [
        "CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT,"
        " company TEXT)",
        "CREATE TABLE deals (id INTEGER PRIMARY KEY, contact_email TEXT, title TEXT,"
        " amount_eur REAL)",
    ],
    "mailing.db": [
        "CREATE TABLE subscribers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT,"
        " ip_address TEXT, subscribed INTEGER)",
        "CREATE TABLE campaign_events (id INTEGER PRIMARY KEY, email TEXT, campaign TEXT,"
        " event TEXT)",
    ],
    "chat.db": [
        "CREATE TABLE visitors (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT,"
        " ip_address TEXT)",
        "CREATE TABLE chat_messages (id INTEGER PRIMARY KEY, visitor_email TEXT, sent_at TEXT,"
        " body TEXT)",
    ],
    "support.db": [
        "CREATE TABLE requesters (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT)",
        "CREATE TABLE tickets (id INTEGER PRIMARY KEY, requester_email TEXT, subject TEXT,"
        " status TEXT)",
    ],
    "orders.db": [
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT,"
        " street TEXT, city TEXT)",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_email TEXT, ordered_at DATE,"
        " total_eur REAL, status TEXT)",
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, invoice_number TEXT, invoice_date DATE,"
        " name TEXT, email TEXT, street TEXT, city TEXT, amount_eur REAL)",
    ],
}

#: The demo subject's orders and invoices: two recent (retained for 7 years from the end of
#: their book year), one from 2017 (its retention has run out: erased).
_ORDER_DATES = ["2017-06-20", "2024-03-12", "2025-11-04"]


def _rows(name: str, email: str, phone: str, n: int) -> dict[str, list[tuple[str, tuple]]]:
    """(table, values) to insert for one person in each database."""
    return {
        "crm.db": [
            ("contacts", (name, email, phone, f"Acme {n}")),
            ("deals", (email, "Annual plan", 100.0 * n)),
        ],
        "mailing.db": [
            ("subscribers", (name, email, phone, f"192.0.2.{n}", 1)),
            ("campaign_events", (email, "Spring sale", "opened")),
            ("campaign_events", (email, "Spring sale", "clicked")),
        ],
        "chat.db": [
            ("visitors", (name, email, phone, f"198.51.100.{n}")),
            ("chat_messages", (email, f"2026-10-0{n}T10:00:00Z", "Waar blijft mijn bestelling?")),
        ],
        "support.db": [
            ("requesters", (name, email, phone)),
            ("tickets", (email, "Retour aanvragen", "closed")),
            ("tickets", (email, "Factuur kwijt", "open")),
        ],
        "orders.db": [
            ("customers", (name, email, phone, f"Dorpsstraat {n}", "Utrecht")),
            *(
                ("orders", (email, day, 49.95 * (i + 1), "delivered"))
                for i, day in enumerate(_ORDER_DATES)
            ),
            *(
                (
                    "invoices",
                    (
                        f"F{day[:4]}-{n:03d}{i}",
                        day,
                        name,
                        email,
                        f"Dorpsstraat {n}",
                        "Utrecht",
                        49.95 * (i + 1),
                    ),
                )
                for i, day in enumerate(_ORDER_DATES)
            ),
        ],
    }


def verified_request(
    request_id: str,
    kind: RequestType,
    subject: Subject,
    *,
    requested_by: str,
    verified_by: str | None = None,
) -> RequestSubmitted:
    """A request received now, its requester's identity already checked with an ID document."""
    now = datetime.now(UTC)
    return RequestSubmitted(
        request_id=request_id,
        type=kind,
        subject=subject,
        received_at=now,
        verification=IdentityVerification(
            verified=True,
            method=VerificationMethod.ID_DOCUMENT,
            verified_at=now,
            verified_by=verified_by,
        ),
        requested_by=requested_by,
    )


def seed(directory: Path, only: Iterable[str] | None = None) -> Path:
    """Create the demo databases in `directory` (replacing old ones); return it.

    `only` names the databases to create (e.g. `["orders.db"]`); default: all five.
    """
    directory.mkdir(parents=True, exist_ok=True)
    people = [("Anna de Vries", DEMO_EMAIL, DEMO_PHONE), *_OTHERS]
    wanted = set(only) if only is not None else set(_SCHEMAS)
    for db_name, statements in _SCHEMAS.items():
        if db_name not in wanted:
            continue
        path = directory / db_name
        path.unlink(missing_ok=True)
        conn = sqlite3.connect(path)
        try:
            with conn:
                for statement in statements:
                    conn.execute(statement)
                for n, (name, email, phone) in enumerate(people, start=1):
                    for table, values in _rows(name, email, phone, n)[db_name]:
                        columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")][1:]
                        marks = ", ".join("?" * len(values))
                        conn.execute(
                            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values
                        )
        finally:
            conn.close()
    return directory


#: Chat messages of other visitors, by age in days, that `seed_expired` adds: two older than
#: the chat's 180 days (swept), one younger (kept).
EXPIRED_CHAT_AGES = (400, 200, 10)
#: Freshdesk tickets of other people, by age in days, that `vendor_fakes(aged=True)` adds: two
#: untouched for longer than the 12 months of the register (swept), one recent (kept).
EXPIRED_TICKET_AGES = (500, 400, 30)


def seed_expired(directory: Path, today: date | None = None) -> Path:
    """Add records of different ages to the demo databases in `directory` for retention
    sweeps: chat messages of other visitors (`EXPIRED_CHAT_AGES`) when chat.db is there. The
    order database needs nothing more: its orders of 2017 and 2024 are past the two years of
    the register's sweep rule, and only the fiscal retention duty keeps the recent ones."""
    today = today or datetime.now(UTC).date()
    chat = directory / "chat.db"
    if not chat.exists():
        return directory
    rows = [
        (email, f"{today - timedelta(days=age)}T10:00:00Z", "Is dit nog op voorraad?")
        for (_, email, _), age in zip(_OTHERS * 2, EXPIRED_CHAT_AGES, strict=False)
    ]
    conn = sqlite3.connect(chat)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO chat_messages (visitor_email, sent_at, body) VALUES (?, ?, ?)", rows
            )
    finally:
        conn.close()
    return directory


def sql_register_path() -> Path:
    """The SQLite demo register shipped with the package (paths use ${DSR_DEMO_DIR})."""
    return Path(str(files("orchestrator.runtime.demo") / "register-sql.yaml"))


def register_path() -> Path:
    """The vendor demo register (URLs and keys of the fakes come from DSR_DEMO_* variables)."""
    return Path(str(files("orchestrator.runtime.demo") / "register.yaml"))


@contextmanager
def vendor_fakes(*, aged: bool = False) -> Iterator[dict[str, str]]:
    """Start the four vendor fakes with the demo subject; yield the DSR_DEMO_* variables.

    `aged`: Freshdesk also holds other people's tickets of `EXPIRED_TICKET_AGES`, for a sweep."""
    from connectors.fakes import activecampaign, freshdesk, hubspot, intercom

    with ExitStack() as stack:
        crm = stack.enter_context(hubspot.FakeHubSpot())
        mailing = stack.enter_context(activecampaign.ActiveCampaign())
        chat = stack.enter_context(intercom.FakeIntercom())
        support = stack.enter_context(freshdesk.Freshdesk())
        _seed_freshdesk(support, aged=aged)
        yield {
            "DSR_DEMO_HUBSPOT_URL": crm.url,
            "DSR_DEMO_HUBSPOT_TOKEN": hubspot.TOKEN,
            "DSR_DEMO_ACTIVECAMPAIGN_URL": f"{mailing.url}/api/3",
            "DSR_DEMO_ACTIVECAMPAIGN_KEY": activecampaign.API_KEY,
            "DSR_DEMO_INTERCOM_URL": chat.url,
            "DSR_DEMO_INTERCOM_TOKEN": intercom.TOKEN,
            "DSR_DEMO_FRESHDESK_URL": f"{support.url}/api/v2",
            "DSR_DEMO_FRESHDESK_KEY": freshdesk.API_KEY,
        }


def _seed_freshdesk(fake: Freshdesk, *, aged: bool = False) -> None:
    """The demo subject with a recent, an old (> 30 days) and a trashed ticket; and others
    (`aged`: with tickets of different ages for a sweep too)."""
    anna = fake.add_contact("Anna de Vries", DEMO_EMAIL, DEMO_PHONE)
    fake.add_ticket(anna, "Waar blijft mijn bestelling?", age_days=2, conversations=3)
    fake.add_ticket(anna, "Factuur kwijt", age_days=200, conversations=2)
    fake.add_ticket(anna, "Dubbel verstuurd", age_days=20, deleted=True)
    for name, email, phone in _OTHERS:
        other = fake.add_contact(name, email, phone)
        fake.add_ticket(other, "Retour aanvragen", age_days=5, conversations=1)
        if aged:
            for age in EXPIRED_TICKET_AGES:
                fake.add_ticket(other, "Levertijd", age_days=age, conversations=1)


__all__ = [
    "DEMO_EMAIL",
    "DEMO_PHONE",
    "DEMO_SUBJECT",
    "EXPIRED_CHAT_AGES",
    "EXPIRED_TICKET_AGES",
    "register_path",
    "seed",
    "seed_expired",
    "sql_register_path",
    "vendor_fakes",
    "verified_request",
]
