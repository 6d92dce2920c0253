"""Which requests the deadline timer must look at, and when; which requests are open.

Kept beside the requests table, updated on every write, rebuilt from the table when a worker's
partitions change: so a tick looks only at the requests whose time has come, never at every
state. The open requests (id -> status, nothing personal) are what the recovery index on disk
lists (`orchestrator.lifecycle.recovery`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from orchestrator.lifecycle.reducer import Policy, RequestState, next_check


class Watchlist:
    """Open requests -> when `tick` must next look at them; open requests -> their status."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.when: dict[str, datetime] = {}
        self.open: dict[str, str] = {}
        #: The open requests changed since the recovery index was last written.
        self.dirty = False
        #: Requests whose entry here is in step with the table and whose final status, if
        #: they are final, this worker sent (or resends): a rebuild need not open them.
        self.known: set[str] = set()

    def update(self, request_id: str, state: RequestState) -> None:
        """Remember when the timer must next look at this request, and whether it is open."""
        if state.request is not None and not state.is_final and state.status is not None:
            if self.open.get(request_id) != state.status:
                self.open[request_id] = str(state.status)
                self.dirty = True
        elif self.open.pop(request_id, None) is not None:
            self.dirty = True
        when = next_check(state, self.policy)
        if when is None:
            self.when.pop(request_id, None)
        else:
            self.when[request_id] = when

    def due(self, now: datetime) -> list[str]:
        """The requests whose time has come."""
        return [request_id for request_id, when in self.when.items() if when <= now]

    def drop(self, request_id: str) -> None:
        """Stop looking at a request (its state is gone or cannot be opened)."""
        self.when.pop(request_id, None)

    def keep(self, keep: Callable[[str], bool]) -> None:
        """Forget the requests `keep` says no to (their partition went to another worker)."""
        for request_id in [r for r in self.when if not keep(r)]:
            del self.when[request_id]
        for request_id in [r for r in self.open if not keep(r)]:
            del self.open[request_id]
            self.dirty = True
        self.forget(keep)

    def forget(self, keep: Callable[[str], bool]) -> None:
        """No longer count the requests `keep` says no to as known (see `known`)."""
        self.known = {r for r in self.known if keep(r)}


__all__ = ["Watchlist"]
