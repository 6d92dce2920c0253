"""Finding connector classes: the entry-point group `dsr.connectors`.

A separate package adds a connector by declaring, in its pyproject.toml:

    [project.entry-points."dsr.connectors"]
    mycrm = "mypackage.connector:MyCRMConnector"
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from connectors.base import Connector, ConnectorConfigError
from schemas.register import System

GROUP = "dsr.connectors"


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


def build(system: System) -> Connector:
    """A connector instance for one register entry."""
    return connector_class(system.connector)(system.name, system.settings)


__all__ = ["GROUP", "available", "build", "connector_class"]
