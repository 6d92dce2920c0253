"""`dsr dashboard` (the web dashboard) and `dsr watch` (the same list in a terminal)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from schemas.events import RequestStatus, RequestType

_STATUS_CHOICES = ["open", "finished", *(s.value for s in RequestStatus)]


@click.command("dashboard")
@click.option("--bootstrap", envvar="DSR_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")
@click.option("--host", help="Listen address (default DSR_DASHBOARD_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default DSR_DASHBOARD_PORT).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Where the results are, for the export and certificate links (default DSR_DATA_DIR).",
)
def dashboard(
    bootstrap: str | None, host: str | None, port: int | None, data_dir: Path | None
) -> None:
    """Serve the web dashboard until Ctrl-C: requests, deadlines, systems, documents.

    Needs DSR_DASHBOARD_TOKEN (sign in with it; scripts send it as a Bearer token).
    """
    # Imported here: `orchestrator.cli` registers this command when it is imported.
    from orchestrator.cli import _client_kafka, _settings, _setup_logging
    from orchestrator.dashboard.server import Dashboard
    from orchestrator.runtime.config import ConfigError

    _setup_logging()
    settings = _settings(None, dashboard_host=host, dashboard_port=port, data_dir=data_dir)
    kafka = (
        settings.kafka if settings.kafka.bootstrap and not bootstrap else _client_kafka(bootstrap)
    )
    try:
        server = Dashboard(settings, kafka)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    async def _serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.start()
        except OSError as exc:
            await server.stop()
            raise click.ClickException(
                f"the dashboard cannot listen on {server.host}:{server.port} ({exc.strerror}); "
                "set DSR_DASHBOARD_PORT (or --port) to a free port"
            ) from None
        click.echo(f"Dashboard on {server.url}; Ctrl-C stops.", err=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(_serve())


@click.command("watch")
@click.option("--bootstrap", envvar="DSR_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_STATUS_CHOICES),
    help="Only these statuses ('open', 'finished' or a status; repeatable).",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice([t.value for t in RequestType]),
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
    from orchestrator.cli import _client_kafka, _settings
    from orchestrator.dashboard.model import RequestFilter
    from orchestrator.dashboard.watch import WatchError
    from orchestrator.dashboard.watch import watch as run_watch

    settings = _settings()
    flt = RequestFilter.parse(statuses, types, "true" if overdue else None)
    try:
        asyncio.run(
            run_watch(
                _client_kafka(bootstrap),
                flt,
                due_soon_days=settings.due_soon_days,
                limit=limit,
                once=once,
            )
        )
    except WatchError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


__all__ = ["dashboard", "watch"]
