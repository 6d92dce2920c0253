"""The dashboard: every request as the status topic shows it, for privacy officers.

A web page with a JSON API, live updates, Prometheus metrics and downloads of the documents
(`server`); the same list in a terminal (`watch`). Both are views of the status topic only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.dashboard.model import (
        RequestDetail,
        RequestFilter,
        RequestPage,
        RequestSummary,
    )
    from orchestrator.dashboard.server import Dashboard

_EXPORTS = {
    "Dashboard": "orchestrator.dashboard.server",
    "RequestDetail": "orchestrator.dashboard.model",
    "RequestFilter": "orchestrator.dashboard.model",
    "RequestPage": "orchestrator.dashboard.model",
    "RequestSummary": "orchestrator.dashboard.model",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: `dsr watch` and the tests of the model load this package too, and
    # the server's aiohttp with its friends would add most of a second to each of them.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Dashboard", "RequestDetail", "RequestFilter", "RequestPage", "RequestSummary"]
