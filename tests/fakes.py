"""Fakes several test modules share: the tracker's view of jobs, a source's facts, types."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Callable, Iterable

from exporter.sources.base import JOB_STATUSES, KnownJob

# the `write_config` fixture (tests/conftest.py): (yaml text, name="config.yaml") -> its path
WriteConfig = Callable[..., pathlib.Path]


class Known:
    """KnownJobs over a dict, as the tracker hands it to a source."""

    def __init__(self, jobs: Iterable[KnownJob] = ()) -> None:
        self.jobs = {job.job_id: job for job in jobs}

    def get(self, job_id: str) -> KnownJob | None:
        """Return the remembered job."""
        return self.jobs.get(job_id)

    def active_ids(self) -> frozenset[str]:
        """Return ids of non-terminal jobs."""
        return frozenset(i for i, j in self.jobs.items() if not j.terminal)

    def __len__(self) -> int:
        return len(self.jobs)

    def settled_id(self) -> str | None:
        """Return the longest-known job (the first remembered)."""
        return next(iter(self.jobs), None)


class SourceFacts:
    """What every source tells besides polling: its host and the statuses it can produce."""

    host = "api.example.org"
    job_statuses: tuple[str, ...] = tuple(s for s in JOB_STATUSES if s != "unknown")


class FakeClock:
    """A virtual clock: sleeping advances it at once; concurrent sleepers share the timeline."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the sleep and move the clock to its end (never back)."""
        self.sleeps.append(seconds)
        target = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, target)
