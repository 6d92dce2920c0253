"""`dsr export open`: a sealed export as a plain ZIP, for staff who send it to the subject."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import click

from orchestrator.cli.options import FILE, DsrGroup, command_settings, data_dir_option


@click.group("export", cls=DsrGroup)
def export() -> None:
    """Exports of access and portability requests (sealed at rest)."""


@export.command("open")
@click.argument("request_id")
@click.option(
    "--out",
    type=FILE,
    required=True,
    help="Where to write the ZIP. It holds the subject's personal data: delete it once sent.",
)
@data_dir_option
def export_open(request_id: str, out: Path, data_dir: Path | None) -> None:
    """Decrypt the export of REQUEST_ID into a ZIP file (mode 0600)."""
    from orchestrator.artifacts.export import open_export
    from orchestrator.artifacts.store import ArtifactStore
    from orchestrator.cli.errors import CommandError
    from schemas.events import REQUEST_ID_PATTERN
    from schemas.primitives.sealing import DataKeyDestroyed, SealingError

    if not re.fullmatch(REQUEST_ID_PATTERN, request_id):
        raise click.BadParameter("not a request id", param_hint="REQUEST_ID")
    settings = command_settings(data_dir=data_dir)
    data_keys = settings.data_keys()
    path = ArtifactStore(settings.data_dir).export_path(request_id)
    if not path.is_file():
        raise CommandError(
            f"no export of request {request_id!r} in {path.parent}: is it a finished access or "
            "portability request, and is --data-dir (DSR_DATA_DIR) the orchestrator's?"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    size = 0
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            for piece in open_export(path, data_keys, request_id):
                handle.write(piece)
                size += len(piece)
        os.replace(tmp, out)  # only a complete, authentic archive gets the name
    except DataKeyDestroyed as exc:
        raise CommandError(
            f"the export of request {request_id!r} can no longer be opened: {exc}"
        ) from None
    except SealingError as exc:
        raise CommandError(f"the export of request {request_id!r} does not open: {exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    click.echo(f"wrote {out} ({size} bytes); it holds personal data: delete it once sent")


__all__ = ["export"]
