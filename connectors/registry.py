"""Finding connectors: the entry-point group `dsr.connectors`, the built-in specs and the
user's spec directory.

A separate package adds a connector by declaring, in its pyproject.toml:

    [project.entry-points."dsr.connectors"]
    mycrm = "mypackage.connector:MyCRMConnector"

A register entry may also name a spec: `<name>.yaml` in $DSR_CONNECTOR_DIR (the user's, it
wins) or in the package data `connectors/specs/` (built in). `dsr connectors list` shows each
connector's kind: built-in (Python), built-in spec, plugin, or declarative (the user's spec).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from connectors.base import Connector, ConnectorConfigError
from connectors.vendors.spec import SPEC_DIR_VARIABLE, SpecConnector, find_spec, load_spec
from connectors.vendors.spec.loading import built_in_specs
from schemas.register import System

GROUP = "dsr.connectors"
_OWN_DISTRIBUTION = "dsr-orchestrator"


@cache
def available() -> dict[str, EntryPoint]:
    """Installed connector entry points by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def connector_class(name: str) -> type[Connector]:
    """Load the connector class registered under `name`."""
    found = available().get(name)
    if found is None:
        known = ", ".join(sorted(available())) or "none"
        raise ConnectorConfigError(
            f"no connector named {name!r} is installed (entry point group {GROUP!r}); "
            f"installed: {known}"
        )
    cls = found.load()
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConnectorConfigError(f"entry point {name!r} does not point at a Connector subclass")
    return cls


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One connector that a register entry can name."""

    name: str
    kind: str  # "built-in", "built-in spec", "plugin" or "declarative"
    rights: tuple[str, ...]
    source: str
    description: str = ""


def catalogue() -> list[CatalogueEntry]:
    """Every connector available here: built-in, installed plugins, declarative specs."""
    entries = []
    for name, ep in sorted(available().items()):
        dist = ep.dist.name if ep.dist is not None else ""
        try:
            cls = connector_class(name)
        except Exception as exc:  # a broken plugin must not hide the others
            entries.append(CatalogueEntry(name, "plugin", (), ep.value, f"cannot load: {exc}"))
            continue
        kind = "built-in" if dist == _OWN_DISTRIBUTION else "plugin"
        source = f"{dist}: {ep.value}"
        spec_path = getattr(cls, "spec_path", None)
        if isinstance(spec_path, Path) and issubclass(cls, SpecConnector):
            kind = f"{kind} spec"
            source = _shown(spec_path)
        rights = tuple(sorted(r.value for r in cls.capabilities))
        entries.append(CatalogueEntry(name, kind, rights, source, cls.description))
    named = {e.name for e in entries}
    packaged = [p for p in built_in_specs() if p.stem not in named]
    entries += _spec_entries(packaged, "built-in spec")
    directory = os.environ.get(SPEC_DIR_VARIABLE)
    if directory:
        entries += _spec_entries(sorted(Path(directory).glob("*.y*ml")), "declarative")
    return entries


def _shown(path: Path) -> str:
    """A built-in spec's path from the package root (connectors/specs/x.yaml)."""
    parts = path.parts
    return "/".join(parts[parts.index("connectors") :]) if "connectors" in parts else str(path)


def _spec_entries(paths: list[Path], kind: str) -> list[CatalogueEntry]:
    entries = []
    for path in paths:
        source = _shown(path) if kind == "built-in spec" else str(path)
        try:
            spec = load_spec(path)
        except Exception as exc:  # a broken file is listed with its error, not hidden
            entries.append(CatalogueEntry(path.stem, kind, (), source, str(exc)))
            continue
        rights = tuple(sorted(r.value for r in spec.capabilities()))
        entries.append(CatalogueEntry(path.stem, kind, rights, source, spec.description or ""))
    return entries


def build(system: System) -> Connector:
    """A connector instance for one register entry.

    `connector` names an entry point, or a spec `<name>.yaml` in $DSR_CONNECTOR_DIR or among
    the built-in specs (then the entry's settings carry base_url, credentials and the settings
    the spec declares).
    """
    connector: Connector | None = None
    if system.connector not in available():
        from connectors.declarative import DeclarativeConnector

        spec = find_spec(system.connector) or _built_in(system.connector)
        if spec is not None:
            connector = DeclarativeConnector(system.name, {"spec": str(spec), **system.settings})
    if connector is None:
        connector = connector_class(system.connector)(system.name, system.settings)
    connector.use_retention(system.retention_rules)
    return connector


def _built_in(name: str) -> Path | None:
    return next((p for p in built_in_specs() if p.stem == name), None)


__all__ = ["GROUP", "CatalogueEntry", "available", "build", "catalogue", "connector_class"]
