"""`dsr sweep`: retention sweeps from a terminal (storage limitation, Art. 5(1)(e) GDPR).

`dsr sweep SYSTEM` starts a sweep of one system: a dry run that counts what has expired per
collection and then waits for `dsr sweep approve SWEEP_ID` before anything is deleted (unless
the register trusts the system: `sweep.approval: not_required`). Starting and approving are
officers' decisions: published signed with the CLI's publisher key, which must list
dsr.sweep.requested.v1 and dsr.sweep.approved.v1 in its `events`. `dsr sweep status` and
`dsr sweep list` read the status topic. Nothing here names a person: rules, cutoffs, counts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orchestrator.cli.options import (
    DsrGroup,
    bootstrap_option,
    client_kafka,
    command_settings,
    register_option,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from orchestrator.intake.client import RequestPublisher
    from schemas.kafka import KafkaSettings
    from schemas.register import System
    from schemas.sweeps import SweepApproved, SweepCount, SweepRequested, SweepStatusChanged

_Model = TypeVar("_Model", bound="BaseModel")
#: The subcommands; any other first word is the system of `dsr sweep SYSTEM`.
_START = "start"


class _SweepGroup(DsrGroup):
    """`dsr sweep SYSTEM ...` is short for `dsr sweep start SYSTEM ...`."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """A first word that is no subcommand (nor an option) names the system to sweep."""
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return _START, self.commands[_START], args
        return super().resolve_command(ctx, args)


@click.group("sweep", cls=_SweepGroup)
def sweep() -> None:
    """Retention sweeps: `dsr sweep SYSTEM` starts one (a dry run first), then `approve`.

    \b
    dsr sweep SYSTEM [--dry-run/--no-dry-run] [--by NAME]
    dsr sweep approve SWEEP_ID --by NAME
    dsr sweep status [SWEEP_ID]
    dsr sweep list
    """


@sweep.command(_START)
@bootstrap_option
@register_option
@click.argument("system")
@click.option(
    "--dry-run/--no-dry-run",
    default=True,
    show_default=True,
    help="Count only. --no-dry-run deletes at once, but only on a system the register lets be "
    "swept without approval; elsewhere the sweep still counts first and waits.",
)
@click.option("--by", "requested_by", help="Who starts it (staff id); recorded in the status.")
@click.option("--id", "sweep_id", help="Sweep id (idempotency key); generated if omitted.")
def sweep_start(
    bootstrap: str | None,
    register: Path | None,
    system: str,
    dry_run: bool,
    requested_by: str | None,
    sweep_id: str | None,
) -> None:
    """Start a retention sweep of SYSTEM; prints the sweep id."""
    from schemas.sweeps import SweepRequested, SweepTrigger

    found = sweepable_system(system, command_settings(register_file=register).register_file)
    now = datetime.now(UTC)
    event = _validated(
        SweepRequested,
        "sweep",
        sweep_id=sweep_id or new_sweep_id(system, now),
        system=system,
        dry_run=dry_run,
        trigger=SweepTrigger.MANUAL,
        requested_by=requested_by or "dsr-cli",
        requested_at=now,
    )
    _publish(bootstrap, event)
    click.echo(event.sweep_id)
    assert found.sweep is not None  # sweepable_system checked it
    if not dry_run and found.sweep.approval == "required":
        click.echo(
            f"the register requires approval for {system}: the sweep counts first and waits for "
            f"'dsr sweep approve {event.sweep_id} --by NAME'",
            err=True,
        )


@sweep.command("approve")
@bootstrap_option
@click.argument("sweep_id")
@click.option("--by", "approved_by", required=True, help="Who approves (staff id).")
def sweep_approve(bootstrap: str | None, sweep_id: str, approved_by: str) -> None:
    """Approve deleting what a sweep's dry run counted (see `dsr sweep status SWEEP_ID`)."""
    from schemas.sweeps import SweepApproved

    event = _validated(
        SweepApproved,
        "approval",
        sweep_id=sweep_id,
        approved_by=approved_by,
        approved_at=datetime.now(UTC),
    )
    _publish(bootstrap, event)
    click.echo(f"approval published for {sweep_id} (see 'dsr sweep status {sweep_id}')")


@sweep.command("status")
@bootstrap_option
@click.argument("sweep_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sweep_status(bootstrap: str | None, sweep_id: str | None, as_json: bool) -> None:
    """Show every sweep, or one sweep in detail: status, counts per collection, certificate."""
    from orchestrator.cli.errors import CommandError

    sweeps = read_sweeps(client_kafka(bootstrap))
    if sweep_id is None:
        _print_list(sweeps.values(), as_json)
        return
    found = sweeps.get(sweep_id)
    if found is None:
        raise CommandError(
            f"no status events for sweep {sweep_id!r}; 'dsr sweep list' shows the known sweeps"
        )
    if as_json:
        click.echo(found.model_dump_json(indent=2))
    else:
        print_sweep(found)


@sweep.command("list")
@bootstrap_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sweep_list(bootstrap: str | None, as_json: bool) -> None:
    """One line per sweep on the status topic, newest first."""
    _print_list(read_sweeps(client_kafka(bootstrap)).values(), as_json)


# -- the steps, shared with `dsr demo --sweep` -------------------------------------------------


def new_sweep_id(system: str, now: datetime) -> str:
    """A manual sweep's id: `sweep-<system>-<UTC yyyymmddHHMMSS>` (a scheduled one has minutes
    only, so the two never collide)."""
    return f"sweep-{system}-{now.astimezone(UTC):%Y%m%d%H%M%S}"


def sweepable_system(name: str, register_file: Path) -> System:
    """The register's system `name`, which must have a sweep policy; CommandError otherwise,
    before anything is published."""
    import os

    from orchestrator.artifacts.register_export import load_for_export
    from orchestrator.cli.errors import CommandError

    register = load_for_export(register_file, os.environ)  # no connector secrets needed
    try:
        system = register.get(name)
    except KeyError:
        known = ", ".join(register.names)
        raise CommandError(
            f"system {name!r} is not in the register {register_file} (systems: {known})"
        ) from None
    if system.sweep is None:
        sweeping = ", ".join(s.name for s in register.systems if s.sweep) or "none"
        raise CommandError(
            f"system {name!r} has no sweep policy in the register {register_file}: add a "
            "'sweep' entry (schedule, approval, collections with period, counted_from and "
            f"date_field) to it (systems with one: {sweeping})"
        )
    return system


def publish_sweep(publisher: RequestPublisher, event: SweepRequested | SweepApproved) -> None:
    """Publish a sweep's start or approval, signed with the publisher's key, as the dashboard
    does."""
    publisher.publish_sweep(event)


def _publish(bootstrap: str | None, event: SweepRequested | SweepApproved) -> None:
    """Publish with the CLI's publisher key, as `dsr decide` does."""
    from orchestrator.cli.requests import _publisher

    with _publisher(client_kafka(bootstrap)) as publisher:
        publish_sweep(publisher, event)


def read_sweeps(
    kafka: KafkaSettings,
    *,
    until: Callable[[dict[str, SweepStatusChanged]], bool] | None = None,
    timeout: float = 10.0,
) -> dict[str, SweepStatusChanged]:
    """The latest status of every sweep on the status topic, by sweep id; with `until`, read
    until it holds (or `timeout` seconds passed)."""
    from orchestrator.status.view import read_status

    done = (lambda view: until(view.sweeps)) if until is not None else None
    return dict(asyncio.run(read_status(kafka, until=done, timeout=timeout)).sweeps)


def _validated(model: type[_Model], what: str, **fields: Any) -> _Model:
    """`model(**fields)`, or a CommandError that names the wrong input."""
    from pydantic import ValidationError

    from orchestrator.cli.errors import CommandError
    from schemas.envelope import describe_validation_error

    try:
        return model(**fields)
    except ValidationError as exc:
        raise CommandError(f"invalid {what}: {describe_validation_error(exc)}") from None


# -- printing ----------------------------------------------------------------------------------


def print_sweep(status: SweepStatusChanged) -> None:
    """A sweep's status with its counts per collection and certificate (no identifiers)."""
    click.echo(
        f"{status.sweep_id}: {status.system} {status.status.value} "
        f"({status.trigger.value}, requested {status.requested_at:%Y-%m-%d %H:%M} "
        f"by {status.requested_by or '-'})"
    )
    if status.approved_at is not None:
        click.echo(f"  approved {status.approved_at:%Y-%m-%d %H:%M} by {status.approved_by}")
    cutoffs = {rule.collection: rule for rule in status.rules}
    for label, counts in (("dry run", status.dry_run_counts), ("swept", status.counts)):
        for count in counts:
            rule = cutoffs.get(count.collection)
            cutoff = f" (before {rule.cutoff}, {rule.period})" if rule else ""
            click.echo(f"  {label:<8} {count.collection}{cutoff}: {_counted(count)}")
    for item in status.retained:
        click.echo(
            f"  kept     {item.collection}: {item.count} until {item.until or '(no date)'} "
            f"({item.legal_basis})"
        )
    if status.reason:
        click.echo(f"  reason: {status.reason}")
    if status.instructions:
        click.echo(f"  to do by hand: {status.instructions}")
    if status.certificate:
        click.echo(f"  certificate: {status.certificate}")


def _counted(count: SweepCount) -> str:
    done = {"deleted": count.deleted, "anonymised": count.anonymised, "kept": count.kept}
    return ", ".join([f"{count.expired} expired"] + [f"{n} {w}" for w, n in done.items() if n])


def _print_list(sweeps: Iterable[SweepStatusChanged], as_json: bool) -> None:
    ordered = sorted(sweeps, key=lambda s: s.requested_at, reverse=True)
    if as_json:
        click.echo(json.dumps([s.model_dump(mode="json") for s in ordered], indent=2))
        return
    if not ordered:
        click.echo("no sweeps on the status topic yet; start one with 'dsr sweep SYSTEM'")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("sweep", "system", "status", "requested", "expired", "deleted", "kept")
    for s in ordered:
        counts = s.counts or s.dry_run_counts
        table.add_row(
            s.sweep_id,
            s.system,
            s.status.value,
            f"{s.requested_at:%Y-%m-%d %H:%M}",
            str(sum(c.expired for c in counts)),
            str(sum(c.deleted + c.anonymised for c in s.counts)),
            str(sum(c.kept for c in s.counts)),
        )
    Console().print(table)


__all__ = [
    "new_sweep_id",
    "print_sweep",
    "publish_sweep",
    "read_sweeps",
    "sweep",
    "sweepable_system",
]
