"""Assemble the immutable ExporterSnapshot from every part and swap it in; answer readiness."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from exporter.discovery import DiscoveryState
from exporter.orgloop import OrgLoop
from exporter.sharding import Shard
from exporter.sources.base import Source
from exporter.state.layered import LayeredMap
from exporter.state.snapshot import ExporterSnapshot, OrgHealth, OrgSnapshot
from exporter.state.store import StateStore

Key = tuple[str, str]
T = TypeVar("T")


class Publisher:
    """Number and swap in snapshots; remember which one completed the first sync.

    Every publish gets the next sequence number. The publish of an org's first poll or of a
    source's first discovery is a sync: /readyz waits until the render cache has rendered a
    snapshot at least that recent, so a pod is never ready while /metrics still lacks an org.
    """

    def __init__(
        self,
        *,
        loops: Mapping[Key, OrgLoop],
        sources: Mapping[str, Source],
        discovery: Mapping[str, DiscoveryState],
        store: StateStore | None = None,
        shard: Shard | None = None,
        clock: Callable[[], float] = time.time,
        on_update: Callable[[], object] = lambda: None,
    ) -> None:
        self._loops = loops
        self._sources = sources
        self._discovery = discovery
        self._store = store
        self._shard = shard.as_tuple() if shard else None
        self._clock = clock
        self.on_update = on_update  # told after every swap (the render cache invalidates)
        self.snapshot = ExporterSnapshot(shard=self._shard)
        self.synced_sequence = 0  # sequence of the latest first poll or first discovery
        self.stalled: tuple[str, ...] = ()
        self.reload_success = True
        self.reload_timestamp = clock()

    def publish(self, synced: bool = False) -> None:
        """Swap in a new immutable snapshot built from every loop's latest state."""
        orgs, health, stalled = self._orgs(self._clock())
        sequence = self.snapshot.sequence + 1
        self.snapshot = ExporterSnapshot(
            orgs=orgs,
            health=health,
            requests={name: src.stats.view() for name, src in self._sources.items()},
            reload_success=self.reload_success,
            reload_timestamp=self.reload_timestamp,
            shard=self._shard,
            state_persistent=self._store.persistent if self._store else None,
            state_write_errors=self._store.write_errors if self._store else None,
            discovery={name: state.health() for name, state in self._discovery.items()},
            sequence=sequence,
        )
        self.stalled = stalled
        if synced:
            self.synced_sequence = sequence
        self.on_update()

    def publish_org(self, key: Key, synced: bool = False) -> None:
        """Swap in a snapshot after one org's poll, refreshing only that org's entries.

        A full publish walks every org: with one publish per poll that made a cycle cost orgs
        squared (1,000 orgs: a million health checks); so did copying the org maps, hence the
        LayeredMap. Stalls of the other orgs are published by the full publishes (the
        watchdog's, when one starts or ends).
        """
        loop = self._loops.get(key)
        prev = self.snapshot
        if loop is None or key not in prev.health:
            self.publish(synced)
            return
        now = self._clock()
        orgs = _layered(prev.orgs)
        if loop.last_snapshot is not None:
            orgs = orgs.replaced(key, loop.last_snapshot)
        is_stalled = loop.stalled(now)
        health = _layered(prev.health).replaced(key, loop.health(now, is_stalled))
        if not is_stalled:
            self.stalled = tuple(s for s in self.stalled if s != f"{key[0]}/{key[1]}")
        sequence = prev.sequence + 1
        self.snapshot = dataclasses.replace(
            prev, orgs=orgs, health=health,
            requests={name: src.stats.view() for name, src in self._sources.items()},
            state_persistent=self._store.persistent if self._store else None,
            state_write_errors=self._store.write_errors if self._store else None,
            sequence=sequence,
        )
        if synced:
            self.synced_sequence = sequence
        self.on_update()

    def _orgs(self, now: float) -> tuple[dict[Key, OrgSnapshot], dict[Key, OrgHealth],
                                           tuple[str, ...]]:
        """Collect every loop's last data and health; ask each loop once whether it stalled."""
        orgs: dict[Key, OrgSnapshot] = {}
        health: dict[Key, OrgHealth] = {}
        stalled: list[str] = []
        for key, loop in self._loops.items():
            if loop.last_snapshot is not None:
                orgs[key] = loop.last_snapshot
            is_stalled = loop.stalled(now)
            health[key] = loop.health(now, is_stalled)
            if is_stalled:
                stalled.append(f"{key[0]}/{key[1]}")
        return orgs, health, tuple(stalled)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Return (ready, details) from the latest snapshot: every discovery and org synced.

        Every `organizations: auto` source had a successful discovery (else its orgs are not
        even known) and every org's first poll completed, successfully or not. An org that
        never succeeds reads asyncjob_up 0 instead of holding a rolling update forever; orgs
        down now (failed polls, or stalled) are listed.
        """
        snap = self.snapshot
        discovering = sorted(n for n, d in self._discovery.items() if not d.succeeded_once)
        missing = [f"{s}/{o}" for (s, o), h in snap.health.items() if not h.polled]
        down = [f"{s}/{o}" for (s, o), h in snap.health.items() if h.polled and not h.up]
        ready = not missing and not discovering
        return ready, {"ready": ready, "missing": missing, "down": down,
                       "discovering": discovering, "stalled": list(self.stalled),
                       "orgs": len(snap.health)}


def _layered(entries: Mapping[Key, T]) -> LayeredMap[Key, T]:
    """Return `entries` as a LayeredMap, so replacing one org's entry copies few others."""
    return entries if isinstance(entries, LayeredMap) else LayeredMap(entries)
