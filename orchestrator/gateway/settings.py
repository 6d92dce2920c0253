"""The intake process's own settings (`DSR_INTAKE_*`), beside the shared `Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseSettings):
    """Where the intake process listens and what it accepts."""

    model_config = SettingsConfigDict(env_prefix="DSR_INTAKE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in a pod).")
    port: int = Field(8090, ge=0, le=65535, description="Port; 0: any free port.")
    public_url: str | None = Field(
        None,
        description="The URL the public reaches this process at (links in confirmation "
        "e-mails, OpenDSR callback URLs we hand out, the status URL in 202 answers). "
        "Default: http://HOST:PORT.",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted; larger: 413."
    )


__all__ = ["IntakeSettings"]
