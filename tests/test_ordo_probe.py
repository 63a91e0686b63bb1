"""Steady-state Ordo polls probe ids past the highest: their cost does not grow with history."""

from __future__ import annotations

from exporter.sources.base import KnownJob, OrgTarget
from tests.fakes_ordo import TARGET, FakeOrdo, Known, iso, make_source, poll


def history(size: int, active: int = 50) -> FakeOrdo:
    """Build an Ordo with `size` finished jobs then `active` running ones."""
    fake = FakeOrdo()
    for job_id in range(1, size + 1):
        fake.add(job_id, "success" if job_id % 3 else "failed")
    for job_id in range(size + 1, size + active + 1):
        fake.add(job_id, "running")
    return fake


def steady_poll(size: int) -> tuple[list[str], int]:
    """Sync, add two new jobs past a gap of burned ids, poll once: return paths and URL bytes."""
    fake = history(size)
    source = make_source(fake)
    known = Known()
    known.learn(poll(source, known, full=True))
    top = size + 50
    fake.add(top + 1, "pending")
    fake.add(top + 9, "success", recipe_id=2)  # ids top+2..top+8 burned by rolled-back inserts
    fake.paths.clear()
    result = poll(source, known)
    seen = {job.job_id: job for job in result.jobs}
    assert seen[str(top + 1)].status == "pending" and seen[str(top + 1)].job_type == "lidar-dem"
    assert seen[str(top + 9)].status == "completed" and seen[str(top + 9)].job_type == "ortho"
    assert sum(1 for job in result.jobs if job.status == "running") == 50
    assert not result.complete
    return fake.paths, sum(len(p) for p in fake.paths)


def test_steady_state_poll_does_not_grow_with_history() -> None:
    small_paths, small_bytes = steady_poll(1_000)
    big_paths, big_bytes = steady_poll(100_000)
    assert "/jobs" not in small_paths + big_paths
    assert len(small_paths) == len(big_paths) == 2  # one batch, one more window past the new top
    assert big_bytes - small_bytes < 2 * 8 * 80  # only the ids' digit counts grow


def test_burst_beyond_the_window_is_followed_in_rounds() -> None:
    fake = history(10, active=0)
    source = make_source(fake, id_window=5)
    known = Known()
    known.learn(poll(source, known, full=True))
    for job_id in range(11, 31):
        fake.add(job_id, "pending")
    fake.paths.clear()
    result = poll(source, known)
    assert sorted(int(job.job_id) for job in result.jobs) == list(range(11, 31))
    assert "/jobs" not in fake.paths
    known.learn(result)
    fake.paths.clear()
    assert [int(job.job_id) for job in poll(source, known).jobs] == list(range(11, 31))
    assert fake.batches()[0][-5:] == list(range(31, 36))  # probing resumes past 30


def test_active_job_answered_not_found_is_gone() -> None:
    fake = history(10, active=3)
    source = make_source(fake)
    known = Known()
    known.learn(poll(source, known, full=True))
    del fake.jobs[11]
    result = poll(source, known)
    assert result.gone == ("11",) and not result.complete
    assert "/jobs" not in fake.paths[-1:]


def test_highest_job_deleted_falls_back_to_the_list() -> None:
    fake = history(10, active=2)
    source = make_source(fake)
    known = Known()
    known.learn(poll(source, known, full=True))
    del fake.jobs[12]
    fake.paths.clear()
    result = poll(source, known)
    assert fake.count("/jobs") == 1 and result.complete
    fake.paths.clear()
    # a known job was missing: list once more, the second complete list the tracker drops it on
    result = poll(source, known)
    assert fake.count("/jobs") == 1 and result.complete
    assert "12" not in {job.job_id for job in result.jobs}
    del known.jobs["12"]  # as the tracker does after two complete lists without it
    fake.paths.clear()
    poll(source, known)
    assert fake.count("/jobs") == 0 and 11 in fake.batches()[0]  # 11 is the new sentinel


def test_database_reset_is_noticed_by_the_sentinel() -> None:
    fake = history(10, active=1)
    source = make_source(fake)
    known = Known()
    known.learn(poll(source, known, full=True))
    for job_id in list(fake.jobs):
        fake.jobs[job_id]["created_at"] = iso(59)  # same ids, other jobs: a reset
    fake.paths.clear()
    poll(source, known)
    assert fake.count("/jobs") == 1


def test_new_job_of_a_filtered_type_is_left_out() -> None:
    fake = history(3, active=0)
    source = make_source(fake)
    target = OrgTarget(TARGET.source, TARGET.org, TARGET.address, job_types=("lidar-dem",))
    known = Known()
    known.learn(poll(source, known, full=True, target=target))
    fake.add(4, "pending", recipe_id=2)
    fake.add(5, "pending", recipe_id=1)
    result = poll(source, known, target=target)
    assert [job.job_id for job in result.jobs] == ["5"]


def test_full_poll_still_lists() -> None:
    fake = history(5, active=1)
    source = make_source(fake)
    known = Known()
    known.learn(poll(source, known, full=True))
    fake.paths.clear()
    poll(source, known, full=True)
    assert fake.count("/jobs") == 1




def test_unknown_status_is_not_probed_every_poll() -> None:
    """A job in a status nobody maps is detailed on full polls only, with probing too."""
    fake = FakeOrdo()
    fake.add(1, "cancelled")
    fake.add(2, "running")
    source = make_source(fake)
    poll(source, Known(), full=True)
    known = Known([KnownJob("1", "lidar-dem", "unknown", False),
                   KnownJob("2", "lidar-dem", "running", False)])
    fake.paths.clear()
    result = poll(source, known)
    assert [job.job_id for job in result.jobs] == ["2"]
    assert fake.batches() == [[2, *range(3, 28)]]  # the running job, sentinel 2, the window
