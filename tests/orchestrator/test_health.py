"""The worker health server: what Kubernetes probes and Prometheus see."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from orchestrator.runtime.health import HealthServer, event_ready


async def _get(server: HealthServer, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}{path}") as answer,
    ):
        return answer.status, await answer.text()


async def _serving(server: HealthServer) -> HealthServer:
    await server.start()
    assert server.port != 0
    return server


def test_ready_once_the_event_is_set() -> None:
    async def scenario() -> None:
        ready = asyncio.Event()
        server = await _serving(
            HealthServer(0, ready=event_ready(ready, "partitions"), host="127.0.0.1")
        )
        try:
            assert await _get(server, "/healthz") == (200, '{"status": "ok"}')
            status, body = await _get(server, "/readyz")
            assert status == 503
            assert json.loads(body) == {"status": "not ready", "reason": "waiting for partitions"}
            ready.set()
            assert await _get(server, "/readyz") == (200, '{"status": "ready"}')
        finally:
            await server.stop()
            await server.stop()  # twice is harmless

    asyncio.run(scenario())


def test_a_failed_worker_is_neither_live_nor_ready() -> None:
    async def scenario() -> None:
        server = await _serving(
            HealthServer(
                0, ready=lambda: None, live=lambda: "crashed: KafkaError", host="127.0.0.1"
            )
        )
        try:
            for path in ("/healthz", "/readyz"):
                status, body = await _get(server, path)
                assert status == 503
                assert json.loads(body)["reason"] == "crashed: KafkaError"
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_a_broken_check_fails_the_probe_not_the_server() -> None:
    def broken() -> str | None:
        raise RuntimeError("anna@example.nl")  # whatever it says never reaches the answer

    async def scenario() -> None:
        server = await _serving(HealthServer(0, ready=broken, host="127.0.0.1"))
        try:
            status, body = await _get(server, "/readyz")
            assert status == 503
            assert json.loads(body)["reason"] == "health check failed: RuntimeError"
            assert "anna" not in body
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(("ready", "value"), [(True, "1.0"), (False, "0.0")])
def test_metrics_report_the_states(ready: bool, value: str) -> None:
    async def scenario() -> None:
        server = await _serving(
            HealthServer(
                0,
                ready=lambda: None if ready else "joining",
                component="connectors-bulk",
                host="127.0.0.1",
            )
        )
        try:
            status, text = await _get(server, "/metrics")
            assert status == 200
            assert f'dsr_worker_ready{{component="connectors-bulk"}} {value}' in text
            assert 'dsr_worker_live{component="connectors-bulk"} 1.0' in text
            assert "process_cpu_seconds_total" in text
        finally:
            await server.stop()

    asyncio.run(scenario())
