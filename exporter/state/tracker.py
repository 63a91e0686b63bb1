"""Per-org job memory: merges poll results, counts finishes exactly once, builds snapshots."""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field

import structlog

from exporter.sources.base import (
    ACTIVE_JOB_STATUSES,
    JOB_STATUSES,
    TERMINAL_JOB_STATUSES,
    JobObservation,
    KnownJob,
    PollResult,
)
from exporter.state.hist import HistogramAccumulator
from exporter.state.labels import CappedLabels, clean_label
from exporter.state.snapshot import DURATION_BUCKETS, OrgSnapshot
from exporter.state.steps import StepBook

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """Per-org limits and retention (from the effective config)."""

    failed_job_retention: float = 3600.0
    max_job_types_per_org: int = 50
    max_step_types_per_org: int = 100
    max_job_series_per_org: int = 500
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS  # job run time and queue wait
    step_duration_buckets: tuple[float, ...] = DURATION_BUCKETS


@dataclass(slots=True)
class JobRecord:
    """What is remembered of one job; persisted by the state store."""

    job_type: str
    status: str
    first_seen: float
    finished_seen: float | None = None
    counted: bool = False  # its finish was counted, or it was already history at first sync
    created_at: float | None = None
    progress: float | None = None
    queue_observed: bool = False


@dataclass(frozen=True, slots=True)
class ApplySummary:
    """What one poll changed, for the per-poll log line."""

    seen: int
    new: int
    finished: int
    removed: int
    tracked: int


@dataclass(slots=True)
class _Aggregates:
    """Monotonic aggregates: counters and histograms kept across polls."""

    finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    last_finished: dict[tuple[str, str], float] = field(default_factory=dict)
    durations: dict[tuple[str, str], HistogramAccumulator] = field(default_factory=dict)
    queue_wait: dict[str, HistogramAccumulator] = field(default_factory=dict)
    import_items: Counter[str] = field(default_factory=Counter)
    series_dropped: Counter[str] = field(default_factory=Counter)
    failed_at: dict[str, tuple[str, float]] = field(default_factory=dict)  # job_id -> (type, t)
    invalid_items: Counter[str] = field(default_factory=Counter)
    capped_ids: set[str] = field(default_factory=set)  # job ids whose series a cap dropped


class OrgTracker:
    """Remember every job of one (source, org) and turn observations into aggregates."""

    def __init__(self, source: str, org: str, settings: TrackerSettings) -> None:
        self.source = source
        self.org = org
        self.settings = settings
        self.jobs: dict[str, JobRecord] = {}
        # Non-terminal jobs, kept in step with `jobs` so polls and snapshots cost O(active),
        # not O(history): at 100k tracked jobs a full scan per poll dominated the poll's CPU.
        self._active: dict[str, JobRecord] = {}
        self.synced = False  # True after the first successful poll (or a restored state)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.agg = _Aggregates()
        self.steps = StepBook(settings.max_step_types_per_org, self.agg.series_dropped,
                              settings.step_duration_buckets)
        self._types = CappedLabels(settings.max_job_types_per_org)
        self._known_types: dict[str, str] = {}
        self._unknown_logged: set[str] = set()
        # statuses the source kind can produce (set by the org loop); `unknown` joins once seen
        self.statuses: tuple[str, ...] = tuple(s for s in JOB_STATUSES if s != "unknown")
        self.dirty: set[str] = set()  # job ids changed since the store last saved
        self.removed: set[str] = set()

    # --- KnownJobs protocol -------------------------------------------------
    def get(self, job_id: str) -> KnownJob | None:
        """Return the remembered job for incremental polling."""
        rec = self.jobs.get(job_id)
        if rec is None:
            return None
        terminal = rec.status in TERMINAL_JOB_STATUSES
        return KnownJob(job_id, rec.job_type, rec.status, terminal)

    def active_ids(self) -> frozenset[str]:
        """Return ids of non-terminal jobs."""
        return frozenset(self._active)

    def _track_active(self, job_id: str, rec: JobRecord) -> None:
        """Keep the active index in step with a job's (new) status."""
        if rec.status in TERMINAL_JOB_STATUSES:
            self._active.pop(job_id, None)
        else:
            self._active[job_id] = rec

    def __len__(self) -> int:
        return len(self.jobs)

    # --- merging --------------------------------------------------------------
    def apply(self, result: PollResult, now: float) -> ApplySummary:
        """Merge one successful poll; count every job's finish at most once."""
        first_sync = not self.synced
        new = finished = 0
        seen: set[str] = set()
        for obs in result.jobs:
            # Keyed by the API's own id: sources re-check known jobs by it. It is cleaned only
            # where it becomes a label value (progress, failed-job info, exemplars).
            job_id = obs.job_id
            seen.add(job_id)
            is_new, did_finish = self._merge(job_id, obs, now, first_sync)
            new += is_new
            finished += did_finish
        removed = self._remove(result, seen)
        self._log_unknown(result.unknown_statuses)
        for note, n in result.notes.items():
            self.agg.invalid_items[clean_label(note)] += n
            log.warning("api_data_rejected", source=self.source, org=self.org, what=note, count=n)
        self.synced = True
        return ApplySummary(len(result.jobs), new, finished, removed, len(self.jobs))

    def _job_type(self, raw: str) -> str:
        label, dropped = self._types.admit(clean_label(raw))
        if dropped:
            self.agg.series_dropped["asyncjob_jobs"] += 1
        # One shared string per type (the cap bounds them): 100k records, not 100k copies.
        return self._known_types.setdefault(label, label)

    def _merge(
        self, job_id: str, obs: JobObservation, now: float, first_sync: bool
    ) -> tuple[bool, bool]:
        rec = self.jobs.get(job_id)
        is_new = rec is None
        if rec is None:
            rec = JobRecord(
                job_type=self._job_type(obs.job_type),
                status=obs.status,
                first_seen=now,
                created_at=obs.created_at,
                counted=first_sync and obs.status in TERMINAL_JOB_STATUSES,
            )
            self.jobs[job_id] = rec
            self.counts[(rec.job_type, rec.status)] += 1
            self._track_active(job_id, rec)
            self.dirty.add(job_id)
        elif rec.status != obs.status:
            self.counts[(rec.job_type, rec.status)] -= 1
            rec.status = obs.status
            self.counts[(rec.job_type, rec.status)] += 1
            self._track_active(job_id, rec)
            self.dirty.add(job_id)
        if obs.created_at is not None:
            rec.created_at = obs.created_at
        self._observe_queue_wait(job_id, rec, obs, now)
        did_finish = False
        if rec.status in TERMINAL_JOB_STATUSES:
            rec.progress = None
            if not rec.counted:
                self._count_finish(job_id, rec, obs, now)
                did_finish = True
        elif obs.progress is not None:
            if not 0.0 <= obs.progress <= 1.0:
                self.agg.invalid_items["progress_out_of_range"] += 1
            rec.progress = _clamp(obs.progress)
        if obs.steps is not None and not (is_new and rec.counted):
            self.steps.merge(job_id, rec.job_type, obs.steps, now, baseline=first_sync)
        if rec.status in TERMINAL_JOB_STATUSES:
            self.steps.forget(job_id)
        return is_new, did_finish

    def _observe_queue_wait(
        self, job_id: str, rec: JobRecord, obs: JobObservation, now: float
    ) -> None:
        if rec.queue_observed or obs.created_at is None or obs.started_at is None:
            return
        if rec.counted:  # history: started long before we looked
            return
        wait = max(0.0, obs.started_at - obs.created_at)
        hist = self.agg.queue_wait.get(rec.job_type) or self.agg.queue_wait.setdefault(
            rec.job_type, HistogramAccumulator(self.settings.duration_buckets))
        hist.observe(wait, clean_label(job_id), now)
        rec.queue_observed = True

    def _count_finish(self, job_id: str, rec: JobRecord, obs: JobObservation, now: float) -> None:
        rec.counted = True
        rec.finished_seen = now
        key = (rec.job_type, rec.status)
        self.agg.finished[key] += 1
        self.agg.last_finished[key] = now
        duration = _duration(obs, rec, now)
        hist = self.agg.durations.get(key) or self.agg.durations.setdefault(
            key, HistogramAccumulator(self.settings.duration_buckets))
        hist.observe(duration, clean_label(job_id), now)
        if rec.status == "failed":
            self.agg.failed_at[job_id] = (rec.job_type, now)
        if obs.items_added is not None or obs.items_errored is not None:
            self.agg.import_items["added"] += obs.items_added or 0
            self.agg.import_items["errored"] += obs.items_errored or 0
        self.dirty.add(job_id)

    def _remove(self, result: PollResult, seen: set[str]) -> int:
        gone = set(result.gone)
        if result.complete:
            gone |= self.jobs.keys() - seen
        for job_id in gone:
            rec = self.jobs.pop(job_id, None)
            if rec is None:
                continue
            self._active.pop(job_id, None)
            self.counts[(rec.job_type, rec.status)] -= 1
            self.steps.forget(job_id)
            self.agg.failed_at.pop(job_id, None)
            self.removed.add(job_id)
            self.dirty.discard(job_id)
        return len(gone)

    def _log_unknown(self, raw_statuses: tuple[str, ...]) -> None:
        for raw in raw_statuses:
            value = clean_label(raw)[:40]
            if value not in self._unknown_logged:
                self._unknown_logged.add(value)
                log.warning("unknown_job_status", source=self.source, org=self.org, status=value)

    def restore(self, job_id: str, rec: JobRecord) -> None:
        """Load one job from the state store (resume after restart)."""
        rec.job_type = self._job_type(rec.job_type)
        self.jobs[job_id] = rec
        self.counts[(rec.job_type, rec.status)] += 1
        self._track_active(job_id, rec)
        self.synced = True

    # --- snapshot -------------------------------------------------------------
    def snapshot(self, now: float) -> OrgSnapshot:
        """Build the immutable view the collector renders."""
        agg = self.agg
        self._expire_failed(now)
        oldest, progress = self._active_views()
        failed = self._failed_view()
        steps = self.steps.freeze(now)
        return OrgSnapshot(
            source=self.source,
            org=self.org,
            job_types=tuple(self._known_types),
            job_statuses=self._statuses_view(),
            jobs={k: v for k, v in self.counts.items() if v > 0},
            finished=dict(agg.finished),
            last_finished=dict(agg.last_finished),
            durations={k: h.freeze() for k, h in agg.durations.items()},
            queue_wait={k: h.freeze() for k, h in agg.queue_wait.items()},
            oldest_active=oldest,
            progress=progress,
            active_starts=self._active_starts_view(),
            failed_jobs=failed,
            import_items=dict(agg.import_items),
            step_types=steps.step_types,
            steps=steps.steps,
            step_finished=steps.finished,
            step_durations=steps.durations,
            step_attempts=steps.attempts,
            step_stale=steps.stale,
            tracked_jobs=len(self.jobs),
            series_dropped={k: v for k, v in agg.series_dropped.items() if v > 0},
            invalid_items=dict(agg.invalid_items),
        )

    def _active_views(self) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
        """Return the oldest start per (type, status) and the capped per-job progress."""
        oldest: dict[tuple[str, str], float] = {}
        progress: dict[tuple[str, str], float] = {}
        cap = self.settings.max_job_series_per_org
        for job_id, rec in self._active.items():
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
                    self._drop_series("asyncjob_progress_ratio", job_id)
        return oldest, progress

    def _statuses_view(self) -> tuple[str, ...]:
        """Return the source kind's statuses, plus `unknown` from the first time one was seen."""
        if "unknown" not in self.statuses and any(s == "unknown" for _, s in self.counts):
            self.statuses = (*self.statuses, "unknown")
        return self.statuses

    def _active_starts_view(self) -> dict[tuple[str, str, str], float]:
        """Return the start (created_at, else first seen) of the oldest active jobs, capped."""
        starts = [
            (rec.created_at if rec.created_at is not None else rec.first_seen, job_id, rec)
            for job_id, rec in self._active.items()
            if rec.status in ACTIVE_JOB_STATUSES
        ]
        cap = self.settings.max_job_series_per_org
        kept = heapq.nsmallest(cap, starts, key=lambda s: (s[0], s[1])) if cap else []
        if len(starts) > len(kept):
            kept_ids = {job_id for _, job_id, _ in kept}
            for _, job_id, _ in starts:
                if job_id not in kept_ids:
                    self._drop_series("asyncjob_active_job_start_timestamp_seconds", job_id)
        return {(rec.job_type, rec.status, clean_label(jid)): t for t, jid, rec in kept}

    def _failed_view(self) -> dict[tuple[str, str], float]:
        """Return the newest failed jobs within the series cap, counting the rest as dropped."""
        cap = self.settings.max_job_series_per_org
        failed_items = list(self.agg.failed_at.items())
        for jid, _ in failed_items[: max(0, len(failed_items) - cap)]:
            self._drop_series("asyncjob_failed_job_info", jid)
        kept = failed_items[len(failed_items) - cap:] if cap else []
        return {(jt, clean_label(jid)): t for jid, (jt, t) in kept}

    def _drop_series(self, metric: str, job_id: str) -> None:
        """Count a job's series dropped by the cap once, not once per poll."""
        key = f"{metric}/{job_id}"
        if key not in self.agg.capped_ids:
            self.agg.capped_ids.add(key)
            self.agg.series_dropped[metric] += 1

    def _expire_failed(self, now: float) -> None:
        horizon = now - self.settings.failed_job_retention
        expired = [jid for jid, (_, t) in self.agg.failed_at.items() if t < horizon]
        for jid in expired:
            del self.agg.failed_at[jid]


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _duration(obs: JobObservation, rec: JobRecord, now: float) -> float:
    """Prefer API timestamps; else first-seen -> finished-seen (one poll interval resolution)."""
    if obs.duration_s is not None and obs.duration_s >= 0:
        return obs.duration_s
    if obs.started_at is not None and obs.finished_at is not None:
        return max(0.0, obs.finished_at - obs.started_at)
    if obs.created_at is not None and obs.finished_at is not None:
        return max(0.0, obs.finished_at - obs.created_at)
    return max(0.0, now - rec.first_seen)
