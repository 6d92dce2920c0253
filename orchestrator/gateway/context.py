"""What every part of the intake process shares: settings, the bus, the topics it follows.

The route modules (`api`, `public`, `opendsr_inbound`, `opendsr_callbacks`) get a
`GatewayState` in their `setup(app, state)`; `orchestrator.gateway.server.Gateway` adds
serving on top.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from orchestrator.gateway.bus import BusPublisher
from orchestrator.gateway.intake_log import IntakeLog
from orchestrator.gateway.ratelimit import RateLimits
from orchestrator.gateway.settings import IntakeSettings
from orchestrator.runtime.config import Settings
from orchestrator.status.view import StatusFollower
from schemas.primitives.signing import RequestSigner
from schemas.register import WatchedRegister

log = logging.getLogger("dsr.intake")

#: Not a group name (those are lower_snake_case): no system's settings are expanded for it.
NO_CREDENTIALS = ":intake"


class GatewayState:
    """The intake process's shared parts (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        intake: IntakeSettings | None = None,
        *,
        signer: RequestSigner | None = None,
    ) -> None:
        self.settings = settings
        self.intake = intake or IntakeSettings.model_validate({})
        self.kafka = settings.kafka
        #: Signs every event this process publishes (the intake component's key).
        self.bus = BusPublisher(self.kafka, signer or RequestSigner.from_env())
        self.status = StatusFollower(self.kafka)
        self.accepted = IntakeLog(self.kafka, self.bus)
        #: The register without any system's credentials (`${VAR}`s stay unexpanded).
        self.register = WatchedRegister(settings.register_file, group=NO_CREDENTIALS)
        self.limits = RateLimits()
        self.host = self.intake.host
        self.port = self.intake.port
        #: Background tasks the modules add in `setup` (started with the server).
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where this process answers locally."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        """The base URL the outside world uses (no trailing slash)."""
        return (self.intake.public_url or self.url).rstrip("/")


__all__ = ["NO_CREDENTIALS", "GatewayState"]
