"""The dashboard's state: the status view, kept current from the status topic, and subscribers.

Nothing is stored anywhere else: after a restart the view is rebuilt by reading the status
topic from its start, and the dashboard is ready once it has read up to where the topic ended.
"""

from __future__ import annotations

import asyncio

from orchestrator.status.view import StatusEvent, StatusFollower, StatusView
from schemas.kafka import KafkaSettings
from schemas.sweeps import SweepStatusChanged

#: A subscriber further behind than this many changed requests is told to reload instead.
MAX_PENDING = 5000
#: How a changed sweep is named among changed request ids (a space: never in an id).
SWEEP_CHANGED = "sweep "


class Subscription:
    """The ids of requests (and, prefixed `SWEEP_CHANGED`, of sweeps) that changed since a
    subscriber last looked (coalesced)."""

    def __init__(self) -> None:
        self._pending: dict[str, None] = {}
        self._wake = asyncio.Event()
        #: Too many changes to send one by one: the subscriber should reload everything.
        self.overflowed = False
        self.closed = False

    def notify(self, request_id: str) -> None:
        """A request changed."""
        if len(self._pending) >= MAX_PENDING:
            self.overflowed = True
            self._pending.clear()
        elif not self.overflowed:
            self._pending[request_id] = None
        self._wake.set()

    def close(self) -> None:
        """Stop waiting: the server shuts down."""
        self.closed = True
        self._wake.set()

    async def changes(self, timeout: float | None = None) -> list[str]:
        """Wait for changes (at most `timeout` seconds) and take them; [] on timeout or close."""
        if not self._pending and not self.overflowed and not self.closed:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        self._wake.clear()
        taken = list(self._pending)
        self._pending.clear()
        return taken


class LiveView:
    """The status view, followed from the status topic, with change notifications."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.follower = StatusFollower(kafka, on_change=self._changed)
        self._subscribers: set[Subscription] = set()

    @property
    def view(self) -> StatusView:
        """The current view (read-only for callers)."""
        return self.follower.view

    @property
    def ready(self) -> bool:
        """True once the status topic was read up to its end at start."""
        return self.follower.caught_up.is_set()

    async def run(self) -> None:
        """Follow the status topic until cancelled."""
        await self.follower.run()

    def subscribe(self) -> Subscription:
        """Be told of every request that changes from now on."""
        subscription = Subscription()
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop telling `subscription`."""
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """Release every subscriber (shutdown)."""
        for subscription in self._subscribers:
            subscription.close()
        self._subscribers.clear()

    def _changed(self, event: StatusEvent) -> None:
        if isinstance(event, SweepStatusChanged):
            key = SWEEP_CHANGED + event.sweep_id
        else:
            key = event.request_id
        for subscription in self._subscribers:
            subscription.notify(key)


__all__ = ["MAX_PENDING", "SWEEP_CHANGED", "LiveView", "Subscription"]
