"""Per-job series of an org's snapshot, capped: oldest active jobs, progress, failed jobs.

Each view walks the active jobs only (or the recent failures), never the whole history.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from exporter.sources.base import ACTIVE_JOB_STATUSES
from exporter.state.aggregates import Aggregates
from exporter.state.jobbook import JobRecord
from exporter.state.labels import clean_label
from exporter.state.snapshot import OrgSnapshot, SeriesKind
from exporter.state.steps import StepsView

DropSeries = Callable[[SeriesKind, str], None]  # count a job's series dropped by the cap


def active_views(active: Mapping[str, JobRecord], cap: int, drop: DropSeries
                 ) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """Return the oldest start per (type, status) and the capped per-job progress."""
    oldest: dict[tuple[str, str], float] = {}
    progress: dict[tuple[str, str], float] = {}
    for job_id, rec in active.items():
        if rec.status not in ACTIVE_JOB_STATUSES:
            continue
        key = (rec.job_type, rec.status)
        started = rec.created_at if rec.created_at is not None else rec.first_seen
        if key not in oldest or started < oldest[key]:
            oldest[key] = started
        if rec.progress is not None:
            if len(progress) < cap:
                progress[(rec.job_type, clean_label(job_id))] = rec.progress
            else:
                drop(SeriesKind.PROGRESS, job_id)
    return oldest, progress


def active_starts_view(active: Mapping[str, JobRecord], cap: int, drop: DropSeries
                       ) -> dict[tuple[str, str, str], float]:
    """Return the start (created_at, else first seen) of the oldest active jobs, capped."""
    starts = [
        (rec.created_at if rec.created_at is not None else rec.first_seen, job_id, rec)
        for job_id, rec in active.items()
        if rec.status in ACTIVE_JOB_STATUSES
    ]
    kept = heapq.nsmallest(cap, starts, key=lambda s: (s[0], s[1])) if cap else []
    if len(starts) > len(kept):
        kept_ids = {job_id for _, job_id, _ in kept}
        for _, job_id, _ in starts:
            if job_id not in kept_ids:
                drop(SeriesKind.ACTIVE_JOB_START, job_id)
    return {(rec.job_type, rec.status, clean_label(jid)): t for t, jid, rec in kept}


def failed_view(failed_at: Mapping[str, tuple[str, float]], cap: int, drop: DropSeries
                ) -> dict[tuple[str, str], float]:
    """Return the newest failed jobs within the series cap, counting the rest as dropped."""
    failed_items = list(failed_at.items())
    for jid, _ in failed_items[: max(0, len(failed_items) - cap)]:
        drop(SeriesKind.FAILED_JOB_INFO, jid)
    kept = failed_items[len(failed_items) - cap:] if cap else []
    return {(jt, clean_label(jid)): t for jid, (jt, t) in kept}


def expire_failed(failed_at: dict[str, tuple[str, float]], horizon: float) -> None:
    """Forget failures older than the retention horizon."""
    expired = [jid for jid, (_, t) in failed_at.items() if t < horizon]
    for jid in expired:
        del failed_at[jid]


@dataclass(frozen=True)
class OrgParts:
    """What one org's tracker holds that its snapshot is built from."""

    source: str
    org: str
    job_types: tuple[str, ...]
    job_statuses: tuple[str, ...]
    counts: Counter[tuple[str, str]]
    agg: Aggregates
    active: Mapping[str, JobRecord]
    steps: StepsView
    tracked_jobs: int


def org_snapshot(parts: OrgParts, cap: int, retention: float, drop: DropSeries,
                 now: float) -> OrgSnapshot:
    """Build the immutable view the collector renders, with each per-job view capped."""
    agg, steps = parts.agg, parts.steps
    expire_failed(agg.failed_at, now - retention)
    oldest, progress = active_views(parts.active, cap, drop)
    return OrgSnapshot(
        source=parts.source,
        org=parts.org,
        job_types=parts.job_types,
        job_statuses=parts.job_statuses,
        jobs={k: v for k, v in parts.counts.items() if v > 0},
        finished=dict(agg.finished),
        last_finished=dict(agg.last_finished),
        durations={k: h.freeze() for k, h in agg.durations.items()},
        queue_wait={k: h.freeze() for k, h in agg.queue_wait.items()},
        oldest_active=oldest,
        progress=progress,
        active_starts=active_starts_view(parts.active, cap, drop),
        failed_jobs=failed_view(agg.failed_at, cap, drop),
        import_items=dict(agg.import_items),
        step_types=steps.step_types,
        steps=steps.steps,
        step_finished=steps.finished,
        step_durations=steps.durations,
        step_attempts=steps.attempts,
        step_stale=steps.stale,
        tracked_jobs=parts.tracked_jobs,
        series_dropped={k: v for k, v in agg.series_dropped.items() if v > 0},
        invalid_items=dict(agg.invalid_items),
        vanished=dict(agg.vanished),
    )
