"""Turn the collector's Family rows into prometheus_client metric families.

The collector's FAMILIES table says what the contract holds; this module only knows how a row
becomes a sample (histogram buckets, exemplars) and knows no metric by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar as PromExemplar
from prometheus_client.utils import floatToGoString as _float_to_go

from exporter.state.labels import exemplar_labels
from exporter.state.snapshot import ExporterSnapshot, Histogram

Labels = tuple[str, ...]
Value = float | Histogram
Row = tuple[Labels, Value]
SnapRows = Callable[[ExporterSnapshot, float], Iterable[Row]]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family of the contract: name, type, help, labels and where its rows come from."""

    name: str  # counters without _total: the library appends it
    kind: str  # gauge | counter | histogram
    help: str
    labels: tuple[str, ...]
    rows: SnapRows
    optional: bool = False  # leave the family out entirely when it has no series


def _buckets(hist: Histogram) -> list[tuple[str, float] | tuple[str, float, PromExemplar]]:
    """Return a Histogram as the library's bucket list, with exemplars where known."""
    out: list[tuple[str, float] | tuple[str, float, PromExemplar]] = []
    to_go: Callable[[float], str] = _float_to_go
    bounds = (*hist.bounds, math.inf)
    for index, (bound, count) in enumerate(zip(bounds, hist.counts, strict=False)):
        ex = hist.exemplars.get(index)
        labels = None if ex is None else exemplar_labels(ex.job_id)
        if ex is None or labels is None:
            out.append((to_go(bound), float(count)))
        else:
            prom = PromExemplar(labels, ex.value, ex.timestamp)
            out.append((to_go(bound), float(count), prom))
    return out


def new_family(fam: Family) -> Metric:
    """Return an empty library family matching `fam`."""
    labels = list(fam.labels)
    if fam.kind == "counter":
        return CounterMetricFamily(fam.name, fam.help, labels=labels)
    if fam.kind == "histogram":
        return HistogramMetricFamily(fam.name, fam.help, labels=labels)
    return GaugeMetricFamily(fam.name, fam.help, labels=labels)


def build_family(fam: Family, snap: ExporterSnapshot, now: float) -> Metric | None:
    """Return `fam` filled from `snap`; None when optional and without series."""
    metric = new_family(fam)
    for labels, value in fam.rows(snap, now):
        if isinstance(value, Histogram):
            if not value.counts:
                continue
            assert isinstance(metric, HistogramMetricFamily)
            metric.add_metric(list(labels), _buckets(value), value.sum)
        else:
            assert isinstance(metric, CounterMetricFamily | GaugeMetricFamily)
            metric.add_metric(list(labels), value)
    return None if fam.optional and not metric.samples else metric
