"""Tests of exporter.state.hist: the histogram accumulator."""

from __future__ import annotations

from exporter.state.hist import HistogramAccumulator


def test_histogram_freeze_is_cached_until_the_next_observation() -> None:
    """freeze() returns the same object while nothing changed, a fresh one after observe()."""
    hist = HistogramAccumulator((1.0, 2.0))
    hist.observe(0.5)
    first = hist.freeze()
    assert hist.freeze() is first
    hist.observe(1.5, "job", 1.0)
    second = hist.freeze()
    assert second is not first and second.counts == (1, 2, 2) and first.counts == (1, 1, 1)
