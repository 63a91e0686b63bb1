"""State store: resume without double counting, corrupt files moved aside."""

from __future__ import annotations

from pathlib import Path

from exporter.sources.base import JobObservation, PollResult
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
