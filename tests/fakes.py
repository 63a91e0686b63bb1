"""Fakes several test modules share: the tracker's view of jobs, a source's facts, types."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from exporter.sources.base import (
    JOB_STATUSES,
    ON_PROGRESS,
    JobObservation,
    KnownJob,
    KnownJobs,
    OrgTarget,
    PollError,
    PollResult,
    RequestStats,
)

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


def scheduler_config(orgs: Sequence[tuple[str, str | None]], *, interval: str = "3600s",
                     jitter: float = 0.0, state: str | Path = ":memory:") -> str:
    """Return a one-source (vocdoni, never contacted) config: the scheduler and daemon tests'."""
    lines = "\n".join(f'      - address: "{address}"' + (f"\n        name: {name}" if name else "")
                      for address, name in orgs)
    return f"""
state: {{path: "{state}"}}
defaults: {{interval: {interval}, jitter: {jitter}}}
sources:
  - name: fake
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {{token: t}}
    organizations:
{lines}
"""


class FakeSource(SourceFacts):
    """Answers polls from a script: a list of jobs per org, or an exception."""

    def __init__(self) -> None:
        self.stats = RequestStats()
        self.jobs: dict[str, list[JobObservation]] = {}
        self.fail: PollError | None = None
        self.hang = False
        self.polls: list[tuple[str, bool]] = []
        self.answered: Any = None  # the polling org's sign-of-life hook, as the client calls it
        self.failures = 0  # polls answered with `fail`

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        self.polls.append((target.org, full))
        self.stats.record("/jobs", "200", 0.001)
        self.answered = ON_PROGRESS.get()
        if self.hang:
            await asyncio.Event().wait()  # until cancelled
        if self.fail is not None:
            self.failures += 1
            raise self.fail
        return PollResult(jobs=tuple(self.jobs.get(target.address, [])), complete=True)

    async def aclose(self) -> None:
        return None


def write_config_at(tmp_path: Path, orgs: list[str], interval: str = "0.05s") -> Path:
    """Write a one-source scheduler config with orgs named by single characters."""
    path = tmp_path / "c.yaml"
    path.write_text(scheduler_config([(f"0x{o * 40}", f"org{o}") for o in orgs], interval=interval))
    return path


def fake_job(job_id: str, status: str) -> JobObservation:
    """Return a publish_process job observation."""
    return JobObservation(job_id=job_id, job_type="publish_process", status=status)


class FullDisk:
    """A connection whose commits fail like SQLite's on a full disk while `full` is set."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = False
        self.commits_refused = 0

    def execute(self, sql: str, *args: Any) -> Any:
        if self.full and sql.strip().upper().startswith(("COMMIT", "INSERT", "DELETE")):
            self.commits_refused += 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        return self.db.executemany(sql, rows)

    def close(self) -> None:
        self.db.close()
