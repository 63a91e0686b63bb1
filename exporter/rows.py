"""Snapshot-to-rows adapters the collector's family table is built from; they name no metric.

Rows of per_org/per_health functions are one org's each, so a render can reuse an unchanged
org's encoded lines (exporter/fragments.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from exporter.exposition import Labels, Row, SnapRows
from exporter.state.snapshot import ExporterSnapshot, Histogram, OrgHealth, OrgSnapshot

OrgRows = Callable[[OrgSnapshot, float], Iterable[Row]]
HealthRows = Callable[[OrgHealth], Iterable[Row]]


def age(now: float, since: float) -> float:
    """Return how long ago `since` was, never negative (clock skew with the API)."""
    return max(0.0, now - since)


def label_key(key: str | Labels) -> Labels:
    """Return a mapping key as a label tuple (some snapshot maps are keyed by a bare string)."""
    return key if isinstance(key, tuple) else (key,)


def dense(
    keys: Iterable[Labels], values: Sequence[str], data: Mapping[Any, float]
) -> Iterator[Row]:
    """Yield every key x value combination, 0 where `data` has none, so no series freezes."""
    for key in keys:
        for value in values:
            yield (*key, value), float(data.get((*key, value), 0))


def present(data: Mapping[Any, Any]) -> Iterator[Row]:
    """Yield only the entries `data` holds, in sorted label order for stable output."""
    for key in sorted(data):
        value = data[key]
        yield label_key(key), value if isinstance(value, Histogram) else float(value)


def ages_of(data: Mapping[Any, float], now: float) -> Iterator[Row]:
    """Yield now - timestamp per entry, so ages keep growing between polls."""
    for key in sorted(data):
        yield label_key(key), age(now, data[key])


# Row functions made by per_org/per_health: their rows are one org's each, so a render can
# reuse an unchanged org's encoded lines (exporter/fragments.py). AGING: those whose values
# depend on the render time (ages), re-encoded every render for the orgs that have rows.
SCOPES: dict[SnapRows, str] = {}
AGING: set[SnapRows] = set()


def per_org(rows: OrgRows, ages: bool = False) -> SnapRows:
    """Run `rows` for every org snapshot, prefixing each row with (source, org)."""

    def gen(snap: ExporterSnapshot, now: float) -> Iterator[Row]:
        for key in sorted(snap.orgs):
            org = snap.orgs[key]
            for labels, value in rows(org, now):
                yield (org.source, org.org, *labels), value

    SCOPES[gen] = "org"
    if ages:
        AGING.add(gen)
    return gen


def per_health(rows: HealthRows) -> SnapRows:
    """Run `rows` for every org's poll health, prefixing each row with (source, org)."""

    def gen(snap: ExporterSnapshot, now: float) -> Iterator[Row]:
        for key in sorted(snap.health):
            health = snap.health[key]
            for labels, value in rows(health):
                yield (health.source, health.org, *labels), value

    SCOPES[gen] = "health"
    return gen
