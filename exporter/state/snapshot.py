"""Immutable snapshots the collector renders; built by the tracker after each poll."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from exporter.sources.base import JOB_STATUSES, PollReason, RequestStatsView

# Defined in hist.py (sources use them too); re-exported: most modules import them from here.
from exporter.state.hist import Exemplar as Exemplar
from exporter.state.hist import Histogram as Histogram

# Job and step run times span seconds (vote relays) to hours (LiDAR pipelines, big imports).
DURATION_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
    86400.0,
)
# A poll is a handful of requests: tens of ms, up to the request timeout times retries.
POLL_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)


class SeriesKind(Enum):
    """Which capped series a dropped label set belongs to; the collector names the metric."""

    JOBS = "job types over max_job_types_per_org"
    STEPS = "step types over max_step_types_per_org"
    PROGRESS = "per-job progress over max_job_series_per_org"
    ACTIVE_JOB_START = "per-job start times over max_job_series_per_org"
    FAILED_JOB_INFO = "failed jobs over max_job_series_per_org"


JobKey = tuple[str, str]  # (job_type, status)
StepKey = tuple[str, str, str]  # (job_type, step_type, step_status)
StepTypeKey = tuple[str, str]  # (job_type, step_type)


@dataclass(frozen=True, slots=True)
class OrgSnapshot:
    """Everything known of one (source, org) after its last successful poll."""

    source: str
    org: str
    job_types: tuple[str, ...] = ()  # every job_type known: status series are dense over these
    # statuses the source kind can produce (+ `unknown` once seen): status series are dense
    # over these only; the default (every status) suits a source that declares none
    job_statuses: tuple[str, ...] = JOB_STATUSES
    jobs: Mapping[JobKey, int] = field(default_factory=dict)
    finished: Mapping[JobKey, int] = field(default_factory=dict)
    last_finished: Mapping[JobKey, float] = field(default_factory=dict)  # unix time
    durations: Mapping[JobKey, Histogram] = field(default_factory=dict)
    queue_wait: Mapping[str, Histogram] = field(default_factory=dict)  # job_type ->
    # (job_type, status in pending/running) -> unix time the oldest active job started waiting;
    # the collector exports now - value, so the age keeps growing between polls
    oldest_active: Mapping[JobKey, float] = field(default_factory=dict)
    progress: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (job_type, job_id)
    # (job_type, status, job_id) -> creation (else first-seen) unix time of the oldest active jobs
    active_starts: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    failed_jobs: Mapping[tuple[str, str], float] = field(default_factory=dict)  # -> failed at
    import_items: Mapping[str, int] = field(default_factory=dict)  # outcome added/errored ->
    step_types: tuple[StepTypeKey, ...] = ()  # step series are dense over these
    steps: Mapping[StepKey, int] = field(default_factory=dict)
    step_finished: Mapping[StepKey, int] = field(default_factory=dict)
    step_durations: Mapping[StepKey, Histogram] = field(default_factory=dict)
    step_attempts: Mapping[StepTypeKey, int] = field(default_factory=dict)
    # (job_type, step_type) -> unix time of the stalest running step's last progress report
    step_stale: Mapping[StepTypeKey, float] = field(default_factory=dict)
    tracked_jobs: int = 0
    series_dropped: Mapping[SeriesKind, int] = field(default_factory=dict)  # -> count
    # API items rejected or clamped (negative numbers, progress outside 0..1, bad timestamps)
    invalid_items: Mapping[str, int] = field(default_factory=dict)  # what -> count
    # active jobs that left the API before their outcome could be read
    vanished: Mapping[str, int] = field(default_factory=dict)  # job_type -> count


@dataclass(frozen=True, slots=True)
class OrgHealth:
    """Poll health of one (source, org)."""

    source: str
    org: str
    up: bool
    last_success: float | None
    poll_duration: Histogram
    poll_errors: Mapping[PollReason, int] = field(default_factory=dict)  # -> count
    synced: bool = False  # had at least one successful poll
    polled: bool = False  # its first poll completed, successfully or not (readiness)
    resync_progress: float | None = None  # share of the amortized resync pass done (Vocdoni)


@dataclass(frozen=True, slots=True)
class DiscoveryHealth:
    """Health of one source's `organizations: auto` discovery."""

    source: str
    up: bool
    last_success: float | None
    errors: Mapping[PollReason, int] = field(default_factory=dict)  # -> count


@dataclass(frozen=True, slots=True)
class ExporterSnapshot:
    """The whole exporter's state at one instant; swapped in whole, never mutated."""

    orgs: Mapping[tuple[str, str], OrgSnapshot] = field(default_factory=dict)
    health: Mapping[tuple[str, str], OrgHealth] = field(default_factory=dict)
    requests: Mapping[str, RequestStatsView] = field(default_factory=dict)  # source ->
    reload_success: bool = True
    reload_timestamp: float = 0.0
    shard: tuple[int, int] | None = None  # (index, count)
    state_persistent: bool | None = None  # last state write committed; None: no state file
    state_write_errors: int | None = None  # failed state writes; None: no state store
    discovery: Mapping[str, DiscoveryHealth] = field(default_factory=dict)  # source ->
    sequence: int = 0  # publish count: the render cache records the one it rendered (/readyz)
