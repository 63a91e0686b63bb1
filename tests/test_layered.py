"""LayeredMap: behaves as the dict it stands for, and never changes a map already published."""

from __future__ import annotations

import random

import pytest

from exporter.state.layered import LayeredMap


def test_a_long_run_of_updates_reads_like_a_dict_and_leaves_older_maps_untouched() -> None:
    rng = random.Random(7)
    truth: dict[int, int] = {n: n for n in range(500)}
    current: LayeredMap[int, int] = LayeredMap(truth)
    history: list[tuple[LayeredMap[int, int], dict[int, int]]] = []
    for step in range(5000):
        key = rng.randrange(700)  # some keys are new
        current = current.replaced(key, step)
        truth[key] = step
        if step % 250 == 0:
            history.append((current, dict(truth)))
    assert current == truth and len(current) == len(truth)
    assert sorted(current) == sorted(truth) and len(list(current)) == len(truth)
    assert 699 not in current or current[699] == truth[699]
    for old, expected in history:  # published snapshots keep what they showed
        assert dict(old) == expected and len(old) == len(expected)


def test_one_update_copies_about_sqrt_n_entries_not_n() -> None:
    """The point of the map: 10,000 publishes at 10,000 orgs must not copy 10^8 entries."""
    current: LayeredMap[int, int] = LayeredMap({n: n for n in range(10_000)})
    merges = 0
    for step in range(10_000):
        before = current._base
        current = current.replaced(step, -step)
        merges += current._base is not before
        assert len(current._top) <= 100
    assert merges <= 10_000 // 100 + 1  # a full copy once every sqrt(n) updates at most
    assert current == {n: -n for n in range(10_000)}


def test_a_missing_key_raises_key_error() -> None:
    current: LayeredMap[str, int] = LayeredMap({"a": 1}).replaced("b", 2)
    assert current.get("c") is None and current["b"] == 2 and current["a"] == 1
    with pytest.raises(KeyError):
        current["c"]
