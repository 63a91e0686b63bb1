"""Read the server's clock from its Date headers: incremental lists are bounded by it, not ours."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

# Offset samples per block; the estimate is the best of the current and the previous block, so
# a late answer is outvoted for SKEW_BLOCK to 2 * SKEW_BLOCK lists and a real step of the
# server's clock is adopted as fast.
SKEW_BLOCK = 8


class ServerClock:
    """Our clock plus each server's offset, estimated from Date headers per key (org address).

    A sample, Date minus our clock when the answer was read, is at or below the true offset:
    Date has whole seconds and is written before the answer travels and waits to be read. A
    late answer lowers its sample, never raises it, so the largest recent sample is the
    tightest estimate that never puts the server's now ahead of the server.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._blocks: dict[str, tuple[float, float, int]] = {}  # key -> (previous, current, n)

    def observe(self, key: str, date: str | None) -> float | None:
        """Take one Date header as a sample; return the time it names (None when unreadable)."""
        server = http_date(date)
        if server is None:
            return None
        sample = server - self._clock()
        previous, current, n = self._blocks.get(key, (sample, sample, 0))
        if n >= SKEW_BLOCK:
            previous, current, n = current, sample, 0
        self._blocks[key] = (previous, max(current, sample), n + 1)
        return server

    def offset(self, key: str) -> float:
        """Return the server's clock minus ours (0 before any Date was read)."""
        previous, current, _ = self._blocks.get(key, (0.0, 0.0, 0))
        return max(previous, current)

    def now(self, key: str) -> float:
        """Return the server's now by our clock and its offset."""
        return self._clock() + self.offset(key)


def http_date(value: str | None) -> float | None:
    """Read an HTTP Date header as unix seconds (None when missing or malformed)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
