"""Orchestrator configuration, read from DSR_* environment variables and validated at start."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.lifecycle.deadlines import DEFAULT_ZONE, DeadlinePolicy, Period, time_zone
from orchestrator.lifecycle.reducer import Policy
from orchestrator.lifecycle.verification import VerificationPolicy
from orchestrator.status.masking import identifier_kinds
from schemas.errors import DsrError
from schemas.events import RequestType
from schemas.kafka import KafkaSettings
from schemas.primitives.records import INLINE_BYTES, RecordStore
from schemas.primitives.sealing import DataKeys, SealingError, bus_key
from schemas.primitives.signing import PublisherKeyError, RequestVerifier
from schemas.register import WatchedRegister

_log = logging.getLogger("dsr.config")

#: A staff id as decisions record it (`decided_by`, `verified_by`, `extended_by`): short, letters,
#: digits and `._-`. No `@`: an e-mail address is personal data and status events carry the id.
STAFF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def staff_id_problem(value: str) -> str | None:
    """Why `value` is not a staff id a status event may carry; None when it is one.

    The answer never repeats `value` (it may be an e-mail address or a BSN)."""
    kinds = identifier_kinds(value)
    if kinds:
        return (
            f"it looks like personal data ({', '.join(kinds)}); use a staff id such as 'officer-7'"
        )
    if not STAFF_ID.match(value):
        return (
            "a staff id is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit, e.g. 'officer-7'"
        )
    return None


class Settings(BaseSettings):
    """Everything the orchestrator and its workers are configured with."""

    model_config = SettingsConfigDict(env_prefix="DSR_", extra="ignore", populate_by_name=True)

    register_file: Path = Field(
        Path("register.yaml"),
        validation_alias=AliasChoices("DSR_REGISTER", "register_file"),
        description="The register YAML file (DSR_REGISTER).",
    )
    data_dir: Path = Field(Path("dsr-data"), description="Where results are written.")
    record_dir: Path | None = Field(
        None,
        description="Record store shared by connector workers and the orchestrator: where "
        "access results wait for the export (default: DATA_DIR/records).",
    )
    record_inline_bytes: int = Field(
        INLINE_BYTES,
        ge=0,
        le=512 * 1024,
        description="Access results up to this many bytes of JSON Lines travel sealed in their "
        "outcome event instead of a record file (0: always a file). Connector workers use it.",
    )
    export_processes: int = Field(
        1,
        ge=0,
        le=64,
        description="Worker processes the orchestrator writes exports in, beside its event loop "
        "(0: in a thread of the orchestrator's own process).",
    )
    record_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="How long an exported request's record files stay in the record store "
        "(a worker that dies before its state is saved exports again from them).",
    )
    keys_dir: Path | None = Field(
        None, description="Certificate signing keys and salt (default: DATA_DIR/keys)."
    )
    bus_key_file: Path | None = Field(
        None,
        description="The bus key (32 random bytes or their base64, mode 0600) that wraps each "
        "request's data key; the same file for the orchestrator and every connector worker (in "
        "Kubernetes a Secret). Default: KEYS_DIR/bus.key, created on first use.",
    )
    dek_dir: Path | None = Field(
        None,
        description="The data-key store, one wrapped key per request, shared like the record "
        "store (default: DATA_DIR/dek).",
    )
    shred_after: str = Field(
        "30 days",
        description="How long after a request is final its personal data is kept; then its data "
        "key is destroyed (crypto-shredding): '30 days', '6 months', '0 seconds', or 'never'.",
    )
    publisher_keys: Path | None = Field(
        None,
        description="The publisher keys file: who may publish request events, with their "
        "keys (`dsr publishers create`). Required, except on the embedded broker.",
    )
    allow_unsigned_requests: bool = Field(
        False,
        description="Accept request events, tasks and outcomes without a signature (migration, "
        "trusted tests); logged as a warning. Signed events are verified all the same.",
    )
    allow_insecure_kafka: bool = Field(
        False,
        description="Acknowledge a Kafka connection without TLS or without authentication "
        "(trials only; the Helm chart sets it only with allowInsecureKafka: true). Every "
        "process logs a loud warning at start-up while it is set.",
    )
    deadline_policy: str = Field(
        "1 month",
        description="How long the controller takes to answer: '1 month', '4 weeks', '30 days' "
        "or shorter; never longer than one month (Art. 12(3) GDPR), refused at start-up.",
    )
    deadline_timezone: str = Field(
        DEFAULT_ZONE,
        description="The time zone whose calendar days deadlines are counted in (IANA name).",
    )
    verification_policy: str = Field(
        "",
        description="Which identity verification each right needs, changing the defaults per "
        "right: 'right=method,method;right=channel', e.g. 'erasure=id_document,in_person'. "
        "Defaults: objection and consent_withdrawal on the channel alone (no ID step, Art. 7(3) "
        "and 21 GDPR); access, portability, erasure, rectification and restriction by "
        "id_document, authenticated_session or in_person. Unknown rights or methods are refused "
        "at start-up.",
    )
    approval_required: str = Field(
        "",
        description="Rights whose requests wait for an officer's `approve` decision before "
        "anything is dispatched, comma-separated (e.g. 'erasure'). Off by default.",
    )
    smtp_host: str | None = Field(
        None,
        description="SMTP server the answer is e-mailed through (Art. 12(3): a request is "
        "answered when delivered). Unset: no e-mail; an officer records delivery (dsr deliver).",
    )
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_from: str = Field("", description="The From address of delivery e-mails.")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    public_url: str = Field(
        "http://127.0.0.1:8080",
        description="Where subjects reach the dashboard's download page (the link e-mailed).",
    )
    delivery_link_hours: int = Field(
        24, ge=1, le=24, description="How long the e-mailed download link and its code live."
    )
    reminder_after_days: int = Field(
        14,
        ge=0,
        description="Days after an ID request before the subject gets one reminder; 0: none.",
    )
    waiting_warning_days: int = Field(
        14,
        ge=0,
        description="Days before the deadline a request waiting on the subject (identity, fee) "
        "is flagged, earlier than the due-soon warning.",
    )
    due_soon_days: int = Field(7, ge=0)
    max_attempts: int = Field(3, ge=1, description="Tries per system before failing.")
    retry_delay_seconds: float = Field(5.0, ge=0)
    task_timeout_seconds: float = Field(
        900.0,
        gt=0,
        description="A task without an outcome after this long is dispatched again; after "
        "MAX_ATTEMPTS dispatches the system fails with the reason.",
    )
    sweep_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        description="A retention sweep's task without an outcome after this long is dispatched "
        "again (a sweep of a large table takes a while); after MAX_ATTEMPTS dispatches the "
        "sweep fails with the reason.",
    )
    sweep_schedules: bool = Field(
        True,
        description="Start each system's retention sweep on the register's schedule "
        "(`sweep.schedule`). Off: sweeps run only when started (dsr sweep SYSTEM).",
    )
    tick_interval_seconds: float = Field(30.0, gt=0, description="Deadline check period.")
    batch_size: int = Field(500, ge=1)
    batch_within_seconds: float = Field(
        0.01, gt=0, description="How long a batch waits for more events after its first one."
    )
    producer_max_batch_size: int = Field(16384, ge=1)
    orchestrator_workers: int = Field(
        1, ge=1, description="Orchestrator processes 'dsr up' starts (<= partitions)."
    )
    source: str = Field("dsr-orchestrator", description="CloudEvents source of our events.")
    app_id: str = "dsr-orchestrator"
    health_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve /healthz, /readyz and /metrics of a worker on this port (containers); "
        "unset: no health server, so many local workers never clash on a port.",
    )
    dashboard_host: str = Field(
        "127.0.0.1", description="Address the dashboard listens on (0.0.0.0 in a pod)."
    )
    dashboard_port: int = Field(
        8080, ge=0, le=65535, description="The dashboard's port; 0: any free port."
    )
    dashboard_token: SecretStr | None = Field(
        None,
        description="Opens the dashboard, its API and /metrics (Bearer header or sign-in form); "
        "at least 16 characters, e.g. from `openssl rand -hex 32`. Required unless "
        "DASHBOARD_ALLOW_ANONYMOUS; `dsr up` makes one up for the session when unset.",
    )
    dashboard_allow_anonymous: bool = Field(
        False,
        description="Serve the dashboard without a token: only behind a proxy that "
        "authenticates, or on loopback (`dsr demo` does).",
    )
    dashboard_user_header: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9-]+$",
        description="The request header in which the reverse proxy in front of the dashboard "
        "passes the signed-in person's staff id (e.g. X-Forwarded-User); decisions, "
        "verifications and extensions are then recorded as theirs. Only set it behind a proxy "
        "that authenticates and strips this header from clients' requests.",
    )
    dashboard_officer: str | None = Field(
        None,
        description="The staff id decisions from the dashboard are recorded as when no proxy "
        "header names the person (a single-officer setup); unset: 'dashboard'.",
    )
    dashboard_lag_interval_seconds: float = Field(
        15.0, gt=0, description="How often the dashboard measures consumer lag."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @field_validator("deadline_policy")
    @classmethod
    def _policy_parses(cls, value: str) -> str:
        DeadlinePolicy.parse(value)
        return value

    @field_validator("verification_policy", "approval_required", "deadline_timezone")
    @classmethod
    def _parses(cls, value: str, info: ValidationInfo) -> str:
        # The same parser the policy uses later, so a bad value stops start-up with its name.
        parse = {
            "verification_policy": VerificationPolicy.parse,
            "approval_required": _rights,
            "deadline_timezone": time_zone,
        }[info.field_name or ""]
        parse(value)
        return value

    @field_validator("smtp_from")
    @classmethod
    def _from_needed(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("smtp_host") and "@" not in value:
            raise ValueError("DSR_SMTP_FROM must be an e-mail address when DSR_SMTP_HOST is set")
        return value

    @field_validator("shred_after")
    @classmethod
    def _shred_after_parses(cls, value: str) -> str:
        if value.strip().lower() != "never":
            Period.parse(value)
        return value

    @field_validator("dashboard_officer")
    @classmethod
    def _officer_is_staff_id(cls, value: str | None) -> str | None:
        problem = None if value is None else staff_id_problem(value)
        if problem is not None:
            raise ValueError(f"DSR_DASHBOARD_OFFICER is not a staff id: {problem}")
        return value

    @field_validator("dashboard_token")
    @classmethod
    def _token_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "too short: use at least 16 characters, e.g. the output of `openssl rand -hex 32`"
            )
        return value

    def record_store_dir(self) -> Path:
        """The record store directory."""
        return self.record_dir or self.data_dir / "records"

    def record_store(self, keys: DataKeys | None = None) -> RecordStore:
        """The record store, sealing with `keys` (default: `data_keys()`)."""
        keys = keys if keys is not None else self.data_keys()
        return RecordStore(self.record_store_dir(), keys, inline_bytes=self.record_inline_bytes)

    def key_store_dir(self) -> Path:
        """The keys directory: certificate keys, the bus key when not configured, token keys."""
        return self.keys_dir or self.data_dir / "keys"

    def data_keys(self, *, cache_size: int = 0, checked_cache_size: int = 0) -> DataKeys:
        """The data-key store, unlocked with the bus key (created on first use when unset);
        `cache_size` for the process that destroys keys, `checked_cache_size` for the others
        (see `DataKeys`)."""
        try:
            key = bus_key(self.bus_key_file, self.key_store_dir())
        except SealingError as exc:
            raise ConfigError(str(exc)) from None
        return DataKeys(
            self.dek_dir or self.data_dir / "dek",
            key,
            cache_size=cache_size,
            checked_cache_size=checked_cache_size,
        )

    def request_verifier(self) -> RequestVerifier:
        """The signature check for request events, tasks and outcomes (an outcome's worker
        group checked against the register); refuses to run without publisher keys."""
        try:
            from orchestrator.intake.publishers import PermissionedVerifier

            return PermissionedVerifier(
                self.publisher_keys,
                allow_unsigned=self.allow_unsigned_requests,
                group_of=_GroupOf(self.register_file),
            )
        except PublisherKeyError as exc:
            raise ConfigError(str(exc)) from None

    def policy(self) -> Policy:
        """The lifecycle policy these settings describe."""
        return Policy(
            deadline=DeadlinePolicy.parse(self.deadline_policy, self.deadline_timezone),
            due_soon_days=self.due_soon_days,
            verification=VerificationPolicy.parse(self.verification_policy),
            approval_required=_rights(self.approval_required),
            reminder_after=timedelta(days=self.reminder_after_days)
            if self.reminder_after_days
            else None,
            waiting_warning_days=self.waiting_warning_days,
            max_attempts=self.max_attempts,
            retry_delay=timedelta(seconds=self.retry_delay_seconds),
            task_timeout=timedelta(seconds=self.task_timeout_seconds),
            shred_after=None
            if self.shred_after.strip().lower() == "never"
            else Period.parse(self.shred_after),
        )

    def for_embedded(self, bootstrap: str) -> Settings:
        """These settings against the embedded broker (its short group timeouts)."""
        return self.model_copy(update={"kafka": self.kafka.for_embedded(bootstrap)})


class _GroupOf:
    """A system's worker group in the register file (read on first use, then as it changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._watched: WatchedRegister | None = None

    def __call__(self, system: str) -> str | None:
        if self._watched is None:
            self._watched = WatchedRegister(self.path)
        return next((s.group for s in self._watched.current().systems if s.name == system), None)


def _rights(text: str) -> frozenset[RequestType]:
    """Comma-separated rights ('erasure, restriction'); `ValueError` naming an unknown one."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    known = {t.value: t for t in RequestType}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"unknown right {unknown[0]!r}; use a comma-separated list of {', '.join(known)}"
        )
    return frozenset(known[name] for name in names)


class ConfigError(DsrError, ValueError):
    """Configuration is missing or wrong; the message names each variable and the fix."""


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (plus overrides), with one readable error for all problems."""
    values = {k: v for k, v in overrides.items() if v is not None}
    problems: list[str] = []
    if "kafka" not in values:
        # Read on its own: a bad DSR_KAFKA_* variable fails inside the nested model's factory,
        # which would hide every other problem and lose the DSR_KAFKA_ prefix of its name.
        try:
            values["kafka"] = KafkaSettings()
            problems += _kafka_problems(values["kafka"])
        except ValidationError as exc:
            problems += _problems(exc, "DSR_KAFKA_")
            values["kafka"] = KafkaSettings.model_construct()
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems += _problems(exc, "DSR_")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    if settings.allow_insecure_kafka:
        _warn_insecure_kafka(settings.kafka)
    return settings


def _warn_insecure_kafka(kafka: KafkaSettings) -> None:
    """The loud start-up warning of DSR_ALLOW_INSECURE_KAFKA: what an attacker on the network
    could do, and how to turn it off."""
    protocol = kafka.security_protocol
    _log.warning(
        "INSECURE KAFKA: DSR_ALLOW_INSECURE_KAFKA is true (DSR_KAFKA_SECURITY_PROTOCOL=%s). "
        "%s Use TLS and SASL (SASL_SSL) in production and unset DSR_ALLOW_INSECURE_KAFKA "
        "(Helm: allowInsecureKafka: false).",
        protocol,
        "Subject identifiers, tasks and outcomes may cross the network unencrypted, and any "
        "pod that reaches the brokers may read and write every topic."
        if protocol != "SASL_SSL"
        else "The connection itself uses SASL_SSL; remove the flag.",
    )


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    """One line per error, naming the environment variable."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(p) for p in error["loc"]]
        if loc[:1] == ["kafka"]:
            name = "DSR_KAFKA_" + "_".join(loc[1:]).upper()
        elif loc[:1] and loc[0].startswith("DSR_"):  # a field read through its alias
            name = loc[0]
        else:
            name = prefix + "_".join(loc).upper()
        problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return problems


def _kafka_problems(kafka: KafkaSettings) -> list[str]:
    """Combinations of Kafka settings that would only fail later, at the first connection."""
    problems = []
    protocol = kafka.security_protocol
    uses_sasl = protocol.startswith("SASL_")
    if kafka.sasl_mechanism and not uses_sasl:
        problems.append(
            f"DSR_KAFKA_SASL_MECHANISM: set to {kafka.sasl_mechanism}, but "
            f"DSR_KAFKA_SECURITY_PROTOCOL is {protocol}; use SASL_SSL (or SASL_PLAINTEXT)"
        )
    if uses_sasl:
        if not kafka.sasl_mechanism:
            problems.append(
                f"DSR_KAFKA_SASL_MECHANISM: required with DSR_KAFKA_SECURITY_PROTOCOL={protocol}; "
                "use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"
            )
        if not kafka.sasl_username:
            problems.append(
                f"DSR_KAFKA_SASL_USERNAME: required with DSR_KAFKA_SECURITY_PROTOCOL={protocol}"
            )
        if kafka.sasl_password is None or not kafka.sasl_password.get_secret_value():
            problems.append(
                f"DSR_KAFKA_SASL_PASSWORD: required with DSR_KAFKA_SECURITY_PROTOCOL={protocol} "
                "(in Kubernetes: from a Secret)"
            )
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(kafka, name)
        if path and not Path(path).is_file():
            problems.append(f"DSR_KAFKA_{name.upper()}: no such file {path}")
    return problems


__all__ = ["STAFF_ID", "ConfigError", "Settings", "load_settings", "staff_id_problem"]
