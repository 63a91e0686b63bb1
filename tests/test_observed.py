"""A poll's observed jobs, packed (sources/observed.py), and how the tracker merges them."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Sequence
from typing import overload

import pytest

from exporter.sources.base import JobObservation, PollResult
from exporter.sources.observed import LEFT_OUT, NO_STREAM, ObservedJobs
from exporter.state import packed
from exporter.state.tracker import OrgTracker, TrackerSettings


def _hex(i: int) -> str:
    return f"{i:064x}"


def _observed(*jobs: JobObservation, left_out: tuple[str, ...] = ()) -> ObservedJobs:
    out = ObservedJobs()
    for pos, obs in enumerate(jobs):
        out.add(obs, 0, pos, LEFT_OUT if obs.job_id in left_out else 0)
    return out


def test_plain_jobs_are_rebuilt_and_rich_ones_kept_whole() -> None:
    plain = JobObservation(_hex(1), "relay_vote", "completed")
    rich = JobObservation("imp-1", "org_members", "pending", progress=0.5, items_added=3)
    vote = JobObservation(_hex(2), "relay_votes", "pending", progress=0.25)
    other = JobObservation("x", "publish_process", "unknown")
    jobs = _observed(plain, rich, other, vote, left_out=("x",))
    assert list(jobs) == [plain, rich, vote] and len(jobs) == 3 and jobs[1] == rich
    assert "imp-1" in jobs and plain in jobs and "x" not in jobs and "nope" not in jobs
    assert jobs.row_of("x") == 2 and list(jobs.listed_ids()) == [_hex(1), "imp-1", "x", _hex(2)]
    assert [jobs.job_id(r) for r in jobs.active_rows()] == ["imp-1", _hex(2)]
    jobs.replace(1, JobObservation("imp-1", "org_members", "completed"))
    assert jobs.active_rows() == [3] and jobs[1].status == "completed" and jobs[2] == vote
    assert 1 not in jobs._extra and 3 not in jobs._extra  # plain rows: arrays only
    row = jobs.add(JobObservation("by-id", "relay_vote", "failed"))
    assert jobs.stream(row) == NO_STREAM and "by-id" not in set(jobs.listed_ids())


def test_plain_jobs_hold_no_python_object_each() -> None:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    jobs = ObservedJobs()
    jobs.reserve(20_000)
    for i in range(20_000):
        jobs.add(JobObservation(_hex(i), "relay_vote", "completed"), 0, i)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held / 20_000 < 120  # a JobObservation and its id string alone are ~250 bytes


class _Lazy(Sequence[JobObservation]):
    """Observations built when iterated, as a packed source hands them over."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[JobObservation]:
        return (JobObservation(_hex(i), "relay_vote", "completed") for i in range(self.n))

    @overload
    def __getitem__(self, index: int) -> JobObservation: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[JobObservation]: ...

    def __getitem__(self, index: int | slice) -> JobObservation | Sequence[JobObservation]:
        return list(self)[index]


def test_first_sync_merge_names_no_job_in_a_set() -> None:
    """A first sync's jobs are packed as merged: no set of a million ids (seen, dirty) held."""
    tracker = OrgTracker("src", "org", TrackerSettings())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    summary = tracker.apply(PollResult(jobs=_Lazy(20_000), complete=True), 1.0)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert summary.new == 20_000 and len(tracker) == 20_000
    assert (held - before) / 20_000 < 130  # ids in a dirty set: 320 bytes a job
    assert (peak - before) / 20_000 < 150  # and a set of the ids seen: 440
    assert set(tracker.dirty) == {_hex(i) for i in range(20_000)}  # all still to be written
    tracker.dirty.clear()
    assert not tracker.dirty and len(tracker.dirty) == 0


def test_first_sync_merge_sizes_the_packed_table_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-hashing every row at each doubling held the GIL ~17 ms at 65k rows, ~0.3 s at 1M."""
    placed = 0
    real = packed.PackedIds._place

    def counting(self: packed.PackedIds, row: int) -> None:
        nonlocal placed
        placed += 1
        real(self, row)

    monkeypatch.setattr(packed.PackedIds, "_place", counting)
    tracker = OrgTracker("src", "org", TrackerSettings())
    tracker.apply(PollResult(jobs=_Lazy(5000), complete=True), 1.0)
    assert placed == 5000  # each row placed once, no re-hash of the earlier ones


def test_complete_packed_lists_remove_a_job_only_when_two_in_a_row_lack_it() -> None:
    tracker = OrgTracker("src", "org", TrackerSettings())
    a, b = (JobObservation(j, "relay_vote", "completed") for j in ("a", "b"))
    tracker.apply(PollResult(jobs=_observed(a, b), complete=True), 1.0)
    tracker.apply(PollResult(jobs=_observed(a), complete=True), 2.0)
    assert "b" in tracker.jobs  # one complete list lacking it: not evidence yet
    tracker.apply(PollResult(jobs=_observed(a, b), complete=True), 3.0)
    tracker.apply(PollResult(jobs=_observed(a), complete=True), 4.0)
    assert "b" in tracker.jobs  # listed again in between: the count started over
    tracker.apply(PollResult(jobs=_observed(a, b, left_out=("b",)), complete=True), 5.0)
    assert "b" not in tracker.jobs  # listed but left out (another type) is not observed
    assert sum(tracker.snapshot(5.0).finished.values()) == 0  # history, never counted


def test_fresh_rows_survive_the_reclaiming_of_dead_ones() -> None:
    tracker = OrgTracker("src", "org", TrackerSettings())
    tracker.apply(PollResult(jobs=_Lazy(1500), complete=True), 1.0)
    tracker.dirty.clear()
    done = tracker.jobs.done
    for i in range(1500, 3000):
        done.add(_hex(i), "relay_vote", "completed", None, 2.0)
    for i in range(0, 2500, 1):
        if i % 5:
            done.remove(done.find(_hex(i)))  # dead rows outnumber live ones: rewritten
    assert set(tracker.dirty) == {_hex(i) for i in range(1500, 3000) if i >= 2500 or not i % 5}
