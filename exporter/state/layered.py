"""An immutable mapping whose one-entry update costs O(sqrt n), not a copy of n entries.

Every org's poll publishes a new snapshot with that org's entry replaced. Copying a
10,000-entry dict per poll costs a cycle 10,000 x 10,000 entry copies; a small top layer over
a shared base that is merged in only once the top grows past sqrt(n) costs O(sqrt n) a poll.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

MIN_TOP = 32  # entries the top layer holds before merging, whatever the size


class LayeredMap(Mapping[K, V]):
    """A base dict and a small top dict, both never mutated once the map is built."""

    __slots__ = ("_base", "_len", "_top")

    def __init__(self, base: Mapping[K, V] | None = None) -> None:
        self._base: dict[K, V] = dict(base or {})
        self._top: dict[K, V] = {}
        self._len = len(self._base)

    def replaced(self, key: K, value: V) -> LayeredMap[K, V]:
        """Return a map with `key` set to `value`; this one is left as it was."""
        out: LayeredMap[K, V] = LayeredMap.__new__(LayeredMap)
        grows = key not in self
        if len(self._top) >= max(MIN_TOP, math.isqrt(len(self._base))):
            out._base = {**self._base, **self._top, key: value}
            out._top = {}
        else:
            out._base = self._base  # shared, never written
            out._top = {**self._top, key: value}
        out._len = self._len + grows
        return out

    def __getitem__(self, key: K) -> V:
        top = self._top
        if key in top:
            return top[key]
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._top or key in self._base

    def __iter__(self) -> Iterator[K]:
        top = self._top
        yield from (key for key in self._base if key not in top)
        yield from top

    def __len__(self) -> int:
        return self._len
