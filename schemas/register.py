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
from schemas.sweeps import describe_rule

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


#: The legal bases under which the right to data portability applies (Art. 20(1)(a) GDPR).
PORTABLE_BASES = frozenset({LegalBasis.CONSENT, LegalBasis.CONTRACT})


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Language = Literal["nl", "en"]


class LocalText(_Config):
    """Free text in both document languages, so a Dutch document stays Dutch throughout."""

    nl: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]


#: Free text in the register: one string (written in the language of the documents), or
#: `{nl: ..., en: ...}` when documents go out in both languages.
Text = str | LocalText


def localize(text: Text, language: Language) -> str:
    """The text in `language` (a plain string is the same in every language)."""
    if isinstance(text, LocalText):
        return text.nl if language == "nl" else text.en
    return text


class ProcessorAgreement(_Config):
    """The processing agreement (verwerkersovereenkomst) Art. 28(3) GDPR requires."""

    signed_on: date = Field(description="When the agreement was signed.")
    reference: Annotated[
        str,
        Field(
            min_length=1,
            examples=["DPA v2024-03, contract archive #1187"],
            description="Where the agreement is kept (document name, archive number or URL).",
        ),
    ]


class Processor(_Config):
    """The processor (verwerker) running the system for us, and its sub-processors.

    `agreement` is required: a processor may only process personal data under a contract or
    other legal act binding it to the controller (Art. 28(3) GDPR), and the register is the
    place that says which one.
    """

    name: str
    sub_processors: list[str] = Field(default_factory=list)
    agreement: ProcessorAgreement = Field(
        description="The processing agreement (Art. 28(3) GDPR): signed_on and reference."
    )


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


def _check_anonymise(action: str, fields: list[str]) -> None:
    """'anonymise' names the fields it clears; any other action names none."""
    if action == "anonymise" and not fields:
        raise ValueError("action 'anonymise' needs 'fields': the fields to clear")
    if action != "anonymise" and fields:
        raise ValueError("'fields' is only used with action 'anonymise'")


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
    reason: Text | None = Field(
        default=None, description="Shown in the certificate, in its language."
    )

    @field_validator("period")
    @classmethod
    def _period_parses(cls, value: str) -> str:
        parse_period(value)
        return value

    @model_validator(mode="after")
    def _fields_for_anonymise(self) -> RetentionRule:
        _check_anonymise(self.action, self.fields)
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


class Purpose(_Config):
    """A purpose of processing with its own legal basis (Art. 13(1)(c), 30(1)(b) GDPR)."""

    name: Text
    legal_basis: LegalBasis
    legitimate_interest: Text | None = Field(
        default=None,
        description="With legal basis legitimate_interests: the interest pursued "
        "(Art. 13(1)(d) GDPR).",
    )


class Profiling(_Config):
    """Automated decision-making or profiling in a system (Art. 15(1)(h), 22 GDPR).

    The logic and its consequences are stated in plain words, as the subject must be told
    "meaningful information about the logic involved, as well as the significance and the
    envisaged consequences" (Art. 15(1)(h)).
    """

    kind: Literal["profiling", "automated_decision", "both"]
    logic: Text
    consequences: Text


class RecipientCategory(StrEnum):
    """Who receives personal data besides the controller (Art. 4(9), 15(1)(c) GDPR)."""

    PROCESSOR = "processor"
    CARRIER = "carrier"
    PAYMENT_PROVIDER = "payment_provider"
    TAX_AUTHORITY = "tax_authority"
    PUBLIC_AUTHORITY = "public_authority"
    GROUP_COMPANY = "group_company"
    ACCOUNTANT = "accountant"
    OTHER_CONTROLLER = "other_controller"
    OTHER = "other"


class Notification(_Config):
    """How a recipient is told of a rectification, erasure or restriction (Art. 19 GDPR).

    Exactly one way: `system` (a system in this register whose connector carries out the same
    request, so the recipient is told by the request itself), `email` (an e-mail goes out), or
    `instructions` (a manual task says what a person must do).
    """

    system: Annotated[str | None, Field(pattern=SYSTEM_NAME_PATTERN)] = None
    email: Annotated[str | None, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] = None
    instructions: Text | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Notification:
        ways = [w for w in (self.system, self.email, self.instructions) if w is not None]
        if len(ways) != 1:
            raise ValueError("give exactly one of system, email and instructions")
        return self


class Recipient(_Config):
    """A recipient (or category of recipients) of personal data other than a system's processor.

    Carriers, payment providers, the tax authority, group companies: Art. 15(1)(c) and
    30(1)(d) GDPR name them all, not only processors.
    """

    name: Annotated[str, Field(min_length=1)]
    category: RecipientCategory
    purpose: Text
    data_categories: Annotated[list[Text], Field(min_length=1)]
    systems: list[Annotated[str, Field(pattern=SYSTEM_NAME_PATTERN)]] = Field(
        default_factory=list,
        description="The systems whose data it receives (empty: not tied to one system).",
    )
    location: Location = Location()
    notify: Notification | None = Field(
        default=None,
        description="How it is told of a rectification, erasure or restriction (Art. 19); "
        "without it a manual task is made.",
    )


ThirdPartyMode = Literal["redact", "hold"]
Provided = Literal["all", "none"] | list[str]


class CollectionRetention(_Config):
    """How long one collection's records are kept, machine-readable: what a sweep enforces
    (storage limitation, Art. 5(1)(e) GDPR). The free-text `System.retention` says it in words.

    A record has expired when its `date_field` lies more than `period` before today; with
    `counted_from: book_year_end` the period starts at the end of the record's calendar year.
    The register's `retention_rules` (legal duties to keep, e.g. invoices for 7 years) win:
    a sweep keeps what they cover.
    """

    collection: Annotated[str, Field(min_length=1, description="Table or collection name.")]
    period: Annotated[str, Field(examples=["180 days", "12 months", "2 years"])]
    counted_from: Literal["created", "last_activity", "relationship_end", "book_year_end"] = Field(
        description="What the period counts from."
    )
    date_field: Annotated[
        str,
        Field(min_length=1, description="The record's field holding that date, e.g. updated_at."),
    ]
    action: Literal["delete", "anonymise"] = "delete"
    fields: list[str] = Field(
        default_factory=list, description="With action 'anonymise': the fields to clear."
    )

    @field_validator("period")
    @classmethod
    def _period_parses(cls, value: str) -> str:
        parse_period(value)
        return value

    @model_validator(mode="after")
    def _fields_for_anonymise(self) -> CollectionRetention:
        _check_anonymise(self.action, self.fields)
        return self

    def cutoff(self, today: date) -> date:
        """Records dated before this day have expired on `today`."""
        earliest = today - parse_period(self.period)
        if self.counted_from == "book_year_end":
            # Expired once the end of its year plus the period has passed: dated before
            # 1 January of the year the period reaches back to.
            return date(earliest.year, 1, 1)
        return earliest

    def describe(self) -> str:
        """The rule in words (English, for staff and certificates' rule column)."""
        return describe_rule(self.period, self.counted_from, self.date_field)


class SweepPolicy(_Config):
    """A system's retention sweeps: when they run, whether they wait for an officer, and the
    retention per collection they enforce."""

    schedule: Annotated[
        str, Field(examples=["1 day", "1 week"], description="How often a sweep runs.")
    ] = "1 day"
    approval: Literal["required", "not_required"] = Field(
        default="required",
        description="'required': every sweep is a dry run first and deletes only after an "
        "officer's approval; 'not_required' once the system is trusted.",
    )
    collections: Annotated[list[CollectionRetention], Field(min_length=1)]

    @field_validator("schedule")
    @classmethod
    def _schedule_parses(cls, value: str) -> str:
        parse_period(value)
        return value

    @model_validator(mode="after")
    def _one_per_collection(self) -> SweepPolicy:
        _refuse_repeated((c.collection for c in self.collections), "sweep rule for collection")
        return self


class System(_Config):
    """One system in the register."""

    name: Annotated[str, Field(pattern=SYSTEM_NAME_PATTERN)]
    title: str | None = Field(default=None, description="Display name, e.g. 'HubSpot CRM'.")
    kind: SystemKind
    connector: Annotated[str, Field(min_length=1, description="Entry point in 'dsr.connectors'.")]
    settings: dict[str, Any] = Field(default_factory=dict)
    processor: Processor | None = Field(default=None, description="None: run by the controller.")
    data_categories: Annotated[list[Text], Field(min_length=1)]
    purposes: Annotated[
        list[Purpose | Text],
        Field(
            min_length=1,
            description="Each purpose with its legal basis; a plain name takes the system's "
            "one `legal_basis`.",
        ),
    ]
    legal_basis: list[LegalBasis] = Field(
        default_factory=list,
        description="Filled from the purposes; give it only for purposes written as plain names.",
    )
    retention: Text = Field(examples=["180 days after last contact"])
    location: Location = Location()
    source: Text = "the data subject"
    profiling: Literal["none"] | Profiling = Field(
        description="Automated decision-making or profiling (Art. 15(1)(h)): 'none', or what "
        "it is, its logic and consequences in plain words."
    )
    data_subjects: list[Text] = Field(
        default_factory=list,
        description="Categories of data subjects (Art. 30(1)(c)), e.g. customers, prospects.",
    )
    third_parties: dict[str, ThirdPartyMode] = Field(
        default_factory=dict,
        description="Per collection, what the export does with other people's data in shared "
        "records: 'redact' (default) or 'hold' for an officer's review (Art. 15(4)).",
    )
    glossary: dict[str, dict[str, Text]] = Field(
        default_factory=dict,
        description="Per collection, field name -> label; overrides the connector's glossary.",
    )
    provided: dict[str, Provided] = Field(
        default_factory=dict,
        description="Per collection, what the subject provided (Art. 20(1)): 'all', 'none' "
        "or a list of fields; overrides the connector's metadata.",
    )
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
    sweep: SweepPolicy | None = Field(
        default=None,
        description="Retention sweeps: the register's retention periods enforced (Art. 5(1)(e)).",
    )

    @model_validator(mode="after")
    def _one_rule_per_collection(self) -> System:
        _refuse_repeated(
            (rule.collection for rule in self.retention_rules), "retention rule for collection"
        )
        return self

    @model_validator(mode="after")
    def _purposes_paired_with_bases(self) -> System:
        plain = [p for p in self.purposes if not isinstance(p, Purpose)]
        if plain and len(self.legal_basis) != 1:
            raise ValueError(
                "purposes written as plain names need exactly one legal_basis for the system; "
                "with several, give each purpose its own: {name: ..., legal_basis: ...}"
            )
        bases = list(self.legal_basis)
        for purpose in self.purposes:
            if isinstance(purpose, Purpose) and purpose.legal_basis not in bases:
                bases.append(purpose.legal_basis)
        object.__setattr__(self, "legal_basis", bases)  # frozen: filled once, here
        return self

    def purpose_list(self) -> list[Purpose]:
        """Every purpose paired with its legal basis."""
        return [
            p if isinstance(p, Purpose) else Purpose(name=p, legal_basis=self.legal_basis[0])
            for p in self.purposes
        ]

    def is_portable(self) -> bool:
        """Whether the right to data portability reaches the system: a purpose of it rests on
        consent or on a contract with the subject (Art. 20(1)(a) GDPR)."""
        return any(p.legal_basis in PORTABLE_BASES for p in self.purpose_list())

    def third_party_mode(self, collection: str) -> ThirdPartyMode:
        """What the export does with other people's data in this collection."""
        return self.third_parties.get(collection, "redact")

    @property
    def display_name(self) -> str:
        """The title, or the name."""
        return self.title or self.name


class NotRetrievable(_Config):
    """A processing whose personal data the controller cannot retrieve for any subject.

    E.g. a bot check such as Google reCAPTCHA: the visitor's browser sends its signals (IP
    address, mouse movements, time on the page) to the provider, and the controller receives
    only a verdict per form, tied to no one. There is nothing to search, copy or erase, so no
    task is created for it; the Art. 15 report still names it, with `reason`, because Art.
    15(1)(a)-(d) and 13 ask for the processing itself, and Art. 11(2) GDPR lets the controller
    say it cannot identify the subject in it.
    """

    name: Annotated[str, Field(pattern=SYSTEM_NAME_PATTERN)]
    title: str | None = None
    processor: Processor | None = None
    purposes: Annotated[list[Purpose], Field(min_length=1)]
    data_categories: Annotated[list[Text], Field(min_length=1)]
    retention: Text
    location: Location = Location()
    reason: Text = Field(description="Why nothing is retrievable (shown in the Art. 15 report).")

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
    complaints: str | None = Field(
        default=None,
        description="The internal complaint route (an address or page); named in every "
        "refusal, partial answer and certificate that keeps data.",
    )
    privacy_statement: str | None = Field(default=None, description="URL of the statement.")
    tone: Literal["u", "je"] = Field(
        default="u", description="How Dutch documents address the reader: formal u or informal je."
    )


class CaseFiles(_Config):
    """How long our own case files are kept (storage limitation applies to them too).

    The defaults weigh accountability (Art. 5(2) GDPR: showing that each request was answered
    lawfully and on time, and defending a complaint or a court case) against storage
    limitation (Art. 5(1)(e)); see docs for the reasoning. A sweep of the case files removes
    what has expired and destroys the request's data key.
    """

    results: Annotated[str, Field(description="Result files and letters.")] = "2 years"
    certificates: Annotated[str, Field(description="Deletion and sweep certificates.")] = "5 years"
    status_topic: Annotated[
        str, Field(description="Retention of the status topic (Kafka retention.ms).")
    ] = "2 years"
    schedule: str = "1 day"

    @field_validator("results", "certificates", "status_topic", "schedule")
    @classmethod
    def _period_parses(cls, value: str) -> str:
        parse_period(value)
        return value


class Register(_Config):
    """All systems holding personal data, and who else receives it (Art. 30 GDPR)."""

    controller: Controller | None = None
    systems: Annotated[list[System], Field(min_length=1)]
    recipients: list[Recipient] = Field(
        default_factory=list,
        description="Recipients besides the systems' processors (Art. 15(1)(c), 30(1)(d)).",
    )
    data_subjects: list[Text] = Field(
        default_factory=list, description="Categories of data subjects (Art. 30(1)(c))."
    )
    security_measures: list[Text] = Field(
        default_factory=list,
        description="General description of the technical and organisational security "
        "measures (Art. 30(1)(g), 32(1)).",
    )
    case_files: CaseFiles = Field(
        default_factory=CaseFiles, description="How long our own case files are kept."
    )
    not_retrievable: list[NotRetrievable] = Field(
        default_factory=list,
        description="Processings whose data cannot be retrieved for a subject (no connector, "
        "no task); the Art. 15 report states them with their reason.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Register:
        names_used = [s.name for s in self.systems] + [n.name for n in self.not_retrievable]
        _refuse_repeated(names_used, "system name")
        _refuse_repeated((r.name for r in self.recipients), "recipient name")
        names = set(self.names)
        for recipient in self.recipients:
            unknown = [n for n in recipient.systems if n not in names]
            told_by = recipient.notify.system if recipient.notify is not None else None
            if told_by is not None and told_by not in names:
                unknown.append(told_by)
            if unknown:
                raise ValueError(
                    f"recipient {recipient.name!r} names systems not in the register: "
                    + ", ".join(sorted(set(unknown)))
                )
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
    data: Any,
    origin: str = "<register>",
    env: Mapping[str, str] | None = None,
    *,
    group: str | None = None,
) -> Register:
    """Validate register data (already parsed YAML); errors name origin, entry and field.

    `${VAR}` references in settings are filled from `env` (default: the process environment).
    With `group` (a connector worker's group), only the settings of that group's systems are
    filled: a worker holds only its own systems' credentials, and the other systems keep their
    `${VAR}` text, never built by that worker.
    """
    env = os.environ if env is None else env
    if not isinstance(data, dict):
        raise RegisterError(f"{origin}: expected a mapping with a 'systems' list")
    systems = data.get("systems")
    if isinstance(systems, list):
        data = dict(data)
        expanded = []
        for i, entry in enumerate(systems):
            if isinstance(entry, dict) and "settings" in entry and _served_by(entry, group):
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
            message = _MISSING.get(tuple(loc[-2:]), error["msg"])
            if error["type"] != "missing":
                message = error["msg"]
            problems.append(f"{origin}: {where}: {message}")
        raise RegisterError("invalid register:\n  " + "\n  ".join(problems)) from None


#: Clearer words for required fields that are easy to miss, by their last two path parts.
_MISSING: dict[tuple[Any, ...], str] = {
    ("processor", "agreement"): "a processor needs its processing agreement (Art. 28(3) GDPR): "
    "agreement: {signed_on: YYYY-MM-DD, reference: where it is kept}",
    ("profiling",): "say whether the system profiles or decides automatically "
    "(Art. 15(1)(h) GDPR): 'profiling: none', or {kind, logic, consequences}",
}


def _served_by(entry: dict[str, Any], group: str | None) -> bool:
    """Whether a register entry's settings are expanded for `group` (None: every group)."""
    return group is None or entry.get("group", "default") == group


def _entry_label(data: dict[str, Any], index: int) -> str:
    try:
        name = data["systems"][index].get("name")
    except (AttributeError, IndexError, KeyError, TypeError):
        name = None
    return f"systems[{index}]" + (f" ({name})" if name else "")


def load_register(
    path: str | Path, env: Mapping[str, str] | None = None, *, group: str | None = None
) -> Register:
    """Read and validate the register YAML file (`${VAR}` filled from `env`, for the systems
    of `group` only when given)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegisterError(f"{path}: cannot read the register ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegisterError(f"{path}: not valid YAML ({exc})") from None
    return parse_register(data, str(path), env, group=group)


class WatchedRegister:
    """The register file, re-read when it changes on disk, so running workers pick up edits.

    An edit that does not validate is reported once and the last valid register stays in use.
    """

    def __init__(
        self, path: str | Path, env: Mapping[str, str] | None = None, *, group: str | None = None
    ) -> None:
        self.path = Path(path)
        self._env = env
        self._group = group
        self._stamp = self._read_stamp()
        self.register = load_register(self.path, env, group=group)
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
                self.register = load_register(self.path, self._env, group=self._group)
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
    "PORTABLE_BASES",
    "CaseFiles",
    "CollectionRetention",
    "Controller",
    "LegalBasis",
    "LocalText",
    "Location",
    "NotRetrievable",
    "Notification",
    "Processor",
    "ProcessorAgreement",
    "Profiling",
    "Provided",
    "Purpose",
    "Recipient",
    "RecipientCategory",
    "Register",
    "RegisterError",
    "RetentionRule",
    "SweepPolicy",
    "System",
    "SystemKind",
    "Text",
    "ThirdPartyMode",
    "WatchedRegister",
    "load_register",
    "localize",
    "parse_period",
    "parse_register",
]
