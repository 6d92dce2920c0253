"""`dsr publishers`: who may publish request events, and with which keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orchestrator.cli.options import DIRECTORY, FILE, DsrGroup, LazyChoice

if TYPE_CHECKING:
    from orchestrator.intake.publishers import IssuedKey

_F = TypeVar("_F", bound=Callable[..., Any])

#: The keys file `--keys-file` means when neither it nor DSR_PUBLISHER_KEYS is given.
DEFAULT_KEYS_FILE = Path("publisher-keys.yaml")

_keys_file_option = click.option(
    "--keys-file",
    type=FILE,
    envvar="DSR_PUBLISHER_KEYS",
    default=DEFAULT_KEYS_FILE,
    show_default=True,
    help="The publisher keys file the orchestrator reads (DSR_PUBLISHER_KEYS).",
)
_out_option = click.option(
    "--out",
    "out_dir",
    type=DIRECTORY,
    help="Where the private key or secret is written (default: next to the keys file).",
)


def _request_event_types() -> tuple[str, ...]:
    """Request events, and the tasks and outcomes components (and people) sign."""
    from schemas.primitives.signing import SIGNED_EVENT_TYPES

    return SIGNED_EVENT_TYPES


def _algorithm_options(default: bool) -> Callable[[_F], _F]:
    """--ed25519 / --hmac, into `algorithm` (see `_algorithm`); with `default`, --ed25519."""

    def decorate(command: _F) -> _F:
        command = click.option(
            "--hmac",
            "algorithm",
            flag_value="hmac",
            help="HMAC-SHA256: a secret shared by the publisher and the orchestrator.",
        )(command)
        return click.option(
            "--ed25519",
            "algorithm",
            flag_value="ed25519",
            default=default or None,
            help="Ed25519: the publisher holds the private key, the orchestrator the public "
            "key" + (" (default)." if default else "."),
        )(command)

    return decorate


def _algorithm(flag: str) -> str:
    """The signing algorithm an --ed25519 / --hmac flag stands for."""
    # The flags' values are their names, so `dsr --help` need not load the signing module.
    from schemas.primitives.signing import ED25519, HMAC_SHA256

    return {"ed25519": ED25519, "hmac": HMAC_SHA256}[flag]


@click.group("publishers", cls=DsrGroup)
def publishers() -> None:
    """Publishers of request events and their signing keys."""


def _report(issued: IssuedKey, what: str) -> None:
    from schemas.primitives.signing import HMAC_SHA256

    click.echo(f"{what} {issued.key_id} ({issued.algorithm}) in {issued.keys_file}")
    if issued.algorithm == HMAC_SHA256:
        click.echo(
            f"Shared secret: {issued.key_file} (mode 0600). The orchestrator reads it from "
            "there; give the publisher a copy over a secure channel."
        )
    else:
        click.echo(
            f"Private key: {issued.key_file} (mode 0600). Give it to the publisher and "
            "delete it here: the orchestrator needs only the public key, which is in the "
            "keys file."
        )
    click.echo("The publisher signs with:")
    for name, value in issued.env().items():
        click.echo(f"  {name}={value}")


@publishers.command("create")
@click.argument("name")
@_algorithm_options(default=True)
@click.option(
    "--event",
    "events",
    multiple=True,
    type=LazyChoice(_request_event_types),
    help="Only these event types (repeatable), e.g. a web form that may only submit; "
    "components: orchestrator dsr.task.dispatched.v1 + dsr.sweep.dispatched.v1, "
    "connectors-GROUP dsr.task.outcome.v1 + dsr.sweep.outcome.v1.",
)
@_keys_file_option
@_out_option
def publishers_create(
    name: str, algorithm: str, events: tuple[str, ...], keys_file: Path, out_dir: Path | None
) -> None:
    """Add publisher NAME with a new key; writes the private part for the publisher."""
    from orchestrator.intake.publishers import create_publisher

    issued = create_publisher(
        keys_file, name, _algorithm(algorithm), out_dir=out_dir, events=list(events)
    )
    _report(issued, f"Created publisher {name} with key")
    click.echo(f"Point the orchestrator at the keys file: DSR_PUBLISHER_KEYS={keys_file}")


@publishers.command("rotate")
@click.argument("name")
@_algorithm_options(default=False)
@_keys_file_option
@_out_option
def publishers_rotate(
    name: str, algorithm: str | None, keys_file: Path, out_dir: Path | None
) -> None:
    """Give publisher NAME a new key; the old ones stay valid until retired."""
    from orchestrator.intake.publishers import rotate_publisher

    issued = rotate_publisher(
        keys_file, name, _algorithm(algorithm) if algorithm else None, out_dir=out_dir
    )
    _report(issued, f"New key for publisher {name}:")
    click.echo(
        f"Once the publisher signs with it, retire the old key: "
        f"dsr publishers retire {name} OLD_KEY_ID"
    )


@publishers.command("retire")
@click.argument("name")
@click.argument("key_id")
@_keys_file_option
def publishers_retire(name: str, key_id: str, keys_file: Path) -> None:
    """Remove key KEY_ID of publisher NAME: events signed with it are refused from now on."""
    from orchestrator.intake.publishers import retire_key

    retire_key(keys_file, name, key_id)
    click.echo(f"Retired key {key_id} of publisher {name}; running orchestrators pick this up")


@publishers.command("list")
@_keys_file_option
def publishers_list(keys_file: Path) -> None:
    """Publishers, their keys and what they may publish (checks the file as the orchestrator)."""
    from schemas.primitives.signing import load_publisher_keys
    from schemas.topics import DEFAULT_PUBLISHER_EVENTS, REQUEST_EVENT_TYPES

    keys = load_publisher_keys(keys_file)
    if not keys.events:
        click.echo(f"no publishers in {keys_file}; add one with `dsr publishers create NAME`")
    named = {
        frozenset(REQUEST_EVENT_TYPES): "all request events, decisions included",
        frozenset(DEFAULT_PUBLISHER_EVENTS): "submit only (the default)",
    }
    for publisher, events in keys.events.items():
        allowed = named.get(frozenset(events)) or ", ".join(sorted(events))
        click.echo(f"{publisher}: {allowed}")
        for (owner, kid), key in keys.keys.items():
            if owner == publisher:
                click.echo(f"  {kid}  {key.algorithm}")


__all__ = ["publishers"]
