"""Which listed Ordo jobs need a detail, and how lists, batches and known jobs merge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from exporter.pacing import Pacer
from exporter.sources.base import TERMINAL_JOB_STATUSES, JobObservation, KnownJob, KnownJobs
from exporter.sources.ordo_parse import BatchResult, ListedJob

UNNAMED_JOB_TYPE = "unknown"  # jobs without a recipe_id


def needs_detail(job: ListedJob, known: KnownJobs, first_sync: bool, full: bool = False) -> bool:
    """Detail active jobs and jobs finishing now; never re-detail finished history.

    A status nobody maps stays `unknown` until the API or the operator's status_map changes:
    re-detail it only on full polls (once per full_resync_interval), not every poll.
    """
    if job.status == "unknown":
        return full
    if job.status not in TERMINAL_JOB_STATUSES:
        return True
    seen = known.get(str(job.job_id))
    if seen is None or reused(job, seen):
        return not first_sync  # new since the last poll, or history on the first sync
    return not seen.terminal


def reused(job: ListedJob, seen: KnownJob | None) -> bool:
    """Return True when a known id now names another job (created at another time)."""
    return (seen is not None and seen.created_at is not None and job.created_at is not None
            and abs(seen.created_at - job.created_at) > 0.001)


async def any_reused(listed: Sequence[ListedJob], known: KnownJobs, pacer: Pacer) -> bool:
    """Return True when a listed id now names another job than the known one."""
    for job in listed:
        if reused(job, known.get(str(job.job_id))):
            return True
        await pacer.breathe()
    return False


async def observe_all(typed: Sequence[tuple[ListedJob, str]], batch: BatchResult,
                       gone: set[int], pacer: Pacer) -> tuple[JobObservation, ...]:
    """Observe every listed job Ordo still has."""
    out: list[JobObservation] = []
    for job, job_type in typed:
        if job.job_id not in gone:
            out.append(observe(job, job_type, batch))
        await pacer.breathe()
    return tuple(out)


def created_at_of(known: KnownJobs, job_id: int) -> float | None:
    """Return when a known job was created, its identity with the id."""
    seen = known.get(str(job_id))
    return seen.created_at if seen is not None else None


def known_status(known: KnownJobs, job_id: str) -> str | None:
    """Return the status the tracker knows a job in."""
    seen = known.get(job_id)
    return seen.status if seen is not None else None


def known_type(known: KnownJobs, job_id: int) -> str:
    """Return the job type the tracker knows a job under."""
    seen = known.get(str(job_id))
    return seen.job_type if seen is not None else UNNAMED_JOB_TYPE


def moved(detail: JobObservation, created_at: float | None) -> bool:
    """Return True when a job's detail was created at another time than remembered."""
    return (created_at is not None and detail.created_at is not None
            and abs(created_at - detail.created_at) > 0.001)


def merge_new(new: dict[int, tuple[JobObservation, int | None]], batch: BatchResult,
               window: Sequence[int]) -> dict[int, tuple[JobObservation, int | None]]:
    """Add the window's found ids (new jobs) with their recipe ids."""
    for job_id in window:
        detail = batch.found.get(job_id)
        if detail is not None:
            new[job_id] = (detail, batch.recipe_ids.get(job_id))
    return new


def unlisted_active(listed: Sequence[ListedJob], known: KnownJobs) -> list[int]:
    """Return known active jobs the list lacks: their detail route tells finished from gone."""
    ids = {job.job_id for job in listed}
    return sorted(int(j) for j in known.active_ids() if j.isdigit() and int(j) not in ids)


def empty_sample(listed: Sequence[ListedJob], known: KnownJobs) -> list[int]:
    """Return a known job to detail when the list came back empty (a flap, or really empty?)."""
    settled = None if listed else known.settled_id()
    return [int(settled)] if settled is not None and settled.isdigit() else []


def resolved(ids: Sequence[int], known: KnownJobs, batch: BatchResult
              ) -> tuple[JobObservation, ...]:
    """Return the details of unlisted jobs Ordo still has, under their known type."""
    out = []
    for job_id in ids:
        detail, seen = batch.found.get(job_id), known.get(str(job_id))
        if detail is not None and seen is not None:
            out.append(replace(detail, job_type=seen.job_type))
    return tuple(out)


def observe(job: ListedJob, job_type: str, batch: BatchResult) -> JobObservation:
    """Prefer the detail (fresher, with steps); fall back to the list item."""
    detail = batch.found.get(job.job_id)
    if detail is None:
        return job.observe(job_type)
    return replace(detail, job_type=job_type)
