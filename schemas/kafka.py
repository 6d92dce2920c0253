"""How every process of ours connects to Kafka: one settings model, read from DSR_KAFKA_*."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import DsrError


class KafkaConfigError(DsrError, ValueError):
    """The Kafka connection is not configured well enough to connect; says what to set."""


class KafkaSettings(BaseSettings):
    """Connection settings shared by the orchestrator, connector workers and the client."""

    model_config = SettingsConfigDict(env_prefix="DSR_KAFKA_", extra="ignore")

    bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port]; empty means: start the embedded broker.",
    )
    client_id: str = Field(default="dsr-orchestrator", description="Kafka client id.")
    partitions: int = Field(default=4, ge=1, description="Partitions for topics we create.")
    replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of topics we create."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How clients connect: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism, with a SASL_* security protocol."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (in Kubernetes, from a Secret)."
    )
    ssl_cafile: str | None = Field(default=None, description="TLS: CA certificate file.")
    ssl_certfile: str | None = Field(default=None, description="TLS: client certificate file.")
    ssl_keyfile: str | None = Field(default=None, description="TLS: client key file.")
    session_timeout_ms: int = Field(
        default=10_000, description="Consumer group session timeout (ms)."
    )
    heartbeat_interval_ms: int = Field(
        default=3_000, description="Consumer group heartbeat interval (ms)."
    )
    rebalance_timeout_ms: int = Field(
        default=30_000, description="Consumer group rebalance timeout (ms)."
    )
    fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        description="How long a fetch may wait for data. The embedded broker holds every "
        "fetch this long even when data arrives, so there it is short.",
    )

    def for_embedded(self, bootstrap: str) -> KafkaSettings:
        """The same settings pointed at the embedded broker, with its short group timeouts."""
        return self.model_copy(
            update={
                "bootstrap": bootstrap,
                "session_timeout_ms": 2_000,
                "heartbeat_interval_ms": 500,
                "rebalance_timeout_ms": 2_000,
                "fetch_max_wait_ms": 25,
            }
        )

    def require_bootstrap(self) -> str:
        """The bootstrap address; a clear error if none is configured."""
        if not self.bootstrap:
            raise KafkaConfigError(
                "no Kafka bootstrap address: set DSR_KAFKA_BOOTSTRAP or pass --bootstrap "
                "(or run 'dsr up', which starts an embedded broker)"
            )
        return self.bootstrap

    def _sasl(self) -> dict[str, Any]:
        """SASL options, named the same in aiokafka and kafka-python."""
        if not self.sasl_mechanism:
            return {}
        password = self.sasl_password.get_secret_value() if self.sasl_password else None
        return {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": password,
        }

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (security; no idempotence, see broker notes)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.require_bootstrap(),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        options.update(self._sasl())
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return options

    def consumer_options(self) -> dict[str, Any]:
        """aiokafka options for a consumer: connection plus group timeouts and fetch wait."""
        return {
            **self.aiokafka_options(),
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
        }

    def kafka_python_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (api_version left on auto)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.require_bootstrap().split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        options.update(self._sasl())
        if self.ssl_cafile:
            options.update(
                ssl_cafile=self.ssl_cafile,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
            )
        return options


__all__ = ["KafkaConfigError", "KafkaSettings"]
