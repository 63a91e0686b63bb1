"""Poll every (source, org) on its own asyncio loop and publish immutable snapshots.

The Scheduler composes three parts: the source pool (one API client per source), discovery
(`organizations: auto`) and the publisher (snapshot assembly and swap); it owns the org loops
and applies a config to all of them.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from exporter.config import Config, OrgConfig, SourceConfig
from exporter.discovery import Discovery, DiscoveryState, Parking
from exporter.orgloop import OrgLoop
from exporter.pool import Background, Build, SourcePool, build_source
from exporter.publish import Publisher
from exporter.sharding import Shard
from exporter.sources.base import OrgTarget, Source
from exporter.state.snapshot import ExporterSnapshot
from exporter.state.store import StateStore

log = structlog.get_logger()

Key = tuple[str, str]


def _build(cfg: SourceConfig) -> Source:
    """Build a client through this module's name, looked up per call (tests substitute it)."""
    return build_source(cfg)


class Scheduler:
    """Own the org loops; apply configs to the source pool, discovery and loops; publish."""

    def __init__(
        self,
        config: Config,
        *,
        on_update: Callable[[], object] = lambda: None,
        shard: Shard | None = None,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        build: Build | None = None,
    ) -> None:
        self.config = config
        self.shard = shard
        self.store = store
        self.clock = clock  # wall time: timestamps, health, parking
        self._monotonic = monotonic  # durations
        self._sleep = sleep  # interval waits, discovery retries, client retirement
        self._rng = rng or random.Random()  # jitter
        self._background = Background()
        self.pool = SourcePool(build or _build, self._background, sleep)
        self.loops: dict[Key, OrgLoop] = {}
        self.discoverer = Discovery(
            self.pool.sources, current=self._current_source, on_found=self._found,
            publish=self.publish, parking=Parking(store, clock), clock=clock, sleep=sleep,
            rng=self._rng,
        )
        self.publisher = Publisher(
            loops=self.loops, sources=self.pool.sources, discovery=self.discoverer.states,
            store=store, shard=shard, clock=clock, on_update=on_update,
        )
        self._running = False
        self._started = False  # /readyz is 503 until start() has created every org's loop

    # --- views of the parts ----------------------------------------------------
    @property
    def snapshot(self) -> ExporterSnapshot:
        """Return the latest published snapshot."""
        return self.publisher.snapshot

    @property
    def sources(self) -> dict[str, Source]:
        """Return the current API client of every source."""
        return self.pool.sources

    @property
    def discovery(self) -> dict[str, DiscoveryState]:
        """Return every `organizations: auto` source's discovery state."""
        return self.discoverer.states

    @property
    def synced_sequence(self) -> int:
        """Return the snapshot sequence /metrics must have rendered before /readyz says ready."""
        return self.publisher.synced_sequence

    @property
    def on_update(self) -> Callable[[], object]:
        """Return the callback told after every publish."""
        return self.publisher.on_update

    @on_update.setter
    def on_update(self, callback: Callable[[], object]) -> None:
        self.publisher.on_update = callback

    # --- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Create sources and start one loop per org (first poll at once)."""
        self._running = True
        self._apply(self.config)
        self._started = True
        self.publish()

    async def stop(self) -> None:
        """Cancel loops, close the state file, then the HTTP clients.

        State writes are synchronous (one transaction per poll, no await inside), so a cancelled
        poll never leaves half a batch: the file holds everything up to the last finished poll.
        """
        self._running = False
        self.discoverer.cancel_all()
        self._background.cancel()
        await asyncio.gather(*(loop.stop() for loop in self.loops.values()))
        if self.store is not None:
            self._final_save()
            self.store.close()
        await self.pool.close_all()

    def _final_save(self) -> None:
        """Retry every org's last save (a failing disk may have freed up) before closing."""
        held = [loop for loop in self.loops.values() if not loop.save()]
        if held:
            log.error("state_not_saved_at_shutdown",
                      effect="finishes not on file are counted after"
                      " the restart, none twice", orgs=len(held))

    async def poll_all_once(self) -> bool:
        """Poll every org once (the `once` command); True when every discovery and poll worked."""
        self._running = False
        self._apply(self.config)
        found = [await self.discoverer.discover(cfg) for cfg in self.config.sources
                 if cfg.organizations_auto]
        results = await asyncio.gather(*(loop.poll_once() for loop in self.loops.values()))
        self.publish()
        return all(found) and all(results)

    # --- reload ----------------------------------------------------------------
    async def reload(self, config: Config) -> None:
        """Switch to a validated config: unchanged orgs keep their state and loops."""
        self._apply(config)
        self.config = config
        self.publisher.reload_success = True
        self.publisher.reload_timestamp = self.clock()
        self.publish()

    def reload_failed(self) -> None:
        """Record a rejected reload; the old config keeps running."""
        self.publisher.reload_success = False  # the timestamp stays the last successful load
        self.publish()

    def _current_source(self, name: str) -> SourceConfig | None:
        """Return a source's settings in the running config (discovery re-reads them)."""
        return next((s for s in self.config.sources if s.name == name), None)

    def _apply(self, config: Config) -> None:
        """Make sources, discoveries and loops match `config`."""
        wanted = {s.name: s for s in config.sources}
        if self._running and config.state_path != self.config.state_path:
            log.warning("state_path_changed", effect="applies at the next restart",
                        path=self.config.state_path)
        for name in [n for n in self.pool.sources if n not in wanted]:
            self._drop_source(name)
        for name, cfg in wanted.items():
            if self.pool.ensure(cfg, self._running):
                self._client_replaced(cfg)
            if cfg.organizations_auto:
                self.discoverer.ensure(cfg, self._running)
            else:
                self.discoverer.stop(name)
            orgs = self.discoverer.orgs(name) if cfg.organizations_auto else cfg.orgs
            self._sync_orgs(cfg, orgs)

    def _client_replaced(self, cfg: SourceConfig) -> None:
        """Point a source's loops and discovery at its new client; orgs keep their state."""
        for key, loop in self.loops.items():
            if key[0] == cfg.name:
                loop.source = self.pool.sources[cfg.name]  # the next poll uses the new client
        self.discoverer.restart(cfg.name)

    def _drop_source(self, name: str) -> None:
        for key in [k for k in self.loops if k[0] == name]:
            self._drop_loop(key)
        self.discoverer.stop(name)
        self.pool.drop(name)

    # --- org loops -------------------------------------------------------------
    def _found(self, cfg: SourceConfig, orgs: tuple[OrgConfig, ...]) -> None:
        """Follow what discovery lists: orgs it stopped listing are parked, not forgotten."""
        self._sync_orgs(cfg, orgs, park=True)

    def _sync_orgs(self, cfg: SourceConfig, orgs: tuple[OrgConfig, ...],
                   park: bool = False) -> None:
        """Start, restart or drop loops to match `orgs`; `park` keeps dropped orgs' state."""
        wanted = {
            (cfg.name, o.label): o
            for o in orgs
            if self.shard is None or self.shard.owns(cfg.name, o.address)
        }
        addresses = {o.address for o in wanted.values()}  # state is keyed by address
        for key in [k for k in self.loops if k[0] == cfg.name and k not in wanted]:
            if park:
                self._park(key, cfg.full_resync_interval)
            else:
                self._drop_loop(key, keep_state=self.loops[key].target.address in addresses)
        for key, org in wanted.items():
            self._sync_org(cfg, key, org, addresses)

    def _sync_org(self, cfg: SourceConfig, key: Key, org: OrgConfig, addresses: set[str]) -> None:
        """Keep an unchanged org's loop; restart a changed one with its state; start a new one."""
        loop = self.loops.get(key)
        if loop is not None and loop.org_config == org:
            loop.source = self.pool.sources[cfg.name]
            return
        tracker, committed = None, None
        same_org = loop is not None and loop.target.address == org.address
        if loop is not None and same_org:
            tracker, committed = loop.tracker, loop.committed  # settings changed: keep
            self._drop_loop(key, keep_state=True)
        elif loop is not None:  # a new address under the same name is a new org
            self._drop_loop(key, keep_state=loop.target.address in addresses)
        else:
            tracker, committed = self.discoverer.parking.unpark(key, org.address)
        target = OrgTarget(cfg.name, org.label, org.address, org.job_types)
        new_loop = OrgLoop(target, org, self.pool.sources[cfg.name],
                           publish=functools.partial(self.publish_org, key),
                           store=self.store, clock=self.clock, monotonic=self._monotonic,
                           sleep=self._sleep, rng=self._rng, tracker=tracker,
                           committed=committed)
        if loop is not None and same_org:
            _carry_health(loop, new_loop)
        self.loops[key] = new_loop
        if self._running:
            new_loop.start()

    def _drop_loop(self, key: Key, keep_state: bool = False) -> None:
        loop = self.loops.pop(key)
        self._background.run(loop.stop())
        if not keep_state and self.store is not None:
            self.store.forget_org(key[0], loop.target.address)

    def _park(self, key: Key, keep_for: float) -> None:
        """Stop polling an org discovery no longer lists, keeping its state for `keep_for` s."""
        loop = self.loops[key]
        self._drop_loop(key, keep_state=True)
        self.discoverer.parking.park(key, loop.target.address, loop.tracker, loop.committed,
                                     keep_for)

    # --- snapshots -------------------------------------------------------------
    def publish(self, synced: bool = False) -> None:
        """Swap in a new snapshot; `synced` marks an org's first poll or first discovery."""
        self.publisher.publish(synced)

    def publish_org(self, key: Key, synced: bool = False) -> None:
        """Swap in a snapshot after one org's poll, refreshing only that org's entries."""
        self.publisher.publish_org(key, synced)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Return (ready, details): ready once every discovery succeeded and every org polled."""
        if not self._started:
            return False, {"ready": False, "starting": True, "missing": [], "orgs": 0}
        return self.publisher.readiness()


def _carry_health(old: OrgLoop, new: OrgLoop) -> None:
    """Hand an org's health over to its restarted loop: counters must not reset on reload."""
    new.errors = old.errors
    new.poll_hist = old.poll_hist
    new.up, new.last_success, new.last_full = old.up, old.last_success, old.last_full
    new.last_snapshot = old.last_snapshot
    new.completed = old.completed


__all__ = ["Scheduler", "build_source"]
