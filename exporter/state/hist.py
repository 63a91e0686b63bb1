"""Histograms: the frozen form snapshots carry and the mutable accumulator that builds it.

Every histogram of the exporter (job and step durations, poll durations, API request latency)
is accumulated here, so they all bucket alike. Nothing here imports the rest of the exporter:
sources record their request latency with it too.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

# Bounds of API request latency (seconds): the API answers in ms, slow pages in seconds.
# Handed to every source's RequestStats, so no source picks its own.
API_LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


@dataclass(frozen=True, slots=True)
class Exemplar:
    """An OpenMetrics exemplar: which job produced an observation."""

    job_id: str
    value: float
    timestamp: float


@dataclass(frozen=True, slots=True)
class Histogram:
    """Frozen histogram data; `counts` are cumulative per bound, last entry is +Inf (= count)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    exemplars: Mapping[int, Exemplar] = field(default_factory=dict)  # bucket index -> exemplar

    @property
    def count(self) -> int:
        """Return the number of observations."""
        return self.counts[-1] if self.counts else 0


class HistogramAccumulator:
    """Count observations per bucket; freeze() gives the cumulative, immutable form."""

    __slots__ = ("_bounds", "_counts", "_exemplars", "_frozen", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        self._exemplars: dict[int, Exemplar] = {}
        # freeze() runs for every org on every publish; most histograms did not change since.
        self._frozen: Histogram | None = None

    def observe(self, value: float, job_id: str | None = None, at: float = 0.0) -> None:
        """Add one observation; the latest job per bucket becomes its exemplar."""
        index = bisect.bisect_left(self._bounds, value)
        self._frozen = None
        self._counts[index] += 1
        self._sum += value
        if job_id is not None:
            self._exemplars[index] = Exemplar(job_id=job_id, value=value, timestamp=at)

    @property
    def count(self) -> int:
        """Return the number of observations."""
        return sum(self._counts)

    def freeze(self) -> Histogram:
        """Return an immutable cumulative copy (the same object until the next observe)."""
        if self._frozen is not None:
            return self._frozen
        cumulative: list[int] = []
        running = 0
        for c in self._counts:
            running += c
            cumulative.append(running)
        self._frozen = Histogram(
            bounds=self._bounds,
            counts=tuple(cumulative),
            sum=self._sum,
            exemplars=dict(self._exemplars),
        )
        return self._frozen
