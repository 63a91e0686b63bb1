"""The org loop hands the full re-list to a source that trickles it, and reports its progress."""

from __future__ import annotations

import asyncio

from exporter.orgloop import OrgLoop
from exporter.sources.base import KnownJobs, OrgTarget, PollResult, RequestStats
from tests.fakes import FakeClock, SourceFacts
from tests.fakes_orgloop import org_config

TARGET = OrgTarget("src", "a", "a")


class TricklingSource(SourceFacts):
    """Records the `full` flag of each poll and each resync plan; a pass takes two polls."""

    def __init__(self) -> None:
        self.stats = RequestStats()
        self.fulls: list[bool] = []
        self.plans: list[tuple[float, bool]] = []
        self.left = 0

    def plan_resync(self, target: OrgTarget, interval: float, due: bool) -> bool:
        self.plans.append((interval, due))
        if due and not self.left:
            self.left = 2
            return True
        return False

    def resync_progress(self, target: OrgTarget) -> float:
        return 1.0 - self.left / 2

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        self.fulls.append(full)
        self.left = max(0, self.left - 1)
        return PollResult(jobs=(), complete=full)

    async def aclose(self) -> None:
        return None


def test_after_the_first_sync_the_resync_is_trickled_and_its_progress_shown() -> None:
    clock, source = FakeClock(), TricklingSource()
    loop = OrgLoop(TARGET, org_config("a"), source, publish=lambda **_: None, clock=clock)

    async def run() -> list[float | None]:
        progress = []
        for _ in range(4):
            await loop.poll_once()
            progress.append(loop.health(clock()).resync_progress)
            clock.now += 2000.0  # past full_resync_interval (3600 s) every second poll
        return progress

    progress = asyncio.run(run())
    assert source.fulls == [True, False, False, False]  # only the first sync reads everything
    assert source.plans == [(10.0, False), (10.0, True), (10.0, False)]  # due from its start
    assert progress[1:] == [1.0, 0.5, 1.0]
