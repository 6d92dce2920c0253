"""The register of systems (processing register, GDPR Art. 30), loaded from one YAML file.

Each system holding personal data is described once: what it is, who processes it, which
categories it holds and why, how long, where, and which connector carries out requests on it.
The same description feeds the Art. 15 information in every export.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.errors import DsrError
from schemas.events import SYSTEM_NAME_PATTERN, RequestType

_log = logging.getLogger("dsr.register")


class SystemKind(StrEnum):
    """What kind of system holds the data."""

    CRM = "crm"
    MAILING = "mailing"
    CHAT = "chat"
    SUPPORT_DESK = "support_desk"
    DATABASE = "database"
    SMS = "sms"
    ANALYTICS = "analytics"
    PAYMENTS = "payments"
    ARCHIVE = "archive"
    OTHER = "other"


class LegalBasis(StrEnum):
    """Art. 6(1) GDPR, (a) to (f)."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Processor(_Config):
    """The processor (verwerker) running the system for us, and its sub-processors."""

    name: str
    sub_processors: list[str] = Field(default_factory=list)
    agreement: bool = Field(default=True, description="A processing agreement is in place.")


class Location(_Config):
    """Where the data is stored, and the transfer safeguard when outside the EEA."""

    region: Annotated[str, Field(examples=["EEA", "US"])] = "EEA"
    transfer_mechanism: str | None = Field(
        default=None, examples=["adequacy decision (EU-US Data Privacy Framework)", "SCC"]
    )

    @model_validator(mode="after")
    def _safeguard_outside_eea(self) -> Location:
        if self.region.upper() != "EEA" and not self.transfer_mechanism:
            raise ValueError(
                "storage outside the EEA needs a transfer_mechanism "
                "(e.g. 'SCC' or an adequacy decision)"
            )
        return self


_PERIOD = re.compile(r"^\s*(\d+)\s*(year|years|month|months|week|weeks|day|days)\s*$", re.I)


def parse_period(text: str) -> relativedelta:
    """'7 years', '18 months', '6 weeks', '30 days' as a calendar period."""
    match = _PERIOD.match(text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"period {text!r} is not understood; use e.g. '7 years', '18 months'")
    amount, unit = int(match.group(1)), match.group(2).lower().rstrip("s") + "s"
    return relativedelta(**{unit: amount})


class RetentionRule(_Config):
    """A legal duty to keep a collection's records for a period, despite an erasure request.

    Erasure keeps (or anonymises) the subject's records in `collection` whose retention has not
    run out, and reports them as retained with the legal basis and the until-date computed from
    the record's own date (`date_field`). Records whose period has passed are erased as usual.
    """

    collection: Annotated[str, Field(min_length=1, description="Table or collection name.")]
    legal_basis: Annotated[
        str,
        Field(
            min_length=1,
            examples=["Art. 52 AWR and Art. 2:10 BW (fiscal retention, 7 years)"],
            description="The law that obliges keeping the records (Art. 17(3)(b) GDPR).",
        ),
    ]
    period: Annotated[str, Field(examples=["7 years"], description="'7 years', '18 months'...")]
    date_field: Annotated[
        str, Field(min_length=1, description="The record's own date the period counts from.")
    ]
    counted_from: Literal["record_date", "end_of_year"] = Field(
        default="record_date",
        description="'end_of_year': the period starts at the end of the record's calendar year "
        "(the Dutch fiscal retention counts from the end of the book year).",
    )
    action: Literal["keep", "anonymise"] = Field(
        default="keep", description="'anonymise': keep the record but clear `fields`."
    )
    fields: list[str] = Field(
        default_factory=list, description="With action 'anonymise': the fields to clear."
    )
    reason: str | None = Field(default=None, description="Shown in the certificate.")

    @field_validator("period")
    @classmethod
    def _period_parses(cls, value: str) -> str:
        parse_period(value)
        return value

    @model_validator(mode="after")
    def _fields_for_anonymise(self) -> RetentionRule:
        if self.action == "anonymise" and not self.fields:
            raise ValueError("action 'anonymise' needs 'fields': the fields to clear")
        if self.action == "keep" and self.fields:
            raise ValueError("'fields' is only used with action 'anonymise'")
        return self

    def start(self, record_date: date) -> date:
        """When the period starts for a record of this date."""
        if self.counted_from == "end_of_year":
            return date(record_date.year, 12, 31)
        return record_date

    def until(self, record_date: date) -> date:
        """The last day the record must be kept."""
        return self.start(record_date) + parse_period(self.period)

    def cutoff(self, today: date) -> date:
        """Records dated on or after this date are still under retention on `today`."""
        earliest = today - parse_period(self.period)
        if self.counted_from == "end_of_year":
            return date(earliest.year, 1, 1)
        return earliest

    def describe(self) -> str:
        """One line for documents: what is kept and why."""
        how = "kept" if self.action == "keep" else f"kept with {', '.join(self.fields)} cleared"
        start = "the end of the year of" if self.counted_from == "end_of_year" else ""
        return f"{how} for {self.period} from {start} {self.date_field}".replace("  ", " ")


class System(_Config):
    """One system in the register."""

    name: Annotated[str, Field(pattern=SYSTEM_NAME_PATTERN)]
    title: str | None = Field(default=None, description="Display name, e.g. 'HubSpot CRM'.")
    kind: SystemKind
    connector: Annotated[str, Field(min_length=1, description="Entry point in 'dsr.connectors'.")]
    settings: dict[str, Any] = Field(default_factory=dict)
    processor: Processor | None = Field(default=None, description="None: run by the controller.")
    data_categories: Annotated[list[str], Field(min_length=1)]
    purposes: Annotated[list[str], Field(min_length=1)]
    legal_basis: Annotated[list[LegalBasis], Field(min_length=1)]
    retention: Annotated[str, Field(min_length=1, examples=["180 days after last contact"])]
    location: Location = Location()
    source: str = "the data subject"
    rights: list[RequestType] | None = Field(
        default=None,
        description="Rights carried out automatically; others become manual tasks. "
        "Defaults to what the connector declares.",
    )
    group: Annotated[str, Field(pattern=SYSTEM_NAME_PATTERN)] = Field(
        default="default", description="Connector worker group that serves this system."
    )
    retention_rules: list[RetentionRule] = Field(
        default_factory=list,
        description="Legal duties to keep records despite erasure (applied by the connector).",
    )

    @model_validator(mode="after")
    def _one_rule_per_collection(self) -> System:
        _refuse_repeated(
            (rule.collection for rule in self.retention_rules), "retention rule for collection"
        )
        return self

    @property
    def display_name(self) -> str:
        """The title, or the name."""
        return self.title or self.name


def _refuse_repeated(names: Iterable[str], what: str) -> None:
    """Raise `ValueError` naming the first name that occurs a second time."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} is used twice")
        seen.add(name)


class Controller(_Config):
    """The controller (verwerkingsverantwoordelijke) the register belongs to."""

    name: str
    contact: str | None = None
    dpo: str | None = None


class Register(_Config):
    """All systems holding personal data."""

    controller: Controller | None = None
    systems: Annotated[list[System], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> Register:
        _refuse_repeated((system.name for system in self.systems), "system name")
        return self

    def get(self, name: str) -> System:
        """The system with this name; KeyError if there is none."""
        for system in self.systems:
            if system.name == name:
                return system
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        """System names in register order."""
        return [s.name for s in self.systems]


class RegisterError(DsrError, ValueError):
    """The register file is missing or invalid; the message names file, entry and field."""


_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, path: str, env: Mapping[str, str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in settings, so secrets stay out of the file."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise RegisterError(f"{path}: environment variable {name} is not set")

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{path}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def parse_register(
    data: Any, origin: str = "<register>", env: Mapping[str, str] | None = None
) -> Register:
    """Validate register data (already parsed YAML); errors name origin, entry and field.

    `${VAR}` references in settings are filled from `env` (default: the process environment).
    """
    env = os.environ if env is None else env
    if not isinstance(data, dict):
        raise RegisterError(f"{origin}: expected a mapping with a 'systems' list")
    systems = data.get("systems")
    if isinstance(systems, list):
        data = dict(data)
        expanded = []
        for i, entry in enumerate(systems):
            if isinstance(entry, dict) and "settings" in entry:
                label = _entry_label(data, i)
                entry = {
                    **entry,
                    "settings": _expand_env(entry["settings"], f"{origin}: {label}.settings", env),
                }
            expanded.append(entry)
        data["systems"] = expanded
    try:
        return Register.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_context=False):
            loc = list(error["loc"])
            label = ""
            if len(loc) >= 2 and loc[0] == "systems" and isinstance(loc[1], int):
                label = _entry_label(data, loc[1])
                loc = loc[2:]
            field = ".".join(str(p) for p in loc)
            where = " ".join(p for p in (label, field) if p) or "(top level)"
            problems.append(f"{origin}: {where}: {error['msg']}")
        raise RegisterError("invalid register:\n  " + "\n  ".join(problems)) from None


def _entry_label(data: dict[str, Any], index: int) -> str:
    try:
        name = data["systems"][index].get("name")
    except (AttributeError, IndexError, KeyError, TypeError):
        name = None
    return f"systems[{index}]" + (f" ({name})" if name else "")


def load_register(path: str | Path, env: Mapping[str, str] | None = None) -> Register:
    """Read and validate the register YAML file (`${VAR}` filled from `env`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegisterError(f"{path}: cannot read the register ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegisterError(f"{path}: not valid YAML ({exc})") from None
    return parse_register(data, str(path), env)


class WatchedRegister:
    """The register file, re-read when it changes on disk, so running workers pick up edits.

    An edit that does not validate is reported once and the last valid register stays in use.
    """

    def __init__(self, path: str | Path, env: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self._env = env
        self._stamp = self._read_stamp()
        self.register = load_register(self.path, env)
        self.error: RegisterError | None = None
        self.version = 1

    def _read_stamp(self) -> tuple[int, int]:
        stat = self.path.stat()
        return (stat.st_mtime_ns, stat.st_size)

    def current(self) -> Register:
        """The register as the file says now (cheap when unchanged: one stat call)."""
        try:
            stamp = self._read_stamp()
        except OSError:
            return self.register
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.register = load_register(self.path, self._env)
                self.error = None
                self.version += 1
                _log.info("register %s reloaded (version %d)", self.path, self.version)
            except RegisterError as exc:
                self.error = exc
                _log.error(
                    "register %s changed but is invalid; keeping the last valid one: %s",
                    self.path,
                    exc,
                )
        return self.register


__all__ = [
    "Controller",
    "LegalBasis",
    "Location",
    "Processor",
    "Register",
    "RegisterError",
    "RetentionRule",
    "System",
    "SystemKind",
    "WatchedRegister",
    "load_register",
    "parse_period",
    "parse_register",
]
