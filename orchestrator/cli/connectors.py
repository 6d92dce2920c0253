"""`dsr connectors`: the installed connectors, and a dry access on one system of the register."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import (
    DsrGroup,
    command_settings,
    register_option,
    subject_identifiers,
    subject_options,
)

if TYPE_CHECKING:
    from schemas.events import TaskDispatched, TaskOutcome
    from schemas.register import System


@click.group("connectors", cls=DsrGroup)
def connectors_group() -> None:
    """Installed connectors."""


@connectors_group.command("list")
def connectors_list() -> None:
    """Every connector with its rights and where it comes from: built-in (Python), built-in
    spec (connectors/specs/), plugin, or declarative (a spec in $DSR_CONNECTOR_DIR)."""
    from rich.console import Console
    from rich.table import Table

    from connectors import registry

    table = Table("name", "kind", "rights", "source")
    for entry in registry.catalogue():
        table.add_row(entry.name, entry.kind, ", ".join(entry.rights) or "-", entry.source)
    Console().print(table)


@connectors_group.command("check")
@click.argument("system")
@register_option
@subject_options
@click.option(
    "--setting",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Replace one of the system's settings for this check (a YAML value), e.g. "
    "base_url=http://127.0.0.1:8081/api/v2 to try a vendor's sandbox or a local fake. "
    "Repeatable.",
)
@click.option(
    "--unset",
    "unset",
    multiple=True,
    metavar="KEY",
    help="Leave one of the system's settings out for this check (e.g. domain, when "
    "--setting base_url=... replaces it). Repeatable.",
)
def connectors_check(
    system: str,
    register: Path | None,
    email: tuple[str, ...],
    phone: tuple[str, ...],
    customer_id: tuple[str, ...],
    overrides: tuple[str, ...],
    unset: tuple[str, ...],
) -> None:
    """Dry access on one system of the register: what would an access request find?

    Prints counts per collection, never the records themselves. The register file is not
    changed by --setting or --unset.
    """
    from orchestrator.cli.errors import CommandError
    from schemas.events import OutcomeStatus
    from schemas.register import load_register

    register_file = command_settings(register_file=register).register_file
    try:
        entry = load_register(register_file).get(system)
    except KeyError:
        raise CommandError(f"no system {system!r} in {register_file}") from None
    if overrides or unset:
        entry = _with_settings(entry, overrides, unset)
    task = _access_task(system, subject_identifiers(email, phone, customer_id))
    outcome = asyncio.run(_dry_access(entry, task))
    click.echo(f"{system}: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""))
    per_collection = Counter(record.collection for record in outcome.records)
    for collection, count in sorted(per_collection.items()):
        click.echo(f"  {collection:<24} {count} records")
    if outcome.status == OutcomeStatus.FAILED:
        sys.exit(1)


def _with_settings(entry: System, overrides: tuple[str, ...], unset: tuple[str, ...]) -> System:
    """`entry` with settings replaced (`KEY=VALUE`, the value read as YAML) or left out."""
    import yaml

    settings = {k: v for k, v in entry.settings.items() if k not in unset}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: write KEY=VALUE", param_hint="--setting")
        settings[key] = yaml.safe_load(value) if value else ""
    return entry.model_copy(update={"settings": settings})


def _access_task(system: str, identifiers: list[tuple[str, str]]) -> TaskDispatched:
    """An access task for one system, as the orchestrator would dispatch it."""
    from schemas.events import Identifier, RequestType, Subject, TaskDispatched

    now = datetime.now(UTC)
    return TaskDispatched(
        request_id=f"check-{now:%Y%m%d%H%M%S}",
        task_id=f"check-{now:%Y%m%d%H%M%S}/{system}",
        system=system,
        action=RequestType.ACCESS,
        subject=Subject(identifiers=[Identifier(type=t, value=v) for t, v in identifiers]),
        deadline=now,
        dispatched_at=now,
    )


async def _dry_access(entry: System, task: TaskDispatched) -> TaskOutcome:
    """Run `task` with the system's connector; a ConnectorError reaches the user as is."""
    from connectors import registry
    from connectors.execute import perform

    connector = registry.build(entry)
    try:
        return await perform(connector, task)
    finally:
        await connector.aclose()


__all__ = ["connectors_group"]
