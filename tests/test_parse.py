"""Tests of exporter.sources.parse: the notes and the one timestamp policy every source uses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.sources import json_mapping, ordo_parse, vocdoni_parse
from exporter.sources.base import INVALID_ITEM, INVALID_TIMESTAMP, PollError
from exporter.sources.parse import ParseNotes, parse_time, read_time

T0 = datetime(2026, 2, 26, 12, 0, tzinfo=UTC).timestamp()


def test_every_source_shares_one_notes_class() -> None:
    assert vocdoni_parse.ParseNotes is ordo_parse.ParseNotes is json_mapping.MapNotes
    assert json_mapping.MapNotes is ParseNotes


@pytest.mark.parametrize(("raw", "flags", "expected"), [
    ("2026-02-26T12:00:00Z", {}, T0),
    ("2026-02-26T12:00:00.123456789+00:00", {}, T0 + 0.123456),
    ("2026-02-26T12:00:00", {"naive_utc": True}, T0),
    ("0001-01-01T00:00:00Z", {"go_zero": True}, None),
    ("", {"go_zero": True}, None),
    (T0 * 1000, {"epochs": True}, T0),
    (T0, {"epochs": True}, T0),
    (None, {}, None),
])
def test_read_time_policy(raw: object, flags: dict[str, bool], expected: float | None) -> None:
    assert read_time(raw, **flags) == expected


@pytest.mark.parametrize(("raw", "flags"), [
    ("2026-02-26T12:00:00", {}),  # no zone: the instant is unknowable
    (T0, {}),  # numbers only where the kind reads epochs
    (True, {"epochs": True}),
    (-5, {"epochs": True}),
    ("", {}),
    ("yesterday", {"naive_utc": True}),
])
def test_unreadable_time_is_counted_once(raw: object, flags: dict[str, bool]) -> None:
    notes = ParseNotes()
    assert parse_time(raw, notes, **flags) is None
    assert notes.counts == {INVALID_TIMESTAMP: 1}


def test_notes_keep_unknown_statuses_once_in_order_and_count_drops() -> None:
    notes = ParseNotes()
    for raw in ("zeta", "alpha", "zeta", "x" * 100):
        notes.unknown(raw)
    assert list(notes.unknown_statuses) == ["zeta", "alpha", "x" * 40]
    error = PollError("schema", "bad item")
    notes.drop(error)
    notes.drop()
    assert (notes.dropped, notes.counts[INVALID_ITEM], notes.last_error) == (2, 2, error)
