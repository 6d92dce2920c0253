"""The dashboard process as operators run it: tokens, restarts, /metrics, `dsr watch`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.runtime.broker import terminate
from schemas.events import RequestType
from tests.dashboard.conftest import DashboardSystem, status_event

pytestmark = pytest.mark.broker


def metrics(system: DashboardSystem) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by Prometheus' own text parser: (sample name, labels) -> value."""
    with system.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests_by(found: dict, status: str, kind: str) -> float:
    return found[("dsr_requests", (("status", status), ("type", kind)))]


def test_the_running_dashboard_answers_401_without_the_token(
    dashboard_system: DashboardSystem,
) -> None:
    with dashboard_system.client(token=None) as anonymous:
        for path in ("/", "/requests/x", "/api/requests", "/api/requests/x", "/metrics"):
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.get("/readyz").status_code == 200
    with dashboard_system.client(token="wrong-token-0123456789") as wrong:
        assert wrong.get("/api/requests").status_code == 401
    with dashboard_system.client() as client:
        assert client.get("/api/requests").status_code == 200


def test_metrics_parse_and_count_the_requests_submitted(dashboard_system: DashboardSystem) -> None:
    before = metrics(dashboard_system)
    ids = {
        "metrics-access-1": (RequestType.ACCESS, ["crm", "newsletter"], "completed"),
        "metrics-erasure-1": (RequestType.ERASURE, ["crm", "broken"], "partially_completed"),
        "metrics-objection-1": (RequestType.OBJECTION, ["newsletter"], "completed"),
    }
    for request_id, (kind, scope, _) in ids.items():
        dashboard_system.submit(request_id, kind, scope)
    for request_id, (_, _, final) in ids.items():
        dashboard_system.wait_status(request_id, {final})

    after = metrics(dashboard_system)
    assert (
        requests_by(after, "completed", "access") - requests_by(before, "completed", "access") == 1
    )
    assert (
        requests_by(after, "partially_completed", "erasure")
        - requests_by(before, "partially_completed", "erasure")
        == 1
    )
    assert (
        requests_by(after, "completed", "objection") - requests_by(before, "completed", "objection")
        == 1
    )
    # Every request published on this broker, and nothing else, is counted once.
    total = sum(v for (name, _), v in after.items() if name == "dsr_requests")
    assert total == len(dashboard_system.published)
    with dashboard_system.client() as client:
        totals = client.get("/api/requests").json()["totals"]
    assert after[("dsr_requests_overdue", ())] == totals["overdue"]

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("dsr_task_failures_total", system="broken") == 1
    assert delta("dsr_task_latency_seconds_count", system="crm") == 2
    assert delta("dsr_task_latency_seconds_count", system="newsletter") == 2
    assert delta("dsr_task_latency_seconds_bucket", system="crm", le="+Inf") == 2
    assert after[("dsr_task_latency_seconds_sum", (("system", "crm"),))] > 0
    assert after[("dsr_dashboard_ready", ())] == 1
    # No request id in any label: labels are types, statuses, systems and groups.
    assert not any("metrics-" in value for _, labels in after for _, value in labels)


def test_consumer_lag_of_the_orchestrator_and_connector_groups(
    dashboard_system: DashboardSystem,
) -> None:
    end = time.monotonic() + 20
    found: dict = {}
    while time.monotonic() < end:
        found = metrics(dashboard_system)
        groups = {dict(labels).get("group") for name, labels in found if name == "dsr_consumer_lag"}
        if {"dsr-orchestrator", "dsr-connectors-default"} <= groups:
            break
        time.sleep(0.5)
    assert found[("dsr_consumer_lag_up", ())] == 1
    lag = {
        dict(labels)["group"] + " " + dict(labels)["topic"]: v
        for (name, labels), v in found.items()
        if name == "dsr_consumer_lag"
    }
    assert (
        "dsr-orchestrator dsr.requests.v1" in lag and "dsr-connectors-default dsr.tasks.v1" in lag
    )
    assert all(v >= 0 for v in lag.values())
    # A group's lag is counted only on the topics it consumes.
    assert "dsr-connectors-default dsr.requests.v1" not in lag


def test_after_a_restart_the_list_is_rebuilt_from_the_status_topic(
    dashboard_system: DashboardSystem,
) -> None:
    dashboard_system.publish_status(status_event("restart-1", received_days_ago=3))
    dashboard_system.wait_status("restart-1", {"in_progress"})
    with dashboard_system.client() as client:
        before = client.get("/api/requests", params={"limit": 10000}).json()
    stack = dashboard_system.stack
    terminate([stack.processes["dashboard"]], 10)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{dashboard_system.url}/readyz", timeout=1)
    started = time.monotonic()
    stack.spawn("dashboard", ["dashboard"])
    dashboard_system.wait_ready()
    print(f"dashboard restart to ready: {time.monotonic() - started:.2f}s")
    with dashboard_system.client() as client:
        after = client.get("/api/requests", params={"limit": 10000}).json()

    def rows(page: dict) -> dict[str, tuple[str, int]]:
        return {r["request_id"]: (r["status"], r["sequence"]) for r in page["requests"]}

    assert rows(after) == rows(before)
    assert "restart-1" in rows(after) and after["totals"] == before["totals"]


def test_dsr_watch_prints_the_same_list_in_a_terminal(dashboard_system: DashboardSystem) -> None:
    dashboard_system.publish_status(status_event("watch-overdue-1", received_days_ago=50))
    env = {
        **os.environ,
        "DSR_KAFKA_BOOTSTRAP": dashboard_system.kafka.require_bootstrap(),
        "COLUMNS": "160",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "watch", "--once", "--status", "open"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "watch-overdue-1" in proc.stdout and "OVERDUE" in proc.stdout
    assert "live-access-1" not in proc.stdout  # finished: filtered out
    assert "open," in proc.stdout  # the totals line
