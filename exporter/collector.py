"""Turn the current ExporterSnapshot into metric families, fresh on every collect().

Nothing persists between scrapes, so series of jobs, orgs and steps that left the snapshot
disappear and Prometheus writes staleness markers for them. The collector knows nothing of HTTP.

Example lines:
    asyncjob_jobs{job_type="org_members",org="acme",source="vocdoni-prod",status="running"} 2.0
    asyncjob_up{org="acme",source="vocdoni-prod"} 1.0
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace

from prometheus_client.metrics_core import Metric

import exporter
from exporter.exposition import Family, Labels, Row, SnapRows, build_family, new_family
from exporter.rows import (
    ages_of,
    dense,
    per_health,
    per_org,
    present,
)
from exporter.sources.base import (
    FINISHED_JOB_STATUSES,
    FINISHED_STEP_STATUSES,
    STEP_STATUSES,
    PollReason,
)
from exporter.state.snapshot import (
    DiscoveryHealth,
    ExporterSnapshot,
    OrgSnapshot,
    SeriesKind,
)

IMPORT_OUTCOMES: tuple[str, ...] = ("added", "errored")
# Label `reason` of the poll and discovery error counters, in exposition order (all dense).
POLL_REASON_LABELS: Mapping[PollReason, str] = {
    PollReason.TIMEOUT: "timeout",
    PollReason.CONNECT: "connect",
    PollReason.HTTP_4XX: "http_4xx",
    PollReason.HTTP_5XX: "http_5xx",
    PollReason.RATE_LIMITED: "rate_limited",
    PollReason.AUTH: "auth",
    PollReason.DECODE: "decode",
    PollReason.SCHEMA: "schema",
    PollReason.TOO_LARGE: "too_large",
    PollReason.INTERNAL: "internal",
}
# Label `metric` of asyncjob_series_dropped_total: the family whose series a cap dropped.
SERIES_DROPPED_LABELS: Mapping[SeriesKind, str] = {
    SeriesKind.JOBS: "asyncjob_jobs",
    SeriesKind.STEPS: "asyncjob_steps",
    SeriesKind.PROGRESS: "asyncjob_progress_ratio",
    SeriesKind.ACTIVE_JOB_START: "asyncjob_active_job_start_timestamp_seconds",
    SeriesKind.FAILED_JOB_INFO: "asyncjob_failed_job_info",
}

# Cached data must say so in HELP (Prometheus exporter guidelines, "Scheduling"): one short
# suffix naming the poll interval setting (overridable per source: docs/configuration.md).
CACHED = " Refreshed by background polls (defaults.interval)."

ORG = ("source", "org")
JOB = (*ORG, "job_type")
STEP = (*JOB, "step_type")


def _job_keys(org: OrgSnapshot) -> list[Labels]:
    """Return the (job_type,) keys status series are dense over."""
    return [(job_type,) for job_type in org.job_types]


def _ends(org: OrgSnapshot) -> tuple[str, ...]:
    """Return the terminal statuses the org's source kind can produce."""
    return tuple(s for s in FINISHED_JOB_STATUSES if s in org.job_statuses)


def _imports(org: OrgSnapshot) -> Iterator[Row]:
    """Yield both import outcomes once an org has seen any import, else nothing."""
    if org.import_items:
        for outcome in IMPORT_OUTCOMES:
            yield (outcome,), float(org.import_items.get(outcome, 0))


def _attempts(org: OrgSnapshot) -> Iterator[Row]:
    """Yield retries for every known step type, 0 where none, so increase() works from 0."""
    for key in sorted(set(org.step_types) | set(org.step_attempts)):
        yield key, float(org.step_attempts.get(key, 0))


def _api_requests(snap: ExporterSnapshot, now: float) -> Iterator[Row]:
    """Yield request counts per (source, endpoint, code)."""
    for source in sorted(snap.requests):
        view = snap.requests[source]
        for (endpoint, code) in sorted(view.requests):
            yield (source, endpoint, code), float(view.requests[(endpoint, code)])


def _rate_limit_remaining(snap: ExporterSnapshot, now: float) -> Iterator[Row]:
    """Export the last budget an API announced; absent for APIs that announce none."""
    for src in sorted(snap.requests):
        remaining = snap.requests[src].rate_limit_remaining
        if remaining is not None:
            yield (src,), float(remaining)


def _api_latency(snap: ExporterSnapshot, now: float) -> Iterator[Row]:
    """Yield request latency histograms per (source, endpoint)."""
    for source in sorted(snap.requests):
        latency = snap.requests[source].latency
        for endpoint in sorted(latency):
            yield (source, endpoint), latency[endpoint]


def _reasons(errors: Mapping[PollReason, int]) -> Iterator[Row]:
    """Yield every error reason's label, 0 where none, so each series exists from the start."""
    for reason, label in POLL_REASON_LABELS.items():
        yield (label,), float(errors.get(reason, 0))


def _dropped(org: OrgSnapshot) -> Iterator[Row]:
    """Yield dropped label sets per capped family, sorted by the family's name."""
    counts = {SERIES_DROPPED_LABELS[kind]: n for kind, n in org.series_dropped.items()}
    return present(counts)


def _global(value: Callable[[ExporterSnapshot], float]) -> SnapRows:
    """Wrap an unlabelled value of the snapshot as a one-row family."""
    return lambda snap, now: [((), value(snap))]


def _shard(snap: ExporterSnapshot, now: float) -> list[Row]:
    """Yield the shard this replica serves, only when sharding is on."""
    if snap.shard is None:
        return []
    return [((str(snap.shard[0]), str(snap.shard[1])), 1.0)]


def _discovery_rows(rows: Callable[[DiscoveryHealth], Iterable[Row]]) -> SnapRows:
    """Run `rows` for every source with `organizations: auto`, prefixing each row with source."""

    def gen(snap: ExporterSnapshot, now: float) -> Iterator[Row]:
        for name in sorted(snap.discovery):
            for labels, value in rows(snap.discovery[name]):
                yield (name, *labels), value

    return gen


def _discovery_families() -> list[Family]:
    """Return the families of `organizations: auto` discovery health."""
    return [
        Family("asyncjob_discovery_up", "gauge",
               "1 if the last org discovery of this source succeeded.", ("source",),
               _discovery_rows(lambda d: [((), 1.0 if d.up else 0.0)]), optional=True),
        Family("asyncjob_discovery_last_success_timestamp_seconds", "gauge",
               "Unix time of the last successful org discovery.", ("source",),
               _discovery_rows(lambda d: [] if d.last_success is None
                               else [((), d.last_success)]), optional=True),
        Family("asyncjob_discovery_errors", "counter", "Failed org discoveries by reason.",
               ("source", "reason"), _discovery_rows(lambda d: _reasons(d.errors)),
               optional=True),
    ]


def _job_families() -> list[Family]:
    """Return the job metric families of the contract."""
    status = (*JOB, "status")
    return [
        Family("asyncjob_jobs", "gauge", "Jobs the API currently lists, by status." + CACHED,
               status, per_org(lambda o, n: dense(_job_keys(o), o.job_statuses, o.jobs))),
        Family("asyncjob_finished", "counter",
               "Jobs observed reaching a terminal status, each job counted once." + CACHED,
               status, per_org(lambda o, n: dense(_job_keys(o), _ends(o), o.finished))),
        Family("asyncjob_last_finished_timestamp_seconds", "gauge",
               "Unix time the last job of this kind was seen finishing in this status." + CACHED,
               status, per_org(lambda o, n: present(o.last_finished))),
        Family("asyncjob_duration_seconds", "histogram",
               "Run time of finished jobs; job_id as exemplar." + CACHED,
               status, per_org(lambda o, n: present(o.durations))),
        Family("asyncjob_queue_wait_seconds", "histogram",
               "Time from job creation to start, where the API gives both." + CACHED,
               JOB, per_org(lambda o, n: present(o.queue_wait))),
        Family("asyncjob_oldest_active_age_seconds", "gauge",
               "Age of the oldest non-terminal job (created_at, else first seen)." + CACHED,
               status, per_org(lambda o, n: ages_of(o.oldest_active, n), ages=True)),
        Family("asyncjob_progress_ratio", "gauge",
               "Progress 0..1 of each non-terminal job." + CACHED,
               (*JOB, "job_id"), per_org(lambda o, n: present(o.progress))),
        Family("asyncjob_active_job_start_timestamp_seconds", "gauge",
               "Creation (else first-seen) unix time of the oldest active jobs, capped per org."
               + CACHED, (*JOB, "status", "job_id"),
               per_org(lambda o, n: present(o.active_starts))),
        Family("asyncjob_failed_job_info", "gauge",
               "Jobs that failed within failed_job_retention (=1); never error text." + CACHED,
               (*JOB, "job_id"), per_org(lambda o, n: ((k, 1.0) for k in sorted(o.failed_jobs)))),
        Family("asyncjob_import_items", "counter",
               "Items of bulk member imports by outcome, counted once per job." + CACHED,
               (*ORG, "outcome"), per_org(lambda o, n: _imports(o))),
        Family("asyncjob_jobs_vanished", "counter",
               "Active jobs that left the API before their outcome could be read." + CACHED,
               JOB, per_org(lambda o, n: present(o.vanished))),
    ]


def _step_families() -> list[Family]:
    """Return the step metric families of the contract (Ordo)."""
    status = (*STEP, "step_status")
    return [
        Family("asyncjob_steps", "gauge", "Steps of non-terminal jobs, by status." + CACHED,
               status, per_org(lambda o, n: dense(o.step_types, STEP_STATUSES, o.steps))),
        Family("asyncjob_step_finished", "counter",
               "Steps observed finishing, once per (job, step)." + CACHED, status,
               per_org(lambda o, n: dense(o.step_types, FINISHED_STEP_STATUSES,
                                            o.step_finished))),
        Family("asyncjob_step_duration_seconds", "histogram",
               "Step run time from started_at to finished_at." + CACHED,
               status, per_org(lambda o, n: present(o.step_durations))),
        Family("asyncjob_step_retries", "counter",
               "Increases of a step's attempt counter beyond 1 (retries)." + CACHED,
               STEP, per_org(lambda o, n: _attempts(o))),
        Family("asyncjob_step_stale_seconds", "gauge",
               "Longest time since a running step last reported progress." + CACHED,
               STEP, per_org(lambda o, n: ages_of(o.step_stale, n), ages=True)),
    ]


def _health_families() -> list[Family]:
    """Return the exporter's own health metric families."""
    return [
        Family("asyncjob_up", "gauge", "1 if the last poll of this org succeeded, else 0.", ORG,
               per_health(lambda h: [((), 1.0 if h.up else 0.0)])),
        Family("asyncjob_last_poll_success_timestamp_seconds", "gauge",
               "Unix time of the last successful poll.", ORG,
               per_health(lambda h: [] if h.last_success is None else [((), h.last_success)])),
        Family("asyncjob_poll_duration_seconds", "histogram", "Wall time of whole polls.", ORG,
               per_health(lambda h: [((), h.poll_duration)])),
        Family("asyncjob_poll_errors", "counter", "Failed polls by reason.", (*ORG, "reason"),
               per_health(lambda h: _reasons(h.poll_errors))),
        Family("asyncjob_api_requests", "counter",
               "HTTP requests made to the API; endpoint is a route template.",
               ("source", "endpoint", "code"), _api_requests),
        Family("asyncjob_api_request_duration_seconds", "histogram", "API request latency.",
               ("source", "endpoint"), _api_latency),
        Family("asyncjob_api_rate_limited", "counter", "429 answers received from the API.",
               ("source",), lambda s, n: (((src,), float(s.requests[src].rate_limited))
                                          for src in sorted(s.requests))),
        Family("asyncjob_api_rate_limit_remaining", "gauge",
               "Requests left in the API's own budget, where its headers tell (GitHub, GitLab).",
               ("source",), _rate_limit_remaining),
        Family("asyncjob_resync_progress_ratio", "gauge",
               "How far the current amortized full re-list has got (0..1)." + CACHED, ORG,
               per_health(lambda h: [] if h.resync_progress is None
                           else [((), h.resync_progress)])),
        Family("asyncjob_tracked_jobs", "gauge", "Jobs held in the exporter's state.", ORG,
               per_org(lambda o, n: [((), float(o.tracked_jobs))])),
        Family("asyncjob_series_dropped", "counter", "Label sets dropped by a cardinality cap.",
               (*ORG, "metric"), per_org(lambda o, n: _dropped(o))),
        Family("asyncjob_api_invalid_items", "counter",
               "API items rejected or clamped (bad numbers, timestamps, progress outside 0..1).",
               (*ORG, "what"), per_org(lambda o, n: present(o.invalid_items))),
        Family("asyncjob_config_last_reload_successful", "gauge",
               "1 if the last configuration reload succeeded.", (),
               _global(lambda s: 1.0 if s.reload_success else 0.0)),
        Family("asyncjob_config_last_reload_success_timestamp_seconds", "gauge",
               "Unix time of the last successful configuration (re)load.", (),
               _global(lambda s: s.reload_timestamp)),
        Family("asyncjob_shard_info", "gauge",
               "Shard of the orgs this replica polls (=1); absent when not sharded.",
               ("index", "count"), _shard, optional=True),
        *_state_families(),
    ]


def _state_families() -> list[Family]:
    """Return the families that say whether the counts shown are on disk."""
    return [
        Family("asyncjob_state_persistent", "gauge",
               "1 while the last write of the state file succeeded; 0 while writes fail and"
               " finish counters hold at their last saved values. Absent with :memory:.", (),
               lambda s, n: [] if s.state_persistent is None
               else [((), 1.0 if s.state_persistent else 0.0)], optional=True),
        Family("asyncjob_state_write_errors", "counter",
               "Failed writes of the state file (and own corrupt files moved aside at start).",
               (), lambda s, n: [] if s.state_write_errors is None
               else [((), float(s.state_write_errors))], optional=True),
    ]


def _build_info(version: str) -> SnapRows:
    """Return the one row of asyncjob_build_info for `version`."""
    return lambda snap, now: [((version, platform.python_version()), 1.0)]


BUILD_INFO = Family("asyncjob_build_info", "gauge", "Build metadata (=1).",
                    ("version", "python_version"), _build_info(exporter.__version__))

# The metrics contract: every family /metrics shows, in exposition order. Docs, dashboards,
# alert rules and the binding spec are checked against this table (tests/test_collector.py,
# tests/test_dashboards.py).
FAMILIES: tuple[Family, ...] = (*_job_families(), *_step_families(), *_health_families(),
                                 *_discovery_families(), BUILD_INFO)


class JobsCollector:
    """Prometheus collector over the exporter's snapshot; register it on a CollectorRegistry."""

    def __init__(
        self,
        get_snapshot: Callable[[], ExporterSnapshot],
        *,
        clock: Callable[[], float] = time.time,
        version: str = exporter.__version__,
    ) -> None:
        self._get_snapshot = get_snapshot
        self._clock = clock
        build_info = replace(BUILD_INFO, rows=_build_info(version))
        self._families = tuple(build_info if f is BUILD_INFO else f for f in FAMILIES)

    def describe(self) -> list[Metric]:
        """Return the contract's families, empty: the registry checks names without collecting."""
        return [new_family(fam) for fam in self._families]

    @property
    def families(self) -> tuple[Family, ...]:
        """Return the families this collector shows, in exposition order."""
        return self._families

    def snapshot_and_now(self) -> tuple[ExporterSnapshot, float]:
        """Return the snapshot to render and the time its ages are computed at."""
        return self._get_snapshot(), self._clock()

    def collect(self) -> Iterator[Metric]:
        """Yield fresh families from one snapshot reference, so a scrape is self-consistent."""
        snap, now = self.snapshot_and_now()
        for fam in self._families:
            metric = build_family(fam, snap, now)
            if metric is not None:
                yield metric
