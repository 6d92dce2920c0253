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
from orchestrator.config import ConfigError, Settings, load_settings
from orchestrator.keys_cli import keys, verify
from orchestrator.lifecycle import task_id
from schemas.envelope import describe_validation_error
from schemas.events import (
    DeadlineExtended,
    Evidence,
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
from schemas.register import RegisterError

STATE_DIR = Path(os.environ.get("DSR_STATE_DIR", ".dsr"))
BOOTSTRAP_FILE = STATE_DIR / "bootstrap"

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
    from orchestrator.stack import Stack, StackError

    _setup_logging()
    settings = _settings(bootstrap, register_file=register, data_dir=data_dir)
    try:
        stack = Stack(settings).start()
    except RegisterError as exc:
        raise click.ClickException(str(exc)) from None
    if stack.embedded:
        STATE_DIR.mkdir(exist_ok=True)
        BOOTSTRAP_FILE.write_text(stack.settings.kafka.bootstrap or "")
    click.echo(
        f"Kafka: {stack.settings.kafka.bootstrap}" + (" (embedded)" if stack.embedded else "")
    )
    click.echo(f"Results in {settings.data_dir.resolve()}; Ctrl-C stops.")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            stack.check()
            time.sleep(0.5)
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        click.echo("Stopping...")
        stack.stop()
        if stack.embedded:
            BOOTSTRAP_FILE.unlink(missing_ok=True)


@main.group()
def worker() -> None:
    """Run one worker process (used by 'dsr up' and in containers)."""


@worker.command("orchestrator")
def worker_orchestrator() -> None:
    """The orchestrator's Faust worker."""
    import faust

    from orchestrator.app import Orchestrator
    from schemas.register import WatchedRegister

    settings = _settings()
    settings.kafka.require_bootstrap()
    try:
        register = WatchedRegister(settings.register_file)
    except RegisterError as exc:
        raise click.ClickException(str(exc)) from None
    orchestrator = Orchestrator(settings, register)
    worker = faust.Worker(orchestrator.app, loglevel="INFO", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


@worker.command("connectors")
@click.option("--group", default="default", show_default=True, help="Connector worker group.")
def worker_connectors(group: str) -> None:
    """A connector worker for one group of systems."""
    from connectors.runtime import ConnectorWorker
    from schemas.register import WatchedRegister

    _setup_logging()
    settings = _settings()
    try:
        register = WatchedRegister(settings.register_file)
    except RegisterError as exc:
        raise click.ClickException(str(exc)) from None
    runner = ConnectorWorker(settings.kafka, register, group)

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.stop)
        await runner.run()

    asyncio.run(_main())


@main.group()
def topics() -> None:
    """Manage our Kafka topics."""


@topics.command("create")
@bootstrap_option
def topics_create(bootstrap: str | None) -> None:
    """Create every topic the application uses (idempotent)."""
    from orchestrator.topology import ensure_topics, topic_names

    created = ensure_topics(_client_kafka(bootstrap))
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

    from orchestrator.client import RequestPublisher

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
    with RequestPublisher(kafka, source="dsr-cli") as publisher:
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
    from orchestrator.client import RequestPublisher

    event = IdentityVerified(
        request_id=request_id,
        method=VerificationMethod(method),
        verified_at=datetime.now(UTC),
        verified_by=verified_by,
    )
    with RequestPublisher(_client_kafka(bootstrap), source="dsr-cli") as publisher:
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

    from orchestrator.client import RequestPublisher

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
    with RequestPublisher(_client_kafka(bootstrap), source="dsr-cli") as publisher:
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
    from orchestrator.status import read_status

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
    for name, p in s.systems.items():
        detail = ", ".join(f"{k} {v}" for k, v in p.counts.model_dump().items() if v)
        click.echo(
            f"  {name:<12} {p.status:<24} {detail}" + (f"  ({p.reason})" if p.reason else "")
        )
    if s.artifact:
        click.echo(f"  result: {s.artifact}")


async def _wait_final(
    kafka: KafkaSettings, request_ids: list[str], timeout: float
) -> dict[str, RequestStatusChanged | None]:
    from orchestrator.status import read_status

    def done(view: Any) -> bool:
        return all((s := view.get(r)) is not None and s.status.is_final for r in request_ids)

    view = await read_status(kafka, until=done, timeout=timeout)
    return {r: view.get(r) for r in request_ids}


# -- manual tasks ------------------------------------------------------------------------------


@main.group()
def tasks() -> None:
    """Manual tasks: systems where a person must act (no API, or a right it cannot automate)."""


def _manual_tasks(view: Any) -> list[tuple[RequestStatusChanged, str, Any]]:
    found = []
    for status in view.requests.values():
        if status.status.is_final:
            continue
        for system, progress in status.systems.items():
            if progress.status == OutcomeStatus.MANUAL_ACTION_REQUIRED:
                found.append((status, system, progress))
    return sorted(found, key=lambda item: item[0].deadline)


@tasks.command("list")
@bootstrap_option
def tasks_list(bootstrap: str | None) -> None:
    """Open manual tasks, most urgent first, with their instructions."""
    from orchestrator.status import read_status

    view = asyncio.run(read_status(_client_kafka(bootstrap)))
    open_tasks = _manual_tasks(view)
    if not open_tasks:
        click.echo("no open manual tasks")
    for status, system, progress in open_tasks:
        late = " OVERDUE" if status.overdue else ""
        click.echo(
            f"{task_id(status.request_id, system)}  {status.request_type.value} on {system}, "
            f"{status.days_left} days left{late}\n  {progress.instructions}"
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
    from orchestrator.client import RequestPublisher
    from orchestrator.status import read_status

    request_id, sep, system = task.rpartition("/")
    if not sep:
        raise click.BadParameter("a task id looks like REQUEST_ID/SYSTEM", param_hint="TASK")
    kafka = _client_kafka(bootstrap)
    status = asyncio.run(read_status(kafka)).get(request_id)
    progress = status.systems.get(system) if status else None
    if status is None or progress is None:
        raise click.ClickException(f"no task {task!r}: unknown request or system")
    if progress.status != OutcomeStatus.MANUAL_ACTION_REQUIRED:
        raise click.ClickException(
            f"task {task!r} is not waiting for a person (its status is {progress.status})"
        )
    proof = [Evidence(kind="manual_confirmation", value=evidence)]
    if completed_by:
        proof.append(Evidence(kind="completed_by", value=completed_by))
    result = TaskOutcome(
        request_id=request_id,
        task_id=task,
        system=system,
        action=status.request_type,
        attempt=max(progress.attempt, 1),
        status=OutcomeStatus(outcome),
        evidence=proof,
        completed_at=datetime.now(UTC),
    )
    with RequestPublisher(kafka, source="dsr-cli") as publisher:
        publisher.report_outcome(result)
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
def demo(out: Path, timeout: float, use_sql: bool) -> None:
    """Run everything embedded: an access and an erasure request through four systems."""
    from contextlib import ExitStack

    from orchestrator import demo as demo_data

    out = out.resolve()
    with ExitStack() as fakes:
        if use_sql:
            systems_dir = demo_data.seed(out / "systems")
            env = {"DSR_DEMO_DIR": str(systems_dir)}
            register = demo_data.sql_register_path()
            click.echo(f"Seeded four demo systems in {systems_dir}")
        else:
            env = fakes.enter_context(demo_data.vendor_fakes())
            register = demo_data.register_path()
            click.echo(
                "Started local fakes of HubSpot, ActiveCampaign, Intercom and Freshdesk, "
                "each holding the demo subject"
            )
        _run_demo(out, timeout, register, env)


def _run_demo(out: Path, timeout: float, register: Path, env: dict[str, str]) -> None:
    from orchestrator import demo as demo_data
    from orchestrator.client import RequestPublisher
    from orchestrator.stack import Stack, StackError

    settings = _settings(register_file=register, data_dir=out)
    # The demo always runs on its own embedded broker, whatever DSR_KAFKA_BOOTSTRAP says.
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap": None})}
    )
    started = time.monotonic()
    try:
        with Stack(settings, log_dir=out / "logs", extra_env=env) as stack:
            click.echo(
                f"Embedded Kafka broker on {stack.settings.kafka.bootstrap}; workers starting"
            )
            results: dict[str, RequestStatusChanged | None] = {}
            stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
            with RequestPublisher(stack.settings.kafka, source="dsr-demo") as publisher:
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
    except (StackError, RegisterError) as exc:
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
            click.echo(f"  export      {result['export']}")
        certificate = result.get("certificate")
        if certificate:
            click.echo(f"  certificate {certificate}")
            click.echo(f"  check it:   dsr verify {certificate} --dir {out / 'keys'}")


main.add_command(keys)
main.add_command(verify)

if __name__ == "__main__":
    main()
