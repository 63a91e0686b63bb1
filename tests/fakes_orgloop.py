"""A settable clock, a source that hangs, and org loops over it: the org loop tests' fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from exporter.config import OrgConfig
from exporter.orgloop import OrgLoop
from exporter.sources.base import (
    ON_PROGRESS,
    KnownJobs,
    OrgTarget,
    PollResult,
    RequestStats,
)
from tests.fakes import FakeClock, SourceFacts

INTERVAL = 10.0  # long: the loop never sleeps through it during a test


class HangingSource(SourceFacts):
    """Every poll records a request and then hangs until cancelled; remembers each org's hook."""

    def __init__(self) -> None:
        self.stats = RequestStats()
        self.hooks: dict[str, Callable[[], None] | None] = {}
        self.polls: list[str] = []
        self.cancelled: list[str] = []

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        self.polls.append(target.org)
        self.stats.record("/jobs", "200", 0.001)
        self.hooks[target.org] = ON_PROGRESS.get()
        try:
            await asyncio.Event().wait()  # hangs until cancelled
        except asyncio.CancelledError:
            self.cancelled.append(target.org)
            raise
        return PollResult(jobs=(), complete=True)

    async def aclose(self) -> None:
        return None


def org_config(name: str) -> OrgConfig:
    return OrgConfig(address=name, label=name, job_types=(), interval=INTERVAL, timeout=1.0,
                     full_resync_interval=3600.0, failed_job_retention=3600.0, jitter=0.0,
                     max_job_types_per_org=10, max_step_types_per_org=10,
                     max_job_series_per_org=10)


def hanging_loop(name: str, source: HangingSource, clock: FakeClock) -> OrgLoop:
    return OrgLoop(OrgTarget("src", name, name), org_config(name), source,
                   publish=lambda **_: None, clock=clock)
