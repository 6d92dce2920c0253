"""The connector contract: one class per kind of system, one async method per right.

A connector is built from a register entry (`System`): its name and its `settings`. It names
the pydantic model of its settings as its type parameter, `class MyCRM(Connector[MySettings])`:
the base class validates the register's settings into that model once, so `self.settings` is
typed (no connector casts it) and a wrong setting fails at start-up naming system and field.
It declares which rights it carries out automatically in `capabilities`; for any other right the
runtime reports a manual task instead of calling it. Methods return a `Result`; they raise
`ConnectorError` for a failure they understand (saying whether a retry can help) and may let
anything else escape: the runtime turns it into a failed, retryable outcome without leaking
its message (which might hold personal data) to the bus.

Every method must be idempotent: tasks arrive at least once. A second erasure of the same
subject reports `not_found`, not an error.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError

from connectors.metadata import CollectionInfo
from schemas.envelope import describe_validation_error
from schemas.errors import DsrError
from schemas.events import (
    Counts,
    Evidence,
    FieldChange,
    OutcomeStatus,
    Record,
    RequestType,
    RetainedItem,
    Subject,
    TaskDispatched,
)
from schemas.primitives.records import RecordSink
from schemas.register import RetentionRule
from schemas.sweeps import SweepCount, SweepRule

SettingsT = TypeVar("SettingsT", bound=BaseModel)

#: The task a connector method is carrying out, set by the connector worker (None elsewhere):
#: for a connector that names its work at the vendor the same way on every attempt of a task.
current_task: ContextVar[TaskDispatched | None] = ContextVar("dsr_current_task", default=None)


class ConnectorError(DsrError):
    """A failure a connector understands. The message must not contain personal data."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ConnectorConfigError(ConnectorError):
    """The system's settings in the register are wrong; fix the register, retrying won't help."""


@dataclass(slots=True)
class Result:
    """What a connector did for one task."""

    status: OutcomeStatus
    counts: Counts = field(default_factory=Counts)
    records: list[Record] = field(default_factory=list)
    retained: list[RetainedItem] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    reason: str | None = None
    instructions: str | None = None

    @classmethod
    def completed(cls, counts: Counts | None = None, **kwargs: Any) -> Result:
        """Done, with counts."""
        return cls(OutcomeStatus.COMPLETED, counts or Counts(), **kwargs)

    @classmethod
    def not_found(cls, reason: str | None = None) -> Result:
        """Nothing about the subject in this system (also: already erased)."""
        return cls(OutcomeStatus.NOT_FOUND, reason=reason)

    @classmethod
    def manual(cls, instructions: str, reason: str | None = None) -> Result:
        """A person must act; `instructions` say what to do."""
        return cls(OutcomeStatus.MANUAL_ACTION_REQUIRED, instructions=instructions, reason=reason)

    @classmethod
    def found(cls, records: Sequence[Record]) -> Result:
        """An access result: completed with the records, or not found when there are none."""
        if not records:
            return cls.not_found()
        return cls.completed(Counts(found=len(records)), records=list(records))


@dataclass(slots=True)
class SweepResult:
    """What a connector did for one retention sweep: counts per collection, no identifiers."""

    status: OutcomeStatus
    counts: list[SweepCount] = field(default_factory=list)
    retained: list[RetainedItem] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    reason: str | None = None
    instructions: str | None = None

    @classmethod
    def done(cls, counts: Sequence[SweepCount], **kwargs: Any) -> SweepResult:
        """Swept (or counted, in a dry run)."""
        return cls(OutcomeStatus.COMPLETED, list(counts), **kwargs)

    @classmethod
    def manual(cls, instructions: str) -> SweepResult:
        """The connector cannot sweep: a person must; `instructions` say exactly what to do."""
        return cls(OutcomeStatus.MANUAL_ACTION_REQUIRED, instructions=instructions)


class Connector(ABC, Generic[SettingsT]):
    """Base class for connectors; override the methods for the rights in `capabilities`.

    `Connector[Model]` validates the register's settings into `Model`; a bare `Connector`
    keeps them as the plain mapping the register gave.
    """

    #: Rights this connector carries out automatically.
    capabilities: ClassVar[frozenset[RequestType]] = frozenset()
    #: The pydantic model of `settings`, taken from the type parameter `Connector[Model]`.
    settings_model: ClassVar[type[BaseModel] | None] = None
    #: Shown by `dsr connectors list`.
    description: ClassVar[str] = ""
    #: The collections described for people (glossary, provided fields); built-in connectors
    #: ship theirs as `connectors/metadata/<name>.yaml` instead (see `connectors.metadata`).
    collections: ClassVar[Mapping[str, CollectionInfo]] = {}
    #: Applies the register's `retention_rules` when erasing (see `use_retention`).
    supports_retention: ClassVar[bool] = False
    #: Carries out retention sweeps (`sweep`); otherwise a sweep becomes a manual task.
    sweeps: ClassVar[bool] = False
    #: Its tasks may wait minutes for the vendor (e.g. an OpenDSR processor): the worker runs
    #: them beside its batches, so they hold no other task up (`connectors.runtime`).
    waits: ClassVar[bool] = False
    #: Identifier formats it matches (`Identifier.format`): a connector that hashes its own
    #: stored values adds `sha256`, `md5`, `sha1`. It never gets identifiers in other formats;
    #: a subject known only by those becomes a manual task (`connectors.execute.perform`).
    identifier_formats: ClassVar[frozenset[str]] = frozenset({"raw"})

    settings: SettingsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "settings_model" in cls.__dict__:
            return  # named explicitly
        for base in cls.__dict__.get("__orig_bases__", ()):
            model = next(iter(get_args(base)), None)
            origin = get_origin(base)
            if (
                isinstance(origin, type)
                and issubclass(origin, Connector)
                and isinstance(model, type)
                and issubclass(model, BaseModel)
            ):
                cls.settings_model = model

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        self.system = system
        self.retention_rules: list[RetentionRule] = []
        raw = dict(settings or {})
        if self.settings_model is None:
            # A connector without a settings model reads the register's mapping as it is.
            self.settings = cast(SettingsT, raw)
            return
        try:
            self.settings = cast(SettingsT, self.settings_model.model_validate(raw))
        except ValidationError as exc:
            raise ConnectorConfigError(
                f"settings of system {system!r} are invalid: {describe_validation_error(exc)}"
            ) from None

    def use_retention(self, rules: Sequence[RetentionRule]) -> None:
        """Take the system's retention rules from the register.

        A connector that cannot apply them must not silently erase what the law says to keep.
        """
        if rules and not self.supports_retention:
            raise ConnectorConfigError(
                f"system {self.system!r} has retention_rules, but its connector cannot apply "
                "them; remove the rules (and describe the retention in 'retention') or use a "
                "connector that supports them"
            )
        self.retention_rules = list(rules)

    async def access(self, subject: Subject) -> Result:
        """Return every record about the subject (Art. 15)."""
        raise NotImplementedError

    async def export_into(self, subject: Subject, sink: RecordSink, *, portability: bool) -> Result:
        """Access or portability, writing the records into `sink` instead of the Result.

        The default calls `access`/`portability` and moves the records over; a connector that
        can stream (the SQL connector does) overrides this to keep memory flat.
        """
        result = await (self.portability(subject) if portability else self.access(subject))
        for record in result.records:
            sink.write(record)
        result.records = []
        return result

    async def portability(self, subject: Subject) -> Result:
        """Return the data the subject provided (Art. 20); by default the same as access."""
        return await self.access(subject)

    async def erase(self, subject: Subject) -> Result:
        """Delete or anonymise the subject's data, reporting what is retained and why (Art. 17)."""
        raise NotImplementedError

    async def rectify(self, subject: Subject, changes: Sequence[FieldChange]) -> Result:
        """Correct the given fields (Art. 16)."""
        raise NotImplementedError

    async def restrict(self, subject: Subject) -> Result:
        """Mark the data so it is stored but not processed (Art. 18)."""
        raise NotImplementedError

    async def object(self, subject: Subject) -> Result:
        """Stop the processing objected to, e.g. direct marketing (Art. 21)."""
        raise NotImplementedError

    async def withdraw_consent(self, subject: Subject) -> Result:
        """Stop consent-based processing (Art. 7(3))."""
        raise NotImplementedError

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """Delete (or anonymise) the records past each rule's cutoff, in every collection a rule
        names, by the same permanent paths as erasure; keep what the register's retention
        duties cover (`self.retention_rules`). A dry run counts and changes nothing. Counts
        per collection only: never an identifier (Art. 5(1)(e) GDPR)."""
        raise NotImplementedError

    def receive(self, event: BaseModel) -> None:
        """An event about this system from the bus, e.g. an OpenDSR processor's status
        callback; ignored unless overridden. A hint only: must not block, and must not be
        taken as the vendor's word (the worker does not check who published it)."""

    async def aclose(self) -> None:
        """Release connections; called once when the worker stops."""


__all__ = [
    "Connector",
    "ConnectorConfigError",
    "ConnectorError",
    "Result",
    "SettingsT",
    "SweepResult",
    "current_task",
]
