"""SQL databases through SQLAlchemy: find, export, erase and correct a subject's rows.

Settings (in the register):

    url: postgresql+psycopg://dsr@db.internal/crm   # any SQLAlchemy URL with a sync driver
    tables:                                          # erased in this order: children first
      - name: orders
        identity: {customer_id: customer_id}         # identifier type -> column
      - name: customers
        collection: customers                        # name in the export; defaults to `name`
        identity: {email: email, phone: phone, customer_id: id}
        erasure: anonymise                           # delete (default) | anonymise
        anonymise: {name: null, email: null}         # column -> fixed value
        restriction: {processing_restricted: true}   # column updates per right (optional)
        objection: {marketing_opt_in: false}
        consent_withdrawal: {newsletter: false}

A row belongs to the subject when any identity column equals any of the subject's values of
that type; email compares case-insensitively (`lower(column)`: give big tables an index on
it). Other values are compared as stored: a phone number kept as "06-1234 5678" does not match
"+31612345678".

Every right is in `capabilities`. Restriction, objection and consent withdrawal report a
manual task, with instructions, when no table configures column updates for them: the
register then decides per system, without a second connector class.

The engine is created on first use; calls run in a thread so the event loop is never blocked.
Parameters are hidden from SQLAlchemy's messages and its DEBUG row logging is dropped: both
would otherwise carry personal data into logs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    MetaData,
    Table,
    create_engine,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError

from connectors.base import Connector, ConnectorConfigError, ConnectorError, Result
from schemas.events import (
    IDENTIFIER_TYPE_PATTERN,
    Counts,
    FieldChange,
    IdentifierType,
    Record,
    RequestType,
    Subject,
)

log = logging.getLogger(__name__)

_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
#: Rows fetched per round trip when exporting; rows are streamed, never fetched all at once.
_FETCH_SIZE = 500

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


class SQLTable(BaseModel):
    """One table holding data about subjects, and what each right does to its rows."""

    model_config = ConfigDict(extra="forbid")

    name: SQLName
    collection: str | None = Field(default=None, description="Name in the export; `name` if unset.")
    identity: Annotated[dict[IdentifierTypeName, SQLName], Field(min_length=1)]
    erasure: Literal["delete", "anonymise"] = "delete"
    anonymise: ColumnValues = Field(default_factory=dict)
    restriction: ColumnValues = Field(default_factory=dict)
    objection: ColumnValues = Field(default_factory=dict)
    consent_withdrawal: ColumnValues = Field(default_factory=dict)

    @model_validator(mode="after")
    def _anonymise_matches_erasure(self) -> SQLTable:
        if self.erasure == "anonymise" and not self.anonymise:
            raise ValueError(
                f"table {self.name!r}: erasure 'anonymise' needs 'anonymise' "
                "(the columns to overwrite and their values)"
            )
        if self.erasure == "delete" and self.anonymise:
            raise ValueError(
                f"table {self.name!r}: 'anonymise' is only used with erasure: anonymise; "
                "set that or remove 'anonymise'"
            )
        return self

    @property
    def export_name(self) -> str:
        """The collection name records from this table carry in an export."""
        return self.collection or self.name


class SQLSettings(BaseModel):
    """Settings of the SQL connector."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="SQLAlchemy URL with a sync driver, e.g. postgresql+psycopg://")
    tables: Annotated[list[SQLTable], Field(min_length=1)]

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


@dataclass(slots=True)
class _BoundTable:
    """A configured table with its reflected columns and settings values coerced to them."""

    settings: SQLTable
    table: Table
    anonymise: dict[str, Any]
    marks: dict[Mark, dict[str, Any]]

    def match(self, subject: Subject) -> ColumnElement[bool] | None:
        """Rows of the subject, or None when the subject has no identifier this table uses."""
        clauses: list[ColumnElement[bool]] = []
        for identifier_type, column_name in self.settings.identity.items():
            column = self.table.c[column_name]
            if identifier_type == IdentifierType.EMAIL:
                # Values are lower-cased by the Subject model; stored addresses may not be.
                values = subject.values(identifier_type)
                if values:
                    clauses.append(func.lower(column).in_(values))
                continue
            coerced = []
            for value in subject.values(identifier_type):
                try:
                    coerced.append(_coerce(column, value))
                except _COERCE_ERRORS:
                    continue  # e.g. a non-numeric customer id cannot match an integer column
            if coerced:
                clauses.append(column.in_(coerced))
        return or_(*clauses) if clauses else None


@dataclass(slots=True)
class _Step:
    """The table a unit of work is on, so an error can name it."""

    table: str | None = None


class _DropRowLogs(logging.Filter):
    """Drops SQLAlchemy's DEBUG records: they print result rows, i.e. personal data."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep INFO and above (statements, with parameters hidden)."""
        return record.levelno > logging.DEBUG


class SQLConnector(Connector):
    """Finds, exports, erases or anonymises and corrects a subject's rows in SQL tables."""

    capabilities: ClassVar[frozenset[RequestType]] = frozenset(RequestType)
    settings_model = SQLSettings
    description = "SQL database via SQLAlchemy (PostgreSQL, SQLite, MySQL, ...)."

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self.settings: SQLSettings
        self._engine: Engine | None = None
        self._tables: list[_BoundTable] | None = None
        # Tasks for one system run concurrently in threads; engine and reflection happen once.
        self._lock = threading.RLock()

    # -- rights ---------------------------------------------------------------------------

    async def access(self, subject: Subject) -> Result:
        """Every row of the subject in the configured tables, one record per row."""
        return await asyncio.to_thread(self._access, subject)

    async def erase(self, subject: Subject) -> Result:
        """Delete or anonymise the subject's rows in one transaction over all tables."""
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

    async def aclose(self) -> None:
        """Close the engine's connections."""
        with self._lock:
            engine, self._engine, self._tables = self._engine, None, None
        if engine is not None:
            await asyncio.to_thread(engine.dispose)

    # -- work, in a thread ----------------------------------------------------------------

    def _access(self, subject: Subject) -> Result:
        def work(conn: Connection, tables: list[_BoundTable], step: _Step) -> list[Record]:
            records: list[Record] = []
            for bound in tables:
                where = bound.match(subject)
                if where is None:
                    continue
                step.table = bound.settings.name
                query = select(bound.table).where(where).order_by(*bound.table.primary_key)
                # yield_per streams (server-side cursor where the driver has one).
                rows = conn.execution_options(yield_per=_FETCH_SIZE).execute(query)
                records.extend(
                    Record(collection=bound.settings.export_name, data=_json_row(row._mapping))
                    for row in rows
                )
            return records

        return Result.found(self._run("access", work))

    def _erase(self, subject: Subject) -> Result:
        def work(conn: Connection, tables: list[_BoundTable], step: _Step) -> Counts:
            deleted = anonymised = 0
            for bound in tables:
                where = bound.match(subject)
                if where is None:
                    continue
                step.table = bound.settings.name
                if bound.settings.erasure == "delete":
                    deleted += conn.execute(delete(bound.table).where(where)).rowcount
                    continue
                # Rows already anonymised are left alone, so a repeated erasure says not_found.
                values = _columns(bound, bound.anonymise)
                pending = or_(*(column.is_distinct_from(v) for column, v in values.items()))
                statement = update(bound.table).where(where, pending).values(values)
                anonymised += conn.execute(statement).rowcount
            return Counts(found=deleted + anonymised, deleted=deleted, anonymised=anonymised)

        counts = self._run("erasure", work)
        if not counts.found:
            return Result.not_found()
        log.info(
            "system %s: erasure deleted %d and anonymised %d rows",
            self.system,
            counts.deleted,
            counts.anonymised,
        )
        return Result.completed(counts)

    def _rectify(self, subject: Subject, changes: list[FieldChange]) -> Result:
        if not changes:
            return Result.not_found(reason="the request names no field for this system")
        known = {c.name for bound in self._bound() for c in bound.table.columns}
        unknown = sorted({c.field for c in changes if c.field not in known})

        def work(conn: Connection, tables: list[_BoundTable], step: _Step) -> int:
            updated = 0
            for bound in tables:
                values: dict[str, Any] = {}
                for change in changes:
                    if change.field in bound.table.c:
                        values[change.field] = _coerce_change(self.system, bound, change)
                where = bound.match(subject)
                if not values or where is None:
                    continue
                step.table = bound.settings.name
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

        def work(conn: Connection, tables: list[_BoundTable], step: _Step) -> int:
            suppressed = 0
            for bound in tables:
                where = bound.match(subject)
                if not bound.marks[mark] or where is None:
                    continue
                step.table = bound.settings.name
                statement = (
                    update(bound.table).where(where).values(_columns(bound, bound.marks[mark]))
                )
                suppressed += conn.execute(statement).rowcount
            return suppressed

        suppressed = self._run(mark.replace("_", " "), work)
        if not suppressed:
            return Result.not_found()
        return Result.completed(Counts(found=suppressed, suppressed=suppressed))

    def _run(self, action: str, work: Callable[[Connection, list[_BoundTable], _Step], T]) -> T:
        """Run `work` in one transaction; turn database errors into messages without values."""
        tables = self._bound()
        engine = self._get_engine()
        step = _Step()
        with self._database_errors(action, step), engine.begin() as conn:
            return work(conn, tables, step)

    @contextmanager
    def _database_errors(self, action: str, step: _Step | None = None) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            # The schema may have changed under us: reflect again on the next attempt.
            with self._lock:
                self._tables = None
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
                "'pip install psycopg[binary]' for postgresql+psycopg"
            ) from None
        engine_logger = logging.getLogger(f"sqlalchemy.engine.Engine.{logging_name}")
        if not any(isinstance(f, _DropRowLogs) for f in engine_logger.filters):
            engine_logger.addFilter(_DropRowLogs())
        return engine

    def _bound(self) -> list[_BoundTable]:
        """The configured tables, reflected once from the database."""
        engine = self._get_engine()
        with self._lock:
            if self._tables is None:
                with (
                    self._database_errors("reading the table definitions"),
                    engine.connect() as conn,
                ):
                    metadata = MetaData()
                    self._tables = [self._bind(t, metadata, conn) for t in self.settings.tables]
            return self._tables

    def _bind(self, settings: SQLTable, metadata: MetaData, conn: Connection) -> _BoundTable:
        try:
            table = Table(settings.name, metadata, autoload_with=conn)
        except NoSuchTableError:
            raise ConnectorConfigError(
                f"system {self.system!r}: table {settings.name!r} does not exist in the database; "
                "fix the table name in the register"
            ) from None
        sections: dict[str, Mapping[str, Any]] = {
            "identity": {c: None for c in settings.identity.values()},
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
        return _BoundTable(
            settings=settings,
            table=table,
            anonymise=prepared["anonymise"],
            marks={mark: prepared[mark] for mark in _MARK_TITLES},
        )


# -- values ---------------------------------------------------------------------------------

_COERCE_ERRORS = (ValueError, TypeError, ArithmeticError)


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


__all__ = ["SQLConnector", "SQLSettings", "SQLTable"]
