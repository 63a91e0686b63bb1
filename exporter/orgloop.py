"""One organization's poll loop: interval with jitter, health, watchdog, state saves."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

import structlog

from exporter.config import OrgConfig
from exporter.sources.base import (
    ON_PROGRESS,
    OrgTarget,
    PollError,
    PollReason,
    Source,
    TricklesResync,
)
from exporter.state.hist import HistogramAccumulator
from exporter.state.snapshot import POLL_DURATION_BUCKETS, OrgHealth, OrgSnapshot
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker, TrackerSettings

log = structlog.get_logger()
_RNG = random.Random()  # jitter, unless a loop is given its own

STALL_INTERVALS = 3  # an org whose loop completed no poll for this many intervals is down
# Snapshot fields that count finishes: published only as of the last committed state save, so
# a finish seen on /metrics is on disk and is never counted again after a restart.
HELD_FIELDS: tuple[str, ...] = (
    "finished", "last_finished", "durations", "queue_wait", "import_items",
    "step_finished", "step_durations", "step_attempts", "vanished",
)


def tracker_settings(org: OrgConfig) -> TrackerSettings:
    """Map an org's effective config to tracker limits."""
    return TrackerSettings(
        failed_job_retention=org.failed_job_retention,
        max_job_types_per_org=org.max_job_types_per_org,
        max_step_types_per_org=org.max_step_types_per_org,
        max_job_series_per_org=org.max_job_series_per_org,
        duration_buckets=org.duration_buckets,
        step_duration_buckets=org.step_duration_buckets,
    )


class OrgLoop:
    """Poll one org forever; a failed poll keeps the last good data and sets up=0."""

    def __init__(
        self,
        target: OrgTarget,
        org_config: OrgConfig,
        source: Source,
        *,
        publish: Callable[..., None],
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        tracker: OrgTracker | None = None,
        committed: OrgSnapshot | None = None,
    ) -> None:
        self.target = target
        self.org_config = org_config
        self.source = source
        self.publish = publish
        self.store = store
        self.clock = clock  # wall time: timestamps, stall detection
        self._monotonic = monotonic  # poll durations
        self._sleep = sleep  # the wait between polls
        self._rng = rng or _RNG  # interval jitter
        self.tracker = tracker or self._new_tracker()
        self.tracker.settings = tracker_settings(org_config)
        self.tracker.statuses = source.job_statuses
        self.last_snapshot: OrgSnapshot | None = None
        # The tracker's finish counters as of its last committed save (a kept tracker brings
        # its old loop's); what /metrics shows while the state file cannot be written.
        self.committed = committed or self.tracker.snapshot(clock())
        self._holding = False  # finishes counted in memory but not yet committed
        self.up = False
        self.last_success: float | None = None
        self.completed = False  # its first poll completed, successfully or not (readiness)
        self.last_completed = clock()  # any poll end, success or not (stall detection)
        self._last_progress = 0.0  # this org's poll's last sign of life (API answer, paced work)
        self._poll: asyncio.Task[bool] | None = None  # the poll in flight, for the watchdog
        self._poll_started = 0.0
        self._cancelled_stalled = False
        self._health: OrgHealth | None = None  # cached until the next poll ends
        self._health_stalled = False
        self.errors: Counter[PollReason] = Counter()
        self.poll_hist = HistogramAccumulator(POLL_DURATION_BUCKETS)
        self.last_full = 0.0
        self._task: asyncio.Task[None] | None = None
        self._restarts = 0

    def _new_tracker(self) -> OrgTracker:
        tracker = OrgTracker(self.target.source, self.target.org,
                             tracker_settings(self.org_config))
        if self.store is not None:
            self.store.restore(tracker, self.target.address)
        return tracker

    # --- task management ------------------------------------------------------
    def start(self) -> None:
        """Start (or restart) the poll task."""
        self.last_completed = self.clock()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Cancel the poll task and wait for it."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    def stalled(self, now: float) -> bool:
        """Return True when no poll completed and no progress came for STALL_INTERVALS intervals.

        A long poll that keeps getting answers (a first sync of a big history at a low request
        rate) or keeps merging in paced slices is slow, not stuck; a hung request or a dead task
        shows no progress. Only this org's own progress counts: a sibling org polled on the same
        source says nothing about this one.
        """
        last_sign_of_life = max(self.last_completed, self._last_progress)
        return now - last_sign_of_life > STALL_INTERVALS * self.org_config.interval

    def _progressed(self, wait: float = 0.0) -> None:
        """Note progress of this org's poll: an API answer (plus any Retry-After wait), a pause."""
        self._last_progress = max(self._last_progress, self.clock() + wait)

    def check(self, now: float) -> bool:
        """Cancel a stalled poll and restart a dead poll task (watchdog); return stalled()."""
        stalled = self.stalled(now)
        poll = self._poll
        if poll is not None and not poll.done() and stalled:
            self._cancelled_stalled = True
            poll.cancel()
        if self._task is not None and self._task.done():
            self._restarts += 1
            log.error("poll_task_restarted", source=self.target.source,
                      org=self.target.org, restarts=self._restarts)
            self.start()
        return stalled

    async def _run(self) -> None:
        interval = self.org_config.interval
        while True:
            await self._watched_poll()
            jitter = self.org_config.jitter
            await self._sleep(interval * self._rng.uniform(1 - jitter, 1 + jitter))

    async def _watched_poll(self) -> None:
        """Run one poll the watchdog can cancel; a cancelled stalled poll is a timeout."""
        self._cancelled_stalled = False
        self._poll_started = self._monotonic()
        token = ON_PROGRESS.set(self._progressed)
        try:
            self._poll = asyncio.create_task(self.poll_once())
        finally:
            ON_PROGRESS.reset(token)
        try:
            await self._poll
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._cancelled_stalled or (current is not None and current.cancelling()):
                raise
            limit = STALL_INTERVALS * self.org_config.interval
            self._failed(PollReason.TIMEOUT,
                         f"poll stalled: no API answer for {limit:g}s, cancelled",
                         self._monotonic() - self._poll_started)
        finally:
            self._poll = None

    # --- one poll -------------------------------------------------------------
    async def poll_once(self) -> bool:
        """Poll once, merge, publish; return True on success."""
        start_wall, start = self.clock(), self._monotonic()
        full = (not self.tracker.synced or not self.last_full
                or start_wall - self.last_full >= self.org_config.full_resync_interval)
        started_pass = False
        if (isinstance(self.source, TricklesResync) and self.tracker.synced
                and self.last_full):
            started_pass = self.source.plan_resync(self.target, self.org_config.interval, full)
            full = False  # the pass reads a budget of pages per poll instead of all at once
        before = _requests(self.source)
        try:
            result = await self.source.poll(self.target, self.tracker, full)
        except PollError as exc:
            return self._failed(exc.reason, str(exc), self._monotonic() - start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a source bug must not kill the loop
            log.exception("poll_crashed", source=self.target.source, org=self.target.org,
                          host=self.source.host)
            return self._failed(PollReason.INTERNAL, type(exc).__name__, self._monotonic() - start)
        try:
            now = self.clock()
            summary = await self.tracker.apply_paced(result, now, self.target.job_types)
            if full or started_pass:
                self.last_full = start_wall
            saved = self.save()  # one transaction; on error retried after the next poll
            self.last_snapshot = self._publishable(self.tracker.snapshot(now), saved)
        except Exception as exc:  # a tracker bug must not kill the loop either
            log.exception("poll_crashed", source=self.target.source, org=self.target.org,
                          host=self.source.host)
            return self._failed(PollReason.INTERNAL, type(exc).__name__, self._monotonic() - start)
        duration = self._monotonic() - start
        self._finish(True, duration)
        fields = dict(source=self.target.source, org=self.target.org, full=full,
                      jobs=summary.tracked, seen=summary.seen, new=summary.new,
                      finished=summary.finished, removed=summary.removed,
                      requests=_requests(self.source) - before, duration=round(duration, 4))
        if summary.new or summary.finished or summary.removed:  # info only when something happened
            log.info("poll_summary", **fields)
        else:
            log.debug("poll_summary", **fields)
        return True

    def save(self) -> bool:
        """Write the tracker's changes; True when everything it counted is on file."""
        if self.store is None:
            return True
        ok = self.store.save(self.tracker, self.target.address)
        self._holding = not ok
        return ok

    def _publishable(self, fresh: OrgSnapshot, saved: bool) -> OrgSnapshot:
        """Return `fresh`, with finish counters held at the last commit when the save failed."""
        if saved:
            self.committed = fresh
            return fresh
        return replace(fresh, **{name: getattr(self.committed, name) for name in HELD_FIELDS})

    def _retry_held(self) -> None:
        """Publish held finishes once a save succeeds, even while polls fail."""
        if self._holding and self.save():
            self.last_snapshot = self._publishable(self.tracker.snapshot(self.clock()), True)

    def _failed(self, reason: PollReason, message: str, duration: float) -> bool:
        self.errors[reason] += 1
        self._retry_held()
        self._finish(False, duration)
        log.warning("poll_failed", source=self.target.source, org=self.target.org,
                    host=self.source.host,
                    reason=reason, error=message[:200], duration=round(duration, 4))
        return False

    def _finish(self, ok: bool, duration: float) -> None:
        first_poll, self.completed = not self.completed, True
        self.up = ok
        now = self.clock()
        self.last_completed = now
        if ok:
            self.last_success = now
        self.poll_hist.observe(duration)
        self._health = None
        self.publish(synced=first_poll)

    def health(self, now: float, stalled: bool | None = None) -> OrgHealth:
        """Return this org's health; a stalled loop reads as down (`stalled` if already known).

        Cached between polls: every poll of any org republishes all orgs' health, and
        rebuilding it each time made publishing cost orgs squared per cycle.
        """
        if stalled is None:
            stalled = self.stalled(now)
        if self._health is not None and self._health_stalled == stalled:
            return self._health
        self._health_stalled = stalled
        self._health = OrgHealth(
            source=self.target.source,
            org=self.target.org,
            up=self.up and not stalled,
            last_success=self.last_success,
            poll_duration=self.poll_hist.freeze(),
            poll_errors=dict(self.errors),
            synced=self.last_success is not None,
            polled=self.completed,
            resync_progress=_resync_progress(self.source, self.target),
        )
        return self._health


def _resync_progress(source: Source, target: OrgTarget) -> float | None:
    """Return how far the source's amortized resync of this org has got, if it trickles."""
    return source.resync_progress(target) if isinstance(source, TricklesResync) else None


def _requests(source: Source) -> int:
    return source.stats.total()
