"""Per-org job memory: merges poll results, counts finishes exactly once, builds snapshots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Generator
from typing import cast

import structlog

from exporter.pacing import Pacer
from exporter.sources.base import (
    ACTIVE_JOB_STATUSES,
    JOB_STATUSES,
    TERMINAL_JOB_STATUSES,
    JobObservation,
    KnownJob,
    PollResult,
)
from exporter.sources.observed import ObservedJobs
from exporter.state import views
from exporter.state.aggregates import Aggregates, ApplySummary, TrackerSettings, other_job
from exporter.state.jobbook import DirtyIds, JobBook, JobRecord, compactable
from exporter.state.labels import CappedLabels, clean_label
from exporter.state.removal import MERGE_SLICE, proven_gone
from exporter.state.snapshot import OrgSnapshot, SeriesKind
from exporter.state.steps import StepBook

__all__ = ["MERGE_SLICE", "ApplySummary", "OrgTracker", "TrackerSettings"]

log = structlog.get_logger()


class OrgTracker:
    """Remember every job of one (source, org) and turn observations into aggregates."""

    def __init__(self, source: str, org: str, settings: TrackerSettings) -> None:
        self.source = source
        self.org = org
        self._settings = settings
        # Live jobs as records, counted finished ones packed (a few bytes each, no objects).
        self.jobs = JobBook()
        # Non-terminal jobs, kept in step with `jobs` so polls and snapshots cost O(active),
        # not O(history): at 100k tracked jobs a full scan per poll dominated the poll's CPU.
        self._active: dict[str, JobRecord] = {}
        self.synced = False  # True after the first successful poll (or a restored state)
        # Job types whose streams were read by the last poll: None = none yet, () = every type.
        # A type outside it is a stream read for the first time: its finished jobs are history.
        self.read_scope: frozenset[str] | None = None
        self.scope_dirty = False  # read_scope changed since the store last saved it
        self._missing: dict[str, int] = {}  # job id -> consecutive complete lists lacking it
        self._raw_types: dict[str, str] = {}  # raw API type -> its label
        self.counts: Counter[tuple[str, str]] = Counter()
        self.agg = Aggregates()
        self.steps = StepBook(settings.max_step_types_per_org, self.agg.series_dropped,
                              settings.step_duration_buckets)
        self._types = CappedLabels(settings.max_job_types_per_org)
        self._known_types: dict[str, str] = {}
        self._unknown_logged: set[str] = set()
        # statuses the source kind can produce (set by the org loop); `unknown` joins once seen
        self.statuses: tuple[str, ...] = tuple(s for s in JOB_STATUSES if s != "unknown")
        # job ids changed since the store last saved (packed rows added since: by row)
        self.dirty = DirtyIds(lambda: self.jobs.done)
        self.removed: set[str] = set()

    @property
    def settings(self) -> TrackerSettings:
        """Return the org's limits."""
        return self._settings

    @settings.setter
    def settings(self, value: TrackerSettings) -> None:
        """Apply reloaded limits at once: a raised label cap admits new values on the next poll."""
        self._settings = value
        self._types.set_cap(value.max_job_types_per_org)
        self.steps.set_cap(value.max_step_types_per_org)

    # --- KnownJobs protocol -------------------------------------------------
    def get(self, job_id: str) -> KnownJob | None:
        """Return the remembered job for incremental polling."""
        rec = self.jobs.full.get(job_id)
        if rec is not None:
            terminal = rec.status in TERMINAL_JOB_STATUSES
            return KnownJob(job_id, rec.job_type, rec.status, terminal, rec.created_at)
        done = self.jobs.done
        row = done.find(job_id)
        if row < 0:
            return None
        return KnownJob(job_id, done.job_type(row), done.status(row), True, done.created_at(row))

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

    def settled_id(self) -> str | None:
        """Return the longest-known job the last list showed, to test an empty list's word."""
        return next((j for j in self.jobs if j not in self._missing), None)

    # --- merging --------------------------------------------------------------
    def apply(self, result: PollResult, now: float, scope: tuple[str, ...] = ()) -> ApplySummary:
        """Merge one successful poll of the `scope` types (() = all); count finishes once."""
        merging = self.merging(result, now, scope)
        while True:
            try:
                next(merging)
            except StopIteration as done:
                return cast(ApplySummary, done.value)

    async def apply_paced(self, result: PollResult, now: float, scope: tuple[str, ...] = (),
                          pacer: Pacer | None = None) -> ApplySummary:
        """Merge like apply, letting scrapes in every few ms (a first sync of 100k jobs)."""
        pacer = pacer or Pacer()
        merging = self.merging(result, now, scope)
        while True:
            try:
                next(merging)
            except StopIteration as done:
                return cast(ApplySummary, done.value)
            await pacer.breathe()

    def merging(self, result: PollResult, now: float,
                scope: tuple[str, ...] = ()) -> Generator[None, None, ApplySummary]:
        """Merge as apply does, stopping after every MERGE_SLICE jobs for the caller to pause."""
        scope_set = frozenset(scope)
        if self.read_scope is None and self.synced:
            self.read_scope = scope_set  # state from before read scopes were kept: as read
            self.scope_dirty = True
        removed = 0
        if scope_set and scope_set != self.read_scope:
            removed = self._narrow(scope_set)
        new = finished = 0
        seen = self._seen_index(result)
        ids = seen if isinstance(seen, set) else None
        for merged, obs in enumerate(result.jobs, 1):
            # Keyed by the API's own id: sources re-check known jobs by it. It is cleaned only
            # where it becomes a label value (progress, failed-job info, exemplars).
            job_id = obs.job_id
            if ids is not None:
                ids.add(job_id)
            is_new, did_finish = self._merge(job_id, obs, now, self._first_sight(obs.job_type))
            new += is_new
            finished += did_finish
            if merged % MERGE_SLICE == 0:
                yield
        gone = yield from proven_gone(self.jobs, seen, result, self._missing)
        removed += self._drop_gone(gone)
        self._log_unknown(result.unknown_statuses)
        for note, n in result.notes.items():
            self.agg.invalid_items[clean_label(note)] += n
            log.warning("api_data_rejected", source=self.source, org=self.org, what=note, count=n)
        self.synced = True
        if self.read_scope != scope_set:
            self.read_scope = scope_set
            self.scope_dirty = True
        return ApplySummary(len(result.jobs), new, finished, removed, len(self.jobs))

    def _seen_index(self, result: PollResult) -> Container[str] | None:
        """Return how to tell the ids this poll observed; None when the tracker knew none.

        A tracker that knew nothing needs no index: every job it will know was observed. A
        source's packed ObservedJobs is its own index; other results fill a set while merging.
        Either way a first sync of a million jobs holds no million-string set.
        """
        if not len(self.jobs) and not self._missing:
            self.jobs.done.reserve(len(result.jobs))  # no re-hash of every row mid-merge
            return None
        if len(result.jobs) > len(self.jobs):
            self.jobs.done.reserve(len(self.jobs.done) + len(result.jobs))
        if isinstance(result.jobs, ObservedJobs):
            return result.jobs.ids
        return set()

    def _drop_gone(self, gone: set[str]) -> int:
        """Forget the jobs proven gone; an active one is counted as vanished."""
        dropped = 0
        for job_id in gone:
            rec = self.jobs.full.get(job_id)
            if rec is not None or job_id in self.jobs:  # a packed one is finished: not vanished
                self._drop(job_id, vanished=rec is not None
                           and rec.status not in TERMINAL_JOB_STATUSES)
                dropped += 1
        return dropped

    def _first_sight(self, raw_type: str) -> bool:
        """Return True when this job type's stream was not read by the last poll."""
        if self.read_scope is None:
            return True
        return bool(self.read_scope) and raw_type not in self.read_scope

    def _narrow(self, scope: frozenset[str]) -> int:
        """Forget jobs of types no longer read: they are out of scope, not gone."""
        labels = {self._raw_types[t] for t in scope if t in self._raw_types}
        outside = [j for j, job_type in self.jobs.type_of() if job_type not in labels]
        for job_id in outside:
            self._drop(job_id, vanished=False)
        return len(outside)

    def _job_type(self, raw: str) -> str:
        label, dropped = self._types.admit(clean_label(raw))
        if dropped:
            self.agg.series_dropped[SeriesKind.JOBS] += 1
        # One shared string per type (the cap bounds them): 100k records, not 100k copies.
        label = self._known_types.setdefault(label, label)
        self._raw_types.setdefault(raw, label)
        return label

    def _merge(
        self, job_id: str, obs: JobObservation, now: float, history: bool
    ) -> tuple[bool, bool]:
        rec = self.jobs.full.get(job_id)
        if rec is None and (row := self.jobs.done.find(job_id)) >= 0:
            if self._merge_done(job_id, row, obs):
                return False, False
            rec = self.jobs.full.get(job_id)
        if rec is not None and other_job(rec, obs):
            self._reused(job_id, rec.status)
            rec = None
        is_new = rec is None
        terminal = obs.status in TERMINAL_JOB_STATUSES
        if rec is None:
            if history and terminal:
                self._add_done(job_id, obs, now)
                return True, False
            rec = self._add(job_id, obs, now, counted=False)
        elif rec.status != obs.status:
            self._restatus(job_id, rec, obs.status)
        if obs.created_at is not None:
            rec.created_at = obs.created_at
        rec.seen_active = rec.seen_active or obs.status in ACTIVE_JOB_STATUSES
        self.agg.observe_queue_wait(job_id, rec, obs, now, self.settings.duration_buckets)
        did_finish = False
        if terminal:
            rec.progress = None
            if not rec.counted:
                self.agg.count_finish(job_id, rec, obs, now, self.settings.duration_buckets)
                self.dirty.add(job_id)
                did_finish = True
        elif obs.progress is not None:
            if not 0.0 <= obs.progress <= 1.0:
                self.agg.invalid_items["progress_out_of_range"] += 1
            rec.progress = min(1.0, max(0.0, obs.progress))
        if obs.steps is not None:
            self.steps.merge(job_id, rec.job_type, obs.steps, now, baseline=history)
        if terminal:
            self.steps.forget(job_id)
            if compactable(rec):
                self.jobs.compact(job_id)
                self.dirty.add(job_id)  # its row moves to the packed table
        return is_new, did_finish

    def _restatus(self, job_id: str, rec: JobRecord, status: str) -> None:
        """Move a known job to its new status in the counts and the active index."""
        self.counts[(rec.job_type, rec.status)] -= 1
        rec.status = status
        self.counts[(rec.job_type, rec.status)] += 1
        self._track_active(job_id, rec)
        self.dirty.add(job_id)

    def _merge_done(self, job_id: str, row: int, obs: JobObservation) -> bool:
        """Handle a packed finished job listed again; False when it needs a full record."""
        done = self.jobs.done
        created = done.created_at(row)
        if created is not None and obs.created_at is not None \
                and abs(created - obs.created_at) > 0.001:
            self._reused(job_id, done.status(row))
            return False
        if obs.status != done.status(row) or obs.steps is not None:
            self.jobs.promote(job_id, row)  # status went back, or steps to merge: a record
            self.dirty.add(job_id)  # its row moves to the jobs table
            return False
        if obs.created_at is not None and created != obs.created_at:
            done.set_created_at(row, obs.created_at)
            self.dirty.add(job_id)
        return True

    def _reused(self, job_id: str, status: str) -> None:
        """Same id, another creation time: the API's ids restarted (database reset)."""
        log.info("job_id_reused", source=self.source, org=self.org)
        self._drop(job_id, vanished=status not in TERMINAL_JOB_STATUSES)

    def _add(self, job_id: str, obs: JobObservation, now: float, counted: bool) -> JobRecord:
        """Start remembering a job; `counted` marks history that is never counted."""
        rec = JobRecord(job_type=self._job_type(obs.job_type), status=obs.status,
                        first_seen=now, created_at=obs.created_at, counted=counted)
        self.jobs.full[job_id] = rec
        self.counts[(rec.job_type, rec.status)] += 1
        self._track_active(job_id, rec)
        self._note_added(job_id)
        return rec

    def _add_done(self, job_id: str, obs: JobObservation, now: float) -> None:
        """Remember a finished job of a first sync: history, packed at once, never counted."""
        job_type = self._job_type(obs.job_type)
        self.jobs.done.add(job_id, job_type, obs.status, obs.created_at, now)
        self.counts[(job_type, obs.status)] += 1
        self._note_added(job_id, fresh_row=True)

    def _note_added(self, job_id: str, fresh_row: bool = False) -> None:
        """Note a new job to write; a new packed row is written by row, not named."""
        self._missing.pop(job_id, None)
        self.removed.discard(job_id)  # a reused id: the store replaces the old row, keeps this
        if not fresh_row:
            self.dirty.add(job_id)

    def _drop(self, job_id: str, vanished: bool) -> None:
        """Forget one job; an active one the API no longer knows is counted as vanished."""
        job_type, status = self.jobs.pop(job_id)
        if vanished:
            self.agg.vanished[job_type] += 1
            log.info("job_vanished", source=self.source, org=self.org, job_type=job_type)
        self._active.pop(job_id, None)
        self._missing.pop(job_id, None)
        self.counts[(job_type, status)] -= 1
        self.steps.forget(job_id)
        self.agg.failed_at.pop(job_id, None)
        self.removed.add(job_id)
        self.dirty.discard(job_id)

    def _log_unknown(self, raw_statuses: tuple[str, ...]) -> None:
        for raw in raw_statuses:
            value = clean_label(raw)[:40]
            if value not in self._unknown_logged:
                self._unknown_logged.add(value)
                log.warning("unknown_job_status", source=self.source, org=self.org, status=value)

    def restore(self, job_id: str, rec: JobRecord) -> None:
        """Load one job from the state store (resume after restart)."""
        rec.job_type = self._job_type(rec.job_type)
        # A job pending at stop has its queue wait still to come; an active one was seen active.
        rec.queue_observed = rec.status != "pending"
        rec.seen_active = rec.status in ACTIVE_JOB_STATUSES
        if compactable(rec):  # a finished row left in the jobs table: move it at the next save
            self.jobs.moved.add(job_id)
            self.dirty.add(job_id)
        self.jobs.add(job_id, rec)
        self.counts[(rec.job_type, rec.status)] += 1
        self._track_active(job_id, rec)
        self.synced = True

    def forget_jobs(self) -> None:
        """Drop what a failed restore loaded so far: the org starts fresh."""
        self.jobs = JobBook()
        self._active.clear()
        self.counts.clear()
        self.synced = False

    def restore_finished(self, packed: bytes, job_type: str, status: str,
                         created_at: float | None, first_seen: float) -> None:
        """Load one packed finished job from the state store."""
        if self.jobs.moved and self.jobs.done.find_packed(packed) >= 0:
            return  # also restored from the jobs table above
        job_type = self._job_type(job_type)
        self.jobs.done.add_packed(packed, job_type, status, created_at, first_seen)
        self.jobs.done.mark_saved()  # read from the file: nothing to write back
        self.counts[(job_type, status)] += 1
        self.synced = True

    # --- snapshot -------------------------------------------------------------
    def snapshot(self, now: float) -> OrgSnapshot:
        """Build the immutable view the collector renders."""
        parts = views.OrgParts(self.source, self.org, tuple(self._known_types),
                               self._statuses_view(), self.counts, self.agg, self._active,
                               self.steps.freeze(now), len(self.jobs))
        return views.org_snapshot(parts, self.settings.max_job_series_per_org,
                                  self.settings.failed_job_retention, self._drop_series, now)

    def _statuses_view(self) -> tuple[str, ...]:
        """Return the kind's statuses plus any other seen (`unknown`, a status_map target)."""
        seen = dict.fromkeys(s for (_, s), n in self.counts.items() if n > 0)
        extra = [s for s in seen if s not in self.statuses]
        if extra:
            self.statuses = (*self.statuses, *extra)
        return self.statuses

    def _drop_series(self, kind: SeriesKind, job_id: str) -> None:
        """Count a job's series dropped by the cap once, not once per poll."""
        key = (kind, job_id)
        if key not in self.agg.capped_ids:
            self.agg.capped_ids.add(key)
            self.agg.series_dropped[kind] += 1
