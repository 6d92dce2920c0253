"""Serving an aiohttp application in the background of the running event loop, and stopping
it with the tasks that feed it: the dashboard, the intake process and the health server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiohttp import web


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Bind `host:port` (port 0: any free one) and serve `app`; the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
    await site.start()
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    return runner, (sockets[0].getsockname()[1] if sockets else port)


async def stop_serving(runner: web.AppRunner | None, tasks: Iterable[asyncio.Task[None]]) -> None:
    """Stop serving (if `runner`), then cancel `tasks` and wait for them to end."""
    if runner is not None:
        await runner.cleanup()
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["serve", "stop_serving"]
