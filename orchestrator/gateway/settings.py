"""The intake process's own settings (`DSR_INTAKE_*`), beside the shared `Settings`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orchestrator.gateway.ratelimit import check_rule


class IntakeSettings(BaseSettings):
    """Where the intake process listens and what it accepts."""

    model_config = SettingsConfigDict(env_prefix="DSR_INTAKE_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0 in a pod).")
    port: int = Field(default=8090, ge=0, le=65535, description="Port; 0: any free port.")
    public_url: str | None = Field(
        default=None,
        description="The URL the public reaches this process at (links in confirmation "
        "e-mails, OpenDSR callback URLs we hand out, the status URL in 202 answers). "
        "Default: http://HOST:PORT.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body accepted; larger: 413."
    )
    publisher_rate: str = Field(
        default="120/minute",
        description="Intake API calls allowed per publisher (per replica), e.g. '120/minute'; "
        "more: 429 with Retry-After.",
    )
    signature_authorities: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host[:port] values a signed API request may be addressed "
        "to (its `@authority`), e.g. 'dsr.example.nl'; empty: whatever Host the request names.",
    )

    @field_validator("publisher_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        return check_rule(value)

    @field_validator("signature_authorities", mode="before")
    @classmethod
    def _authorities(cls, value: object) -> object:
        if isinstance(value, str):
            return [a.strip() for a in value.split(",") if a.strip()]
        return value


__all__ = ["IntakeSettings"]
