"""SQL databases through SQLAlchemy: find, export, erase and correct a subject's rows.

Settings (in the register):

    url: postgresql+psycopg://dsr@db.internal/crm   # any SQLAlchemy URL with a sync driver
    hash_salt: ${DSR_HASH_SALT}                      # for `mask: {column: hash}` (optional)
    follow_foreign_keys: false                       # true: find dependent tables (below)
    tables:
      - name: customers
        collection: customers                        # name in the export; defaults to `name`
        identity: {email: email, phone: phone, customer_id: id}   # identifier type -> column
        erasure: anonymise                           # delete (default) | anonymise
        mask: {email: hash, name: null, city: {value: "erased"}}
        anonymise: {phone: null}                     # column -> fixed value (older syntax)
        restriction: {processing_restricted: true}   # column updates per right (optional)
        objection: {marketing_opt_in: false}
        consent_withdrawal: {newsletter: false}
      - name: orders
        parent: {table: customers, columns: {customer_id: id}}  # or a list of such parents
      - name: order_lines
        parent: {table: orders, columns: {order_id: id}}

A row belongs to the subject when any identity column equals any of the subject's values of
that type, or when it references (`parent`) a row of the subject. A hashed identifier (`format`
sha256, md5 or sha1, as an OpenDSR controller may send) matches a row whose identity column,
normalised like an identifier of its type, hashes to it; the database computes the hashes
(PostgreSQL needs the pgcrypto extension for sha1; SQLite gets them from Python). Email compares
case-insensitively (`lower(column)`: give big tables an index on it). Other values are
compared as stored: a phone number kept as "06-1234 5678" does not match "+31612345678".
Rows are linked in SQL (`IN (SELECT ...)`), never by loading keys into Python.

With `follow_foreign_keys: true` the connector also reads the database's foreign keys and
treats every table referencing a subject's table as holding the subject's rows, transitively
up to `follow_depth` levels; a foreign key that would close a cycle (e.g. `customers.referred_by`,
another person) is not followed. Found tables are erased with `delete` unless listed under
`tables` (an entry without `identity` or `parent` then only sets what erasure does there).
Review what it finds with an access request before the first erasure.

Erasure runs children before parents (the relations above and the database's foreign keys
between the tables), so no foreign key is violated, in one transaction per task: any failure
rolls all tables back. Masking for `erasure: anonymise`: `null`, a fixed value `{value: ...}`,
or `hash`: the hex SHA-256 of the salt followed by the UTF-8 value. A salted hash is
pseudonymous, not anonymous, data while the salt exists: keep it secret, or use `null`.
MySQL tables must be transactional (InnoDB) for the rollback to hold.

Retention sweeps (`sweep`) delete, per rule, the rows of the rule's table dated before its
cutoff, with one set-based statement per table (never loading keys into Python), children
first along the same relations, in one transaction; rows of tables referencing a deleted row
go with it. Rows under a retention duty stay, and so does a row such a kept row references;
both are reported as kept. `action: anonymise` sets the rule's fields to NULL instead.

Every right is in `capabilities`. Restriction, objection and consent withdrawal report a
manual task, with instructions, when no table configures column updates for them: the
register then decides per system, without a second connector class.

The engine is created on first use; calls run in a thread so the event loop is never blocked.
SQLite connections get `PRAGMA foreign_keys = ON`. Parameters are hidden from SQLAlchemy's
messages and its DEBUG row logging is dropped: both would otherwise carry personal data into
logs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    field_validator,
    model_validator,
)
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    create_engine,
    delete,
    event,
    exists,
    func,
    inspect,
    literal,
    literal_column,
    not_,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError

from connectors.base import Connector, ConnectorConfigError, ConnectorError, Result, SweepResult
from schemas.events import (
    IDENTIFIER_TYPE_PATTERN,
    Counts,
    FieldChange,
    Identifier,
    IdentifierType,
    OutcomeStatus,
    Record,
    RequestType,
    RetainedItem,
    Subject,
)
from schemas.primitives.records import RecordSink
from schemas.register import RetentionRule, localize
from schemas.sweeps import SweepCount, SweepRule

log = logging.getLogger(__name__)

_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
#: Rows fetched per round trip when exporting; rows are streamed, never fetched all at once.
_FETCH_SIZE = 500
#: What `hash` masking stores: lower-case hex SHA-256.
_HASH_LENGTH = 64
_HASHED = f"^[0-9a-f]{{{_HASH_LENGTH}}}$"
_SALT_MIN_LENGTH = 16
#: Dialects that can compute `hash` masking in SQL.
_HASH_DIALECTS = ("postgresql", "mysql", "mariadb", "sqlite")

SQLName = Annotated[str, Field(pattern=_NAME_PATTERN, examples=["customers"])]
IdentifierTypeName = Annotated[str, Field(pattern=IDENTIFIER_TYPE_PATTERN, examples=["email"])]
ColumnValues = dict[SQLName, JsonValue]
Mark = Literal["restriction", "objection", "consent_withdrawal"]

_MARK_TITLES: dict[Mark, str] = {
    "restriction": "restriction (Art. 18)",
    "objection": "objection (Art. 21)",
    "consent_withdrawal": "consent withdrawal (Art. 7(3))",
}

T = TypeVar("T")


class SQLParent(BaseModel):
    """The table a table's rows reference: a row is the subject's when its parent row is."""

    model_config = ConfigDict(extra="forbid")

    table: SQLName
    columns: Annotated[
        dict[SQLName, SQLName],
        Field(min_length=1, description="This table's column -> the parent's column."),
    ]


class SQLFixedValue(BaseModel):
    """Masking strategy: overwrite the column with this value."""

    model_config = ConfigDict(extra="forbid")

    value: JsonValue


#: `null` (or YAML null), `hash` (salted SHA-256 hex) or `{value: ...}`.
MaskStrategy = Literal["null", "hash"] | SQLFixedValue | None


class SQLTable(BaseModel):
    """One table holding data about subjects, and what each right does to its rows."""

    model_config = ConfigDict(extra="forbid")

    name: SQLName
    collection: str | None = Field(default=None, description="Name in the export; `name` if unset.")
    identity: dict[IdentifierTypeName, SQLName] = Field(default_factory=dict)
    parent: SQLParent | list[SQLParent] | None = None
    erasure: Literal["delete", "anonymise"] = "delete"
    mask: dict[SQLName, MaskStrategy] = Field(default_factory=dict)
    anonymise: ColumnValues = Field(default_factory=dict)
    restriction: ColumnValues = Field(default_factory=dict)
    objection: ColumnValues = Field(default_factory=dict)
    consent_withdrawal: ColumnValues = Field(default_factory=dict)

    @model_validator(mode="after")
    def _masking_matches_erasure(self) -> SQLTable:
        if self.erasure == "anonymise" and not (self.anonymise or self.mask):
            raise ValueError(
                f"table {self.name!r}: erasure 'anonymise' needs 'mask' or 'anonymise' "
                "(the columns to overwrite and how)"
            )
        if self.erasure == "delete" and (self.anonymise or self.mask):
            raise ValueError(
                f"table {self.name!r}: 'mask' and 'anonymise' are only used with "
                "erasure: anonymise; set that or remove them"
            )
        twice = sorted(self.mask.keys() & self.anonymise.keys())
        if twice:
            raise ValueError(
                f"table {self.name!r}: column(s) {', '.join(twice)} in both 'mask' and "
                "'anonymise'; keep one"
            )
        return self

    @property
    def export_name(self) -> str:
        """The collection name records from this table carry in an export."""
        return self.collection or self.name

    @property
    def parents(self) -> list[SQLParent]:
        """The declared parents, as a list."""
        if self.parent is None:
            return []
        return self.parent if isinstance(self.parent, list) else [self.parent]

    @property
    def hashed(self) -> list[str]:
        """Columns masked with a salted hash."""
        return [column for column, strategy in self.mask.items() if strategy == "hash"]


class SQLSettings(BaseModel):
    """Settings of the SQL connector."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="SQLAlchemy URL with a sync driver, e.g. postgresql+psycopg://")
    tables: Annotated[list[SQLTable], Field(min_length=1)]
    follow_foreign_keys: bool = Field(
        default=False, description="Also erase and export rows of tables referencing the tables."
    )
    follow_depth: int = Field(
        default=5, ge=1, le=20, description="How many levels of referencing tables to follow."
    )
    hash_salt: SecretStr | None = Field(
        default=None, description="Salt for `hash` masking, e.g. ${DSR_HASH_SALT}; keep secret."
    )

    @field_validator("url")
    @classmethod
    def _url_parses(cls, url: str) -> str:
        # The message must not echo the URL: it may hold a password.
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a SQLAlchemy database URL; expected e.g. "
                "'postgresql+psycopg://user@host/db' or 'sqlite:///path/to/file.db'"
            ) from None
        return url

    @field_validator("tables")
    @classmethod
    def _tables_unique(cls, tables: list[SQLTable]) -> list[SQLTable]:
        names = [t.name for t in tables]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tables listed twice: {', '.join(twice)}; merge their entries")
        return tables

    @model_validator(mode="after")
    def _relations_hold(self) -> SQLSettings:
        names = [t.name for t in self.tables]
        for table in self.tables:
            if not (table.identity or table.parent or self.follow_foreign_keys):
                raise ValueError(
                    f"table {table.name!r} needs 'identity' (identifier type -> column) or "
                    "'parent' (the table its rows reference), or set follow_foreign_keys"
                )
            for parent in table.parents:
                if parent.table not in names:
                    raise ValueError(
                        f"table {table.name!r}: parent {parent.table!r} is not in tables; "
                        "add it or fix the name"
                    )
        try:
            _children_first(names, {t.name: {p.table for p in t.parents} for t in self.tables})
        except _CycleError as cycle:
            raise ValueError(
                f"the tables' parents form a cycle ({' -> '.join(cycle.tables)}); a table's "
                "rows must not reference, through parents, the table itself"
            ) from None
        if any(t.hashed for t in self.tables):
            salt = self.hash_salt.get_secret_value() if self.hash_salt else ""
            if len(salt) < _SALT_MIN_LENGTH:
                raise ValueError(
                    f"masking with 'hash' needs hash_salt of at least {_SALT_MIN_LENGTH} "
                    "characters, e.g. hash_salt: ${DSR_HASH_SALT}"
                )
        return self


class _CycleError(Exception):
    """Tables that reference each other in a circle; `tables` names them, first one repeated."""

    def __init__(self, tables: list[str]) -> None:
        super().__init__(" -> ".join(tables))
        self.tables = tables


def _children_first(names: Sequence[str], parents: Mapping[str, Iterable[str]]) -> list[str]:
    """`names` with every table before the tables it references; otherwise in the given order."""
    referenced_by: dict[str, set[str]] = {n: set() for n in names}
    for child in names:
        for parent in parents.get(child, ()):
            if parent in referenced_by:
                referenced_by[parent].add(child)
    waiting = {n: len(children) for n, children in referenced_by.items()}
    ordered: list[str] = []
    left = list(names)
    while left:
        ready = next((n for n in left if not waiting[n]), None)
        if ready is None:
            # Every table left has a child left: walking to children must come back round.
            path = [left[0]]
            while path.count(path[-1]) < 2:
                path.append(min(referenced_by[path[-1]] & set(left), key=left.index))
            cycle = path[path.index(path[-1]) :]
            raise _CycleError(cycle[::-1])  # child -> parent, the way `parent` reads
        ordered.append(ready)
        left.remove(ready)
        for parent in set(parents.get(ready, ())) & waiting.keys():
            waiting[parent] -= 1
    return ordered


def _reaches(parents: Mapping[str, Iterable[str]], start: str, target: str) -> bool:
    """Whether `start` is `target` or references it, directly or through other tables."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name == target:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(parents.get(name, ()))
    return False


@dataclass(frozen=True, slots=True)
class _Link:
    """A reference from a table to its parent: pairs of (own column, parent's column)."""

    parent: str
    columns: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _BoundTable:
    """A table with its reflected columns, links and settings values coerced to the columns."""

    settings: SQLTable
    table: Table
    links: list[_Link]
    fixed: dict[str, Any]
    hashed: list[str]
    marks: dict[Mark, dict[str, Any]]
    #: The database's dialect name: hashed identifiers are compared with its hash functions.
    dialect: str = "sqlite"

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    def identity_match(self, subject: Subject) -> ColumnElement[bool] | None:
        """Rows naming the subject's identifiers, or None when the table uses none of them."""
        clauses: list[ColumnElement[bool]] = []
        for identifier_type, column_name in self.settings.identity.items():
            column = self.table.c[column_name]
            clauses.extend(self._hash_match(subject, identifier_type, column))
            raw = [
                i.value
                for i in subject.identifiers
                if i.type == identifier_type and i.format == "raw"
            ]
            if identifier_type == IdentifierType.EMAIL:
                # Values are lower-cased by the Subject model; stored addresses may not be.
                if raw:
                    clauses.append(func.lower(column).in_(raw))
                continue
            coerced = []
            for value in raw:
                try:
                    coerced.append(_coerce(column, value))
                except _COERCE_ERRORS:
                    continue  # e.g. a non-numeric customer id cannot match an integer column
            if coerced:
                clauses.append(column.in_(coerced))
        return or_(*clauses) if clauses else None

    def _hash_match(
        self, subject: Subject, identifier_type: str, column: Column[Any]
    ) -> list[ColumnElement[bool]]:
        """Rows whose identity column, normalised like an identifier of its type, hashes to
        one of the subject's hashed identifiers (an OpenDSR controller may send only those)."""
        clauses: list[ColumnElement[bool]] = []
        for identifier_format in ("sha256", "md5", "sha1"):
            digests = [
                i.value
                for i in subject.identifiers
                if i.type == identifier_type and i.format == identifier_format
            ]
            if digests:
                digest = _identifier_digest(
                    self.dialect, column, identifier_type, identifier_format
                )
                clauses.append(digest.in_(digests))
        return clauses


@dataclass(slots=True)
class _Dataset:
    """The bound tables, children before parents, and how to find a subject's rows in them."""

    tables: list[_BoundTable]
    by_name: dict[str, _BoundTable] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {bound.name: bound for bound in self.tables}

    def rows_of(self, subject: Subject) -> dict[str, ColumnElement[bool] | None]:
        """Per table, the condition selecting the subject's rows; None where it has none."""
        return self.linked({bound.name: bound.identity_match(subject) for bound in self.tables})

    def linked(
        self,
        own: Mapping[str, ColumnElement[bool] | None],
        hand_down: Callable[[_BoundTable, ColumnElement[bool]], ColumnElement[bool] | None]
        | None = None,
    ) -> dict[str, ColumnElement[bool] | None]:
        """Per table, its `own` rows and the rows referencing (through links) a parent's
        selected rows; None where there are none. `hand_down` narrows what a table's children
        follow (a sweep: only the rows it deletes)."""
        found: dict[str, ColumnElement[bool] | None] = {}
        handed: dict[str, ColumnElement[bool] | None] = {}
        for bound in reversed(self.tables):  # parents first: a link needs its parent's rows
            mine = own.get(bound.name)
            clauses: list[ColumnElement[bool]] = [] if mine is None else [mine]
            for link in bound.links:
                parent_rows = handed[link.parent]
                if parent_rows is None:
                    continue
                parent = self.by_name[link.parent].table
                columns = [bound.table.c[name] for name, _ in link.columns]
                keys = select(*(parent.c[theirs] for _, theirs in link.columns)).where(parent_rows)
                clauses.append(
                    columns[0].in_(keys) if len(columns) == 1 else tuple_(*columns).in_(keys)
                )
            rows = or_(*clauses) if clauses else None
            found[bound.name] = rows
            handed[bound.name] = (
                rows if rows is None or hand_down is None else hand_down(bound, rows)
            )
        return found

    def children(self, name: str) -> list[tuple[_BoundTable, _Link]]:
        """The tables whose links reference table `name`, with the link."""
        return [(b, link) for b in self.tables for link in b.links if link.parent == name]


@dataclass(slots=True)
class _Step:
    """The table a unit of work is on, so an error can name it."""

    table: str | None = None


@dataclass(slots=True)
class _SweepPlan:
    """What one retention sweep does, per table: the rule naming its collection, the
    retention duty keeping some of its rows, and the rows past the cutoff (own or through
    a parent that goes)."""

    rules: dict[str, SweepRule]
    duties: dict[str, RetentionRule]
    going: dict[str, ColumnElement[bool] | None]
    #: Tables with a retention duty on them or on a table below them: that duty's legal basis.
    guarded: dict[str, str]
    today: date

    def action(self, bound: _BoundTable) -> Literal["delete", "anonymise"]:
        """Delete or anonymise: the sweep rule's, else (rows reached through a parent) what
        erasure does in the table."""
        rule = self.rules.get(bound.name)
        return rule.action if rule is not None else bound.settings.erasure


class _DropRowLogs(logging.Filter):
    """Drops SQLAlchemy's DEBUG records: they print result rows, i.e. personal data."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep INFO and above (statements, with parameters hidden)."""
        return record.levelno > logging.DEBUG


class SQLConnector(Connector[SQLSettings]):
    """Finds, exports, erases or anonymises and corrects a subject's rows in SQL tables."""

    capabilities: ClassVar[frozenset[RequestType]] = frozenset(RequestType)
    supports_retention = True
    sweeps = True
    identifier_formats: ClassVar[frozenset[str]] = frozenset({"raw", "sha256", "md5", "sha1"})
    description = "SQL database via SQLAlchemy (PostgreSQL, MariaDB/MySQL, SQLite, ...)."

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self._engine: Engine | None = None
        self._dataset: _Dataset | None = None
        # Tasks for one system run concurrently in threads; engine and reflection happen once.
        self._lock = threading.RLock()

    # -- rights ---------------------------------------------------------------------------

    async def access(self, subject: Subject) -> Result:
        """Every row of the subject in the tables, one record per row, held in memory.

        Workers call `export_into` instead, which streams the rows into the record store.
        """
        return await asyncio.to_thread(lambda: Result.found(list(self.iter_access(subject))))

    async def export_into(self, subject: Subject, sink: RecordSink, *, portability: bool) -> Result:
        """Stream the subject's rows into `sink`: memory stays flat however many there are."""

        def work() -> int:
            written = 0
            for record in self.iter_access(subject):
                sink.write(record)
                written += 1
            return written

        written = await asyncio.to_thread(work)
        return Result.completed(Counts(found=written)) if written else Result.not_found()

    async def erase(self, subject: Subject) -> Result:
        """Delete or mask the subject's rows, children first, in one transaction."""
        return await asyncio.to_thread(self._erase, subject)

    async def rectify(self, subject: Subject, changes: Sequence[FieldChange]) -> Result:
        """Set each changed field on the subject's rows of every table having that column."""
        return await asyncio.to_thread(self._rectify, subject, list(changes))

    async def restrict(self, subject: Subject) -> Result:
        """Apply the tables' `restriction` column updates to the subject's rows."""
        return await asyncio.to_thread(self._mark, "restriction", subject)

    async def object(self, subject: Subject) -> Result:
        """Apply the tables' `objection` column updates to the subject's rows."""
        return await asyncio.to_thread(self._mark, "objection", subject)

    async def withdraw_consent(self, subject: Subject) -> Result:
        """Apply the tables' `consent_withdrawal` column updates to the subject's rows."""
        return await asyncio.to_thread(self._mark, "consent_withdrawal", subject)

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """Delete (or anonymise) the rows past each rule's cutoff, children first, in one
        transaction, keeping the rows under a retention duty; a dry run only counts.

        Set-based: one statement per table (`DELETE ... WHERE date < :cutoff AND NOT duty`),
        no row is loaded into Python, so memory stays flat however many rows expire.
        """
        return await asyncio.to_thread(self._sweep, list(rules), dry_run)

    async def aclose(self) -> None:
        """Close the engine's connections."""
        with self._lock:
            engine, self._engine, self._dataset = self._engine, None, None
        if engine is not None:
            await asyncio.to_thread(engine.dispose)

    # -- work, in a thread ----------------------------------------------------------------

    def iter_access(self, subject: Subject) -> Iterator[Record]:
        """The subject's rows as records, parents first, streamed: blocking, call in a thread.

        Memory does not grow with the number of rows: they arrive `_FETCH_SIZE` at a time
        through a server-side cursor where the driver has one. Close the iterator (or exhaust
        it) to release its connection.
        """
        dataset = self._bound()
        step = _Step()
        with self._database_errors("access", step), self._get_engine().connect() as conn:
            rows_of = dataset.rows_of(subject)
            streaming = conn.execution_options(yield_per=_FETCH_SIZE)
            for bound in reversed(dataset.tables):
                where = rows_of[bound.name]
                if where is None:
                    continue
                step.table = bound.name
                query = select(bound.table).where(where).order_by(*bound.table.primary_key)
                # Closed before the next query: MySQL cannot run one while a stream is open.
                with streaming.execute(query) as rows:
                    for row in rows:
                        yield Record(
                            collection=bound.settings.export_name, data=_json_row(row._mapping)
                        )

    def _erase(self, subject: Subject) -> Result:
        rules = {rule.collection: rule for rule in self.retention_rules}
        today = date.today()
        retained: list[RetainedItem] = []

        def work(conn: Connection, dataset: _Dataset, step: _Step) -> Counts:
            deleted = anonymised = 0
            retained.clear()  # a retried transaction starts over
            rows_of = dataset.rows_of(subject)
            for bound in dataset.tables:
                where = rows_of[bound.name]
                if where is None:
                    continue
                step.table = bound.name
                rule = rules.get(bound.settings.export_name) or rules.get(bound.name)
                if rule is not None:
                    where = self._retain(conn, bound, where, rule, today, retained)
                if bound.settings.erasure == "delete":
                    deleted += conn.execute(delete(bound.table).where(where)).rowcount
                else:
                    anonymised += conn.execute(self._masking(conn, bound, where)).rowcount
            kept = sum(item.count for item in retained)
            return Counts(
                found=deleted + anonymised + kept,
                deleted=deleted,
                anonymised=anonymised,
                retained=kept,
            )

        counts = self._run("erasure", work)
        if not counts.found:
            return Result.not_found()
        log.info(
            "system %s: erasure deleted %d, anonymised %d and retained %d rows",
            self.system,
            counts.deleted,
            counts.anonymised,
            counts.retained,
        )
        if not counts.deleted and not counts.anonymised:
            collections = ", ".join(item.collection for item in retained)
            return Result(
                OutcomeStatus.RETAINED,
                counts,
                retained=list(retained),
                reason=f"kept under a legal retention duty: {collections}",
            )
        return Result.completed(counts, retained=list(retained))

    def _retain(
        self,
        conn: Connection,
        bound: _BoundTable,
        where: ColumnElement[bool],
        rule: RetentionRule,
        today: date,
        retained: list[RetainedItem],
        *,
        change: bool = True,
    ) -> ColumnElement[bool]:
        """Keep (or clear fields of) the rows still under `rule`; return the rest's condition.

        A row without a date is kept: nobody can show that its period has passed. With
        `change` false (a sweep's dry run) the rows are only counted.
        """
        under_rule = self._under_rule(bound, rule, today)
        column = bound.table.c[rule.date_field]
        count, latest = conn.execute(
            select(func.count(), func.max(column)).where(where, under_rule)
        ).one()
        if count:
            if rule.action == "anonymise" and change:
                missing = [name for name in rule.fields if name not in bound.table.c]
                if missing:
                    raise ConnectorConfigError(
                        f"system {self.system!r}: retention rule for {rule.collection!r} clears "
                        f"{', '.join(missing)}, which table {bound.name!r} does not have"
                    )
                fields = [bound.table.c[name] for name in rule.fields]
                conn.execute(
                    update(bound.table)
                    .where(where, under_rule, or_(*(f.is_not(None) for f in fields)))
                    .values({f: None for f in fields})
                )
            latest_date = _as_date(latest)
            retained.append(
                RetainedItem(
                    collection=bound.settings.export_name,
                    count=count,
                    legal_basis=rule.legal_basis,
                    reason=localize(rule.reason, "en") if rule.reason else rule.describe(),
                    until=rule.until(latest_date) if latest_date else None,
                )
            )
        return and_(where, not_(under_rule))

    def _under_rule(
        self, bound: _BoundTable, rule: RetentionRule, today: date
    ) -> ColumnElement[bool]:
        """The rows `rule` still keeps on `today`: dated on or after its cutoff, or undated."""
        if rule.date_field not in bound.table.c:
            raise ConnectorConfigError(
                f"system {self.system!r}: retention rule for {rule.collection!r} names "
                f"date_field {rule.date_field!r}, which table {bound.name!r} does not have"
            )
        column = bound.table.c[rule.date_field]
        return or_(column.is_(None), column >= _day(column, rule.cutoff(today)))

    def _masking(self, conn: Connection, bound: _BoundTable, where: ColumnElement[bool]) -> Any:
        """The UPDATE masking the subject's rows that are not masked yet."""
        values = _columns(bound, bound.fixed)
        # Rows already masked are left alone, so a repeated erasure says not_found.
        pending = [column.is_distinct_from(value) for column, value in values.items()]
        salt = self.settings.hash_salt.get_secret_value() if self.settings.hash_salt else ""
        for name in bound.hashed:
            column = bound.table.c[name]
            hashed = column.regexp_match(_HASHED)
            # Hashing a hash again would change it on every retry of the task.
            values[column] = case((hashed, column), else_=_sha256(conn, salt, column))
            pending.append(and_(column.is_not(None), not_(hashed)))
        return update(bound.table).where(where, or_(*pending)).values(values)

    def _rectify(self, subject: Subject, changes: list[FieldChange]) -> Result:
        if not changes:
            return Result.not_found(reason="the request names no field for this system")
        known = {c.name for bound in self._bound().tables for c in bound.table.columns}
        unknown = sorted({c.field for c in changes if c.field not in known})

        def work(conn: Connection, dataset: _Dataset, step: _Step) -> int:
            updated = 0
            rows_of = dataset.rows_of(subject)
            for bound in dataset.tables:
                values: dict[str, Any] = {}
                for change in changes:
                    if change.field in bound.table.c:
                        values[change.field] = _coerce_change(self.system, bound, change)
                where = rows_of[bound.name]
                if not values or where is None:
                    continue
                step.table = bound.name
                statement = update(bound.table).where(where).values(_columns(bound, values))
                updated += conn.execute(statement).rowcount
            return updated

        has_known = any(c.field in known for c in changes)
        updated = self._run("rectification", work) if has_known else 0
        reason = f"no column for field(s): {', '.join(unknown)}" if unknown else None
        if updated:
            return Result.completed(Counts(found=updated, updated=updated), reason=reason)
        if not unknown:
            return Result.not_found()
        names = ", ".join(t.name for t in self.settings.tables)
        return Result.manual(
            f"System {self.system!r} has no column for field(s) {', '.join(unknown)} in its "
            f"tables ({names}). Correct them by hand for the subject of this request and record "
            "it with `dsr tasks complete <task id> --evidence '<what you did>'`, or add the table "
            "holding them to this system in the register.",
            reason=reason,
        )

    def _mark(self, mark: Mark, subject: Subject) -> Result:
        if not any(getattr(t, mark) for t in self.settings.tables):
            names = ", ".join(t.name for t in self.settings.tables)
            return Result.manual(
                f"System {self.system!r} has no column updates configured for "
                f"{_MARK_TITLES[mark]}. Carry it out by hand for the subject of this request in "
                f"tables {names} and record it with `dsr tasks complete <task id> --evidence "
                f"'<what you did>'`; or add `{mark}: {{column: value}}` to the tables of this "
                "system in the register so it runs automatically.",
                reason=f"no '{mark}' column updates configured",
            )

        def work(conn: Connection, dataset: _Dataset, step: _Step) -> int:
            suppressed = 0
            rows_of = dataset.rows_of(subject)
            for bound in dataset.tables:
                where = rows_of[bound.name]
                if not bound.marks[mark] or where is None:
                    continue
                step.table = bound.name
                statement = (
                    update(bound.table).where(where).values(_columns(bound, bound.marks[mark]))
                )
                suppressed += conn.execute(statement).rowcount
            return suppressed

        suppressed = self._run(mark.replace("_", " "), work)
        if not suppressed:
            return Result.not_found()
        return Result.completed(Counts(found=suppressed, suppressed=suppressed))

    def _sweep(self, rules: list[SweepRule], dry_run: bool) -> SweepResult:
        """Storage limitation (Art. 5(1)(e) GDPR): what expired goes, except what a legal duty
        keeps (Art. 17(3)(b) GDPR), reported per collection with its basis and until-date."""
        plan = self._sweep_plan(self._bound(), rules)
        retained: list[RetainedItem] = []

        def work(conn: Connection, dataset: _Dataset, step: _Step) -> list[SweepCount]:
            retained.clear()
            counts: dict[str, SweepCount] = {}
            given_up: dict[str, ColumnElement[bool]] = {}
            for bound in dataset.tables:  # children first: no reference is left dangling
                where = plan.going[bound.name]
                if where is None:
                    continue
                step.table = bound.name
                count, given_up[bound.name] = self._sweep_table(
                    conn, bound, where, plan, given_up, retained, dry_run=dry_run
                )
                if bound.name in plan.rules or count.expired:
                    counts[count.collection] = _added(counts.get(count.collection), count)
            return list(counts.values())

        counts = self._run("sweep", work, dry_run=dry_run)
        for count in counts:
            log.info(
                "system %s: sweep%s of %s: %d expired, %d deleted, %d anonymised, %d kept",
                self.system,
                " (dry run)" if dry_run else "",
                count.collection,
                count.expired,
                count.deleted,
                count.anonymised,
                count.kept,
            )
        return SweepResult.done(counts, retained=list(retained))

    def _sweep_plan(self, dataset: _Dataset, rules: Sequence[SweepRule]) -> _SweepPlan:
        """Each rule's tables checked against the database, and the rows each table gives up."""
        today = date.today()
        by_table: dict[str, SweepRule] = {}
        for rule in rules:
            tables = [
                b for b in dataset.tables if rule.collection in (b.settings.export_name, b.name)
            ]
            if not tables:
                known = ", ".join(sorted({b.settings.export_name for b in dataset.tables}))
                raise ConnectorConfigError(
                    f"system {self.system!r}: the sweep rule names collection "
                    f"{rule.collection!r}, which no table of this system holds (its "
                    f"collections: {known}); fix the collection in the register's sweep policy"
                )
            for bound in tables:
                self._check_sweep_columns(bound, rule)
                by_table[bound.name] = rule
        by_collection = {duty.collection: duty for duty in self.retention_rules}
        duties = {
            b.name: duty
            for b in dataset.tables
            if (duty := by_collection.get(b.settings.export_name) or by_collection.get(b.name))
        }
        under = {
            name: self._under_rule(dataset.by_name[name], duty, today)
            for name, duty in duties.items()
        }
        guarded: dict[str, str] = {}
        for bound in dataset.tables:  # children first: a parent inherits a child's duty
            below = [guarded[c.name] for c, _ in dataset.children(bound.name) if c.name in guarded]
            if bound.name in duties or below:
                guarded[bound.name] = (
                    duties[bound.name].legal_basis if bound.name in duties else below[0]
                )
        plan = _SweepPlan(by_table, duties, {}, guarded, today)

        def hand_down(bound: _BoundTable, rows: ColumnElement[bool]) -> ColumnElement[bool] | None:
            # Children follow only the rows that are deleted: not the anonymised, not the kept.
            if plan.action(bound) != "delete":
                return None
            return rows if bound.name not in under else and_(rows, not_(under[bound.name]))

        own = {name: _expired(dataset.by_name[name], rule) for name, rule in by_table.items()}
        plan.going = dataset.linked(own, hand_down)
        return plan

    def _check_sweep_columns(self, bound: _BoundTable, rule: SweepRule) -> None:
        missing = [n for n in (rule.date_field, *rule.fields) if n not in bound.table.c]
        if missing:
            columns = ", ".join(sorted(bound.table.c.keys()))
            raise ConnectorConfigError(
                f"system {self.system!r}: the sweep rule for {rule.collection!r} names "
                f"{', '.join(missing)}, which table {bound.name!r} does not have (its columns: "
                f"{columns}); fix the register's sweep policy"
            )

    def _sweep_table(
        self,
        conn: Connection,
        bound: _BoundTable,
        where: ColumnElement[bool],
        plan: _SweepPlan,
        given_up: Mapping[str, ColumnElement[bool]],
        retained: list[RetainedItem],
        *,
        dry_run: bool,
    ) -> tuple[SweepCount, ColumnElement[bool]]:
        """Sweep one table's expired rows; returns its counts and the rows it gave up."""
        kept_before = sum(item.count for item in retained)
        duty = plan.duties.get(bound.name)
        if duty is not None:
            where = self._retain(conn, bound, where, duty, plan.today, retained, change=not dry_run)
        blocked = self._blocked(bound, plan, given_up)
        if blocked is not None:
            held = conn.execute(
                select(func.count()).select_from(bound.table).where(where, blocked)
            ).scalar_one()
            if held:
                retained.append(
                    RetainedItem(
                        collection=bound.settings.export_name,
                        count=held,
                        legal_basis=plan.guarded[bound.name],
                        reason="referenced by records kept under a retention duty",
                    )
                )
            where = and_(where, not_(blocked))
        kept = sum(item.count for item in retained) - kept_before
        collection = bound.settings.export_name
        if dry_run:
            expired = conn.execute(
                select(func.count()).select_from(bound.table).where(where)
            ).scalar_one()
            return SweepCount(collection=collection, expired=expired + kept, kept=kept), where
        deleted = anonymised = 0
        rule = plan.rules.get(bound.name)
        if plan.action(bound) == "delete":
            deleted = conn.execute(delete(bound.table).where(where)).rowcount
        elif rule is not None:
            fields = {bound.table.c[name]: None for name in rule.fields}
            anonymised = conn.execute(update(bound.table).where(where).values(fields)).rowcount
        else:
            anonymised = conn.execute(self._masking(conn, bound, where)).rowcount
        count = SweepCount(
            collection=collection,
            expired=deleted + anonymised + kept,
            deleted=deleted,
            anonymised=anonymised,
            kept=kept,
        )
        return count, where

    def _blocked(
        self, bound: _BoundTable, plan: _SweepPlan, given_up: Mapping[str, ColumnElement[bool]]
    ) -> ColumnElement[bool] | None:
        """The rows a kept row below still references: deleting them would break the reference
        to a record a retention duty keeps, so they stay too."""
        if plan.action(bound) != "delete":
            return None
        dataset = self._bound()
        clauses: list[ColumnElement[bool]] = []
        for child, link in dataset.children(bound.name):
            if child.name not in plan.guarded:
                continue
            refers = [child.table.c[mine] == bound.table.c[theirs] for mine, theirs in link.columns]
            if child.name in given_up:  # a child row that stays is one the sweep did not take
                refers.append(not_(given_up[child.name]))
            clauses.append(exists().where(*refers))
        return or_(*clauses) if clauses else None

    def _run(
        self,
        action: str,
        work: Callable[[Connection, _Dataset, _Step], T],
        *,
        dry_run: bool = False,
    ) -> T:
        """Run `work` in one transaction; turn database errors into messages without values.

        A dry run's transaction is rolled back, never committed, whatever `work` did.
        """
        dataset = self._bound()
        engine = self._get_engine()
        step = _Step()
        transaction = engine.connect() if dry_run else engine.begin()
        with self._database_errors(action, step), transaction as conn:
            return work(conn, dataset, step)

    @contextmanager
    def _database_errors(self, action: str, step: _Step | None = None) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            if _credentials_rejected(getattr(exc, "orig", None)):
                raise ConnectorError(
                    f"system {self.system!r}: the database rejected the credentials; check the "
                    "user and password in the register settings",
                    retryable=False,
                ) from None
            # The schema may have changed under us: reflect again on the next attempt.
            with self._lock:
                self._dataset = None
            where = f" on table {step.table!r}" if step and step.table else ""
            # str(exc) may quote row values (e.g. a constraint's DETAIL): only the class name.
            kind = type(getattr(exc, "orig", None) or exc).__name__
            log.warning(
                "system %s: %s failed%s (%s); rolled back", self.system, action, where, kind
            )
            raise ConnectorError(
                f"system {self.system!r}: {action} failed{where} ({kind}); nothing was changed, "
                "the transaction was rolled back",
                retryable=True,
            ) from None

    # -- engine and reflection ------------------------------------------------------------

    def _get_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
            return self._engine

    def _create_engine(self) -> Engine:
        logging_name = f"dsr.{self.system}"
        try:
            engine = create_engine(
                self.settings.url,
                hide_parameters=True,  # SQLAlchemy messages would quote the subject's values
                pool_pre_ping=True,
                logging_name=logging_name,
            )
        except (NoSuchModuleError, ArgumentError, ImportError) as exc:
            raise ConnectorConfigError(
                f"system {self.system!r}: cannot use the database URL ({type(exc).__name__}); "
                "check the dialect and that its driver is installed, e.g. "
                "'pip install psycopg[binary]' for postgresql+psycopg, "
                "'pip install PyMySQL' for mysql+pymysql"
            ) from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _prepare_sqlite)
        engine_logger = logging.getLogger(f"sqlalchemy.engine.Engine.{logging_name}")
        if not any(isinstance(f, _DropRowLogs) for f in engine_logger.filters):
            engine_logger.addFilter(_DropRowLogs())
        return engine

    def _bound(self) -> _Dataset:
        """The tables, reflected once from the database, in erasure order."""
        engine = self._get_engine()
        with self._lock:
            if self._dataset is None:
                with (
                    self._database_errors("reading the table definitions"),
                    engine.connect() as conn,
                ):
                    self._dataset = self._reflect(conn)
            return self._dataset

    def _reflect(self, conn: Connection) -> _Dataset:
        configured = {t.name: t for t in self.settings.tables}
        links = {
            t.name: [_Link(p.table, tuple(p.columns.items())) for p in t.parents]
            for t in self.settings.tables
        }
        if self.settings.follow_foreign_keys:
            self._follow_foreign_keys(conn, links)
            unreached = [t.name for t in self.settings.tables if not (t.identity or links[t.name])]
            if unreached:
                raise ConnectorConfigError(
                    f"system {self.system!r}: no foreign key leads to table(s) "
                    f"{', '.join(unreached)} from the tables with 'identity' or 'parent' "
                    f"(within follow_depth {self.settings.follow_depth}); give them one of those"
                )
        metadata = MetaData()
        bound = {
            name: self._bind(configured.get(name) or SQLTable(name=name), own, metadata, conn)
            for name, own in links.items()
        }
        for child in bound.values():
            for link in child.links:
                _check_columns(self.system, bound[link.parent], (p for _, p in link.columns))
        parents = {name: {link.parent for link in b.links} for name, b in bound.items()}
        # Foreign keys outside the links only order the erasure; one closing a cycle cannot.
        for name, b in bound.items():
            for fk in b.table.foreign_keys:
                referred = fk.column.table.name
                if referred in bound and not _reaches(parents, referred, name):
                    parents[name].add(referred)
        order = _children_first(list(bound), parents)
        return _Dataset([bound[name] for name in order])

    def _follow_foreign_keys(self, conn: Connection, links: dict[str, list[_Link]]) -> None:
        """Add the tables referencing the subject's tables, and their links, to `links`."""
        referencing: dict[str, list[tuple[str, _Link]]] = {}
        # One query for every table's foreign keys, instead of one per table.
        for (schema, child), foreign_keys in inspect(conn).get_multi_foreign_keys().items():
            for fk in foreign_keys:
                if schema is not None or fk.get("referred_schema") is not None:
                    continue  # only the connection's default schema
                columns = tuple(zip(fk["constrained_columns"], fk["referred_columns"], strict=True))
                parent = fk["referred_table"]
                referencing.setdefault(parent, []).append((child, _Link(parent, columns)))
        parents = {name: {link.parent for link in own} for name, own in links.items()}
        depth = {t.name: 0 for t in self.settings.tables if t.identity or links[t.name]}
        todo = deque(depth)
        skipped: set[tuple[str, str]] = set()
        while todo:
            parent = todo.popleft()
            for child, link in referencing.get(parent, []):
                if link in links.get(child, []):
                    continue  # declared in the register already
                if _reaches(parents, parent, child):
                    skipped.add((child, parent))  # e.g. customers.referred_by: another person
                    continue
                if child not in depth:
                    if depth[parent] >= self.settings.follow_depth:
                        skipped.add((child, parent))
                        continue
                    depth[child] = depth[parent] + 1
                    todo.append(child)
                links.setdefault(child, []).append(link)
                parents.setdefault(child, set()).add(parent)
        found = sorted(name for name, level in depth.items() if level > 0)
        log.info("system %s: foreign keys lead to tables: %s", self.system, ", ".join(found))
        for child, parent in sorted(skipped):
            log.info(
                "system %s: not following %s -> %s (a cycle or beyond follow_depth)",
                self.system,
                child,
                parent,
            )

    def _bind(
        self, settings: SQLTable, links: list[_Link], metadata: MetaData, conn: Connection
    ) -> _BoundTable:
        try:
            table = Table(settings.name, metadata, autoload_with=conn)
        except NoSuchTableError:
            raise ConnectorConfigError(
                f"system {self.system!r}: table {settings.name!r} does not exist in the database; "
                "fix the table name in the register"
            ) from None
        sections: dict[str, Mapping[str, Any]] = {
            "identity": {c: None for c in settings.identity.values()},
            "parent": {mine: None for link in links for mine, _ in link.columns},
            "mask": {
                column: strategy.value if isinstance(strategy, SQLFixedValue) else None
                for column, strategy in settings.mask.items()
            },
            "anonymise": settings.anonymise,
            **{mark: getattr(settings, mark) for mark in _MARK_TITLES},
        }
        prepared: dict[str, dict[str, Any]] = {}
        for section, values in sections.items():
            prepared[section] = {}
            for column_name, value in values.items():
                if column_name not in table.c:
                    columns = ", ".join(sorted(table.c.keys()))
                    raise ConnectorConfigError(
                        f"system {self.system!r}: table {settings.name!r} has no column "
                        f"{column_name!r} (named in {section!r}); its columns are: {columns}"
                    )
                try:
                    prepared[section][column_name] = _coerce(table.c[column_name], value)
                except _COERCE_ERRORS:
                    raise ConnectorConfigError(
                        f"system {self.system!r}: the value for column {column_name!r} of table "
                        f"{settings.name!r} in {section!r} does not fit its type "
                        f"{table.c[column_name].type}"
                    ) from None
        for column_name in settings.hashed:
            self._check_hashable(settings.name, table.c[column_name], conn)
        return _BoundTable(
            settings=settings,
            table=table,
            links=links,
            fixed=prepared["anonymise"]
            | {c: v for c, v in prepared["mask"].items() if c not in settings.hashed},
            hashed=settings.hashed,
            marks={mark: prepared[mark] for mark in _MARK_TITLES},
            dialect=conn.dialect.name,
        )

    def _check_hashable(self, table: str, column: Column[Any], conn: Connection) -> None:
        where = f"system {self.system!r}: column {column.name!r} of table {table!r} is masked "
        if conn.dialect.name not in _HASH_DIALECTS:
            raise ConnectorConfigError(
                f"{where}with 'hash', which this connector computes only on "
                f"{', '.join(_HASH_DIALECTS)}; use null or a fixed value"
            )
        try:
            is_text = column.type.python_type is str
        except NotImplementedError:
            is_text = False
        length = getattr(column.type, "length", None)
        if not is_text or (length is not None and length < _HASH_LENGTH):
            raise ConnectorConfigError(
                f"{where}with 'hash', which needs a text column of at least {_HASH_LENGTH} "
                f"characters (it is {column.type}); use null or a fixed value, or widen it"
            )


def _check_columns(system: str, bound: _BoundTable, names: Iterable[str]) -> None:
    for name in names:
        if name not in bound.table.c:
            columns = ", ".join(sorted(bound.table.c.keys()))
            raise ConnectorConfigError(
                f"system {system!r}: table {bound.name!r} has no column {name!r} (named in a "
                f"'parent' referencing it); its columns are: {columns}"
            )


# -- dialects -------------------------------------------------------------------------------


def _prepare_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Make SQLite enforce foreign keys (off by default) and give it SHA-256 for masking."""
    dbapi_connection.execute("PRAGMA foreign_keys = ON")
    dbapi_connection.create_function("dsr_sha256", 1, _sha256_hex, deterministic=True)
    dbapi_connection.create_function("dsr_digest", 2, _digest_hex, deterministic=True)


def _as_date(value: Any) -> date | None:
    """A date column's value as a date (SQLite may hand back text)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _day(column: Column[Any], day: date) -> Any:
    """A day as the column compares with it: midnight for a timestamp, ISO text for text."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return day
    if python_type is datetime:
        return datetime.combine(day, time.min)
    if python_type is str:
        return day.isoformat()
    return day


def _expired(bound: _BoundTable, rule: SweepRule) -> ColumnElement[bool]:
    """The table's rows past the rule's cutoff (to anonymise: those not anonymised yet).

    A row without a date has not expired: nobody can show that its period has passed.
    """
    column = bound.table.c[rule.date_field]
    expired = column < _day(column, rule.cutoff)
    if rule.action == "anonymise":
        return and_(expired, or_(*(bound.table.c[name].is_not(None) for name in rule.fields)))
    return expired


def _added(total: SweepCount | None, count: SweepCount) -> SweepCount:
    """Two tables' counts for one collection, summed."""
    if total is None:
        return count
    return SweepCount(
        collection=count.collection,
        expired=total.expired + count.expired,
        deleted=total.deleted + count.deleted,
        anonymised=total.anonymised + count.anonymised,
        kept=total.kept + count.kept,
    )


def _sha256_hex(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(str(value).encode()).hexdigest()


def _digest_hex(value: str | None, identifier_format: str) -> str | None:
    return None if value is None else Identifier.digest(identifier_format, str(value))


#: What `Identifier.normalise` removes from a phone number, in SQL.
_PHONE_SEPARATORS = (" ", "(", ")", ".", "-")


def _identifier_digest(
    dialect: str, column: Column[Any], identifier_type: str, identifier_format: str
) -> ColumnElement[Any]:
    """SQL for the lower-case hex digest of a column's value normalised like an identifier of
    `identifier_type` (`Identifier.normalise`: e-mail trimmed and lower-cased, phone without
    separators, anything else trimmed). SQL's `trim` removes spaces only."""
    text: ColumnElement[Any] = func.trim(cast(column, String()))
    if identifier_type == IdentifierType.EMAIL:
        text = func.lower(text)
    elif identifier_type == IdentifierType.PHONE:
        for separator in _PHONE_SEPARATORS:
            text = func.replace(text, literal(separator, String()), literal("", String()))
    if dialect == "postgresql":
        if identifier_format == "md5":
            return func.md5(text)
        utf8 = func.convert_to(text, literal_column("'UTF8'"))
        if identifier_format == "sha256":
            return func.encode(func.sha256(utf8), literal_column("'hex'"))
        # PostgreSQL has no built-in SHA-1: pgcrypto's digest() (CREATE EXTENSION pgcrypto).
        return func.encode(func.digest(utf8, literal_column("'sha1'")), literal_column("'hex'"))
    if dialect in ("mysql", "mariadb"):
        utf8 = func.convert(text, literal_column("CHAR CHARACTER SET utf8mb4"))
        if identifier_format == "sha256":
            return func.sha2(utf8, 256)
        return func.md5(utf8) if identifier_format == "md5" else func.sha1(utf8)
    return func.dsr_digest(text, literal(identifier_format, String()))  # SQLite: _prepare_sqlite


def _sha256(conn: Connection, salt: str, column: Column[Any]) -> ColumnElement[Any]:
    """SQL for the hex SHA-256 of the salt followed by the column's UTF-8 text."""
    salted = literal(salt, String()) + column  # || or concat(), as the dialect needs
    dialect = conn.dialect.name
    if dialect == "postgresql":
        utf8 = func.convert_to(salted, literal_column("'UTF8'"))
        return func.encode(func.sha256(utf8), literal_column("'hex'"))
    if dialect in ("mysql", "mariadb"):
        # The column's own character set might not be UTF-8: hash the same bytes everywhere.
        utf8 = func.convert(salted, literal_column("CHAR CHARACTER SET utf8mb4"))
        # As bytes, the hex digits fit a column of any character set; as utf8mb4 text they
        # would clash with e.g. a latin1 column in the CASE ("Illegal mix of collations").
        return cast(func.sha2(utf8, 256), LargeBinary)
    return func.dsr_sha256(salted)  # SQLite, registered by _prepare_sqlite


# -- values ---------------------------------------------------------------------------------

_COERCE_ERRORS = (ValueError, TypeError, ArithmeticError)


def _credentials_rejected(error: object) -> bool:
    """True when the driver says the login failed (retrying will not help)."""
    if getattr(error, "sqlstate", None) in ("28000", "28P01"):  # PostgreSQL
        return True
    if "password authentication failed" in str(error):  # psycopg before a session exists
        return True
    args: tuple[object, ...] = tuple(getattr(error, "args", ()))
    return bool(args) and args[0] in (1044, 1045, 1698)  # MySQL/MariaDB: access denied


def _coerce(column: Column[Any], value: Any) -> Any:
    """A JSON value converted to the column's Python type; raises on a value that cannot fit."""
    if value is None:
        return None
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    if python_type is bool and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ValueError("not a boolean")
        return lowered in ("true", "1")
    if isinstance(value, python_type):
        return value
    if python_type in (int, float, str) and isinstance(value, (str, int, float)):
        return python_type(value)
    if python_type is Decimal and isinstance(value, (str, int, float)):
        return Decimal(str(value))
    if python_type in (datetime, date, time) and isinstance(value, str):
        return python_type.fromisoformat(value)
    return value


def _coerce_change(system: str, bound: _BoundTable, change: FieldChange) -> Any:
    try:
        return _coerce(bound.table.c[change.field], change.value)
    except _COERCE_ERRORS:
        # A user error; the message names the field and type, never the value.
        raise ConnectorError(
            f"system {system!r}: the new value of field {change.field!r} does not fit column "
            f"type {bound.table.c[change.field].type} of table {bound.settings.name!r}; "
            "correct the request's value"
        ) from None


def _columns(bound: _BoundTable, values: Mapping[str, Any]) -> dict[Column[Any], Any]:
    # Column objects as keys: a column named like a keyword of `.values()` stays unambiguous.
    return {bound.table.c[name]: value for name, value in values.items()}


def _json_row(row: Mapping[Any, Any]) -> dict[str, JsonValue]:
    return {str(key): _json_safe(value) for key, value in row.items()}


def _json_safe(value: Any) -> JsonValue:
    """A database value as JSON; decimals become strings so no digit is lost."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Enum):
        return _json_safe(value.value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    return str(value)


__all__ = ["SQLConnector", "SQLFixedValue", "SQLParent", "SQLSettings", "SQLTable"]
