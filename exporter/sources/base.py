"""Contracts between API sources and the rest of the exporter; no Prometheus here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Normalized job statuses (metrics contract). Terminal ones are counted once.
JOB_STATUSES: tuple[str, ...] = ("pending", "running", "completed", "failed", "partial", "unknown")
TERMINAL_JOB_STATUSES: frozenset[str] = frozenset({"completed", "failed", "partial"})
ACTIVE_JOB_STATUSES: tuple[str, ...] = ("pending", "running")

STEP_STATUSES: tuple[str, ...] = (
    "pending", "running", "success", "failed", "skipped", "blocked", "unknown",
)
TERMINAL_STEP_STATUSES: frozenset[str] = frozenset({"success", "failed", "skipped"})

# Reasons a poll can fail (label values of asyncjob_poll_errors_total).
POLL_ERROR_REASONS: tuple[str, ...] = (
    "timeout", "connect", "http_4xx", "http_5xx", "rate_limited", "auth", "decode", "schema",
)


class PollError(Exception):
    """A poll failed for one of POLL_ERROR_REASONS; the message must carry no secret."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in POLL_ERROR_REASONS:
            raise ValueError(f"unknown poll error reason {reason!r}")
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StepObservation:
    """One step of a job as the API showed it (Ordo); times are unix seconds or None."""

    step_id: str
    step_type: str
    status: str  # one of STEP_STATUSES
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    # last_detailing.updated_at, else claimed_at, else started_at
    last_progress_at: float | None = None


@dataclass(frozen=True, slots=True)
class JobObservation:
    """One job as the API showed it in this poll, normalized; times are unix seconds or None."""

    job_id: str
    job_type: str
    status: str  # one of JOB_STATUSES
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # API-reported duration (Ordo duration_ms / 1000) when it gives one
    duration_s: float | None = None
    # raw 0..1 progress as the API reported it; the tracker clamps and counts outliers
    progress: float | None = None
    # Vocdoni org_members imports: counts only, never the error strings
    items_added: int | None = None
    items_errored: int | None = None
    # None = steps not fetched this poll (keep what was known); () = job has no steps
    steps: tuple[StepObservation, ...] | None = None


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of one org saw."""

    # every job the poll looked at: new ones, changed ones, re-checked ones
    jobs: tuple[JobObservation, ...]
    # True when `jobs` is the org's complete current list: known jobs missing from it are gone
    complete: bool
    # job ids that the API answered "not found" for (deleted / expired): drop them
    gone: tuple[str, ...] = ()
    # raw status strings that normalized to "unknown", for logging once per value
    unknown_statuses: tuple[str, ...] = ()
    # label values the source sanitized or rejected, for counting (reason -> count)
    notes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KnownJob:
    """What the tracker remembers of a job, as sources need it for incremental polling."""

    job_id: str
    job_type: str
    status: str
    terminal: bool


class KnownJobs(Protocol):
    """Read-only view of an org's tracked jobs, handed to sources each poll."""

    def get(self, job_id: str) -> KnownJob | None:
        """Return the remembered job or None when never seen."""
        ...

    def active_ids(self) -> frozenset[str]:
        """Return ids of known non-terminal jobs."""
        ...

    def __len__(self) -> int:
        """Return the number of tracked jobs."""
        ...


@dataclass(frozen=True, slots=True)
class OrgTarget:
    """One organization to poll: its label value and API identity."""

    source: str  # the source's config name (label `source`)
    org: str  # label `org`: display name or address
    address: str  # Vocdoni org address; Ordo: the deployment name
    job_types: tuple[str, ...] = ()  # empty = all types


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """HTTP policy of one source (see exporter/sources/http.py)."""

    base_url: str  # may carry a path prefix such as /ordo; no trailing slash needed
    timeout: float = 10.0  # seconds, per request (connect and read)
    concurrency: int = 8  # max requests in flight
    max_requests_per_second: float = 5.0  # token bucket rate; fractional allowed
    retries: int = 3  # extra attempts on connect errors, timeouts, 502/503/504
    backoff_base: float = 0.5  # seconds; full jitter: sleep uniform(0, base * 2**attempt)
    backoff_max: float = 30.0
    user_agent: str = "asyncjob-exporter"


class Source(Protocol):
    """An API source: polls one org at a time; owns its HTTP client and request stats."""

    stats: RequestStats
    # Optional class attribute `job_statuses`: the statuses this kind of API can produce, so
    # status series are dense over those only (the org loop reads it with getattr)

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        """Poll one org; `full` asks for a complete re-list. Raises PollError."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP client."""
        ...


# Latency buckets for API requests (seconds): the API answers in ms, slow pages in seconds.
API_LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


@dataclass(frozen=True, slots=True)
class RequestStatsView:
    """Frozen copy of a source's request counters, for the collector."""

    # (endpoint, code) -> count; code: HTTP status ("200") or "timeout"/"connect_error"
    requests: Mapping[tuple[str, str], int]
    # endpoint template -> (cumulative bucket counts aligned to API_LATENCY_BUCKETS + +Inf, sum)
    latency: Mapping[str, tuple[tuple[int, ...], float]]
    rate_limited: int


class RequestStats:
    """Mutable request counters of one source; mutated on the event loop only."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self.rate_limited = 0
        self._total = 0  # kept running: every publish asks each org's loop for it

    def record(self, endpoint: str, code: str, seconds: float | None) -> None:
        """Count one request; `endpoint` must be a route template, never a raw path."""
        key = (endpoint, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        self._total += 1
        if code == "429":
            self.rate_limited += 1
        if seconds is None:
            return
        buckets = self._buckets.setdefault(endpoint, [0] * (len(API_LATENCY_BUCKETS) + 1))
        for i, bound in enumerate(API_LATENCY_BUCKETS):
            if seconds <= bound:
                buckets[i] += 1
        buckets[-1] += 1
        self._sums[endpoint] = self._sums.get(endpoint, 0.0) + seconds

    def total(self) -> int:
        """Return how many requests were made in all."""
        return self._total

    def view(self) -> RequestStatsView:
        """Return a frozen copy for the collector."""
        return RequestStatsView(
            requests=dict(self.requests),
            latency={ep: (tuple(b), self._sums.get(ep, 0.0)) for ep, b in self._buckets.items()},
            rate_limited=self.rate_limited,
        )
