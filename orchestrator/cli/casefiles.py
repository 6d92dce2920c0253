"""`dsr casefiles sweep`: remove our own case files once their retention has passed."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.options import DsrGroup, command_settings, data_dir_option, register_option


@click.group("casefiles", cls=DsrGroup)
def casefiles() -> None:
    """Our own case files: results, letters, certificates (storage limitation)."""


@casefiles.command("sweep")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@data_dir_option
@register_option
def casefiles_sweep(dry_run: bool, data_dir: Path | None, register: Path | None) -> None:
    """Remove the case files whose retention (the register's `case_files`) has passed, and
    destroy their requests' data keys. The orchestrator does this on its own schedule too."""
    import os
    from datetime import UTC, datetime

    from orchestrator.artifacts.casefiles import sweep_case_files
    from schemas.register import load_register

    settings = command_settings(data_dir=data_dir, register_file=register)
    policy = load_register(settings.register_file, os.environ).case_files
    swept = sweep_case_files(
        settings.data_dir, policy, settings.data_keys(), now=datetime.now(UTC), dry_run=dry_run
    )
    verb = "would remove" if dry_run else "removed"
    counts = ", ".join(f"{n} {kind}" for kind, n in swept.removed.items() if n) or "nothing"
    keys = "to destroy" if dry_run else "destroyed"
    click.echo(
        f"{verb}: {counts}; data keys {keys}: {swept.keys_destroyed} "
        f"(results kept {policy.results}, certificates {policy.certificates})"
    )


__all__ = ["casefiles"]
