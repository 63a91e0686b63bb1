"""A fake clock for asyncio code: wall and monotonic time plus a sleep that waits for advance()."""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import Callable
from typing import Any


class FakeTime:
    """Time that moves only when a test advances it; sleepers wake in order of their deadline."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0
        self.naps: list[float] = []  # every sleep asked for, in order

    def __call__(self) -> float:
        """Return the wall time."""
        return self.now

    def monotonic(self) -> float:
        """Return the monotonic time (the same fake seconds)."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until advance() has moved time `seconds` on."""
        self.naps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._sleepers, (self.now + seconds, self._count, wake))
        await wake

    async def settle(self, rounds: int = 20) -> None:
        """Let every ready task run (no time passes)."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time on, waking each sleeper at its deadline and letting it run."""
        target = self.now + seconds
        await self.settle()  # tasks created just now register their sleeps first
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, wake = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not wake.done():
                wake.set_result(None)
                await self.settle()
        self.now = target
        await self.settle()

    def kwargs(self) -> dict[str, Any]:
        """Return the clock, monotonic, sleep and rng arguments the scheduler parts take."""
        return {"clock": self, "monotonic": self.monotonic, "sleep": self.sleep,
                "rng": random.Random(0)}


async def until(time: FakeTime, predicate: Callable[[], Any], step: float = 0.01,
                limit: int = 2000) -> None:
    """Advance fake time in steps until `predicate` holds (at most `limit` steps)."""
    for _ in range(limit):
        if predicate():
            return
        await time.advance(step)
    raise AssertionError("condition not reached")
