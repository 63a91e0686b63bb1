"""A big first-sync write pauses between slices (scrapes get the GIL) yet stays one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import pacing
from exporter.sources.base import JobObservation, PollResult
from exporter.state import store as store_mod
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker, TrackerSettings

N = 3000


def test_a_big_save_pauses_between_slices_and_commits_once(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(pacing.time, "sleep", slept.append)
    store = StateStore(str(tmp_path / "state.db"))
    tracker = OrgTracker("src", "org", TrackerSettings())
    jobs = tuple(JobObservation(job_id=str(i), job_type="t", status="completed")
                 for i in range(N))
    tracker.apply(PollResult(jobs=jobs, complete=True), 1.0)
    commits: list[str] = []
    store.db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    assert store.save(tracker)
    assert len(slept) >= N // store_mod.WRITE_SLICE
    assert commits == ["COMMIT"]
    live = store.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    packed = store.db.execute("SELECT COUNT(*) FROM finished").fetchone()[0]
    assert live + packed == N
