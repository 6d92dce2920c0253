"""`dsr tasks`: manual tasks, where a person must act, listed and recorded as done."""

from __future__ import annotations

import asyncio

import click

from orchestrator.cli.options import DsrGroup, bootstrap_option, client_kafka


@click.group(cls=DsrGroup)
def tasks() -> None:
    """Manual tasks: systems where a person must act (no API, or a right it cannot automate)."""


@tasks.command("list")
@bootstrap_option
def tasks_list(bootstrap: str | None) -> None:
    """Open manual tasks, most urgent first, with their instructions."""
    from orchestrator.status.tasks import open_tasks
    from orchestrator.status.view import read_status

    found = open_tasks(asyncio.run(read_status(client_kafka(bootstrap))))
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
    except TaskError as exc:  # a malformed argument: a usage error, exit code 2
        raise click.BadParameter(str(exc), param_hint="TASK") from None
    kafka = client_kafka(bootstrap)
    status = asyncio.run(read_status(kafka)).get(request_id)
    complete_task(
        kafka,
        waiting_task(status, system, task),
        evidence,
        completed_by=completed_by,
        outcome="not_found" if outcome == "not_found" else "completed",
        source="dsr-cli",
    )
    click.echo(f"task {task} recorded as {outcome}")


__all__ = ["tasks"]
