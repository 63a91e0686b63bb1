"""Contracts between API sources and the rest of the exporter; no Prometheus here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from exporter.state.hist import API_LATENCY_BUCKETS, Histogram, HistogramAccumulator

# Normalized job statuses (metrics contract). Terminal ones are counted once.
JOB_STATUSES: tuple[str, ...] = (
    "pending", "running", "completed", "failed", "partial", "cancelled", "unknown",
)
# Finished statuses in label order (the dense series of the finished counters).
FINISHED_JOB_STATUSES: tuple[str, ...] = ("completed", "failed", "partial", "cancelled")
TERMINAL_JOB_STATUSES: frozenset[str] = frozenset(FINISHED_JOB_STATUSES)
ACTIVE_JOB_STATUSES: tuple[str, ...] = ("pending", "running")

STEP_STATUSES: tuple[str, ...] = (
    "pending", "running", "success", "failed", "skipped", "blocked", "unknown",
)
FINISHED_STEP_STATUSES: tuple[str, ...] = ("success", "failed", "skipped")
TERMINAL_STEP_STATUSES: frozenset[str] = frozenset(FINISHED_STEP_STATUSES)



class PollReason(StrEnum):
    """Why a poll (or an org discovery) failed; the collector maps each to its label value.

    The values are what logs show; the exposition's label values live in the collector.
    """

    TIMEOUT = "timeout"
    CONNECT = "connect"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    DECODE = "decode"
    SCHEMA = "schema"  # the API changed shape
    TOO_LARGE = "too_large"  # an answer over max_response_bytes
    INTERNAL = "internal"  # a bug of the exporter itself (tracker or source code)


# The one vocabulary of `what` for invalid API items, for every source: an item
# (or one field of it) the API sent that the exporter left out or clamped, the poll succeeding.
INVALID_TIMESTAMP = "bad_timestamp"  # unparseable, no time zone, or finish before creation
INVALID_NUMBER = "bad_number"  # a count that is fractional, NaN, infinite, negative or huge
INVALID_PROGRESS = "bad_progress"  # progress of the wrong type
INVALID_DURATION = "bad_duration"  # duration of the wrong type
INVALID_ATTEMPT = "bad_attempt"  # step attempt counter of the wrong type
INVALID_ID = "bad_id"  # job id missing, of the wrong type or absurdly long: item left out
INVALID_ITEM = "bad_item"  # item of the wrong shape (or nested too deep): item left out
PROGRESS_OUT_OF_RANGE = "progress_out_of_range"  # progress outside 0..1: clamped
STATUS_UNRESOLVED = "status_unresolved"  # a finished job whose outcome the API no longer has
INVALID_ITEM_WHATS: tuple[str, ...] = (
    INVALID_TIMESTAMP, INVALID_NUMBER, INVALID_PROGRESS, INVALID_DURATION, INVALID_ATTEMPT,
    INVALID_ID, INVALID_ITEM, PROGRESS_OUT_OF_RANGE, STATUS_UNRESOLVED,
)
# Job ids longer than this are not ids but garbage (a 70 KB "id"); such items are left out.
# Long but sane ids (300 characters) stay: labels shorten them with a digest.
MAX_JOB_ID_LENGTH = 1024
# Raw unknown statuses are reported for logging once; keep them short.
MAX_RAW_STATUS = 40

# Set by an org's poll loop for the duration of a poll: called on every sign that the poll is
# progressing, so stall detection sees this org's own sign of life, not a sibling org's. The
# HTTP client calls it on every answer it gets (with a wait in seconds when the API asked it to
# hold back: Retry-After is an answer too, not a stall); the pacer (exporter/pacing.py) calls it
# at each pause of long local work (merging a million-job first sync), which is slow, not hung.
ON_PROGRESS: ContextVar[Callable[..., None] | None] = ContextVar("on_progress", default=None)


class PollError(Exception):
    """A poll failed for a PollReason; the message must carry no secret."""

    def __init__(self, reason: PollReason, message: str) -> None:
        try:
            checked = PollReason(reason)
        except ValueError:
            raise ValueError(f"unknown poll error reason {reason!r}") from None
        super().__init__(message)
        self.reason = checked


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

    # every job the poll looked at: new ones, changed ones, re-checked ones (a tuple, or a
    # packed sequence that builds each observation when iterated: sources/observed.py)
    jobs: Sequence[JobObservation]
    # True when `jobs` is the org's complete current list: known jobs missing from it are gone
    complete: bool
    # job ids that the API answered "not found" for (deleted / expired): drop them
    gone: tuple[str, ...] = ()
    # raw status strings that normalized to "unknown", for logging once per value
    unknown_statuses: tuple[str, ...] = ()
    # label values the source sanitized or rejected, for counting (reason -> count)
    notes: Mapping[str, int] = field(default_factory=dict)
    # with `complete`: ids the complete list showed beyond `jobs` (an amortized resync pass
    # read them over several polls); known jobs in neither are missing from this list
    listed: AbstractSet[str] = frozenset()


@dataclass(frozen=True, slots=True)
class KnownJob:
    """What the tracker remembers of a job, as sources need it for incremental polling."""

    job_id: str
    job_type: str
    status: str
    terminal: bool
    created_at: float | None = None  # with the id, the job's identity (Ordo ids get reused)


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

    def settled_id(self) -> str | None:
        """Return the longest-known job the last list showed, to test an empty list's word.

        An old job the lists kept showing is not one the API clears on its own (Vocdoni drops
        finished imports soon after they end), so "not found" for it means the jobs are gone.
        """
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
    timeout: float = 10.0  # seconds, per request attempt in total (connect, send, whole body)
    concurrency: int = 8  # max requests in flight
    max_requests_per_second: float = 5.0  # token bucket rate; fractional allowed
    retries: int = 3  # extra attempts on connect errors, timeouts, 502/503/504
    backoff_base: float = 0.5  # seconds; full jitter: sleep uniform(0, base * 2**attempt)
    backoff_max: float = 30.0
    user_agent: str = "asyncjob-exporter"
    max_response_bytes: int = 64 * 1024 * 1024  # per answer, after decompression
    max_retry_after: float = 600.0  # longest Retry-After honoured (seconds)


class Source(Protocol):
    """An API source: polls one org at a time; owns its HTTP client and request stats."""

    stats: RequestStats
    host: str  # the API's host, for log lines
    # the statuses this kind of API can produce, so status series are dense over those only
    job_statuses: tuple[str, ...]

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        """Poll one org; `full` asks for a complete re-list. Raises PollError."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP client."""
        ...


@runtime_checkable
class Discoverer(Protocol):
    """A source that can list the orgs its credentials see (`organizations: auto`)."""

    async def discover_orgs(self) -> list[str]:
        """Return the org addresses to poll. Raises PollError."""
        ...


@runtime_checkable
class TricklesResync(Protocol):
    """A source whose full re-list is read a budget of pages per poll (amortized resync)."""

    def plan_resync(self, target: OrgTarget, interval: float, due: bool) -> bool:
        """Set the org's page budget for the next poll; True when a new pass starts."""
        ...

    def resync_progress(self, target: OrgTarget) -> float | None:
        """Return how far the org's current pass has got (None: never planned)."""
        ...


@dataclass(frozen=True, slots=True)
class RequestStatsView:
    """Frozen copy of a source's request counters, for the collector."""

    # (endpoint, code) -> count; code: HTTP status ("200") or "timeout"/"connect_error"
    requests: Mapping[tuple[str, str], int]
    latency: Mapping[str, Histogram]  # endpoint template -> request latency (seconds)
    rate_limited: int
    # requests left in the API's own budget (X-RateLimit-Remaining / RateLimit-Remaining)
    rate_limit_remaining: float | None = None


class RequestStats:
    """Mutable request counters of one source; mutated on the event loop only.

    Latency is bucketed by the same accumulator as every other histogram; the bounds are
    injected (sources never choose them).
    """

    def __init__(self, latency_buckets: tuple[float, ...] = API_LATENCY_BUCKETS) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self._latency_buckets = latency_buckets
        self._latency: dict[str, HistogramAccumulator] = {}
        self.rate_limited = 0
        self.rate_limit_remaining: float | None = None  # set by sources whose API tells
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
        hist = self._latency.get(endpoint)
        if hist is None:
            hist = self._latency[endpoint] = HistogramAccumulator(self._latency_buckets)
        hist.observe(seconds)

    def total(self) -> int:
        """Return how many requests were made in all."""
        return self._total

    def view(self) -> RequestStatsView:
        """Return a frozen copy for the collector."""
        return RequestStatsView(
            requests=dict(self.requests),
            latency={ep: hist.freeze() for ep, hist in self._latency.items()},
            rate_limited=self.rate_limited,
            rate_limit_remaining=self.rate_limit_remaining,
        )
