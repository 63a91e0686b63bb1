"""Tracker: exactly-once finish counting, first-sync rule, removals, caps, steps."""

from __future__ import annotations

import random

from exporter.sources.base import (
    TERMINAL_JOB_STATUSES,
    JobObservation,
    PollResult,
    StepObservation,
)
from exporter.state.snapshot import SeriesKind
from exporter.state.tracker import MERGE_SLICE, OrgTracker, TrackerSettings


def _job(
    job_id: str, status: str, job_type: str = "publish_process", **kw: object
) -> JobObservation:
    return JobObservation(job_id=job_id, job_type=job_type, status=status, **kw)  # type: ignore[arg-type]


def _poll(*jobs: JobObservation, complete: bool = False, gone: tuple[str, ...] = ()) -> PollResult:
    return PollResult(jobs=tuple(jobs), complete=complete, gone=gone)


def _tracker(**kw: int | float) -> OrgTracker:
    return OrgTracker("src", "org", TrackerSettings(**kw))  # type: ignore[arg-type]


def test_first_sync_history_is_not_counted_but_listed() -> None:
    t = _tracker()
    t.apply(_poll(_job("a", "completed"), _job("b", "failed"), _job("c", "pending")), now=100.0)
    snap = t.snapshot(100.0)
    assert snap.finished == {}
    assert snap.jobs == {("publish_process", "completed"): 1, ("publish_process", "failed"): 1,
                         ("publish_process", "pending"): 1}
    assert snap.oldest_active == {("publish_process", "pending"): 100.0}


def test_finish_counted_exactly_once_with_first_seen_duration() -> None:
    t = _tracker()
    t.apply(_poll(_job("a", "pending")), now=100.0)
    summary = t.apply(_poll(_job("a", "completed")), now=130.0)
    t.apply(_poll(_job("a", "completed")), now=160.0)
    t.apply(_poll(_job("a", "failed")), now=190.0)  # a late status flip never recounts
    snap = t.snapshot(190.0)
    assert summary.finished == 1
    assert snap.finished == {("publish_process", "completed"): 1}
    hist = snap.durations[("publish_process", "completed")]
    assert hist.count == 1 and hist.sum == 30.0
    assert hist.exemplars and next(iter(hist.exemplars.values())).job_id == "a"
    assert snap.last_finished[("publish_process", "completed")] == 130.0


def test_new_job_already_finished_after_first_sync_is_counted() -> None:
    t = _tracker()
    t.apply(_poll(), now=1.0)
    t.apply(_poll(_job("x", "failed", job_type="relay_vote")), now=2.0)
    snap = t.snapshot(2.0)
    assert snap.finished == {("relay_vote", "failed"): 1}
    assert snap.failed_jobs == {("relay_vote", "x"): 2.0}


def test_api_timestamps_win_over_first_seen() -> None:
    t = _tracker()
    t.apply(_poll(_job("a", "running", created_at=10.0, started_at=15.0)), now=20.0)
    t.apply(_poll(_job("a", "completed", created_at=10.0, started_at=15.0, finished_at=40.0,
                       duration_s=25.0)), now=50.0)
    snap = t.snapshot(50.0)
    assert snap.durations[("publish_process", "completed")].sum == 25.0
    assert snap.queue_wait["publish_process"].sum == 5.0
    assert snap.queue_wait["publish_process"].count == 1


def test_complete_list_removes_vanished_jobs_but_counters_stay() -> None:
    t = _tracker()
    t.apply(_poll(_job("a", "pending"), _job("b", "pending")), now=1.0)
    t.apply(_poll(_job("a", "failed")), now=2.0)
    t.apply(_poll(_job("a", "failed"), complete=True), now=3.0)
    assert t.snapshot(3.0).tracked_jobs == 2  # one complete list lacking b is not evidence
    t.apply(_poll(_job("a", "failed"), complete=True), now=3.5)
    snap = t.snapshot(3.5)
    assert snap.tracked_jobs == 1
    assert ("publish_process", "pending") not in snap.jobs
    assert snap.finished == {("publish_process", "failed"): 1}
    assert snap.vanished == {"publish_process": 1}  # b was pending when it left
    t.apply(_poll(gone=("a",)), now=4.0)
    snap = t.snapshot(4.0)
    assert snap.tracked_jobs == 0 and snap.failed_jobs == {}
    assert snap.finished == {("publish_process", "failed"): 1}


def test_progress_clamped_counted_and_dropped_when_job_ends() -> None:
    t = _tracker()
    t.apply(_poll(_job("a", "pending", progress=1.7), _job("b", "running", progress=0.25)), 1.0)
    snap = t.snapshot(1.0)
    assert snap.progress == {("publish_process", "a"): 1.0, ("publish_process", "b"): 0.25}
    assert snap.invalid_items == {"progress_out_of_range": 1}
    t.apply(_poll(_job("a", "completed")), 2.0)
    assert t.snapshot(2.0).progress == {("publish_process", "b"): 0.25}


def test_failed_job_info_expires_after_retention() -> None:
    t = _tracker(failed_job_retention=60.0)
    t.apply(_poll(_job("a", "pending")), 0.0)
    t.apply(_poll(_job("a", "failed")), 10.0)
    assert t.snapshot(69.0).failed_jobs == {("publish_process", "a"): 10.0}
    assert t.snapshot(71.0).failed_jobs == {}


def test_job_type_cap_overflows_into_other_and_counts_drops() -> None:
    t = _tracker(max_job_types_per_org=2)
    t.apply(_poll(*(_job(str(i), "pending", job_type=f"t{i}") for i in range(5))), 1.0)
    snap = t.snapshot(1.0)
    assert set(snap.job_types) == {"t0", "t1", "other"}
    assert snap.jobs[("other", "pending")] == 3
    assert snap.series_dropped[SeriesKind.JOBS] == 3


def test_progress_series_cap_counts_each_job_once() -> None:
    t = _tracker(max_job_series_per_org=2)
    t.apply(_poll(*(_job(str(i), "running", progress=0.5) for i in range(4))), 1.0)
    t.snapshot(1.0)
    snap = t.snapshot(2.0)
    assert len(snap.progress) == 2
    assert snap.series_dropped[SeriesKind.PROGRESS] == 2


def test_hostile_labels_are_cleaned() -> None:
    t = _tracker()
    t.apply(_poll(_job("a\nb", "pending", job_type='x"\\\n\x00' + "y" * 300)), 1.0)
    snap = t.snapshot(1.0)
    (job_type,) = snap.job_types
    assert "\n" not in job_type and "\x00" not in job_type and len(job_type) <= 128


def _step(step_id: str, status: str, attempt: int = 1, **kw: float) -> StepObservation:
    return StepObservation(step_id=step_id, step_type=step_id.upper(), status=status,
                           attempt=attempt, **kw)


def test_steps_finish_once_retries_and_staleness() -> None:
    t = _tracker()
    t.apply(_poll(), 0.0)
    steps1 = (_step("a", "success", started_at=1.0, finished_at=4.0),
              _step("b", "running", attempt=2, started_at=4.0, last_progress_at=5.0))
    t.apply(_poll(_job("j", "running", steps=steps1, job_type="lidar")), 10.0)
    snap = t.snapshot(10.0)
    # b runs its 2nd attempt: the 1st ended (failed) unseen, counted once, without a duration
    assert snap.step_finished == {("lidar", "A", "success"): 1, ("lidar", "B", "failed"): 1}
    assert snap.step_attempts == {("lidar", "B"): 1}
    assert snap.steps == {("lidar", "A", "success"): 1, ("lidar", "B", "running"): 1}
    assert snap.step_stale == {("lidar", "B"): 5.0}
    steps2 = (_step("a", "success", started_at=1.0, finished_at=4.0),
              _step("b", "failed", attempt=3, started_at=4.0, finished_at=9.0))
    t.apply(_poll(_job("j", "failed", steps=steps2, job_type="lidar")), 20.0)
    snap = t.snapshot(20.0)
    # one finish per attempt: 1 (unseen), 2 (ended unseen), 3 (seen failed, timed)
    assert snap.step_finished == {("lidar", "A", "success"): 1, ("lidar", "B", "failed"): 3}
    assert snap.step_attempts == {("lidar", "B"): 2}
    assert snap.steps == {}  # steps gauge covers non-terminal jobs only
    assert snap.step_durations[("lidar", "B", "failed")].sum == 5.0
    assert snap.step_durations[("lidar", "B", "failed")].count == 1
    assert set(snap.step_types) == {("lidar", "A"), ("lidar", "B")}


def test_import_items_counted_once_per_job() -> None:
    t = _tracker()
    t.apply(_poll(_job("i", "pending", job_type="org_members", items_added=3)), 1.0)
    done = _job("i", "completed", job_type="org_members", items_added=10, items_errored=2)
    t.apply(_poll(done), 2.0)
    t.apply(_poll(done), 3.0)
    assert t.snapshot(3.0).import_items == {"added": 10, "errored": 2}


def test_first_sync_steps_are_a_baseline_not_counted() -> None:
    t = _tracker()
    steps = (_step("a", "success", started_at=1.0, finished_at=2.0),
             _step("b", "running", attempt=2, started_at=2.0))
    t.apply(_poll(_job("j", "running", steps=steps, job_type="lidar")), 10.0)
    snap = t.snapshot(10.0)
    assert snap.step_finished == {} and snap.step_attempts == {}
    assert snap.steps == {("lidar", "A", "success"): 1, ("lidar", "B", "running"): 1}
    later = (_step("a", "success", started_at=1.0, finished_at=2.0),
             _step("b", "success", attempt=3, started_at=5.0, finished_at=8.0))
    t.apply(_poll(_job("j", "running", steps=later, job_type="lidar")), 20.0)
    snap = t.snapshot(20.0)
    # attempt 2 (the baseline's running one) ended unseen before attempt 3 succeeded
    assert snap.step_finished == {("lidar", "B", "success"): 1, ("lidar", "B", "failed"): 1}
    assert snap.step_attempts == {("lidar", "B"): 1}


def test_ids_that_cleaning_changes_are_tracked_by_their_raw_value() -> None:
    """A job is keyed by the API's id, so a re-check by that id finds it and counts it once."""
    t = _tracker()
    t.apply(_poll(), 0.0)
    raw = "job\n" + "9" * 200
    t.apply(_poll(_job(raw, "running", progress=0.5)), 1.0)
    assert t.active_ids() == frozenset({raw})
    (key,) = t.snapshot(1.0).progress
    assert "\n" not in key[1] and len(key[1]) <= 128
    t.apply(_poll(_job(raw, "failed")), 2.0)
    t.apply(_poll(_job(raw, "failed")), 3.0)
    snap = t.snapshot(3.0)
    assert snap.finished == {("publish_process", "failed"): 1}
    (failed_key,) = snap.failed_jobs
    assert failed_key[1] == key[1]
    exemplar = next(iter(snap.durations[("publish_process", "failed")].exemplars.values()))
    assert exemplar.job_id == key[1]
    t.apply(_poll(gone=(raw,)), 4.0)
    assert len(t) == 0


def test_job_series_cap_zero_exports_no_per_job_series() -> None:
    t = _tracker(max_job_series_per_org=0)
    t.apply(_poll(), 0.0)
    t.apply(_poll(_job("a", "running", progress=0.5), _job("b", "failed")), 1.0)
    snap = t.snapshot(1.0)
    assert snap.progress == {} and snap.failed_jobs == {}
    assert snap.series_dropped == {SeriesKind.PROGRESS: 1, SeriesKind.FAILED_JOB_INFO: 1,
                                   SeriesKind.ACTIVE_JOB_START: 1}
    assert snap.finished == {("publish_process", "failed"): 1}


def test_active_index_follows_every_status_change() -> None:
    """active_ids() (an index, not a scan) equals the scan after random polls and removals."""
    rng = random.Random(3)
    tracker = OrgTracker("s", "o", TrackerSettings())
    statuses = ("pending", "running", "completed", "failed", "partial", "unknown")
    for step in range(60):
        jobs = tuple(JobObservation(job_id=f"j{rng.randint(0, 80)}", job_type="t",
                                    status=rng.choice(statuses)) for _ in range(20))
        gone = tuple(f"j{rng.randint(0, 80)}" for _ in range(2))
        tracker.apply(PollResult(jobs=jobs, complete=step % 7 == 6, gone=gone), float(step))
        scan = {j for j, r in tracker.jobs.items() if r.status not in TERMINAL_JOB_STATUSES}
        assert tracker.active_ids() == scan
        snap = tracker.snapshot(float(step))
        assert {s for _, s in snap.oldest_active} <= {"pending", "running"}
        assert sum(n for (_, s), n in snap.jobs.items() if s in ("pending", "running")) == len(
            [j for j in scan if tracker.jobs[j].status in ("pending", "running")])


def test_the_walk_for_missing_jobs_stops_between_slices() -> None:
    """A complete list lacking 1,000 known jobs is checked in slices (scrapes get the GIL)."""
    tracker = OrgTracker("s", "o", TrackerSettings())
    known = tuple(JobObservation(job_id=str(i), job_type="t", status="completed")
                  for i in range(1000))
    tracker.apply(PollResult(jobs=known, complete=True), 1.0)
    merging = tracker.merging(PollResult(jobs=(), complete=True), 2.0)
    stops = 0
    try:
        while True:
            next(merging)
            stops += 1
    except StopIteration as done:
        summary = done.value
    assert stops >= 1000 // MERGE_SLICE  # no job was listed: every stop is in the walk
    assert summary.removed == 0 and len(tracker.jobs) == 1000  # one complete list is no proof
    assert tracker.apply(PollResult(jobs=(), complete=True), 3.0).removed == 1000
