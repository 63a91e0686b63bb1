"""Tests of which listed Ordo jobs get a detail request, and of reused ids."""

from __future__ import annotations

from exporter.sources.base import KnownJob
from exporter.sources.ordo_merge import needs_detail, reused, unlisted_active
from exporter.sources.ordo_parse import ListedJob


class Known:
    """A tracker's view of a few jobs."""

    def __init__(self, *jobs: KnownJob) -> None:
        self.jobs = {j.job_id: j for j in jobs}

    def get(self, job_id: str) -> KnownJob | None:
        return self.jobs.get(job_id)

    def active_ids(self) -> frozenset[str]:
        return frozenset(k for k, j in self.jobs.items() if not j.terminal)

    def __len__(self) -> int:
        return len(self.jobs)

    def settled_id(self) -> str | None:
        return next((k for k, j in self.jobs.items() if j.terminal), None)


def listed(job_id: int, status: str, created: float = 100.0) -> ListedJob:
    return ListedJob(job_id, 1, status, created, None, None)


def test_finished_history_is_never_detailed_but_a_finish_seen_now_is() -> None:
    known = Known(KnownJob("1", "t", "completed", True, 100.0),
                  KnownJob("2", "t", "running", False, 100.0))
    assert not needs_detail(listed(1, "completed"), known, first_sync=False)  # history
    assert needs_detail(listed(2, "completed"), known, first_sync=False)  # finished since
    assert needs_detail(listed(3, "failed"), known, first_sync=False)  # new and done already
    assert not needs_detail(listed(3, "failed"), known, first_sync=True)  # history at first sync
    assert needs_detail(listed(4, "running"), known, first_sync=True)  # active: always


def test_an_unmapped_status_is_detailed_on_full_polls_only() -> None:
    known = Known()
    assert not needs_detail(listed(5, "unknown"), known, first_sync=False)
    assert needs_detail(listed(5, "unknown"), known, first_sync=False, full=True)


def test_an_id_created_at_another_time_is_another_job() -> None:
    seen = KnownJob("1", "t", "completed", True, 100.0)
    assert reused(listed(1, "completed", 200.0), seen)
    assert not reused(listed(1, "completed", 100.0), seen)
    assert needs_detail(listed(1, "completed", 200.0), Known(seen), first_sync=False)


def test_active_jobs_the_list_lacks_are_the_ones_to_resolve() -> None:
    known = Known(KnownJob("7", "t", "running", False), KnownJob("8", "t", "pending", False),
                  KnownJob("9", "t", "completed", True))
    assert unlisted_active([listed(8, "running")], known) == [7]
