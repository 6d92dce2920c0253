"""`dsr demo`: everything embedded, an access and an erasure request through five systems;
`dsr demo --sweep`: retention sweeps of the systems with a sweep policy instead."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.options import DsrCommand, command_settings
from orchestrator.cli.requests import print_status, wait_final
from orchestrator.cli.run import until_stopped

if TYPE_CHECKING:
    from collections.abc import Iterable

    from orchestrator.runtime.config import Settings
    from orchestrator.runtime.stack import Stack
    from schemas.events import RequestStatusChanged
    from schemas.kafka import KafkaSettings
    from schemas.sweeps import SweepStatusChanged

#: What each demo request ended as, by request id (None: not final in time).
Results = dict[str, "RequestStatusChanged | None"]


@click.command(cls=DsrCommand)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("dsr-results"),
    show_default=True,
    help="Where the demo's results and logs go.",
)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait per request.")
@click.option(
    "--sql", "use_sql", is_flag=True, help="SQLite databases instead of the vendor fakes."
)
@click.option(
    "--dashboard",
    "with_dashboard",
    is_flag=True,
    help="Also start the web dashboard (loopback, no token) and keep everything running "
    "after the requests until Ctrl-C, to look around.",
)
@click.option(
    "--sweep",
    "with_sweep",
    is_flag=True,
    help="Instead of the requests: seed records of different ages and sweep every system with "
    "a sweep policy in the register (a dry run, an approval, the sweep, its certificate).",
)
def demo(out: Path, timeout: float, use_sql: bool, with_dashboard: bool, with_sweep: bool) -> None:
    """Run everything embedded: an access and an erasure request through five systems."""
    from contextlib import ExitStack

    from orchestrator.runtime import demo as demo_data

    out = out.resolve()
    with ExitStack() as fakes:
        if use_sql:
            systems_dir = demo_data.seed(out / "systems")
            if with_sweep:
                demo_data.seed_expired(systems_dir)
            env = {"DSR_DEMO_DIR": str(systems_dir)}
            register = demo_data.sql_register_path()
            click.echo(f"Seeded five demo systems in {systems_dir}")
        else:
            systems_dir = demo_data.seed(out / "systems", only=["orders.db"])
            env = {
                **fakes.enter_context(demo_data.vendor_fakes(aged=with_sweep)),
                "DSR_DEMO_DIR": str(systems_dir),
            }
            register = demo_data.register_path()
            click.echo(
                "Started local fakes of HubSpot, ActiveCampaign, Intercom and Freshdesk, "
                "each holding the demo subject, and seeded the shop's own order database "
                f"(with invoices) in {systems_dir}"
            )
        settings = _demo_settings(register, out)
        if with_sweep:
            _run_sweep_demo(out, timeout, settings, env)
        else:
            _run_demo(out, timeout, settings, env, with_dashboard)


def _demo_settings(register: Path, out: Path) -> Settings:
    """The settings from the environment, on an embedded broker and an open loopback dashboard."""
    settings = command_settings(register_file=register, data_dir=out)
    return settings.model_copy(
        update={
            # The demo always runs on its own embedded broker, whatever DSR_KAFKA_BOOTSTRAP says.
            "kafka": settings.kafka.model_copy(update={"bootstrap": None}),
            # Loopback only, for as long as the demo runs: no token to type.
            "dashboard_host": "127.0.0.1",
            "dashboard_port": 0,
            "dashboard_allow_anonymous": True,
        }
    )


def _run_demo(
    out: Path, timeout: float, settings: Settings, env: dict[str, str], with_dashboard: bool
) -> None:
    from orchestrator.cli.errors import CommandError
    from orchestrator.runtime.stack import Stack
    from schemas.errors import DsrError
    from schemas.events import RequestStatus

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
            results = _submit_requests(stack, timeout)
            if stack.dashboard_url:
                click.echo(f"\nThe dashboard stays up at {stack.dashboard_url}; Ctrl-C stops.")
                waited = time.monotonic()
                until_stopped(stack)
                started += time.monotonic() - waited  # "Done in" counts the requests only
    except DsrError as exc:
        raise CommandError(f"{exc}\nLogs: {out / 'logs'}") from None
    failed = [rid for rid, s in results.items() if s is None or s.status != RequestStatus.COMPLETED]
    if failed:
        raise CommandError(
            f"demo requests did not complete: {', '.join(failed)}; logs in {out / 'logs'}"
        )
    click.echo(f"\nDone in {time.monotonic() - started:.1f}s. Results:")
    _print_results(out, results)


def _submit_requests(stack: Stack, timeout: float) -> Results:
    """Submit the demo's access request, then its erasure request, each waited for in turn."""
    from orchestrator.intake.client import RequestPublisher
    from orchestrator.runtime import demo as demo_data
    from schemas.events import RequestType

    results: Results = {}
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    signer = stack.local_publisher.signer() if stack.local_publisher else None
    with RequestPublisher(stack.settings.kafka, source="dsr-demo", signer=signer) as publisher:
        for kind in (RequestType.ACCESS, RequestType.ERASURE):
            request = demo_data.verified_request(
                f"demo-{kind.value}-{stamp}",
                kind,
                demo_data.DEMO_SUBJECT,
                requested_by="dsr-demo",
                verified_by="demo",
            )
            publisher.publish(request)
            click.echo(f"Submitted {kind.value} request {request.request_id}")
            waited = asyncio.run(wait_final(stack.settings.kafka, [request.request_id], timeout))
            stack.check()
            results[request.request_id] = status = waited[request.request_id]
            print_status(status)
    return results


def _run_sweep_demo(out: Path, timeout: float, settings: Settings, env: dict[str, str]) -> None:
    """Sweep every system with a sweep policy: a dry run, an officer's approval, the sweep."""
    from orchestrator.cli.errors import CommandError
    from orchestrator.runtime.stack import Stack
    from schemas.errors import DsrError
    from schemas.sweeps import SweepStatus

    started = time.monotonic()
    try:
        with Stack(settings, log_dir=out / "logs", extra_env=env) as stack:
            click.echo(
                f"Embedded Kafka broker on {stack.settings.kafka.bootstrap}; workers starting"
            )
            sweeps = _sweep_systems(stack, timeout)
    except DsrError as exc:
        raise CommandError(f"{exc}\nLogs: {out / 'logs'}") from None
    unfinished = [
        sweep_id
        for sweep_id, s in sweeps.items()
        if s is None or s.status not in (SweepStatus.COMPLETED, *_SWEEP_ENDS)
    ]
    if unfinished:
        raise CommandError(
            f"demo sweeps did not finish: {', '.join(unfinished)}; logs in {out / 'logs'}"
        )
    click.echo(f"\nDone in {time.monotonic() - started:.1f}s. Certificates:")
    for status in sweeps.values():
        assert status is not None
        _print_sweep_certificate(status, out)


def _sweep_systems(stack: Stack, timeout: float) -> dict[str, SweepStatusChanged | None]:
    """Start a dry run of each system with a sweep policy, approve what they counted as an
    officer would, and wait for the sweeps; the latest status of each, by sweep id."""
    from orchestrator.cli.sweeps import new_sweep_id, print_sweep, publish_sweep
    from orchestrator.intake.client import RequestPublisher
    from schemas.sweeps import SweepApproved, SweepRequested, SweepStatus

    kafka = stack.settings.kafka
    now = datetime.now(UTC)
    started = {
        new_sweep_id(s.name, now): s.name for s in stack.register.systems if s.sweep is not None
    }
    signer = stack.local_publisher.signer() if stack.local_publisher else None
    with RequestPublisher(kafka, source="dsr-demo", signer=signer) as publisher:
        for sweep_id, system in started.items():
            event = SweepRequested(
                sweep_id=sweep_id, system=system, requested_by="dsr-demo", requested_at=now
            )
            publish_sweep(publisher, event)
            click.echo(f"Started a dry run of {system}: {sweep_id}")
        counted = _wait_sweeps(
            kafka, started, (SweepStatus.AWAITING_APPROVAL, *_SWEEP_ENDS), timeout
        )
        stack.check()
        for sweep_id, status in counted.items():
            if status is None:
                continue  # not counted in time: reported as unfinished below
            print_sweep(status)
            if status.status == SweepStatus.AWAITING_APPROVAL:
                approval = SweepApproved(
                    sweep_id=sweep_id, approved_by="demo-officer", approved_at=datetime.now(UTC)
                )
                publish_sweep(publisher, approval)
                click.echo(f"Approved {sweep_id} as demo-officer")
    finished = _wait_sweeps(kafka, started, (SweepStatus.COMPLETED, *_SWEEP_ENDS), timeout)
    stack.check()
    return finished


#: Where a sweep ends other than completed: nothing to delete, a person must, or it failed.
_SWEEP_ENDS = ("nothing_expired", "manual_action_required", "failed")


def _wait_sweeps(
    kafka: KafkaSettings, sweep_ids: Iterable[str], statuses: Iterable[str], timeout: float
) -> dict[str, SweepStatusChanged | None]:
    """Read the status topic until every sweep is in one of `statuses` (or `timeout` passed)."""
    from orchestrator.cli.sweeps import read_sweeps

    ids, wanted = list(sweep_ids), {str(s) for s in statuses}

    def arrived(sweeps: dict[str, SweepStatusChanged]) -> bool:
        return all(i in sweeps and sweeps[i].status.value in wanted for i in ids)

    sweeps = read_sweeps(kafka, until=arrived, timeout=timeout)
    return {i: sweeps.get(i) for i in ids}


def _print_sweep_certificate(status: SweepStatusChanged, out: Path) -> None:
    """What a sweep deleted and kept per collection, from its signed certificate."""
    click.echo(f"  {status.system}: {status.status.value}")
    if status.instructions:
        click.echo(f"    to do by hand: {status.instructions}")
    if not status.certificate:
        return
    body = json.loads(Path(status.certificate).read_text()).get("certificate") or {}
    for item in body.get("collections") or []:
        click.echo(
            f"    {item.get('collection')}: {item.get('expired')} expired, "
            f"{item.get('deleted')} deleted, {item.get('anonymised')} anonymised, "
            f"{item.get('kept')} kept (before {item.get('cutoff')}: {item.get('rule')})"
        )
    for item in body.get("retained") or []:
        click.echo(
            f"    kept {item.get('collection')}: {item.get('count')} until "
            f"{item.get('until') or '(no date)'} ({item.get('legal_basis')})"
        )
    click.echo(f"    certificate {status.certificate}")
    click.echo(f"    check it:   dsr verify {status.certificate} --dir {out / 'keys'}")


def _print_results(out: Path, results: Results) -> None:
    """Where each request's result and documents are, and the commands that open and check them."""
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
        _print_recipients(result.get("recipients") or [], out)


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


def _print_recipients(recipients: list[dict[str, Any]], out: Path) -> None:
    """Who was told of the erasure (Art. 19 GDPR), and who is still to be told by hand."""
    if not recipients:
        return
    told = [r["name"] for r in recipients if r.get("status") == "notified"]
    waiting = [r["name"] for r in recipients if r.get("status") != "notified"]
    click.echo(f"  recipients  told: {', '.join(told) or '-'}")
    if waiting:
        click.echo(f"              to tell by hand: {', '.join(waiting)}")
        click.echo(f"              see: dsr tasks list --data-dir {out}")


__all__ = ["demo"]
