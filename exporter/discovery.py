"""Health and membership of one source's `organizations: auto` discovery.

A discovery that fails must be as visible as a failed poll (a metric, a readiness answer, an exit
code) and must be retried soon, not one discovery interval later. A discovery that answers without
an org is not taken at its word at once: an API that lists nothing for one call (a deploy, a
replica behind) would otherwise drop the org with its state and lose the jobs that finish
meanwhile.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from exporter.sources.base import PollError, PollReason
from exporter.state.snapshot import DiscoveryHealth

# Seconds between `organizations: auto` refreshes; a source's full_resync_interval, when shorter,
# wins (both are "notice what was added or removed upstream").
DISCOVERY_INTERVAL = 300.0
BACKOFF_START = 2.0  # first retry after a failed discovery; doubles up to the interval
MISSES_TO_DROP = 2  # consecutive successful discoveries that must lack an org to drop it


def error_reason(exc: BaseException) -> PollReason:
    """Return the poll error reason a failed discovery is counted under."""
    return exc.reason if isinstance(exc, PollError) else PollReason.INTERNAL


@dataclass(slots=True)
class DiscoveryState:
    """One source's discovery: health counters, retry backoff and org membership."""

    source: str
    up: bool = False
    last_success: float | None = None
    errors: Counter[PollReason] = field(default_factory=Counter)
    failures: int = 0  # consecutive failed discoveries (backoff)
    misses: dict[str, int] = field(default_factory=dict)  # address -> successes lacking it

    @property
    def succeeded_once(self) -> bool:
        """Tell whether any discovery of this source succeeded (readiness)."""
        return self.last_success is not None

    def failed(self, reason: PollReason) -> None:
        """Count a failed discovery; the orgs found before keep being polled."""
        self.up = False
        self.failures += 1
        self.errors[reason] += 1

    def succeeded(self, addresses: set[str], now: float) -> set[str]:
        """Record an answer; return the addresses to poll (those missing only once stay)."""
        self.up = True
        self.failures = 0
        self.last_success = now
        for address in list(self.misses):
            if address not in addresses:
                self.misses[address] += 1
                if self.misses[address] >= MISSES_TO_DROP:
                    del self.misses[address]
        for address in addresses:
            self.misses[address] = 0
        return set(self.misses)

    def next_delay(self, interval: float) -> float:
        """Return seconds until the next discovery: backoff after failures, else the interval."""
        if self.failures:
            return min(interval, BACKOFF_START * 2.0 ** min(self.failures - 1, 30))
        return interval * random.uniform(0.9, 1.1)

    def health(self) -> DiscoveryHealth:
        """Return an immutable view for the snapshot."""
        return DiscoveryHealth(self.source, self.up, self.last_success, dict(self.errors))
