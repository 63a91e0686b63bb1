"""Tracker counting guarantees: positive evidence, streams at first sight, identity, attempts."""

from __future__ import annotations

from pathlib import Path

from exporter.sources.base import JobObservation, PollResult, StepObservation
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker, TrackerSettings


def _job(job_id: str, status: str, job_type: str = "a", **kw: object) -> JobObservation:
    return JobObservation(job_id=job_id, job_type=job_type, status=status, **kw)  # type: ignore[arg-type]


def _poll(*jobs: JobObservation, complete: bool = True, gone: tuple[str, ...] = ()) -> PollResult:
    return PollResult(jobs=tuple(jobs), complete=complete, gone=gone)


def _tracker() -> OrgTracker:
    return OrgTracker("src", "org", TrackerSettings())


def _history(n: int, job_type: str = "a") -> list[JobObservation]:
    return [_job(f"{job_type}{i}", "completed", job_type) for i in range(n)]


def _finished(t: OrgTracker) -> int:
    return sum(t.snapshot(0.0).finished.values())


# --- principle 1: a job leaves only on positive evidence -------------------------------------

def test_one_empty_answer_does_not_recount_history() -> None:
    t = _tracker()
    t.apply(_poll(*_history(120)), 1.0)
    t.apply(_poll(), 2.0)  # even if a source took an empty answer for a complete list
    assert len(t) == 120
    t.apply(_poll(*_history(120)), 4.0)
    assert _finished(t) == 0 and len(t) == 120


def test_missing_from_one_complete_list_is_kept_then_dropped_after_two() -> None:
    t = _tracker()
    t.apply(_poll(*_history(3)), 1.0)
    t.apply(_poll(*_history(3)[:2]), 2.0)
    assert "a2" in t.jobs
    t.apply(_poll(*_history(3)), 3.0)  # back: the miss streak resets
    t.apply(_poll(*_history(3)[:2]), 4.0)
    assert "a2" in t.jobs
    t.apply(_poll(*_history(3)[:2]), 5.0)
    assert "a2" not in t.jobs
    assert _finished(t) == 0
    assert t.snapshot(5.0).vanished == {}  # a finished job leaving is not a vanished one


def test_detail_not_found_drops_at_once_and_counts_vanished_active_jobs() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("x", "pending", "org_members"), _job("y", "completed")), 2.0)
    t.apply(_poll(_job("y", "completed"), complete=False, gone=("x",)), 3.0)
    assert "x" not in t.jobs
    assert t.snapshot(3.0).vanished == {"org_members": 1}


# --- principle 2: history per stream, at first sight ------------------------------------------

def test_widened_job_types_keep_the_new_streams_history() -> None:
    t = _tracker()
    t.apply(_poll(*_history(2, "a")), 1.0, ("a",))
    t.apply(_poll(*_history(2, "a"), *_history(5, "b")), 2.0, ("a", "b"))
    assert _finished(t) == 0
    t.apply(_poll(*_history(2, "a"), *_history(5, "b"), _job("b9", "failed", "b")), 3.0,
            ("a", "b"))
    assert _finished(t) == 1  # a new b job after b's first sync counts


def test_removed_and_readded_type_is_not_counted_again() -> None:
    t = _tracker()
    t.apply(_poll(*_history(2, "a"), *_history(5, "b")), 1.0, ("a", "b"))
    t.apply(_poll(*_history(2, "a")), 2.0, ("a",))
    assert all(rec.job_type == "a" for rec in t.jobs.values())
    t.apply(_poll(*_history(2, "a"), *_history(6, "b")), 3.0, ("a", "b"))
    assert _finished(t) == 0


def test_all_types_to_some_to_all_keeps_history() -> None:
    t = _tracker()
    t.apply(_poll(*_history(2, "a"), *_history(2, "b")), 1.0)
    t.apply(_poll(*_history(2, "a")), 2.0, ("a",))
    t.apply(_poll(*_history(2, "a"), *_history(3, "b")), 3.0)
    assert _finished(t) == 0


def test_read_scope_survives_a_restart(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "s.db"))
    t = _tracker()
    store.restore(t)
    t.apply(_poll(*_history(2, "a")), 1.0, ("a",))
    assert store.save(t)
    again = _tracker()
    store.restore(again)
    assert again.read_scope == frozenset({"a"})
    again.apply(_poll(*_history(2, "a"), *_history(4, "b")), 2.0, ("a", "b"))
    assert _finished(again) == 0
    store.save(again)
    third = _tracker()
    store.restore(third)
    assert third.read_scope == frozenset({"a", "b"})


# --- principle 3: identity = id + creation time ----------------------------------------------

def test_reused_id_with_another_creation_time_is_a_new_job() -> None:
    t = _tracker()
    t.apply(_poll(_job("1", "completed", "old", created_at=100.0)), 1.0)
    t.apply(_poll(_job("1", "running", "new", created_at=5000.0, started_at=5001.0)), 2.0)
    snap = t.snapshot(2.0)
    assert snap.jobs == {("new", "running"): 1}
    t.apply(_poll(_job("1", "completed", "new", created_at=5000.0, started_at=5001.0,
                       finished_at=5010.0)), 3.0)
    assert t.snapshot(3.0).finished == {("new", "completed"): 1}
    assert t.snapshot(3.0).durations[("new", "completed")].sum == 9.0


# --- principle 6: every step of every finished job, once per attempt --------------------------

def _step(step_id: str, status: str, attempt: int, start: float, end: float) -> StepObservation:
    return StepObservation(step_id=step_id, step_type=step_id.upper(), status=status,
                           attempt=attempt, started_at=start, finished_at=end)


def test_job_first_seen_finished_after_first_sync_counts_its_steps() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    steps = (_step("a", "success", 1, 10.0, 20.0), _step("b", "success", 2, 30.0, 45.0))
    t.apply(_poll(_job("j", "completed", "lidar", created_at=5.0, started_at=10.0,
                       finished_at=45.0, steps=steps)), 50.0)
    snap = t.snapshot(50.0)
    assert snap.finished == {("lidar", "completed"): 1}
    assert snap.step_finished == {("lidar", "A", "success"): 1, ("lidar", "B", "success"): 1,
                                  ("lidar", "B", "failed"): 1}
    assert snap.step_attempts == {("lidar", "B"): 1}
    assert snap.step_durations[("lidar", "B", "success")].sum == 15.0
    assert snap.queue_wait["lidar"].count == 1


def test_failed_then_retried_step_shows_both_attempts_with_durations() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("j", "running", "lidar", steps=(_step("b", "failed", 1, 1.0, 4.0),))), 5.0)
    t.apply(_poll(_job("j", "running", "lidar", steps=(
        StepObservation("b", "B", "running", 2, started_at=6.0),))), 7.0)
    t.apply(_poll(_job("j", "completed", "lidar", steps=(_step("b", "success", 2, 6.0, 16.0),))),
            20.0)
    snap = t.snapshot(20.0)
    assert snap.step_finished == {("lidar", "B", "failed"): 1, ("lidar", "B", "success"): 1}
    assert snap.step_durations[("lidar", "B", "failed")].sum == 3.0
    assert snap.step_durations[("lidar", "B", "success")].sum == 10.0
    assert snap.step_attempts == {("lidar", "B"): 1}


def test_job_pending_at_stop_gets_its_queue_wait_after_restart(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "s.db"))
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("p", "pending", created_at=100.0)), 2.0)
    store.save(t)
    again = _tracker()
    store.restore(again)
    again.apply(_poll(_job("p", "running", created_at=100.0, started_at=130.0)), 3.0)
    assert again.snapshot(3.0).queue_wait["a"].sum == 30.0


# --- principle 7: durations only where the API supports them ----------------------------------

def test_finished_without_start_has_no_duration_but_its_queue_wait() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("j", "failed", created_at=10.0, finished_at=30.0)), 40.0)
    snap = t.snapshot(40.0)
    assert snap.finished == {("a", "failed"): 1}
    assert ("a", "failed") not in snap.durations


def test_without_timestamps_only_jobs_seen_active_are_timed() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("seen", "pending"), _job("unseen", "completed")), 10.0)
    t.apply(_poll(_job("seen", "completed"), _job("unseen", "completed")), 25.0)
    snap = t.snapshot(25.0)
    assert snap.finished == {("a", "completed"): 2}
    hist = snap.durations[("a", "completed")]
    assert hist.count == 1 and hist.sum == 15.0


def test_settled_id_is_the_longest_known_job_the_last_list_showed() -> None:
    t = _tracker()
    t.apply(_poll(*_history(3)), 1.0)
    assert t.settled_id() == "a0"
    t.apply(_poll(*_history(3)[1:]), 2.0)  # a0 missing once
    assert t.settled_id() == "a1"


def test_reused_id_is_saved_as_the_new_job(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "s.db"))
    t = _tracker()
    store.restore(t)
    t.apply(_poll(_job("1", "completed", "old", created_at=100.0)), 1.0)
    store.save(t)
    t.apply(_poll(_job("1", "completed", "new", created_at=5000.0)), 2.0)
    store.save(t)
    assert t.snapshot(2.0).finished == {("new", "completed"): 1}
    again = _tracker()
    store.restore(again)
    assert again.jobs["1"].created_at == 5000.0 and again.jobs["1"].counted
    again.apply(_poll(_job("1", "completed", "new", created_at=5000.0)), 3.0)
    assert _finished(again) == 0
