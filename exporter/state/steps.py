"""Step memory of active jobs (Ordo): finishes once per (job, step, attempt), retries, staleness."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from exporter.sources.base import TERMINAL_STEP_STATUSES, StepObservation
from exporter.state.hist import HistogramAccumulator
from exporter.state.labels import CappedLabels, clean_label
from exporter.state.snapshot import (
    DURATION_BUCKETS,
    Histogram,
    SeriesKind,
    StepKey,
    StepTypeKey,
)


@dataclass(slots=True)
class _StepRecord:
    step_type: str
    status: str
    attempt: int
    counted: bool
    last_progress_at: float | None


@dataclass(frozen=True, slots=True)
class StepsView:
    """Frozen step aggregates for one org snapshot."""

    step_types: tuple[StepTypeKey, ...]
    steps: dict[StepKey, int]
    finished: dict[StepKey, int]
    durations: dict[StepKey, Histogram]
    attempts: dict[StepTypeKey, int]
    stale: dict[StepTypeKey, float]


class StepBook:
    """Keep the steps of non-terminal jobs and the step counters of one org."""

    def __init__(
        self, max_step_types: int, dropped: Counter[SeriesKind],
        buckets: tuple[float, ...] = DURATION_BUCKETS,
    ) -> None:
        self.buckets = buckets
        self._types = CappedLabels(max_step_types)
        self._dropped = dropped
        self._jobs: dict[str, tuple[str, dict[str, _StepRecord]]] = {}
        self._known: dict[StepTypeKey, None] = {}
        self.finished: Counter[StepKey] = Counter()
        self.attempts: Counter[StepTypeKey] = Counter()
        self.durations: dict[StepKey, HistogramAccumulator] = {}
        self.dirty: set[str] = set()  # job ids whose step records the state store must rewrite

    def set_cap(self, max_step_types: int) -> None:
        """Apply a reloaded max_step_types_per_org."""
        self._types.set_cap(max_step_types)

    def merge(
        self, job_id: str, job_type: str, steps: tuple[StepObservation, ...], now: float,
        baseline: bool = False,
    ) -> None:
        """Merge a job's detailed steps; count each (step, attempt) finish and retries once.

        With `baseline` (the stream's first sync) what already happened is history: steps
        already finished and retries already made are remembered, not counted.
        """
        _, known = self._jobs.setdefault(job_id, (job_type, {}))
        for obs in steps:
            rec = known.get(obs.step_id)
            if rec is None:
                rec = _StepRecord(self._step_type(job_type, obs.step_type), obs.status, 0, False,
                                  None)
                if baseline:
                    rec.attempt = obs.attempt
                    rec.counted = obs.status in TERMINAL_STEP_STATUSES
                known[obs.step_id] = rec
                self.dirty.add(job_id)
            if obs.attempt > rec.attempt or obs.status != rec.status:
                self.dirty.add(job_id)
            self._advance(job_type, rec, obs.attempt)
            rec.status = obs.status
            rec.last_progress_at = obs.last_progress_at
            if obs.status in TERMINAL_STEP_STATUSES and not rec.counted:
                rec.counted = True
                self._count_finish(job_id, job_type, rec, obs, now)

    def _step_type(self, job_type: str, raw: str) -> str:
        label, dropped = self._types.admit(clean_label(raw))
        if dropped:
            self._dropped[SeriesKind.STEPS] += 1
        self._known.setdefault((job_type, label), None)
        return label

    def _advance(self, job_type: str, rec: _StepRecord, attempt: int) -> None:
        """Count retries, and close attempts that ended unseen between two polls.

        Ordo shows only a step's latest attempt: an attempt that was retried before the
        exporter saw it end is counted as failed, without a duration (none is exposed).
        """
        previous = max(rec.attempt, 1)  # the first attempt is not a retry
        if attempt <= previous:
            rec.attempt = max(rec.attempt, attempt)
            return
        self.attempts[(job_type, rec.step_type)] += attempt - previous
        unseen = attempt - previous - (1 if rec.counted else 0)
        if unseen > 0:
            self.finished[(job_type, rec.step_type, "failed")] += unseen
        rec.attempt = attempt
        rec.counted = False  # a new attempt: its own finish is still to come

    def _count_finish(
        self, job_id: str, job_type: str, rec: _StepRecord, obs: StepObservation, now: float
    ) -> None:
        key = (job_type, rec.step_type, obs.status)
        self.finished[key] += 1
        if obs.started_at is not None and obs.finished_at is not None:
            hist = self.durations.setdefault(key, HistogramAccumulator(self.buckets))
            hist.observe(max(0.0, obs.finished_at - obs.started_at), job_id, now)

    def forget(self, job_id: str) -> None:
        """Drop a job's steps from the gauges (job ended or vanished); counters stay."""
        if self._jobs.pop(job_id, None) is not None:
            self.dirty.add(job_id)

    def export(self, job_id: str) -> list[tuple[str, str, str, int, bool, float | None]]:
        """Return a job's step records for the state store: (step_id, type, status, ...)."""
        _, known = self._jobs.get(job_id, ("", {}))
        return [(sid, r.step_type, r.status, r.attempt, r.counted, r.last_progress_at)
                for sid, r in known.items()]

    def restore(self, job_id: str, job_type: str, step_id: str, step_type: str, status: str,
                attempt: int, counted: bool, last_progress_at: float | None) -> None:
        """Load one step from the state store so a restart neither recounts nor re-retries it."""
        _, known = self._jobs.setdefault(job_id, (job_type, {}))
        known[step_id] = _StepRecord(self._step_type(job_type, step_type), status, attempt,
                                     counted, last_progress_at)

    def freeze(self, now: float) -> StepsView:
        """Return the aggregates of steps of active jobs plus the counters."""
        steps: Counter[StepKey] = Counter()
        stale: dict[StepTypeKey, float] = {}
        for job_type, known in self._jobs.values():
            for rec in known.values():
                steps[(job_type, rec.step_type, rec.status)] += 1
                if rec.status == "running" and rec.last_progress_at is not None:
                    key = (job_type, rec.step_type)
                    if key not in stale or rec.last_progress_at < stale[key]:
                        stale[key] = rec.last_progress_at
        return StepsView(
            step_types=tuple(self._known),
            steps=dict(steps),
            finished=dict(self.finished),
            durations={k: h.freeze() for k, h in self.durations.items()},
            attempts=dict(self.attempts),
            stale=stale,
        )
