"""Let scrapes in during long work: pause briefly after every few milliseconds of CPU.

/metrics is served by threads, so what a scrape waits for is the GIL, not the event loop.
`await asyncio.sleep(0)` does not free it: the loop thread takes it straight back and a
waiting scrape thread starves (measured: p50 0.6 s). A real pause of a fraction of a
millisecond (the loop thread blocks in select without the GIL) lets every scrape through.

The other stall is the garbage collector: a first sync of 100k jobs allocates objects fast
enough to trigger full collections of everything alive, 100-220 ms each (measured). At each
pause, the young generations are collected (their cyclic garbage freed: sub-millisecond) and
gc.freeze() moves what is alive to the permanent generation (a list splice, O(1)), so later
collections look only at what is new. Frozen objects are still freed by reference counting;
only an old object that later ends up in a garbage cycle is never collected. Pauses happen
only in big work (a first sync, a resync), never in a steady poll.

Each pause is also a sign of life for the org's stall watchdog (the poll's ON_PROGRESS
callback): merging a million-job first sync takes longer than 3 poll intervals without an API
request, and a poll that works is slow, not stalled (it was cancelled and retried for ever).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable

from exporter.sources.base import ON_PROGRESS

SLICE_SECONDS = 0.004  # longest stretch of work between two pauses
PAUSE_SECONDS = 0.0005  # real sleep: the scrape threads run meanwhile
# Longest the loop thread keeps the GIL while a scrape thread waits for it (CPython: 5 ms). A
# scrape takes the GIL several times (accept, read, write): at 5 ms each, p99 was 13-17 ms
# during a 100k-job first sync even with the pauses; only waiting threads pay for switches.
SWITCH_INTERVAL = 0.001


def let_scrapes_in() -> None:
    """Make a thread that waits for the GIL (a scrape) get it within SWITCH_INTERVAL."""
    sys.setswitchinterval(SWITCH_INTERVAL)


class Pacer:
    """Count work in slices; at the end of each, pause so scrape threads get the GIL."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._until = clock() + SLICE_SECONDS
        self.pauses = 0

    def due(self) -> bool:
        """Return True when the current slice of work is used up."""
        return self._clock() >= self._until

    async def breathe(self) -> None:
        """Yield to the event loop and the scrape threads once the slice is used up."""
        if self._clock() >= self._until:
            await asyncio.sleep(PAUSE_SECONDS)
            self._restart()

    def breathe_blocking(self) -> None:
        """Pause without the event loop (inside a transaction that must not interleave)."""
        if self._clock() >= self._until:
            time.sleep(PAUSE_SECONDS)
            self._restart()

    def _restart(self) -> None:
        alive = ON_PROGRESS.get()
        if alive is not None:
            alive()  # the poll is working through big data, not waiting on a hung request
        gc.collect(1)  # young cycles that are garbage already: freed, not frozen for ever
        gc.freeze()
        self.pauses += 1
        self._until = self._clock() + SLICE_SECONDS
