"""Rate limits of the intake process (per publisher, per IP, per address), on `limits`.

A moving window per key, in this process's memory: with several intake replicas each keeps
its own count, so a limit of N per minute allows N per replica (say so in the chart's values).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse, storage, strategies


class RateLimits:
    """`hit(rule, *key)` counts one call; returns None when allowed, else seconds to wait."""

    def __init__(self) -> None:
        self._storage = storage.MemoryStorage()
        self._limiter = strategies.MovingWindowRateLimiter(self._storage)
        self._rules: dict[str, RateLimitItem] = {}

    def _rule(self, rule: str) -> RateLimitItem:
        item = self._rules.get(rule)
        if item is None:
            item = self._rules[rule] = parse(rule)  # "5/minute", "60 per minute", "3/hour"
        return item

    def hit(self, rule: str, *key: str) -> float | None:
        """Count one call under `rule` (e.g. '5/minute') for `key`; seconds to wait if over."""
        item = self._rule(rule)
        if self._limiter.hit(item, *key):
            return None
        stats = self._limiter.get_window_stats(item, *key)
        return max(1.0, math.ceil(stats.reset_time - time.time()))

    def reset(self) -> None:
        """Forget every count (tests)."""
        self._storage.reset()


def check_rule(rule: str) -> str:
    """Validate a rate-limit setting ('5/minute'); raise ValueError with the accepted form."""
    try:
        parse(rule)
    except ValueError:
        raise ValueError(
            f"{rule!r} is not a rate limit; write e.g. '5/minute', '60/hour' or '10 per second'"
        ) from None
    return rule


__all__ = ["RateLimits", "check_rule"]
