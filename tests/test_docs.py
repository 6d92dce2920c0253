"""The docs site builds without a warning, the README stays short, and the generated reference
pages name everything the code defines: a command, variable, event or endpoint added to the
code and missing from the site fails here."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from mkdocs.config import load_config
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from orchestrator.cli import main
from orchestrator.dashboard.openapi import openapi_document
from orchestrator.runtime.config import Settings
from schemas.kafka import KafkaSettings
from schemas.register import Register, System
from schemas.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 200
#: DSR_* names the code mentions that are not settings of ours, with the reason.
NOT_SETTINGS = {
    "DSR_WEB_FORM_SECRET": "an example `${VAR}` name in an error message",
}
#: The demo passes these to its own processes; nobody configures them.
DEMO_PREFIX = "DSR_DEMO_"
_ENV_NAME = re.compile(r"(?<![A-Z0-9_])DSR_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_{])")


def _nav_pages(node: object) -> Iterator[str]:
    """Every page file the nav of mkdocs.yml names."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _nav_pages(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _nav_pages(value)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as CI builds it: strict, so any warning fails the build."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def _commands(command: click.Command, ctx: click.Context) -> Iterator[str]:
    """Every command path below `command`, as typed: `dsr keys create`."""
    yield ctx.command_path
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from _commands(sub, click.Context(sub, info_name=name, parent=ctx))


def _variables(model: type[BaseSettings]) -> Iterator[str]:
    """The environment variables pydantic-settings reads for a model's own fields."""
    prefix = model.model_config.get("env_prefix", "")
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
            continue  # a nested model, read with its own prefix
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        named = [c for c in choices if isinstance(c, str) and c.startswith(prefix)]
        yield named[0] if named else prefix + name.upper()


def test_readme_is_short_and_links_to_existing_pages() -> None:
    """README: at most about 200 lines, and every docs link in it reaches a page."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert links, "the README links to the docs"
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_readme_keeps_the_two_commands() -> None:
    """The two set-up commands the README promises, verbatim."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```bash\npip install -e . && dsr demo\n```" in text
    assert "```bash\n./scripts/test\n```" in text


def test_every_nav_page_exists_and_every_page_is_in_the_nav() -> None:
    """The nav and the docs folder agree (mkdocs only warns about pages outside the nav)."""
    nav = set(_nav_pages(load_config(str(ROOT / "mkdocs.yml"))["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert nav - pages == set(), "nav names a page that does not exist"
    assert pages - nav == set(), "a page is not in the nav"


def test_cli_reference_names_every_command(site: Path) -> None:
    """Every `dsr` command and subcommand has its section."""
    html = _page(site, "reference/cli")
    commands = list(_commands(main, click.Context(main, info_name="dsr")))
    assert len(commands) > 20
    assert [c for c in commands if f">{c}<" not in html] == []


def test_configuration_reference_names_every_variable(site: Path) -> None:
    """Every variable of Settings and KafkaSettings, computed as pydantic-settings reads it."""
    html = _page(site, "reference/configuration")
    variables = [*_variables(Settings), *_variables(KafkaSettings)]
    assert "DSR_REGISTER" in variables and "DSR_KAFKA_BOOTSTRAP" in variables
    assert [v for v in variables if f"<code>{v}</code>" not in html] == []


def test_every_variable_the_code_reads_is_documented(site: Path) -> None:
    """A DSR_* name anywhere in product code appears somewhere on the site."""
    text = "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    named = {
        name
        for package in ("orchestrator", "connectors", "schemas")
        for path in (ROOT / package).rglob("*.py")
        for name in _ENV_NAME.findall(path.read_text(encoding="utf-8"))
    }
    wanted = {n for n in named - NOT_SETTINGS.keys() if not n.startswith(DEMO_PREFIX)}
    assert "DSR_CONNECTOR_DIR" in wanted
    assert sorted(n for n in wanted if n not in text) == []


def test_events_reference_names_every_topic_and_event_type(site: Path) -> None:
    """Every event type with a generated JSON Schema, and every topic."""
    html = _page(site, "reference/events")
    types = [p.name.removesuffix(".schema.json") for p in (ROOT / "schemas/json").glob("dsr.*")]
    assert len(types) >= 7
    assert [t for t in types if f"{t}<" not in html] == []
    assert [t.name for t in ALL_TOPICS if f"<code>{t.name}</code>" not in html] == []
    # The JSON Schema each event links to is published beside the page.
    assert all((site / "reference/json" / f"{t}.schema.json").is_file() for t in types)


def test_register_reference_names_every_field(site: Path) -> None:
    """Every field of the register file and of a system entry."""
    html = _page(site, "reference/register")
    fields = [*Register.model_fields, *System.model_fields]
    assert [f for f in fields if f"<code>{f}</code>" not in html] == []


def test_dashboard_api_reference_names_every_endpoint(site: Path) -> None:
    """Every path and method of the OpenAPI document, which is published beside the page."""
    html = _page(site, "reference/dashboard-api")
    document = openapi_document(importlib.metadata.version("dsr-orchestrator"))
    endpoints = [f"{m.upper()} {p}" for p, methods in document["paths"].items() for m in methods]
    assert [e for e in endpoints if f"{e}<" not in html] == []
    published = json.loads((site / "reference/openapi.json").read_text(encoding="utf-8"))
    assert published == document


def test_code_layout_names_every_stage_of_the_orchestrator() -> None:
    """The concepts page lists each subpackage of orchestrator/ (and the top-level folders)."""
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    stages = [p.parent.name for p in (ROOT / "orchestrator").glob("*/__init__.py")]
    folders = ["schemas/", "schemas/primitives/", "connectors/", "deploy/helm/", "bench/", "tests/"]
    wanted = [f"orchestrator/{s}/" for s in stages] + folders
    assert [f for f in wanted if f"`{f}`" not in text] == []


def test_an_unknown_generated_part_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt placeholder stops the build with the names it accepts, rather than vanish."""
    from mkdocs.exceptions import PluginError

    monkeypatch.syspath_prepend(str(DOCS / "hooks"))
    import reference

    with pytest.raises(PluginError, match=r"unknown generated part 'event'.*events"):
        reference.expand("# Events\n\n<!-- generated: event -->\n", "reference/events.md")
