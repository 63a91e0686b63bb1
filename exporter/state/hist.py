"""Mutable histogram accumulator that freezes into snapshot Histograms."""

from __future__ import annotations

import bisect

from exporter.state.snapshot import Exemplar, Histogram


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
