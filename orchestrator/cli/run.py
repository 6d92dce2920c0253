"""`dsr up`, `dsr worker` and `dsr topics`: running the system and its parts."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import (
    BOOTSTRAP_FILE,
    PUBLISHER_FILE,
    STATE_DIR,
    DsrCommand,
    DsrGroup,
    bootstrap_option,
    client_kafka,
    command_settings,
    data_dir_option,
    faust_logging,
    register_option,
    setup_logging,
)

#: The intake process's URL, for scripts in the same directory (next to BOOTSTRAP_FILE).
INTAKE_URL_FILE = STATE_DIR / "intake-url"

if TYPE_CHECKING:
    from connectors.runtime import ConnectorWorker
    from orchestrator.runtime.config import Settings
    from orchestrator.runtime.stack import Stack


@click.command(cls=DsrCommand)
@bootstrap_option
@register_option
@data_dir_option
def up(bootstrap: str | None, register: Path | None, data_dir: Path | None) -> None:
    """Run broker (if embedded), orchestrator, connector workers, intake and dashboard until
    Ctrl-C."""
    from orchestrator.cli.intake import intake_settings
    from orchestrator.runtime.stack import Address, Stack
    from schemas.register import RegisterError

    setup_logging()
    settings = command_settings(bootstrap, register_file=register, data_dir=data_dir)
    intake = intake_settings()
    # On a laptop: loopback, and a free port unless DSR_INTAKE_PORT names one.
    port = intake.port if "DSR_INTAKE_PORT" in os.environ else 0
    try:
        stack = Stack(settings, dashboard=True, intake=Address(intake.host, port))
    except RegisterError as exc:
        if settings.register_file.exists():
            raise
        raise RegisterError(f"{exc}; run `dsr init` to create a starter register") from None
    try:
        stack.start()
    except BaseException:
        stack.stop()  # what did start (the broker, some workers) must not outlive the command
        raise
    _write_state(stack)
    click.echo(
        f"Kafka: {stack.settings.kafka.bootstrap}" + (" (embedded)" if stack.embedded else "")
    )
    click.echo(f"Intake: {stack.intake_url} (request page and API)")
    if not settings.smtp_host:
        outbox = settings.data_dir.resolve() / "outbox"
        click.echo(f"Request page e-mails go to {outbox} (no DSR_SMTP_HOST): open the .eml files")
    signed_in = stack.dashboard_session_token or settings.dashboard_allow_anonymous
    click.echo(
        f"Dashboard: {stack.dashboard_url}"
        + ("" if signed_in else " (sign in with DSR_DASHBOARD_TOKEN)")
    )
    click.echo(f"Results in {settings.data_dir.resolve()}; Ctrl-C stops.")
    try:
        until_stopped(stack)
    finally:
        click.echo("Stopping...")
        stack.stop()
        INTAKE_URL_FILE.unlink(missing_ok=True)
        if stack.embedded:
            BOOTSTRAP_FILE.unlink(missing_ok=True)
            PUBLISHER_FILE.unlink(missing_ok=True)


def _write_state(stack: Stack) -> None:
    """What other commands (and a shell) in this directory need: the embedded broker's address,
    the intake's URL, and the local publisher's key with the library path kcat needs."""
    from orchestrator.intake.kcat import kcat_library_env

    STATE_DIR.mkdir(exist_ok=True)
    INTAKE_URL_FILE.write_text(f"{stack.intake_url}\n")
    if not stack.embedded:
        return
    BOOTSTRAP_FILE.write_text(stack.settings.kafka.bootstrap or "")
    if stack.local_publisher is not None:
        env = {**stack.local_publisher.env(), **kcat_library_env(STATE_DIR / "librdkafka")}
        PUBLISHER_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))


def until_stopped(stack: Stack) -> None:
    """Watch the stack's processes until Ctrl-C or SIGTERM; raises StackError if one dies."""
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping:
        stack.check()
        time.sleep(0.5)


@click.group(cls=DsrGroup)
def worker() -> None:
    """Run one worker process (used by 'dsr up' and in containers)."""


#: The collector's thresholds in a worker (`_settle_heap`); Python's are (700, 10, 10).
GC_THRESHOLDS = (20_000, 50, 100)


def _settle_heap() -> None:
    """Move what start-up built (modules, the register, templates) out of the collector's
    view: every full collection under load walked all of it again, a 45-100 ms pause of the
    worker each time, paid by the requests in flight.

    And collect less often (`GC_THRESHOLDS`): a batch of events allocates far more than 700
    short-lived containers (models, dicts, lists), so at Python's thresholds the collector
    ran many times per batch, each time walking the young objects still in use. Measured with
    `bench/pipeline.py` (2 cores, 10 alternating runs each, medians): connector worker 1.87 ->
    1.67 ms and orchestrator 6.08 -> 5.91 ms of CPU per request, 167 -> 175 requests/s; a
    young generation of 100,000 measured no better than 20,000. Garbage in reference cycles
    lives a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _worker_settings() -> Settings:
    """The settings of a worker process, which must name its Kafka."""

    settings = command_settings()
    settings.kafka.require_bootstrap()
    return settings


@worker.command("orchestrator")
def worker_orchestrator() -> None:
    """The orchestrator's Faust worker."""
    import faust

    from orchestrator.fanout.app import Orchestrator
    from schemas.register import WatchedRegister

    settings = _worker_settings()
    orchestrator = Orchestrator(settings, WatchedRegister(settings.register_file))
    services = []
    if settings.health_port is not None:
        from orchestrator.runtime.health import for_faust
        from schemas.topics import REQUESTS

        services.append(for_faust(orchestrator.app, settings.health_port, REQUESTS.name))
    faust_worker = faust.Worker(
        orchestrator.app,
        *services,
        loglevel="INFO",
        quiet=True,
        redirect_stdouts=False,
        logging_config=faust_logging(),
    )
    _settle_heap()
    faust_worker.execute_from_commandline()


@worker.command("connectors")
@click.option("--group", default="default", show_default=True, help="Connector worker group.")
def worker_connectors(group: str) -> None:
    """A connector worker for one group of systems."""
    from connectors.runtime import ConnectorWorker
    from schemas.register import WatchedRegister

    setup_logging()
    settings = _worker_settings()
    register = WatchedRegister(settings.register_file, group=group)
    # Each task's key is read from disk once, then checked with two stats (DataKeys).
    data_keys = settings.data_keys(checked_cache_size=4096)
    runner = ConnectorWorker(
        settings.kafka,
        register,
        group,
        records=settings.record_store(data_keys),
        data_keys=data_keys,
    )
    _settle_heap()
    asyncio.run(_run_connectors(runner, settings, group))


async def _run_connectors(runner: ConnectorWorker, settings: Settings, group: str) -> None:
    """Run the connector worker until SIGINT or SIGTERM, with its health server if configured."""
    from orchestrator.runtime.health import HealthServer, event_ready
    from schemas.topics import TASKS

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
    ready = asyncio.Event()
    health = None
    if settings.health_port is not None:
        waiting_for = f"partitions of {TASKS.name} (group {group})"
        health = HealthServer(
            settings.health_port,
            ready=event_ready(ready, waiting_for),
            component=f"connectors-{group}",
        )
        await health.start()
    try:
        await runner.run(ready)
    finally:
        if health is not None:
            await health.stop()


@click.group(cls=DsrGroup)
def topics() -> None:
    """Manage our Kafka topics."""


@topics.command("create")
@bootstrap_option
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="[TOPIC:]KEY=VALUE",
    help="A topic config for new topics, e.g. retention.ms=604800000 (all topics) or "
    "dsr.status.v1:retention.ms=-1 (one topic). Repeatable.",
)
def topics_create(bootstrap: str | None, configs: tuple[str, ...]) -> None:
    """Create every topic the application uses (idempotent).

    Partitions and replication factor come from DSR_KAFKA_PARTITIONS and
    DSR_KAFKA_REPLICATION_FACTOR. Existing topics are not changed.
    """
    from orchestrator.runtime.topics import ensure_topics, parse_topic_configs, topic_names

    try:
        per_topic = parse_topic_configs(configs)
    except ValueError as exc:  # a malformed flag: a usage error, exit code 2
        raise click.BadParameter(str(exc), param_hint="--config") from None
    created = ensure_topics(client_kafka(bootstrap), configs=per_topic)
    click.echo(f"created: {', '.join(created) or 'nothing'}; all: {', '.join(topic_names())}")


__all__ = ["topics", "until_stopped", "up", "worker"]
