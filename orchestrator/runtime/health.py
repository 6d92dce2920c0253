"""Health endpoints of a worker process, for Kubernetes probes and Prometheus.

`/healthz` (liveness) answers 200 while the event loop runs and the worker has not failed;
`/readyz` (readiness) answers 200 once the worker is connected to Kafka with partitions
assigned; `/metrics` has the process metrics and both states as gauges. Each check returns
None when fine, else a short reason; reasons never carry personal data.

The server runs only when `DSR_HEALTH_PORT` is set (the Helm chart sets it), so `dsr up` with
many local workers never competes for a port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mode
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from orchestrator.runtime.serving import serve, stop_serving

if TYPE_CHECKING:
    import faust

#: None when fine, else why not (no personal data).
Check = Callable[[], str | None]


def _fine() -> str | None:
    return None


class HealthServer:
    """A tiny HTTP server answering /healthz, /readyz and /metrics from two checks."""

    def __init__(
        self,
        port: int,
        *,
        ready: Check,
        live: Check = _fine,
        component: str = "worker",
        host: str = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod's own address
    ) -> None:
        self.host = host
        self.port = port
        self._live = live
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self._registry = CollectorRegistry()
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        labels = ["component"]
        self._live_gauge = Gauge(
            "dsr_worker_live", "1 while the worker is alive.", labels, registry=self._registry
        ).labels(component)
        self._ready_gauge = Gauge(
            "dsr_worker_ready",
            "1 while the worker is connected and has partitions assigned.",
            labels,
            registry=self._registry,
        ).labels(component)

    async def start(self) -> None:
        """Bind the port and serve in the background of the running event loop."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner, self.port = await serve(app, self.host, self.port)

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        runner, self._runner = self._runner, None
        await stop_serving(runner, [])

    def _check(self, check: Check) -> str | None:
        try:
            return check()
        except Exception as exc:  # a broken check must fail the probe, not the server
            return f"health check failed: {type(exc).__name__}"

    async def _healthz(self, request: web.Request) -> web.Response:
        return _answer(self._check(self._live), "ok", "failed")

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = self._check(self._live) or self._check(self._ready)
        return _answer(reason, "ready", "not ready")

    async def _metrics(self, request: web.Request) -> web.Response:
        live = self._check(self._live) is None
        self._live_gauge.set(1 if live else 0)
        self._ready_gauge.set(1 if live and self._check(self._ready) is None else 0)
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _answer(reason: str | None, good: str, bad: str) -> web.Response:
    body: dict[str, Any] = {"status": good} if reason is None else {"status": bad, "reason": reason}
    return web.Response(
        status=200 if reason is None else 503,
        text=json.dumps(body),
        content_type="application/json",
    )


def event_ready(event: asyncio.Event, waiting_for: str) -> Check:
    """Ready once `event` is set (e.g. the connector worker's `run(ready=...)`)."""
    return lambda: None if event.is_set() else f"waiting for {waiting_for}"


def faust_liveness(app: faust.App) -> Check:
    """Alive unless the Faust app crashed."""

    def check() -> str | None:
        if app.crashed:
            return f"crashed: {type(app.crash_reason).__name__}"
        return None

    return check


def faust_readiness(app: faust.App, topic: str) -> Check:
    """Ready when partitions of `topic` are assigned, no rebalance runs and tables recovered."""

    def check() -> str | None:
        if app.rebalancing:
            return "rebalancing"
        assigned = [tp for tp in app.assignor.assigned_actives() if tp.topic == topic]
        if not assigned:
            # Also the answer for a replica beyond the partition count: it stays idle.
            return f"no partitions of {topic} assigned yet"
        recovery = app.tables.recovery  # type: ignore[attr-defined] # TableManager's, not typed
        if not recovery.completed.is_set():
            return "recovering table state"
        return None

    return check


class HealthService(mode.Service):
    """The health server as a service that starts and stops with a Faust worker."""

    def __init__(self, server: HealthServer, **kwargs: Any) -> None:
        self.server = server
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        """Serve from the worker's first moment, so the liveness probe sees it early."""
        await self.server.start()

    async def on_stop(self) -> None:
        """Stop serving."""
        await self.server.stop()


def for_faust(app: faust.App, port: int, topic: str) -> HealthService:
    """The health service of a Faust worker consuming `topic`."""
    server = HealthServer(
        port,
        live=faust_liveness(app),
        ready=faust_readiness(app, topic),
        component="orchestrator",
    )
    return HealthService(server)


__all__ = [
    "Check",
    "HealthServer",
    "HealthService",
    "event_ready",
    "faust_liveness",
    "faust_readiness",
    "for_faust",
]
