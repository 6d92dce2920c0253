"""The requests table: each request's state, sealed with its data key, one entry per request.

The table is Faust's (its changelog is a Kafka topic, see `orchestrator.lifecycle.state` for
how a value is sealed); every write also updates the deadline timer's watchlist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, MutableMapping
from datetime import UTC, datetime

from orchestrator.intake.decode import partition_for
from orchestrator.lifecycle import reducer as lifecycle
from orchestrator.lifecycle.reducer import RequestState
from orchestrator.lifecycle.state import decode_state, encode_state, watch_view
from orchestrator.lifecycle.watch import Watchlist
from schemas.primitives.sealing import DataKeys, SealingError

log = logging.getLogger("dsr.orchestrator")

#: Threads creating a batch's new data keys (`RequestTable.prepare`).
_KEY_THREADS = 4


class RequestTable:
    """Loads and stores request states; keeps the watchlist in step with what is stored."""

    def __init__(
        self,
        table: MutableMapping[str, str],
        keys: DataKeys,
        watchlist: Watchlist,
        partitions: int,
        *,
        create_keys_ahead: bool = False,
    ) -> None:
        self.table = table
        self.keys = keys
        self.watchlist = watchlist
        self.partitions = partitions
        #: Whether `prepare` creates new requests' keys (in threads, into the same store: it
        #: keeps what it creates, so `store` seals with a key from memory, not one read back
        #: from disk and unwrapped on the event loop).
        self.create_keys_ahead = create_keys_ahead

    async def prepare(self, request_ids: Iterable[str]) -> None:
        """Create the data keys of requests not in the table yet, in a few threads.

        Each new key is synced to disk before anything is sealed with it; one at a time on
        the event loop, those syncs add up. Written together and then synced
        (`DataKeys.create_many`), the file system commits them together, and the loop stays
        free. `store` then finds each key in the store's cache (or on disk, for a store
        without one).
        """
        if not self.create_keys_ahead:
            return
        new = [r for r in request_ids if not self.table.get(r)]
        if len(new) > 1:
            # Creating a file is the slow part on a busy disk: a few threads side by side.
            size = -(-len(new) // _KEY_THREADS)
            chunks = [new[i : i + size] for i in range(0, len(new), size)]
            # A key that cannot be created (destroyed, a bad key store) is left to `load` and
            # `store`, which report it for its request as they always did.
            await asyncio.gather(
                *(asyncio.to_thread(self.keys.create_many, c) for c in chunks),
                return_exceptions=True,
            )

    def load(self, request_id: str) -> RequestState | None:
        """The request's state; raises a `SealingError` when it cannot be opened."""
        raw = self.table.get(request_id)
        if raw:
            return decode_state(raw, self.keys)
        if self.keys.destroyed(request_id):
            # Shredded, and the table entry is gone too (a new changelog): never start over.
            return lifecycle.shredded(RequestState(request_id=request_id), datetime.now(UTC))
        return None

    def store(self, request_id: str, state: RequestState, *, inherited_final: bool = False) -> None:
        """Write the state (sealed) and note when the deadline timer must look at it next.

        `inherited_final`: the state was final already when this worker loaded it (a
        redelivered event, a request a previous owner finished): its final status may never
        have been sent, so the next rebuild of the watchlist must open it (`Timers._rebuild`).
        """
        self.table[request_id] = encode_state(state, self.keys)
        self.watchlist.update(request_id, state)
        if not inherited_final:
            self.watchlist.known.add(request_id)

    def owned(self, owned: set[int]) -> Iterator[str]:
        """The stored requests of the `owned` partitions."""
        for request_id in list(self.table.keys()):
            if partition_for(request_id, self.partitions) in owned:
                yield request_id

    def view(self, request_id: str) -> RequestState | None:
        """As much of the stored state as the timer needs, read now; None when it is gone or
        cannot be opened (logged)."""
        raw = self.table.get(request_id)
        if not raw:
            return None
        try:
            return watch_view(raw, self.keys)
        except SealingError as exc:
            log.error("state of request %s cannot be opened: %s", request_id, exc)
            return None


__all__ = ["RequestTable"]
