"""Respect an API's own request budget as its headers tell (GitHub, GitLab)."""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx
import structlog

from exporter.sources.base import PollError, PollReason, RequestStats
from exporter.sources.http import ApiClient, ApiResponse
from exporter.sources.http_status import status_error

log = structlog.get_logger()
# Keep this many requests of the budget in hand: other clients may share the token.
RESERVE = 1
# A reset value below this is a delay in seconds (RateLimit-Reset draft), above it an epoch.
EPOCH_THRESHOLD = 1e9
MAX_PAUSE = 3600.0


def _number(headers: httpx.Headers, *names: str) -> float | None:
    """Return the first header of `names` that holds a finite number >= 0."""
    for name in names:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw.strip())
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


class RateLimitWatch:
    """Record the remaining budget and pause every request until reset when it runs out."""

    def __init__(self, client: ApiClient, stats: RequestStats,
                 clock: Callable[[], float]) -> None:
        self._client = client
        self._stats = stats
        self._clock = clock

    def observe(self, headers: httpx.Headers) -> None:
        """Read X-RateLimit-* or RateLimit-* of one answer."""
        remaining = _number(headers, "X-RateLimit-Remaining", "RateLimit-Remaining")
        if remaining is None:
            return
        self._stats.rate_limit_remaining = remaining
        if remaining > RESERVE:
            return
        reset = _number(headers, "X-RateLimit-Reset", "RateLimit-Reset")
        if reset is None:
            return
        wait = reset if reset < EPOCH_THRESHOLD else reset - self._clock()
        wait = min(MAX_PAUSE, max(0.0, wait))
        if wait > 0:
            self._client.pause(wait)
            log.warning("api_budget_nearly_spent", remaining=remaining, pause=round(wait, 1))

    def forbidden(self, response: ApiResponse, endpoint: str) -> PollError:
        """Tell GitHub's 403 for a spent budget (remaining 0) from a permission error."""
        remaining = _number(response.headers, "X-RateLimit-Remaining", "RateLimit-Remaining")
        if remaining == 0:
            self._stats.rate_limited += 1
            return PollError(PollReason.RATE_LIMITED,
                             f"GET {endpoint} answered 403: rate limit spent")
        return status_error("GET", endpoint, 403, response.text)
