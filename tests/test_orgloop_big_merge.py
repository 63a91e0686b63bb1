"""A poll that merges a big first sync is slow, not stalled: the watchdog leaves it alone."""

from __future__ import annotations

import asyncio
import gc

import pytest

from exporter import pacing
from exporter.sources.base import JobObservation, KnownJobs, OrgTarget, PollResult, RequestStats
from tests.fakes import FakeClock, SourceFacts
from tests.fakes_orgloop import INTERVAL, hanging_loop

JOBS = 3000


class BigListSource(SourceFacts):
    """Answers at once with a first sync of many finished jobs (the merge is the long part)."""

    def __init__(self) -> None:
        self.stats = RequestStats()

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        jobs = tuple(JobObservation(f"{i:064x}", "relay_vote", "completed") for i in range(JOBS))
        return PollResult(jobs=jobs, complete=True)

    async def aclose(self) -> None:
        return None


def test_merging_a_big_first_sync_is_a_sign_of_life(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16/17: a 1M-job first sync merges for longer than 3 intervals with no API request;
    the watchdog cancelled it as stalled and the sync started over, for ever."""
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)  # every merge slice ends in a pause
    monkeypatch.setattr(pacing, "PAUSE_SECONDS", 0.0)

    async def scenario() -> None:
        clock = FakeClock()
        loop = hanging_loop("org", BigListSource(), clock)  # type: ignore[arg-type]
        loop.start()
        stalls = 0
        for _ in range(5000):
            if loop.completed:
                break
            clock.now += INTERVAL  # a whole poll interval passes at every look
            stalls += loop.check(clock.now)
            await asyncio.sleep(0)
        assert loop.completed and loop.up and stalls == 0 and not loop.errors
        assert len(loop.tracker) == JOBS
        await loop.stop()

    try:
        asyncio.run(scenario())
    finally:
        gc.unfreeze()
