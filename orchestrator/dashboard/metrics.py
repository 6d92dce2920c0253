"""Prometheus metrics computed from the status view at scrape time (no counters kept aside).

A restarted dashboard reports the same numbers as soon as it has re-read the status topic.
Labels are request types, statuses, system and collection names and consumer groups: never a
request id, a sweep id or anything about a subject.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orchestrator.dashboard.lag import ConsumerLag
from orchestrator.dashboard.live import LiveView
from orchestrator.dashboard.model import failed_attempts, latencies, summarise
from orchestrator.dashboard.sweep_routes import SweepRegister
from orchestrator.dashboard.sweeps import swept_records, system_sweeps
from schemas.events import OutcomeStatus, RequestStatus, RequestType
from schemas.sweeps import SweepStatus

#: Task latency buckets (seconds): connectors answer in seconds, people in days.
LATENCY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)


class DashboardCollector(Collector):
    """Requests by status and type, deadlines, per-system tasks, latency, failures, lag, and
    retention sweeps (records swept, overdue sweeps)."""

    def __init__(
        self,
        live: LiveView,
        lag: ConsumerLag | None,
        due_soon_days: int,
        register: SweepRegister | None = None,
    ) -> None:
        self.live = live
        self.lag = lag
        self.due_soon_days = due_soon_days
        self.register = register
        #: Latencies per request, recomputed only when its latest sequence changes.
        self._latency_cache: dict[str, tuple[int, dict[str, float]]] = {}

    def collect(self) -> Iterator[Metric]:
        """The metrics as of now."""
        view = self.live.view
        now = datetime.now(UTC)
        requests = GaugeMetricFamily(
            "dsr_requests", "Requests by status and type.", labels=["status", "type"]
        )
        by_key = {(s, t): 0 for s in RequestStatus for t in RequestType}
        overdue = due_soon = 0
        tasks: dict[tuple[str, str], int] = {}
        manual: dict[str, int] = {}
        failures: dict[str, int] = {}
        histograms: dict[str, list[float]] = {}
        for status in view.requests.values():
            summary = summarise(status, now=now, due_soon_days=self.due_soon_days)
            by_key[(status.status, status.request_type)] += 1
            overdue += summary.overdue
            due_soon += summary.due_soon
            for name, count in failed_attempts(status).items():
                failures[name] = failures.get(name, 0) + count
            for name, seconds in self._latencies(status.request_id, status.sequence).items():
                histograms.setdefault(name, []).append(seconds)
            if not summary.open:
                continue
            for name, progress in status.systems.items():
                key = (name, str(progress.status))
                tasks[key] = tasks.get(key, 0) + 1
                if progress.status == OutcomeStatus.MANUAL_ACTION_REQUIRED:
                    manual[name] = manual.get(name, 0) + 1
        for (state, kind), count in sorted(by_key.items()):
            requests.add_metric([state.value, kind.value], count)
        yield requests
        yield GaugeMetricFamily(
            "dsr_requests_overdue", "Open requests past their deadline.", value=overdue
        )
        yield GaugeMetricFamily(
            "dsr_requests_due_soon", "Open requests within the due-soon days.", value=due_soon
        )
        open_tasks = GaugeMetricFamily(
            "dsr_open_tasks",
            "Systems' tasks of open requests, by system and task status.",
            labels=["system", "status"],
        )
        for (name, state_), count in sorted(tasks.items()):
            open_tasks.add_metric([name, state_], count)
        yield open_tasks
        manual_tasks = GaugeMetricFamily(
            "dsr_manual_tasks_open", "Tasks waiting for a person, by system.", labels=["system"]
        )
        for name, count in sorted(manual.items()):
            manual_tasks.add_metric([name], count)
        yield manual_tasks
        failed = CounterMetricFamily(
            "dsr_task_failures",
            "Failed task attempts by system (retried ones and final failures).",
            labels=["system"],
        )
        for name, count in sorted(failures.items()):
            failed.add_metric([name], count)
        yield failed
        yield _histogram(histograms)
        yield from self._sweep_metrics(now)
        yield from self._follower_metrics()
        yield from self._lag_metrics()

    def _latencies(self, request_id: str, sequence: int) -> dict[str, float]:
        cached = self._latency_cache.get(request_id)
        if cached is None or cached[0] != sequence:
            cached = (sequence, latencies(self.live.view.history.get(request_id, [])))
            self._latency_cache[request_id] = cached
        return cached[1]

    def _sweep_metrics(self, now: datetime) -> Iterator[Metric]:
        """Storage limitation (Art. 5(1)(e) GDPR) as numbers: what sweeps removed, per system
        and collection, and how many systems' sweeps are overdue."""
        view = self.live.view
        swept = CounterMetricFamily(
            "dsr_sweep_records_swept",
            "Records deleted or anonymised by retention sweeps, by system and collection.",
            labels=["system", "collection"],
        )
        for (name, collection), count in sorted(swept_records(view).items()):
            swept.add_metric([name, collection], count)
        yield swept
        register = self.register.current()[0] if self.register is not None else None
        systems = system_sweeps(view, register, now=now)
        yield GaugeMetricFamily(
            "dsr_sweeps_overdue",
            "Systems with a sweep policy whose sweep did not start within its schedule.",
            value=sum(row.overdue for row in systems),
        )
        yield GaugeMetricFamily(
            "dsr_sweeps_awaiting_approval",
            "Retention sweeps whose dry run waits for an officer's approval.",
            value=sum(s.status == SweepStatus.AWAITING_APPROVAL for s in view.sweeps.values()),
        )

    def _follower_metrics(self) -> Iterator[Metric]:
        follower = self.live.follower
        yield GaugeMetricFamily(
            "dsr_dashboard_ready",
            "1 once the status topic was read up to its end at start.",
            value=1 if self.live.ready else 0,
        )
        yield CounterMetricFamily(
            "dsr_dashboard_status_events",
            "Status events read (re-deliveries included).",
            value=follower.events_read,
        )
        if follower.lag is not None:
            yield GaugeMetricFamily(
                "dsr_dashboard_status_lag",
                "Status events on the topic the dashboard has not read yet.",
                value=follower.lag,
            )

    def _lag_metrics(self) -> Iterator[Metric]:
        if self.lag is None:
            return
        yield GaugeMetricFamily(
            "dsr_consumer_lag_up",
            "1 when the last consumer lag measurement succeeded.",
            value=1 if self.lag.problem is None and self.lag.measured_at else 0,
        )
        if self.lag.measured_at is None:
            return
        lag = GaugeMetricFamily(
            "dsr_consumer_lag",
            "Messages a consumer group has not processed yet, by group and topic.",
            labels=["group", "topic"],
        )
        for entry in self.lag.latest:
            lag.add_metric([entry.group, entry.topic], entry.lag)
        yield lag
        yield GaugeMetricFamily(
            "dsr_consumer_lag_age_seconds",
            "Seconds since consumer lag was last measured.",
            value=max(0.0, time.time() - self.lag.measured_at),
        )


def _histogram(values: dict[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "dsr_task_latency_seconds",
        "From a system's first dispatch to its final outcome, retries included.",
        labels=["system"],
    )
    for name, seconds in sorted(values.items()):
        buckets: list[tuple[str, float]] = [
            (str(float(le)), float(sum(v <= le for v in seconds))) for le in LATENCY_BUCKETS
        ]
        buckets.append(("+Inf", float(len(seconds))))
        family.add_metric([name], buckets, sum_value=sum(seconds))
    return family


def registry(collector: DashboardCollector) -> CollectorRegistry:
    """A registry of the dashboard's metrics and the process's own."""
    found = CollectorRegistry()
    found.register(collector)
    ProcessCollector(registry=found)
    PlatformCollector(registry=found)
    return found


__all__ = ["LATENCY_BUCKETS", "DashboardCollector", "registry"]
