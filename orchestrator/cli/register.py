"""`dsr register`: the register of systems as documents (the Art. 30 GDPR record)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import FILE, DsrGroup, command_settings, register_option

if TYPE_CHECKING:
    from orchestrator.artifacts.render import Language


@click.group("register", cls=DsrGroup)
def register_group() -> None:
    """The register of systems."""


@register_group.command("export")
@click.option(
    "--language",
    type=click.Choice(["nl", "en"]),
    default="nl",
    show_default=True,
    help="Language of the document.",
)
@click.option("--output", type=FILE, help="Write the HTML here (default: standard output).")
@register_option
def register_export(language: str, output: Path | None, register: Path | None) -> None:
    """The record of processing activities (Art. 30(1) GDPR) as one HTML page.

    Made from the register alone (default: DSR_REGISTER); the connectors' secrets are not
    needed, and no setting is printed.
    """
    from orchestrator.artifacts.register_export import load_for_export, render_register

    register_file = command_settings(register_file=register).register_file
    written_in: Language = "en" if language == "en" else "nl"  # click has checked the choice
    page = render_register(load_for_export(register_file, os.environ), written_in)
    if output is None:
        click.echo(page, nl=False)
        return
    output.write_text(page, encoding="utf-8")
    click.echo(f"wrote the record of processing activities ({language}) to {output}")


__all__ = ["register_group"]
