"""The `dsr` command line: run the system, submit requests, read their status, run the demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from connectors.base import ConnectorError
from orchestrator.cli.exports import export
from orchestrator.cli.keys import keys, verify
from orchestrator.cli.publishers import publishers
from orchestrator.runtime.config import ConfigError, Settings, load_settings
from schemas.envelope import describe_validation_error
from schemas.events import (
    DeadlineExtended,
    FieldChange,
    Identifier,
    IdentityVerification,
    IdentityVerified,
    OutcomeStatus,
    RequestStatus,
    RequestStatusChanged,
    RequestSubmitted,
    RequestType,
    Subject,
    TaskDispatched,
    TaskOutcome,
    VerificationMethod,
)
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import PublisherKeyError, RequestSigner
from schemas.register import RegisterError

STATE_DIR = Path(os.environ.get("DSR_STATE_DIR", ".dsr"))
BOOTSTRAP_FILE = STATE_DIR / "bootstrap"
#: DSR_PUBLISHER_* of the local publisher `dsr up` signs with (also for `source` in a shell).
PUBLISHER_FILE = STATE_DIR / "publisher.env"

log = logging.getLogger("dsr.cli")


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _settings(bootstrap: str | None = None, **overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if bootstrap:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap})}
        )
    return settings


def _client_kafka(bootstrap: str | None) -> KafkaSettings:
    """Kafka settings for a client command: flag, environment, or the broker `dsr up` started."""
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


def _client_signer(kafka: KafkaSettings) -> RequestSigner | None:
    """The key a client command signs request events with: the DSR_PUBLISHER_* variables, else
    the local publisher of the embedded broker that `dsr up` started, when talking to it."""
    try:
        signer = RequestSigner.from_env()
        if (
            signer is None
            and PUBLISHER_FILE.exists()
            and BOOTSTRAP_FILE.exists()
            and kafka.bootstrap == BOOTSTRAP_FILE.read_text().strip()
        ):
            lines = PUBLISHER_FILE.read_text().splitlines()
            env = dict(line.split("=", 1) for line in lines if "=" in line)
            signer = RequestSigner.from_env(env)
    except PublisherKeyError as exc:
        raise click.ClickException(str(exc)) from None
    return signer


bootstrap_option = click.option(
    "--bootstrap", envvar="DSR_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers (host:port,...)."
)


@click.group()
@click.version_option(package_name="dsr-orchestrator")
def main() -> None:
    """dsr-orchestrator: GDPR data-subject requests over Kafka."""


# -- running -----------------------------------------------------------------------------------


@main.command()
@bootstrap_option
@click.option("--register", type=click.Path(path_type=Path), help="Register YAML file.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where results are written.")
def up(bootstrap: str | None, register: Path | None, data_dir: Path | None) -> None:
    """Run broker (if embedded), orchestrator and connector workers until Ctrl-C."""
    from orchestrator.runtime.stack import Stack, StackError

    _setup_logging()
    settings = _settings(bootstrap, register_file=register, data_dir=data_dir)
    try:
        stack = Stack(settings, dashboard=True).start()
    except (RegisterError, ConfigError, StackError) as exc:
        raise click.ClickException(str(exc)) from None
    if stack.embedded:
        STATE_DIR.mkdir(exist_ok=True)
        BOOTSTRAP_FILE.write_text(stack.settings.kafka.bootstrap or "")
        if stack.local_publisher is not None:
            env = stack.local_publisher.env()
            PUBLISHER_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    click.echo(
        f"Kafka: {stack.settings.kafka.bootstrap}" + (" (embedded)" if stack.embedded else "")
    )
    signed_in = stack.dashboard_session_token or settings.dashboard_allow_anonymous
    click.echo(
        f"Dashboard: {stack.dashboard_url}"
        + ("" if signed_in else " (sign in with DSR_DASHBOARD_TOKEN)")
    )
    click.echo(f"Results in {settings.data_dir.resolve()}; Ctrl-C stops.")
    try:
        _until_stopped(stack)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        click.echo("Stopping...")
        stack.stop()
        if stack.embedded:
            BOOTSTRAP_FILE.unlink(missing_ok=True)
            PUBLISHER_FILE.unlink(missing_ok=True)


def _until_stopped(stack: Any) -> None:
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


@main.group()
def worker() -> None:
    """Run one worker process (used by 'dsr up' and in containers)."""


@worker.command("orchestrator")
def worker_orchestrator() -> None:
    """The orchestrator's Faust worker."""
    import faust

    from orchestrator.fanout.app import Orchestrator
    from schemas.register import WatchedRegister

    settings = _settings()
    try:
        settings.kafka.require_bootstrap()
        register = WatchedRegister(settings.register_file)
    except (RegisterError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        orchestrator = Orchestrator(settings, register)
    except ConfigError as exc:  # e.g. no publisher keys
        raise click.ClickException(str(exc)) from None
    services = []
    if settings.health_port is not None:
        from orchestrator.runtime.health import for_faust
        from schemas.topics import REQUESTS

        services.append(for_faust(orchestrator.app, settings.health_port, REQUESTS.name))
    worker = faust.Worker(
        orchestrator.app, *services, loglevel="INFO", quiet=True, redirect_stdouts=False
    )
    worker.execute_from_commandline()


@worker.command("connectors")
@click.option("--group", default="default", show_default=True, help="Connector worker group.")
def worker_connectors(group: str) -> None:
    """A connector worker for one group of systems."""
    from connectors.runtime import ConnectorWorker
    from schemas.primitives.records import RecordStore
    from schemas.register import WatchedRegister

    _setup_logging()
    settings = _settings()
    try:
        settings.kafka.require_bootstrap()
        register = WatchedRegister(settings.register_file)
        data_keys = settings.data_keys()  # a ConfigError (a ValueError) names the bus key
    except (RegisterError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    runner = ConnectorWorker(
        settings.kafka,
        register,
        group,
        records=RecordStore(settings.record_store_dir(), data_keys),
        data_keys=data_keys,
    )

    async def _main() -> None:
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

    asyncio.run(_main())


@main.group()
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
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    created = ensure_topics(_client_kafka(bootstrap), configs=per_topic)
    click.echo(f"created: {', '.join(created) or 'nothing'}; all: {', '.join(topic_names())}")


# -- requests ----------------------------------------------------------------------------------


def _build_request(
    request_id: str | None,
    request_type: str,
    identifiers: list[tuple[str, str]],
    verified: str | None,
    language: str,
    requested_by: str,
    scope: str | None,
    changes: tuple[str, ...],
) -> RequestSubmitted:
    now = datetime.now(UTC)
    parsed_changes = None
    if changes:
        parsed_changes = []
        for change in changes:
            field, sep, value = change.partition("=")
            if not sep:
                raise click.BadParameter(f"{change!r}: use FIELD=VALUE", param_hint="--change")
            parsed_changes.append(FieldChange(field=field, value=value))
    return RequestSubmitted(
        request_id=request_id or f"cli-{now:%Y%m%d%H%M%S%f}",
        type=RequestType(request_type),
        subject=Subject(identifiers=[Identifier(type=t, value=v) for t, v in identifiers]),
        language=language,  # type: ignore[arg-type]
        received_at=now,
        verification=IdentityVerification(
            verified=True,
            method=VerificationMethod(verified),
            verified_at=now,
            verified_by="dsr-cli",
        )
        if verified
        else IdentityVerification(),
        requested_by=requested_by,
        changes=parsed_changes,
        scope=[s.strip() for s in scope.split(",")] if scope else None,
    )


@main.command()
@bootstrap_option
@click.option(
    "--file", "file_", type=click.File("rb"), help="A request body as JSON ('-' = stdin)."
)
@click.option("--id", "request_id", help="Request id (idempotency key); generated if omitted.")
@click.option("--type", "request_type", type=click.Choice([t.value for t in RequestType]))
@click.option("--email", multiple=True, help="Subject's email address (repeatable).")
@click.option("--phone", multiple=True, help="Subject's phone number (repeatable).")
@click.option("--customer-id", multiple=True, help="Subject's customer id (repeatable).")
@click.option(
    "--verified",
    type=click.Choice([m.value for m in VerificationMethod]),
    help="Identity already verified, and how; omit to hold it until 'dsr verify-identity'.",
)
@click.option("--language", type=click.Choice(["nl", "en"]), default="nl", show_default=True)
@click.option("--requested-by", default="dsr-cli", show_default=True)
@click.option("--scope", help="Comma-separated system names (default: all).")
@click.option("--change", "changes", multiple=True, help="Rectification: FIELD=VALUE.")
@click.option("--wait", is_flag=True, help="Wait for the final status and print it.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait with --wait.")
def submit(
    bootstrap: str | None,
    file_: Any,
    request_id: str | None,
    request_type: str | None,
    email: tuple[str, ...],
    phone: tuple[str, ...],
    customer_id: tuple[str, ...],
    verified: str | None,
    language: str,
    requested_by: str,
    scope: str | None,
    changes: tuple[str, ...],
    wait: bool,
    timeout: float,
) -> None:
    """Publish a data-subject request (from flags or a JSON file)."""
    from pydantic import ValidationError

    from orchestrator.intake.client import RequestPublisher

    try:
        if file_ is not None:
            request = RequestSubmitted.model_validate_json(file_.read())
        else:
            if not request_type:
                raise click.UsageError("give --type (or --file)")
            identifiers = (
                [("email", e) for e in email]
                + [("phone", p) for p in phone]
                + [("customer_id", c) for c in customer_id]
            )
            if not identifiers:
                raise click.UsageError("give at least one of --email, --phone, --customer-id")
            request = _build_request(
                request_id,
                request_type,
                identifiers,
                verified,
                language,
                requested_by,
                scope,
                changes,
            )
    except ValidationError as exc:
        raise click.ClickException(f"invalid request: {describe_validation_error(exc)}") from None
    kafka = _client_kafka(bootstrap)
    with RequestPublisher(kafka, source="dsr-cli", signer=_client_signer(kafka)) as publisher:
        publisher.publish(request)
    click.echo(f"submitted {request.request_id}")
    if wait:
        status = asyncio.run(_wait_final(kafka, [request.request_id], timeout))[request.request_id]
        _print_status(status)
        if status is None or status.status != RequestStatus.COMPLETED:
            sys.exit(1)


@main.command("verify-identity")
@bootstrap_option
@click.argument("request_id")
@click.option("--method", type=click.Choice([m.value for m in VerificationMethod]), required=True)
@click.option("--by", "verified_by", help="Who checked (staff id).")
def verify_identity(
    bootstrap: str | None, request_id: str, method: str, verified_by: str | None
) -> None:
    """Record that the requester's identity was verified; the request is then fanned out."""
    from orchestrator.intake.client import RequestPublisher

    event = IdentityVerified(
        request_id=request_id,
        method=VerificationMethod(method),
        verified_at=datetime.now(UTC),
        verified_by=verified_by,
    )
    kafka = _client_kafka(bootstrap)
    with RequestPublisher(kafka, source="dsr-cli", signer=_client_signer(kafka)) as publisher:
        publisher.verify_identity(event)
    click.echo(f"identity verified for {request_id}")


@main.command()
@bootstrap_option
@click.argument("request_id")
@click.option("--months", type=click.IntRange(1, 2), required=True, help="1 or 2 months.")
@click.option(
    "--reason",
    required=True,
    help="Why, as the subject will be told (e.g. 'many systems, complex request'). "
    "No personal data.",
)
@click.option("--by", "extended_by", help="Who decided (staff id).")
def extend(
    bootstrap: str | None, request_id: str, months: int, reason: str, extended_by: str | None
) -> None:
    """Extend a request's deadline once by one or two months (Art. 12(3) GDPR)."""
    from pydantic import ValidationError

    from orchestrator.intake.client import RequestPublisher

    try:
        event = DeadlineExtended(
            request_id=request_id,
            months=months,
            reason=reason,
            extended_at=datetime.now(UTC),
            extended_by=extended_by,
        )
    except ValidationError as exc:
        raise click.ClickException(f"invalid extension: {describe_validation_error(exc)}") from None
    kafka = _client_kafka(bootstrap)
    with RequestPublisher(kafka, source="dsr-cli", signer=_client_signer(kafka)) as publisher:
        publisher.extend_deadline(event)
    click.echo(
        f"asked to extend {request_id} by {months} month(s); the subject must be told the reason "
        "(see 'dsr status' for the new deadline)"
    )


@main.command()
@bootstrap_option
@click.argument("request_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(bootstrap: str | None, request_id: str | None, as_json: bool) -> None:
    """Show the status of all requests, or one request in detail."""
    from orchestrator.status.view import read_status

    view = asyncio.run(read_status(_client_kafka(bootstrap)))
    if request_id:
        found = view.get(request_id)
        if found is None:
            raise click.ClickException(f"no status events for request {request_id!r}")
        if as_json:
            click.echo(found.model_dump_json(indent=2))
        else:
            _print_status(found)
        return
    if as_json:
        click.echo(
            json.dumps([s.model_dump(mode="json") for s in view.requests.values()], indent=2)
        )
        return
    _print_table(list(view.requests.values()))


def _print_table(statuses: list[RequestStatusChanged]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("request", "type", "status", "systems", "deadline", "days left")
    for s in sorted(statuses, key=lambda s: s.received_at):
        flag = " [red]OVERDUE[/]" if s.overdue else (" [yellow]due soon[/]" if s.due_soon else "")
        table.add_row(
            s.request_id,
            s.request_type.value,
            s.status.value + flag,
            f"{s.systems_done}/{s.systems_total}",
            s.deadline.date().isoformat(),
            str(s.days_left),
        )
    Console().print(table)


def _print_status(s: RequestStatusChanged | None) -> None:
    if s is None:
        click.echo("no final status in time")
        return
    click.echo(
        f"{s.request_id}: {s.request_type.value} {s.status.value} "
        f"({s.systems_done}/{s.systems_total} systems, deadline {s.deadline.date()})"
    )
    if s.reason:
        click.echo(f"  reason: {s.reason}")
    width = max((len(name) for name in s.systems), default=0) + 1
    for name, p in s.systems.items():
        detail = ", ".join(f"{k} {v}" for k, v in p.counts.model_dump().items() if v)
        click.echo(
            f"  {name:<{width}} {p.status:<23} {detail}" + (f"  ({p.reason})" if p.reason else "")
        )
    if s.artifact:
        click.echo(f"  result: {s.artifact}")


async def _wait_final(
    kafka: KafkaSettings, request_ids: list[str], timeout: float
) -> dict[str, RequestStatusChanged | None]:
    from orchestrator.status.view import read_status

    def done(view: Any) -> bool:
        return all((s := view.get(r)) is not None and s.status.is_final for r in request_ids)

    view = await read_status(kafka, until=done, timeout=timeout)
    return {r: view.get(r) for r in request_ids}


# -- manual tasks ------------------------------------------------------------------------------


@main.group()
def tasks() -> None:
    """Manual tasks: systems where a person must act (no API, or a right it cannot automate)."""


@tasks.command("list")
@bootstrap_option
def tasks_list(bootstrap: str | None) -> None:
    """Open manual tasks, most urgent first, with their instructions."""
    from orchestrator.status.tasks import open_tasks
    from orchestrator.status.view import read_status

    found = open_tasks(asyncio.run(read_status(_client_kafka(bootstrap))))
    if not found:
        click.echo("no open manual tasks")
    for task in found:
        status = task.status
        late = " OVERDUE" if status.overdue else ""
        click.echo(
            f"{task.task_id}  {status.request_type.value} on {task.system}, "
            f"{status.days_left} days left{late}\n  {task.progress.instructions}"
        )


@tasks.command("complete")
@bootstrap_option
@click.argument("task")
@click.option(
    "--evidence",
    required=True,
    help="What was done, e.g. 'deleted chat history in Tawk.to dashboard'. No personal data.",
)
@click.option("--by", "completed_by", help="Who did it (staff id).")
@click.option(
    "--outcome",
    type=click.Choice(["completed", "not_found"]),
    default="completed",
    show_default=True,
)
def tasks_complete(
    bootstrap: str | None, task: str, evidence: str, completed_by: str | None, outcome: str
) -> None:
    """Record that a person carried out a manual task; it then counts as done."""
    from orchestrator.status.tasks import TaskError, complete_task, parse_task_id, waiting_task
    from orchestrator.status.view import read_status

    try:
        request_id, system = parse_task_id(task)
    except TaskError as exc:
        raise click.BadParameter(str(exc), param_hint="TASK") from None
    kafka = _client_kafka(bootstrap)
    status = asyncio.run(read_status(kafka)).get(request_id)
    try:
        complete_task(
            kafka,
            waiting_task(status, system, task),
            evidence,
            completed_by=completed_by,
            outcome="not_found" if outcome == "not_found" else "completed",
            source="dsr-cli",
        )
    except TaskError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"task {task} recorded as {outcome}")


# -- connectors --------------------------------------------------------------------------------


@main.group("connectors")
def connectors_group() -> None:
    """Installed connectors."""


@connectors_group.command("list")
def connectors_list() -> None:
    """Built-in, declarative and installed connectors with their capabilities."""
    from rich.console import Console
    from rich.table import Table

    from connectors import registry

    table = Table("name", "kind", "rights", "source")
    for entry in registry.catalogue():
        table.add_row(entry.name, entry.kind, ", ".join(entry.rights) or "-", entry.source)
    Console().print(table)


@connectors_group.command("check")
@click.argument("system")
@click.option("--register", type=click.Path(path_type=Path), help="Register YAML file.")
@click.option("--email", multiple=True, help="Subject's email address (repeatable).")
@click.option("--phone", multiple=True, help="Subject's phone number (repeatable).")
@click.option("--customer-id", multiple=True, help="Subject's customer id (repeatable).")
def connectors_check(
    system: str,
    register: Path | None,
    email: tuple[str, ...],
    phone: tuple[str, ...],
    customer_id: tuple[str, ...],
) -> None:
    """Dry access on one system of the register: what would an access request find?

    Prints counts per collection, never the records themselves.
    """
    from connectors import registry
    from connectors.execute import perform
    from schemas.register import load_register

    settings = _settings(register_file=register)
    try:
        entry = load_register(settings.register_file).get(system)
    except RegisterError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyError:
        raise click.ClickException(f"no system {system!r} in {settings.register_file}") from None
    identifiers = (
        [("email", e) for e in email]
        + [("phone", p) for p in phone]
        + [("customer_id", c) for c in customer_id]
    )
    if not identifiers:
        raise click.UsageError("give at least one of --email, --phone, --customer-id")
    now = datetime.now(UTC)
    task = TaskDispatched(
        request_id=f"check-{now:%Y%m%d%H%M%S}",
        task_id=f"check-{now:%Y%m%d%H%M%S}/{system}",
        system=system,
        action=RequestType.ACCESS,
        subject=Subject(identifiers=[Identifier(type=t, value=v) for t, v in identifiers]),
        deadline=now,
        dispatched_at=now,
    )

    async def _run() -> TaskOutcome:
        connector = registry.build(entry)
        try:
            return await perform(connector, task)
        finally:
            await connector.aclose()

    try:
        outcome = asyncio.run(_run())
    except ConnectorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{system}: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""))
    per_collection: dict[str, int] = {}
    for record in outcome.records:
        per_collection[record.collection] = per_collection.get(record.collection, 0) + 1
    for collection, count in sorted(per_collection.items()):
        click.echo(f"  {collection:<24} {count} records")
    if outcome.status == OutcomeStatus.FAILED:
        sys.exit(1)


# -- demo --------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("dsr-results"),
    show_default=True,
    help="Where the demo's results and logs go.",
)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait per request.")
@click.option(
    "--sql", "use_sql", is_flag=True, help="Four SQLite databases instead of the vendor fakes."
)
@click.option(
    "--dashboard",
    "with_dashboard",
    is_flag=True,
    help="Also start the web dashboard (loopback, no token) and keep everything running "
    "after the requests until Ctrl-C, to look around.",
)
def demo(out: Path, timeout: float, use_sql: bool, with_dashboard: bool) -> None:
    """Run everything embedded: an access and an erasure request through four systems."""
    from contextlib import ExitStack

    from orchestrator.runtime import demo as demo_data

    out = out.resolve()
    with ExitStack() as fakes:
        if use_sql:
            systems_dir = demo_data.seed(out / "systems")
            env = {"DSR_DEMO_DIR": str(systems_dir)}
            register = demo_data.sql_register_path()
            click.echo(f"Seeded five demo systems in {systems_dir}")
        else:
            systems_dir = demo_data.seed(out / "systems", only=["orders.db"])
            env = {
                **fakes.enter_context(demo_data.vendor_fakes()),
                "DSR_DEMO_DIR": str(systems_dir),
            }
            register = demo_data.register_path()
            click.echo(
                "Started local fakes of HubSpot, ActiveCampaign, Intercom and Freshdesk, "
                "each holding the demo subject, and seeded the shop's own order database "
                f"(with invoices) in {systems_dir}"
            )
        _run_demo(out, timeout, register, env, with_dashboard)


def _run_demo(
    out: Path, timeout: float, register: Path, env: dict[str, str], with_dashboard: bool
) -> None:
    from orchestrator.intake.client import RequestPublisher
    from orchestrator.runtime import demo as demo_data
    from orchestrator.runtime.stack import Stack, StackError

    settings = _settings(register_file=register, data_dir=out)
    # The demo always runs on its own embedded broker, whatever DSR_KAFKA_BOOTSTRAP says.
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap": None}),
            # Loopback only, for as long as the demo runs: no token to type.
            "dashboard_host": "127.0.0.1",
            "dashboard_port": 0,
            "dashboard_allow_anonymous": True,
        }
    )
    started = time.monotonic()
    try:
        # The dashboard is opt-in: starting it beside the workers costs 1-2 s of the demo's
        # 16 s on two cores, and the demo is over before anyone could open it.
        with Stack(
            settings, log_dir=out / "logs", extra_env=env, dashboard=with_dashboard
        ) as stack:
            click.echo(
                f"Embedded Kafka broker on {stack.settings.kafka.bootstrap}; workers starting"
            )
            if stack.dashboard_url:
                click.echo(f"Dashboard: {stack.dashboard_url}")
            results: dict[str, RequestStatusChanged | None] = {}
            stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
            signer = stack.local_publisher.signer() if stack.local_publisher else None
            with RequestPublisher(
                stack.settings.kafka, source="dsr-demo", signer=signer
            ) as publisher:
                for kind in (RequestType.ACCESS, RequestType.ERASURE):
                    now = datetime.now(UTC)
                    request = RequestSubmitted(
                        request_id=f"demo-{kind.value}-{stamp}",
                        type=kind,
                        subject=demo_data.DEMO_SUBJECT,
                        language="nl",
                        received_at=now,
                        verification=IdentityVerification(
                            verified=True,
                            method=VerificationMethod.ID_DOCUMENT,
                            verified_at=now,
                            verified_by="demo",
                        ),
                        requested_by="dsr-demo",
                    )
                    publisher.publish(request)
                    click.echo(f"Submitted {kind.value} request {request.request_id}")
                    status = asyncio.run(
                        _wait_final(stack.settings.kafka, [request.request_id], timeout)
                    )[request.request_id]
                    stack.check()
                    results[request.request_id] = status
                    _print_status(status)
            if stack.dashboard_url:
                click.echo(f"\nThe dashboard stays up at {stack.dashboard_url}; Ctrl-C stops.")
                waited = time.monotonic()
                _until_stopped(stack)
                started += time.monotonic() - waited  # "Done in" counts the requests only
    except (StackError, RegisterError, ConfigError) as exc:
        raise click.ClickException(f"{exc}\nLogs: {out / 'logs'}") from None
    failed = [rid for rid, s in results.items() if s is None or s.status != RequestStatus.COMPLETED]
    if failed:
        raise click.ClickException(
            f"demo requests did not complete: {', '.join(failed)}; logs in {out / 'logs'}"
        )
    click.echo(f"\nDone in {time.monotonic() - started:.1f}s. Results:")
    for s in results.values():
        assert s is not None
        click.echo(f"  {s.request_type.value:<11} {s.artifact}")
        result = json.loads(Path(s.artifact or "").read_text())
        if result.get("export"):
            click.echo(f"  export      {result['export']} (sealed)")
            click.echo(
                f"  open it:    dsr export open {s.request_id} --data-dir {out} "
                f"--out {s.request_id}.zip"
            )
        certificate = result.get("certificate")
        if certificate:
            click.echo(f"  certificate {certificate}")
            click.echo(f"  check it:   dsr verify {certificate} --dir {out / 'keys'}")
            _print_retained(json.loads(Path(certificate).read_text()))
        for name, path in (result.get("documents") or {}).items():
            click.echo(f"  {name:<11} {path}")


def _print_retained(certificate: dict[str, Any]) -> None:
    """The certificate's retained items: what the law made us keep, and until when."""
    body = certificate.get("certificate") or {}
    for name, system in (body.get("systems") or {}).items():
        for item in system.get("retained") or []:
            click.echo(
                f"  retained    {name}/{item.get('collection')}: "
                f"{item.get('count')} until {item.get('until') or '(no date)'} "
                f"({item.get('legal_basis')})"
            )


main.add_command(keys)
main.add_command(verify)
main.add_command(publishers)
main.add_command(export)

from orchestrator.cli.dashboard import dashboard, watch  # noqa: E402 - registered last, lazily

main.add_command(dashboard)
main.add_command(watch)

if __name__ == "__main__":
    main()
