"""The intake process's aiohttp server: one application, its routes from the modules beside.

- `orchestrator.gateway.api`: the intake API for publishers (`/v1/...`, `/openapi.json`);
- `orchestrator.gateway.public`: the request page for the public (`/`, `/nl/...`, `/en/...`);
- `orchestrator.gateway.opendsr_inbound`: OpenDSR 2.0 for controllers (`/opendsr/v1/...`);
- `orchestrator.gateway.opendsr_callbacks`: callbacks from OpenDSR processors we send
  requests to (`/opendsr/callbacks/{system}`).

Each module has `setup(app, state)` (state: `orchestrator.gateway.context.GatewayState`),
which adds its routes and may append coroutines to `state.background`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from orchestrator.gateway import api, opendsr_callbacks, opendsr_inbound, public
from orchestrator.gateway.context import GatewayState
from orchestrator.runtime.serving import serve, stop_serving

log = logging.getLogger("dsr.intake")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gateway(GatewayState):
    """The intake process: `start()` serves and follows its topics, `stop()` ends both."""

    def app(self) -> web.Application:
        """The aiohttp application with every module's routes."""
        app = web.Application(
            client_max_size=self.intake.max_body_bytes, middlewares=[self._headers]
        )
        app.add_routes([web.get("/healthz", self._healthz), web.get("/readyz", self._readyz)])
        for module in (api, public, opendsr_inbound, opendsr_callbacks):
            module.setup(app, self)
        return app

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        waiting = [
            name
            for name, event in (
                ("status topic", self.status.caught_up),
                ("intake topic", self.accepted.caught_up),
            )
            if not event.is_set()
        ]
        if waiting:
            return web.json_response({"status": "starting", "waiting_for": waiting}, status=503)
        return web.json_response({"status": "ready"})

    async def start(self) -> None:
        """Follow the status and intake topics, serve HTTP (returns once listening)."""
        runs: list[Callable[[], Coroutine[Any, Any, None]]] = [
            self.status.run,
            self.accepted.run,
        ]
        app = self.app()
        self._tasks = [asyncio.create_task(run()) for run in (*runs, *self.background)]
        self._runner, self.port = await serve(app, self.host, self.port)
        log.info("intake on %s", self.url)

    async def stop(self) -> None:
        """Stop serving and following; safe to call twice."""
        runner, self._runner = self._runner, None
        tasks, self._tasks = self._tasks, []
        await stop_serving(runner, tasks)
        await self.bus.stop()


__all__ = ["Gateway"]
