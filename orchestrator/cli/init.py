"""`dsr init`: a starter register and the credentials it names, for a first `dsr up`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from orchestrator.cli.options import DIRECTORY, DsrCommand

#: What `dsr init` writes, by file name: the template it comes from (orchestrator/cli/templates).
STARTER_FILES = {"register.yaml": "register.yaml", ".env.example": "env.example"}


def starter_text(name: str) -> str:
    """The text of one starter file (a key of STARTER_FILES)."""
    template = resources.files("orchestrator.cli") / "templates" / STARTER_FILES[name]
    return template.read_text(encoding="utf-8")


@click.command(cls=DsrCommand)
@click.argument("directory", type=DIRECTORY, default=".", required=False)
@click.option("--force", is_flag=True, help="Overwrite register.yaml and .env.example if there.")
def init(directory: Path, force: bool) -> None:
    """Write a commented starter register.yaml and .env.example into DIRECTORY (default: here).

    The register runs at once with `dsr up` (one sample system kept in memory) and shows, in
    comments, a database and a SaaS vendor with credentials from the environment. Existing
    files are left alone unless --force is given.
    """
    from orchestrator.cli.errors import CommandError

    targets = [directory / name for name in STARTER_FILES]
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise CommandError(
            f"{', '.join(existing)} already there; nothing written. Edit the register you "
            "have, or pass --force to replace it with the starter (your edits are lost)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for path in targets:
        path.write_text(starter_text(path.name), encoding="utf-8")
        click.echo(f"wrote {path}")
    click.echo(_next_steps(directory))


def _next_steps(directory: Path) -> str:
    cd = "" if directory.resolve() == Path.cwd().resolve() else f"  cd {directory}\n"
    return (
        "\nNext steps:\n"
        f"{cd}"
        "  dsr up                 # broker, workers, intake and dashboard on this register\n"
        "  # in a second terminal, in the same directory:\n"
        "  dsr submit --type access --email jan.jansen@example.nl --verified id_document --wait\n"
        "  # or publish with kcat (pip install -e '.[kcat]'), or POST to the intake URL dsr up "
        "prints\n"
        "  # follow requests on the dashboard: the URL dsr up prints\n"
        "Then replace the sample system with yours (see the comments in register.yaml); put "
        "credentials in .env\n(copy .env.example) and load it before dsr up: "
        "set -a; . ./.env; set +a"
    )


__all__ = ["STARTER_FILES", "init", "starter_text"]
