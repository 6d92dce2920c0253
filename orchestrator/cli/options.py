"""What every `dsr` command group shares: options, settings, Kafka, logging and error handling.

Declared once here, so a flag means the same in every command. Nothing heavy is imported at
module level (not even the event models): `dsr --help` loads only this and click.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from orchestrator.runtime.config import Settings
    from schemas.errors import DsrError
    from schemas.kafka import KafkaSettings

#: Where `dsr up` leaves what other commands in the same directory need.
STATE_DIR = Path(os.environ.get("DSR_STATE_DIR", ".dsr"))
BOOTSTRAP_FILE = STATE_DIR / "bootstrap"
#: DSR_PUBLISHER_* of the local publisher `dsr up` signs with (also for `source` in a shell).
PUBLISHER_FILE = STATE_DIR / "publisher.env"

#: Parameter types of paths, which must be a file or a directory when they exist.
FILE = click.Path(dir_okay=False, path_type=Path)
DIRECTORY = click.Path(file_okay=False, path_type=Path)

bootstrap_option = click.option(
    "--bootstrap", envvar="DSR_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers (host:port,...)."
)
register_option = click.option("--register", type=FILE, help="Register YAML file.")
data_dir_option = click.option(
    "--data-dir",
    type=DIRECTORY,
    help="The orchestrator's data dir: results, exports, certificates (default: DSR_DATA_DIR).",
)


# -- errors ------------------------------------------------------------------------------------


def _reported(invoke: Callable[[click.Context], Any], ctx: click.Context) -> Any:
    """Run a command; a DsrError becomes `Error: <message>` on stderr and its exit code."""
    # Imported here, not above: `dsr --help` never gets this far, and schemas is not light.
    from schemas.errors import DsrError

    try:
        return invoke(ctx)
    except DsrError as exc:
        raise _click_error(exc) from None


def _click_error(exc: DsrError) -> click.ClickException:
    error = click.ClickException(str(exc))
    error.exit_code = exc.exit_code
    return error


class DsrCommand(click.Command):
    """A command whose DsrErrors reach the user as a clear message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, reporting a DsrError without a traceback."""
        return _reported(super().invoke, ctx)


class DsrGroup(click.Group):
    """A group of commands that report DsrErrors like `DsrCommand`, as do its subgroups."""

    command_class = DsrCommand
    group_class = type  # subgroups declared with `@group.group()` are DsrGroups too

    def invoke(self, ctx: click.Context) -> Any:
        """Run the group's callback and sub-command, reporting a DsrError without a traceback."""
        return _reported(super().invoke, ctx)


# -- choices read when first needed ------------------------------------------------------------


class LazyChoice(click.Choice):
    """A click.Choice whose values are read when first needed (help text, parsing a value)."""

    def __init__(self, values: Callable[[], Iterable[str]]) -> None:
        self._values = values
        self._loaded: tuple[str, ...] | None = None
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> Sequence[str]:
        """The values, loaded on first use."""
        if self._loaded is None:
            self._loaded = tuple(self._values())
        return self._loaded

    @choices.setter
    def choices(self, _: Sequence[str]) -> None:
        """Ignored: click.Choice sets an empty tuple at construction."""


def _request_types() -> list[str]:
    from schemas.events import RequestType

    return [t.value for t in RequestType]


def _verification_methods() -> list[str]:
    from schemas.events import VerificationMethod

    return [m.value for m in VerificationMethod]


#: Request types (`access`, `erasure`, ...).
REQUEST_TYPES = LazyChoice(_request_types)
#: How an identity was verified (`id_document`, ...).
VERIFICATION_METHODS = LazyChoice(_verification_methods)


# -- the subject -------------------------------------------------------------------------------


_SUBJECT_FLAGS = (
    ("--email", "email address"),
    ("--phone", "phone number"),
    ("--customer-id", "customer id"),
)


def subject_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--email, --phone and --customer-id, each repeatable; see `subject_identifiers`."""
    for flag, what in reversed(_SUBJECT_FLAGS):  # click lists the last one applied first
        command = click.option(flag, multiple=True, help=f"Subject's {what} (repeatable).")(command)
    return command


def subject_identifiers(
    email: Iterable[str], phone: Iterable[str], customer_id: Iterable[str]
) -> list[tuple[str, str]]:
    """The (type, value) identifiers of `subject_options`; a usage error when there are none."""
    identifiers = (
        [("email", e) for e in email]
        + [("phone", p) for p in phone]
        + [("customer_id", c) for c in customer_id]
    )
    if not identifiers:
        raise click.UsageError("give at least one of --email, --phone, --customer-id")
    return identifiers


# -- settings, Kafka and logging ---------------------------------------------------------------


#: Loggers of the Kafka client libraries, kept at INFO or above (`setup_logging`).
KAFKA_CLIENT_LOGGERS: tuple[str, ...] = ("aiokafka", "kafka")


#: How every process of ours writes a log line.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def faust_logging(level: str = "INFO") -> dict[str, Any]:
    """The Faust worker's logging (`logging_config`), as `setup_logging` sets it up.

    Without it, Faust's own setup formats each line through colorlog: about 40 microseconds
    a line against 7 for a plain formatter, paid on the orchestrator's event loop for every
    request that finishes. Kafka client loggers stay at INFO or above, as in `setup_logging`.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            client: {"level": max(logging.getLevelName(level), logging.INFO)}
            for client in KAFKA_CLIENT_LOGGERS
        },
    }


def setup_logging(level: str = "INFO") -> None:
    """Log lines to stderr, so stdout keeps only what a command prints for people and scripts."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    # The Kafka clients' DEBUG lines print whole messages (keys, values, headers): personal
    # data. They stay at INFO whatever level the command logs at.
    for client in KAFKA_CLIENT_LOGGERS:
        logger = logging.getLogger(client)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))


def command_settings(bootstrap: str | None = None, **overrides: Any) -> Settings:
    """Settings from DSR_* variables, with the command's flags (None: not given) on top."""
    from orchestrator.runtime.config import load_settings

    loaded = load_settings(**overrides)  # a ConfigError names each wrong variable
    if bootstrap:
        loaded = loaded.model_copy(
            update={"kafka": loaded.kafka.model_copy(update={"bootstrap": bootstrap})}
        )
    return loaded


def client_kafka(bootstrap: str | None) -> KafkaSettings:
    """Kafka settings for a client command: flag, environment, or the broker `dsr up` started."""
    from schemas.kafka import KafkaSettings

    kafka = KafkaSettings()
    if bootstrap:
        return kafka.model_copy(update={"bootstrap": bootstrap})
    if kafka.bootstrap:
        return kafka
    if BOOTSTRAP_FILE.exists():
        return kafka.for_embedded(BOOTSTRAP_FILE.read_text().strip())
    raise click.UsageError(
        "no Kafka to talk to: pass --bootstrap HOST:PORT, set DSR_KAFKA_BOOTSTRAP, "
        "or start the system with 'dsr up' in this directory first"
    )


__all__ = [
    "BOOTSTRAP_FILE",
    "DIRECTORY",
    "FILE",
    "PUBLISHER_FILE",
    "REQUEST_TYPES",
    "STATE_DIR",
    "VERIFICATION_METHODS",
    "DsrCommand",
    "DsrGroup",
    "LazyChoice",
    "bootstrap_option",
    "client_kafka",
    "command_settings",
    "data_dir_option",
    "register_option",
    "setup_logging",
    "subject_identifiers",
    "subject_options",
]
