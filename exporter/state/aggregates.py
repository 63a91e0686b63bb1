"""What an org's tracker accumulates: settings, monotonic aggregates and how finishes count."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.sources.base import JobObservation
from exporter.state.hist import HistogramAccumulator
from exporter.state.jobbook import JobRecord
from exporter.state.labels import clean_label
from exporter.state.snapshot import DURATION_BUCKETS, SeriesKind


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """Per-org limits and retention (from the effective config)."""

    failed_job_retention: float = 3600.0
    max_job_types_per_org: int = 50
    max_step_types_per_org: int = 100
    max_job_series_per_org: int = 500
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS  # job run time and queue wait
    step_duration_buckets: tuple[float, ...] = DURATION_BUCKETS


@dataclass(frozen=True, slots=True)
class ApplySummary:
    """What one poll changed, for the per-poll log line."""

    seen: int
    new: int
    finished: int
    removed: int
    tracked: int


@dataclass(slots=True)
class Aggregates:
    """Monotonic aggregates: counters and histograms kept across polls."""

    finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    last_finished: dict[tuple[str, str], float] = field(default_factory=dict)
    durations: dict[tuple[str, str], HistogramAccumulator] = field(default_factory=dict)
    queue_wait: dict[str, HistogramAccumulator] = field(default_factory=dict)
    import_items: Counter[str] = field(default_factory=Counter)
    series_dropped: Counter[SeriesKind] = field(default_factory=Counter)
    failed_at: dict[str, tuple[str, float]] = field(default_factory=dict)  # job_id -> (type, t)
    invalid_items: Counter[str] = field(default_factory=Counter)
    capped_ids: set[tuple[SeriesKind, str]] = field(default_factory=set)  # (kind, job id)
    vanished: Counter[str] = field(default_factory=Counter)  # job_type -> active jobs lost

    def observe_queue_wait(self, job_id: str, rec: JobRecord, obs: JobObservation, now: float,
                           buckets: tuple[float, ...]) -> None:
        """Observe a job's queue wait once, when the API gives its creation and start."""
        if rec.queue_observed or obs.created_at is None or obs.started_at is None:
            return
        if rec.counted:  # history: started long before we looked
            return
        wait = max(0.0, obs.started_at - obs.created_at)
        hist = self.queue_wait.get(rec.job_type) or self.queue_wait.setdefault(
            rec.job_type, HistogramAccumulator(buckets))
        hist.observe(wait, clean_label(job_id), now)
        rec.queue_observed = True

    def count_finish(self, job_id: str, rec: JobRecord, obs: JobObservation, now: float,
                     buckets: tuple[float, ...]) -> None:
        """Count a job's finish (the caller makes sure it is the first time)."""
        rec.counted = True
        rec.finished_seen = now
        key = (rec.job_type, rec.status)
        self.finished[key] += 1
        self.last_finished[key] = now
        took = duration(obs, rec, now)
        if took is not None:
            hist = self.durations.get(key) or self.durations.setdefault(
                key, HistogramAccumulator(buckets))
            hist.observe(took, clean_label(job_id), now)
        if rec.status == "failed":
            self.failed_at[job_id] = (rec.job_type, now)
        if obs.items_added is not None or obs.items_errored is not None:
            self.import_items["added"] += obs.items_added or 0
            self.import_items["errored"] += obs.items_errored or 0


def other_job(rec: JobRecord, obs: JobObservation) -> bool:
    """Return True when a known id now names another job (other creation time)."""
    return (rec.created_at is not None and obs.created_at is not None
            and abs(rec.created_at - obs.created_at) > 0.001)


def duration(obs: JobObservation, rec: JobRecord, now: float) -> float | None:
    """Return the run time the API supports, or None when there is none to give.

    API timestamps win. A job with API timestamps but no start never ran (no run time). Without
    API timestamps (Vocdoni v2), first-seen -> finished-seen, one poll interval resolution, and
    only for a job seen active: one first seen finished has no measurable run time.
    """
    if obs.duration_s is not None and obs.duration_s >= 0:
        return obs.duration_s
    if obs.started_at is not None and obs.finished_at is not None:
        return max(0.0, obs.finished_at - obs.started_at)
    if obs.created_at is not None or obs.started_at is not None:
        return None
    if not rec.seen_active:
        return None
    return max(0.0, now - rec.first_seen)
