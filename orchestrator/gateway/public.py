"""(stub: being built; see orchestrator/gateway/server.py for the module contract)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from orchestrator.gateway.context import GatewayState


def setup(app: web.Application, state: GatewayState) -> None:
    """Add this module's routes (and background tasks to `state.background`)."""


__all__ = ["setup"]
