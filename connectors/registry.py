"""Finding connector classes: the entry-point group `dsr.connectors`.

A separate package adds a connector by declaring, in its pyproject.toml:

    [project.entry-points."dsr.connectors"]
    mycrm = "mypackage.connector:MyCRMConnector"
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from connectors.base import Connector, ConnectorConfigError
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
    kind: str  # "built-in", "plugin" or "declarative"
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
        rights = tuple(sorted(r.value for r in cls.capabilities))
        entries.append(CatalogueEntry(name, kind, rights, f"{dist}: {ep.value}", cls.description))
    entries += _declarative_entries()
    return entries


def _declarative_entries() -> list[CatalogueEntry]:
    from connectors.declarative import SPEC_DIR_VARIABLE, load_spec

    directory = os.environ.get(SPEC_DIR_VARIABLE)
    if not directory:
        return []
    entries = []
    for path in sorted(Path(directory).glob("*.y*ml")):
        try:
            spec = load_spec(path)
        except Exception as exc:  # a broken file is listed with its error, not hidden
            entries.append(CatalogueEntry(path.stem, "declarative", (), str(path), str(exc)))
            continue
        rights = tuple(sorted(r.value for r in spec.rights))
        entries.append(
            CatalogueEntry(path.stem, "declarative", rights, str(path), spec.description or "")
        )
    return entries


def build(system: System) -> Connector:
    """A connector instance for one register entry.

    `connector` names an entry point, or a declarative spec `<name>.yaml` in $DSR_CONNECTOR_DIR
    (then the entry's settings carry base_url and credentials).
    """
    connector: Connector | None = None
    if system.connector not in available():
        from connectors.declarative import DeclarativeConnector, find_spec

        spec = find_spec(system.connector)
        if spec is not None:
            connector = DeclarativeConnector(system.name, {"spec": str(spec), **system.settings})
    if connector is None:
        connector = connector_class(system.connector)(system.name, system.settings)
    connector.use_retention(system.retention_rules)
    return connector


__all__ = ["GROUP", "CatalogueEntry", "available", "build", "catalogue", "connector_class"]
