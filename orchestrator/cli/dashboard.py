"""`dsr dashboard` (the web dashboard) and `dsr watch` (the same list in a terminal)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import (
    REQUEST_TYPES,
    DsrCommand,
    LazyChoice,
    bootstrap_option,
    client_kafka,
    command_settings,
    data_dir_option,
    setup_logging,
)

if TYPE_CHECKING:
    from orchestrator.dashboard.server import Dashboard


def _status_choices() -> list[str]:
    from schemas.events import RequestStatus

    return ["open", "finished", *(s.value for s in RequestStatus)]


#: A status, or a group of them (as the dashboard's status filter takes them).
_STATUSES = LazyChoice(_status_choices)


@click.command("dashboard", cls=DsrCommand)
@bootstrap_option
@click.option("--host", help="Listen address (default DSR_DASHBOARD_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default DSR_DASHBOARD_PORT).")
@data_dir_option
def dashboard(
    bootstrap: str | None, host: str | None, port: int | None, data_dir: Path | None
) -> None:
    """Serve the web dashboard until Ctrl-C: requests, deadlines, systems, documents.

    Needs DSR_DASHBOARD_TOKEN (sign in with it; scripts send it as a Bearer token).
    """
    from orchestrator.dashboard.server import Dashboard

    setup_logging()
    settings = command_settings(dashboard_host=host, dashboard_port=port, data_dir=data_dir)
    asyncio.run(_serve(Dashboard(settings, client_kafka(bootstrap))))


async def _serve(server: Dashboard) -> None:
    """Serve until SIGINT or SIGTERM; a port that is taken is a CommandError naming the fix."""
    from orchestrator.cli.errors import CommandError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        raise CommandError(
            f"the dashboard cannot listen on {server.host}:{server.port} ({exc.strerror}); "
            "set DSR_DASHBOARD_PORT (or --port) to a free port"
        ) from None
    click.echo(f"Dashboard on {server.url}; Ctrl-C stops.", err=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


@click.command("watch", cls=DsrCommand)
@bootstrap_option
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=_STATUSES,
    help="Only these statuses ('open', 'finished' or a status; repeatable).",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=REQUEST_TYPES,
    help="Only these request types (repeatable).",
)
@click.option("--overdue", is_flag=True, help="Only overdue requests.")
@click.option("--limit", default=40, show_default=True, help="Rows shown (most urgent first).")
@click.option("--once", is_flag=True, help="Print the table once and exit (for scripts).")
def watch(
    bootstrap: str | None,
    statuses: tuple[str, ...],
    types: tuple[str, ...],
    overdue: bool,
    limit: int,
    once: bool,
) -> None:
    """Live table of requests: status, systems done, how long under way, days left."""
    from orchestrator.dashboard.model import RequestFilter
    from orchestrator.dashboard.watch import watch as run_watch

    settings = command_settings()
    flt = RequestFilter.parse(statuses, types, "true" if overdue else None)
    kafka = client_kafka(bootstrap)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a live watch ends
        asyncio.run(
            run_watch(kafka, flt, due_soon_days=settings.due_soon_days, limit=limit, once=once)
        )


__all__ = ["dashboard", "watch"]
