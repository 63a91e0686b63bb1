"""State store: resume without double counting, corrupt files moved aside."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from exporter.sources.base import JobObservation, PollResult, StepObservation
from exporter.state import store as store_mod
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker, TrackerSettings


def _poll(*pairs: tuple[str, str]) -> PollResult:
    jobs = tuple(JobObservation(job_id=j, job_type="t", status=s) for j, s in pairs)
    return PollResult(jobs=jobs, complete=True)


def _tracker(store: StateStore) -> OrgTracker:
    tracker = OrgTracker("src", "org", TrackerSettings())
    store.restore(tracker)
    return tracker


def test_restart_counts_jobs_finished_while_down_once(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    first = _tracker(store)
    first.apply(_poll(("old", "completed"), ("a", "pending"), ("b", "pending")), 1.0)
    first.apply(_poll(("old", "completed"), ("a", "completed"), ("b", "pending")), 2.0)
    store.save(first)
    assert first.snapshot(2.0).finished == {("t", "completed"): 1}
    store.close()

    store = StateStore(path)
    second = _tracker(store)
    assert second.synced and len(second) == 3
    # while down: b failed, c arrived and completed
    second.apply(_poll(("old", "completed"), ("a", "completed"), ("b", "failed"),
                       ("c", "completed")), 10.0)
    assert second.snapshot(10.0).finished == {("t", "failed"): 1, ("t", "completed"): 1}
    store.save(second)
    store.close()


def test_removed_jobs_are_deleted_from_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending"), ("b", "pending")), 1.0)
    store.save(tracker)
    tracker.apply(_poll(("a", "pending")), 2.0)
    tracker.apply(_poll(("a", "pending")), 3.0)  # dropped after two complete lists lack it
    store.save(tracker)
    again = _tracker(store)
    assert set(again.jobs) == {"a"}


def test_forget_org(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "s.db"))
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    store.save(tracker)
    store.forget_org("src", "org")
    assert len(_tracker(store)) == 0


def test_corrupt_file_is_moved_aside_and_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 200)
    store = StateStore(str(path))
    tracker = _tracker(store)
    assert len(tracker) == 0 and not tracker.synced
    moved = list(tmp_path.glob("state.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not")


def test_memory_store() -> None:
    store = StateStore(":memory:")
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    store.save(tracker)
    assert len(_tracker(store)) == 1


def _ordo_poll(status: str, steps: tuple[tuple[str, str, int], ...]) -> PollResult:
    obs = tuple(StepObservation(step_id=sid, step_type="scan", status=st, attempt=att)
                for sid, st, att in steps)
    job = JobObservation(job_id="j", job_type="lidar", status=status, steps=obs)
    return PollResult(jobs=(job,), complete=True)


def test_step_finishes_and_retries_are_not_recounted_after_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    first = _tracker(store)
    first.apply(PollResult(jobs=(), complete=True), 0.5)  # first sync: nothing yet
    first.apply(_ordo_poll("running", (("s1", "success", 2), ("s2", "running", 1))), 1.0)
    store.save(first)
    snap = first.snapshot(1.0)
    # s1's first attempt ended (failed) before this poll: one finish per attempt
    assert snap.step_finished == {("lidar", "scan", "success"): 1, ("lidar", "scan", "failed"): 1}
    assert snap.step_attempts == {("lidar", "scan"): 1}
    store.close()

    store = StateStore(path)
    second = _tracker(store)
    second.apply(_ordo_poll("running", (("s1", "success", 2), ("s2", "success", 1))), 2.0)
    snap = second.snapshot(2.0)
    assert snap.step_finished == {("lidar", "scan", "success"): 1}  # only s2, not s1 again
    assert snap.step_attempts == {}
    assert snap.steps == {("lidar", "scan", "success"): 2}
    store.save(second)
    second.apply(_ordo_poll("completed", (("s1", "success", 2), ("s2", "success", 1))), 3.0)
    store.save(second)
    assert store.db.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == 0  # job ended
    store.close()


def test_org_without_jobs_stays_synced_across_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    first = _tracker(store)
    first.apply(PollResult(jobs=(), complete=True), 1.0)
    assert store.save(first)
    store.close()
    store = StateStore(path)
    second = _tracker(store)
    assert second.synced  # so a job that finished while down is new, not history
    second.apply(_poll(("a", "completed")), 5.0)
    assert second.snapshot(5.0).finished == {("t", "completed"): 1}


_CRASH = """
import os, sys
from exporter.state.store import StateStore
store = StateStore(sys.argv[1])
store.db.execute("BEGIN")
store.db.executemany(
    "INSERT INTO jobs VALUES ('src', 'org', ?, 't', 'completed', 1, 1, 1, NULL)",
    [(f"x{i}",) for i in range(5000)])
os.kill(os.getpid(), 9)
"""


def test_kill_9_mid_transaction_leaves_a_usable_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    store.save(tracker)
    store.close()
    proc = subprocess.run([sys.executable, "-c", _CRASH, path], timeout=60)
    assert proc.returncode == -9
    store = StateStore(path)
    again = _tracker(store)
    assert set(again.jobs) == {"a"} and again.synced  # the cut batch left nothing behind
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_foreign_sqlite_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()
    store = StateStore(str(path))
    assert len(_tracker(store)) == 0
    assert len(list(tmp_path.glob("state.db.corrupt-*"))) == 1


def test_unopenable_path_runs_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = StateStore(str(blocker / "sub" / "state.db"))  # parent is a file: cannot create
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    assert store.save(tracker)
    assert blocker.read_text() == "x"


def test_missing_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    store = StateStore(str(path))
    store.close()
    assert path.exists()


def test_failed_save_keeps_changes_for_the_next_one(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state.db"))
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    store.db.execute("DROP TABLE jobs")
    assert not store.save(tracker)
    assert tracker.dirty == {"a"}
    store.db.executescript(store_mod._SCHEMA)
    assert store.save(tracker) and not tracker.dirty
    assert set(_tracker(store).jobs) == {"a"}
