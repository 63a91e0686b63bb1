"""Tests of the snapshot-to-rows adapters the collector's family table uses."""

from __future__ import annotations

from exporter.rows import AGING, SCOPES, ages_of, dense, per_health, per_org, present
from exporter.state.snapshot import ExporterSnapshot, Histogram


def test_dense_fills_every_combination_with_zero_so_no_series_freezes() -> None:
    rows = list(dense([("a",), ("b",)], ("ok", "bad"), {("a", "bad"): 2}))
    assert rows == [(("a", "ok"), 0.0), (("a", "bad"), 2.0), (("b", "ok"), 0.0),
                    (("b", "bad"), 0.0)]


def test_present_sorts_keys_and_keeps_histograms_as_they_are() -> None:
    hist = Histogram(bounds=(1.0,), counts=(1, 1), sum=0.5)
    rows = list(present({"z": 1, "a": hist}))
    assert rows == [(("a",), hist), (("z",), 1.0)]


def test_ages_grow_with_now_and_are_never_negative() -> None:
    assert list(ages_of({"x": 100.0, "y": 130.0}, 120.0)) == [(("x",), 20.0), (("y",), 0.0)]


def test_per_org_and_per_health_register_their_scope_and_only_asked_ones_age() -> None:
    plain = per_org(lambda org, now: [])
    aging = per_org(lambda org, now: [], ages=True)
    health = per_health(lambda h: [])
    assert (SCOPES[plain], SCOPES[aging], SCOPES[health]) == ("org", "org", "health")
    assert aging in AGING and plain not in AGING and health not in AGING
    assert list(plain(ExporterSnapshot(), 0.0)) == []
