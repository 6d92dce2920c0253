"""Orchestrator configuration, read from DSR_* environment variables and validated at start."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.deadlines import DeadlinePolicy
from orchestrator.lifecycle import Policy
from schemas.kafka import KafkaSettings


class Settings(BaseSettings):
    """Everything the orchestrator and its workers are configured with."""

    model_config = SettingsConfigDict(env_prefix="DSR_", extra="ignore", populate_by_name=True)

    register_file: Path = Field(
        default=Path("register.yaml"),
        validation_alias=AliasChoices("DSR_REGISTER", "register_file"),
        description="The register YAML file (DSR_REGISTER).",
    )
    data_dir: Path = Field(default=Path("dsr-data"), description="Where results are written.")
    keys_dir: Path | None = Field(
        default=None, description="Certificate signing keys and salt (default: DATA_DIR/keys)."
    )
    deadline_policy: str = Field(default="1 month", description="'1 month', '4 weeks', '30 days'.")
    due_soon_days: int = Field(default=7, ge=0)
    max_attempts: int = Field(default=3, ge=1, description="Tries per system before failing.")
    retry_delay_seconds: float = Field(default=5.0, ge=0)
    tick_interval_seconds: float = Field(default=30.0, gt=0, description="Deadline check period.")
    batch_size: int = Field(default=500, ge=1)
    batch_within_seconds: float = Field(default=0.01, gt=0)
    producer_max_batch_size: int = Field(default=16384, ge=1)
    orchestrator_workers: int = Field(
        default=1, ge=1, description="Orchestrator processes 'dsr up' starts (<= partitions)."
    )
    source: str = Field(default="dsr-orchestrator", description="CloudEvents source of our events.")
    app_id: str = "dsr-orchestrator"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @field_validator("deadline_policy")
    @classmethod
    def _policy_parses(cls, value: str) -> str:
        DeadlinePolicy.parse(value)
        return value

    def policy(self) -> Policy:
        """The lifecycle policy these settings describe."""
        return Policy(
            deadline=DeadlinePolicy.parse(self.deadline_policy),
            due_soon_days=self.due_soon_days,
            max_attempts=self.max_attempts,
            retry_delay=timedelta(seconds=self.retry_delay_seconds),
        )

    def for_embedded(self, bootstrap: str) -> Settings:
        """These settings against the embedded broker (short timeouts, single-record batches)."""
        # The embedded broker loses table updates on recovery with multi-record batches.
        return self.model_copy(
            update={"kafka": self.kafka.for_embedded(bootstrap), "producer_max_batch_size": 1}
        )


class ConfigError(ValueError):
    """Configuration is missing or wrong; the message names each variable and the fix."""


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (plus overrides), with one readable error for all problems."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            loc = [str(p) for p in error["loc"]]
            prefix = "DSR_KAFKA_" if loc[:1] == ["kafka"] else "DSR_"
            name = prefix + "_".join(loc[1:] if loc[:1] == ["kafka"] else loc).upper()
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


__all__ = ["ConfigError", "Settings", "load_settings"]
