"""`dsr tasks`: manual tasks, where a person must act, listed and recorded as done."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import (
    DsrGroup,
    bootstrap_option,
    client_kafka,
    command_settings,
    data_dir_option,
)

if TYPE_CHECKING:
    from orchestrator.runtime.config import Settings
    from orchestrator.status.tasks import ManualOutcome, ManualTask
    from schemas.events import Attachment, RecordsRef
    from schemas.primitives.records import RecordStore

#: Where a file to attach is given: any path, checked when it is read (errors name no path).
_ATTACHED = click.Path(dir_okay=False, path_type=Path)


@click.group(cls=DsrGroup)
def tasks() -> None:
    """Manual tasks: systems where a person must act (no API, or a right it cannot automate)."""


@tasks.command("list")
@bootstrap_option
@data_dir_option
def tasks_list(bootstrap: str | None, data_dir: Path | None) -> None:
    """Open manual tasks, most urgent first, with their instructions; then the recipients still
    to be told by hand of a finished request (Art. 19 GDPR)."""
    from orchestrator.artifacts import notifications
    from orchestrator.status.tasks import open_tasks
    from orchestrator.status.view import read_status

    recipients = notifications.open_tasks(command_settings(data_dir=data_dir).data_dir)
    try:
        kafka = client_kafka(bootstrap)
    except click.UsageError:
        if data_dir is None:
            raise
        # The system is down (e.g. after `dsr demo`): the data dir still says who is to be told.
        kafka = None
        click.echo("(no Kafka to read system tasks from: showing recipients only)")
    found = open_tasks(asyncio.run(read_status(kafka))) if kafka is not None else []
    if not found and not recipients:
        click.echo("no open manual tasks")
    for name, notice in recipients:
        click.echo(f"{name}  tell {notice.category.value} {notice.name}\n  {notice.instructions}")
    for task in found:
        status = task.status
        late = " OVERDUE" if status.overdue else ""
        click.echo(
            f"{task.task_id}  {status.request_type.value} on {task.system}, "
            f"{status.days_left} days left{late}\n  {task.progress.instructions}"
        )


@tasks.command("complete")
@bootstrap_option
@data_dir_option
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
@click.option(
    "--attach",
    "attach",
    type=_ATTACHED,
    multiple=True,
    help="Access: a file with what was found (e.g. a chat transcript; other people's data "
    "blacked out), copied into the export. Repeatable.",
)
@click.option(
    "--attach-records",
    "attach_records",
    type=_ATTACHED,
    multiple=True,
    help="Access/portability: records found, as a .json (objects) or .csv file; one "
    "collection per file, named after it. Repeatable.",
)
@click.option(
    "--max-size",
    "max_mb",
    type=click.IntRange(min=1),
    envvar="DSR_ATTACHMENT_MAX_MB",
    default=25,
    show_default=True,
    help="Largest file to attach, in MB (DSR_ATTACHMENT_MAX_MB).",
)
def tasks_complete(
    bootstrap: str | None,
    data_dir: Path | None,
    task: str,
    evidence: str,
    completed_by: str | None,
    outcome: str,
    attach: tuple[Path, ...],
    attach_records: tuple[Path, ...],
    max_mb: int,
) -> None:
    """Record that a person carried out a manual task; it then counts as done.

    For an access or portability request, attach what was found: files (--attach) and
    records (--attach-records) are stored sealed beside the connectors' records and land in
    the export with their SHA-256.
    """
    from orchestrator.artifacts import notifications
    from orchestrator.cli.requests import _client_signer
    from orchestrator.status.tasks import (
        TaskError,
        complete_task,
        manual_outcome,
        parse_task_id,
        waiting_task,
    )
    from orchestrator.status.view import read_status

    request_id, sep, recipient = task.partition("/" + notifications.TASK_PREFIX)
    if sep:  # REQUEST_ID/recipient:NAME, kept in the data dir (Art. 19 GDPR)
        folder = command_settings(data_dir=data_dir).data_dir
        notifications.complete(folder, request_id, recipient, evidence, completed_by=completed_by)
        click.echo(f"task {task} recorded: the recipient was told")
        return

    try:
        request_id, system = parse_task_id(task)
    except TaskError as exc:  # a malformed argument: a usage error, exit code 2
        raise click.BadParameter(str(exc), param_hint="TASK") from None
    kafka = client_kafka(bootstrap)
    status = asyncio.run(read_status(kafka)).get(request_id)
    manual = waiting_task(status, system, task)
    reported: ManualOutcome = "not_found" if outcome == "not_found" else "completed"
    # Checked before any file is stored: bad evidence leaves nothing behind.
    manual_outcome(manual, evidence, completed_by=completed_by, outcome=reported)
    files: list[Attachment] = []
    found: RecordsRef | None = None
    if attach or attach_records:
        settings = command_settings(data_dir=data_dir)
        files, found = _store_found(settings, manual, reported, attach, attach_records, max_mb)
    complete_task(
        kafka,
        manual,
        evidence,
        completed_by=completed_by,
        outcome=reported,
        source="dsr-cli",
        attachments=files,
        records_ref=found,
        signer=_client_signer(kafka),
    )
    attached = f", {len(files)} files and {found.count if found else 0} records attached"
    click.echo(f"task {task} recorded as {outcome}{attached if files or found else ''}")


def _store_found(
    settings: Settings,
    task: ManualTask,
    outcome: ManualOutcome,
    files: Sequence[Path],
    records: Sequence[Path],
    max_mb: int,
) -> tuple[list[Attachment], RecordsRef | None]:
    """Store what a person found for `task` in the record store, sealed with the request's
    data key exactly as a connector worker stores records; their outcome entries."""
    from orchestrator.artifacts.attachments import store_files, store_records
    from orchestrator.status.tasks import check_attachable

    check_attachable(task, outcome, files=bool(files))
    store = _record_store(settings)
    request_id, system = task.status.request_id, task.system
    stored = store_files(store, request_id, system, files, max_mb=max_mb)
    attempt = max(task.progress.attempt, 1)
    return stored, store_records(store, request_id, system, attempt, records, max_mb=max_mb)


def _record_store(settings: Settings) -> RecordStore:
    """The record store and data keys the orchestrator and connector workers share.

    The CLI must run where they are (the same DSR_DATA_DIR, or DSR_RECORD_DIR, DSR_DEK_DIR
    and DSR_BUS_KEY_FILE): a bus key is never created here, as a new one opens no data key.
    """
    from schemas.primitives.sealing import BUS_KEY_FILE

    if settings.bus_key_file is None and not (settings.key_store_dir() / BUS_KEY_FILE).exists():
        raise click.ClickException(
            "no bus key here, so the request's data key cannot be opened: run this where the "
            "orchestrator keeps its data (--data-dir, DSR_DATA_DIR), or set DSR_BUS_KEY_FILE, "
            "DSR_DEK_DIR and DSR_RECORD_DIR to the ones the orchestrator uses"
        )
    return settings.record_store()


__all__ = ["tasks"]
