"""Poll every (source, org) on its own asyncio loop and publish immutable snapshots."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from exporter.config import Config, OrgConfig, SourceConfig
from exporter.discovery import DISCOVERY_INTERVAL, DiscoveryState, error_reason
from exporter.orgloop import OrgLoop
from exporter.sharding import Shard
from exporter.sources.base import Discoverer, OrgTarget, Source
from exporter.sources.registry import spec_of
from exporter.state.snapshot import ExporterSnapshot, OrgHealth, OrgSnapshot
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker

log = structlog.get_logger()

Key = tuple[str, str]
RETIRE_GRACE = 60.0  # seconds a replaced HTTP client stays open for polls still using it


def discovery_interval(cfg: SourceConfig) -> float:
    """Return how often a source's organizations are rediscovered."""
    return min(DISCOVERY_INTERVAL, cfg.full_resync_interval)


def build_source(cfg: SourceConfig) -> Source:
    """Create the API client of one configured source."""
    return spec_of(cfg.kind).build(cfg)


def _source_identity(cfg: SourceConfig) -> tuple[Any, ...]:
    """Return what forces a new HTTP client when it changes on reload."""
    return spec_of(cfg.kind).identity(cfg)


class Scheduler:
    """Own the sources and org loops; swap a new ExporterSnapshot in after every poll."""

    def __init__(
        self,
        config: Config,
        *,
        on_update: Callable[[], int | None] = lambda: None,
        shard: Shard | None = None,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._sleep = sleep  # discovery retries; injectable so tests run on a fake clock
        self.on_update = on_update
        self.shard = shard
        self.store = store
        self.clock = clock
        self.sources: dict[str, Source] = {}
        self._identities: dict[str, tuple[Any, ...]] = {}
        self.loops: dict[tuple[str, str], OrgLoop] = {}
        self._discovery: dict[str, asyncio.Task[None]] = {}
        self._discovered: dict[str, tuple[OrgConfig, ...]] = {}
        self.discovery: dict[str, DiscoveryState] = {}
        # orgs that discovery stopped listing: tracker and expiry, in case they come back
        self._parked: dict[Key, tuple[OrgLoop, float]] = {}
        self.reload_success = True
        self.reload_timestamp = clock()
        self.snapshot = ExporterSnapshot(shard=shard.as_tuple() if shard else None)
        self._running = False
        self._started = False  # /readyz is 503 until start() has created every org's loop
        self.synced_generation = 0  # update generation of the latest first poll or discovery
        self._retired: set[Source] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stalled: tuple[str, ...] = ()

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
        for task in self._discovery.values():
            task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(loop.stop() for loop in self.loops.values()))
        if self.store is not None:
            self._final_save()
            self.store.close()
        for source in [*self.sources.values(), *self._retired]:
            try:
                await source.aclose()
            except Exception as exc:  # closing must not keep the process from exiting
                log.warning("client_close_failed", error=type(exc).__name__)

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
        found = [await self._discover(cfg) for cfg in self.config.sources
                 if cfg.organizations_auto]
        results = await asyncio.gather(*(loop.poll_once() for loop in self.loops.values()))
        self.publish()
        return all(found) and all(results)

    # --- reload ----------------------------------------------------------------
    async def reload(self, config: Config) -> None:
        """Switch to a validated config: unchanged orgs keep their state and loops."""
        self._apply(config)
        self.config = config
        self.reload_success = True
        self.reload_timestamp = self.clock()
        self.publish()

    def reload_failed(self) -> None:
        """Record a rejected reload; the old config keeps running."""
        self.reload_success = False  # reload_timestamp stays the last successful (re)load
        self.publish()

    def _sources_by_name(self, config: Config) -> dict[str, SourceConfig]:
        return {s.name: s for s in config.sources}

    def _apply(self, config: Config) -> None:
        wanted = self._sources_by_name(config)
        if self._running and config.state_path != self.config.state_path:
            log.warning("state_path_changed", effect="applies at the next restart",
                        path=self.config.state_path)
        for name in list(self.sources):
            if name not in wanted:
                self._drop_source(name)
        for name, cfg in wanted.items():
            if name not in self.sources:
                self.sources[name] = build_source(cfg)
                self._identities[name] = _source_identity(cfg)
            elif _source_identity(cfg) != self._identities[name]:
                self._replace_source(cfg)
            if cfg.organizations_auto:
                self._ensure_discovery(cfg)
            else:
                self._stop_discovery(name)
            orgs = self._discovered.get(name, ()) if cfg.organizations_auto else cfg.orgs
            self._sync_orgs(cfg, orgs)

    def _replace_source(self, cfg: SourceConfig) -> None:
        """Swap in a new HTTP client (credentials, URL, limits changed); orgs keep their state."""
        old = self.sources[cfg.name]
        self.sources[cfg.name] = build_source(cfg)
        self._identities[cfg.name] = _source_identity(cfg)
        for key, loop in self.loops.items():
            if key[0] == cfg.name:
                loop.source = self.sources[cfg.name]  # the next poll uses the new client
        task = self._discovery.pop(cfg.name, None)
        if task is not None:
            task.cancel()
        self._close_later(old)
        log.info("source_client_replaced", source=cfg.name)

    def _close_later(self, source: Source) -> None:
        """Close a replaced client once polls still using it had time to finish."""
        async def close() -> None:
            try:
                await asyncio.sleep(RETIRE_GRACE)
            finally:
                self._retired.discard(source)
                await source.aclose()

        self._retired.add(source)
        if self._running:
            self._bg(close())

    def _bg(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a housekeeping coroutine, keeping a reference so it is not garbage-collected."""
        task = asyncio.get_event_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop_source(self, name: str) -> None:
        for key in [k for k in self.loops if k[0] == name]:
            self._drop_loop(key)
        self._stop_discovery(name)
        source = self.sources.pop(name)
        self._identities.pop(name, None)
        self._bg(source.aclose())

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
            loop = self.loops.get(key)
            if loop is not None and loop.org_config == org:
                loop.source = self.sources[cfg.name]
                continue
            tracker, committed = None, None
            if loop is not None and loop.target.address == org.address:
                tracker, committed = loop.tracker, loop.committed  # settings changed: keep
                self._drop_loop(key, keep_state=True)
            elif loop is not None:  # a new address under the same name is a new org
                self._drop_loop(key, keep_state=loop.target.address in addresses)
            else:
                tracker, committed = self._unpark(key, org.address)
            target = OrgTarget(cfg.name, org.label, org.address, org.job_types)
            new_loop = OrgLoop(target, org, self.sources[cfg.name],
                               publish=functools.partial(self.publish_org, key),
                               store=self.store, clock=self.clock, tracker=tracker,
                               committed=committed)
            if loop is not None and loop.target.address == org.address:
                _carry_health(loop, new_loop)
            self.loops[key] = new_loop
            if self._running:
                new_loop.start()

    def _drop_loop(self, key: Key, keep_state: bool = False) -> None:
        loop = self.loops.pop(key)
        self._bg(loop.stop())
        if not keep_state and self.store is not None:
            self.store.forget_org(key[0], loop.target.address)

    def _park(self, key: Key, keep_for: float) -> None:
        """Stop polling an org discovery no longer lists, keeping its state for `keep_for` s."""
        loop = self.loops[key]
        self._drop_loop(key, keep_state=True)
        self._parked[key] = (loop, self.clock() + keep_for)
        log.info("discovered_org_parked", source=key[0], org=key[1], keep_for=keep_for)

    def _expire_parked(self, source: str, everything: bool = False) -> None:
        """Forget parked orgs whose grace is over (or all of a source being dropped)."""
        now = self.clock()
        for key, (loop, until) in list(self._parked.items()):
            if key[0] == source and (everything or until <= now):
                del self._parked[key]
                if self.store is not None:
                    self.store.forget_org(source, loop.target.address)

    def _unpark(self, key: Key, address: str) -> tuple[OrgTracker | None, OrgSnapshot | None]:
        """Return a parked org's tracker and committed counters when discovery lists it again."""
        parked = self._parked.pop(key, None)
        if parked is None or parked[0].target.address != address:
            return None, None
        return parked[0].tracker, parked[0].committed

    # --- organizations: auto ---------------------------------------------------
    def _ensure_discovery(self, cfg: SourceConfig) -> None:
        if isinstance(self.sources.get(cfg.name), Discoverer):
            self.discovery.setdefault(cfg.name, DiscoveryState(cfg.name))
        if cfg.name in self._discovery or not self._running:
            return
        name = cfg.name

        async def refresh() -> None:
            while True:
                current = self._sources_by_name(self.config).get(name, cfg)
                await self._discover(current)
                state = self.discovery.get(name)
                delay = discovery_interval(current)
                await self._sleep(state.next_delay(delay) if state else delay)

        self._discovery[name] = asyncio.get_event_loop().create_task(refresh())

    def _stop_discovery(self, name: str) -> None:
        """Stop a source's discovery (source removed, or orgs now listed in the config)."""
        task = self._discovery.pop(name, None)
        if task is not None:
            task.cancel()
        self._discovered.pop(name, None)
        self.discovery.pop(name, None)
        self._expire_parked(name, everything=True)

    async def _discover(self, cfg: SourceConfig) -> bool:
        """Refresh a source's orgs once; return False when the discovery failed."""
        source = self.sources.get(cfg.name)
        if not isinstance(source, Discoverer):
            return True
        discover = source.discover_orgs
        state = self.discovery.setdefault(cfg.name, DiscoveryState(cfg.name))
        try:
            addresses: list[str] = await discover()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the orgs we had; the loops report their own health
            state.failed(error_reason(exc))
            log.warning("org_discovery_failed", source=cfg.name, host=getattr(source, "host", None),
                        reason=error_reason(exc), error=type(exc).__name__,
                        failures=state.failures)
            self.publish()
            return False
        first = not state.succeeded_once
        orgs = []
        for address in sorted(state.succeeded(set(addresses), self.clock())):
            try:
                orgs.append(cfg.discovered_org(address))
            except ValueError:
                log.warning("discovered_org_ignored", source=cfg.name, reason="bad address")
        self._expire_parked(cfg.name)
        found = tuple(orgs)
        if found != self._discovered.get(cfg.name):
            log.info("orgs_discovered", source=cfg.name, orgs=len(found))
            self._discovered[cfg.name] = found
            self._sync_orgs(cfg, found, park=True)
        self.publish(synced=first)
        return True

    # --- snapshots -------------------------------------------------------------
    def publish(self, synced: bool = False) -> None:
        """Swap in a new immutable snapshot built from every loop's latest state.

        `synced` marks the publish of an org's first poll or a source's first discovery: the
        update generation
        on_update returns for it is what /metrics must have rendered before /readyz says ready.
        """
        orgs: dict[tuple[str, str], OrgSnapshot] = {}
        health: dict[tuple[str, str], OrgHealth] = {}
        stalled: list[str] = []
        now = self.clock()
        for key, loop in self.loops.items():
            if loop.last_snapshot is not None:
                orgs[key] = loop.last_snapshot
            health[key] = loop.health(now)
            if loop.stalled(now):
                stalled.append(f"{key[0]}/{key[1]}")
        self._stalled = tuple(stalled)
        self.snapshot = ExporterSnapshot(
            orgs=orgs,
            health=health,
            requests={name: src.stats.view() for name, src in self.sources.items()},
            reload_success=self.reload_success,
            reload_timestamp=self.reload_timestamp,
            shard=self.shard.as_tuple() if self.shard else None,
            state_persistent=self.store.persistent if self.store else None,
            state_write_errors=self.store.write_errors if self.store else None,
            discovery={name: state.health() for name, state in self.discovery.items()},
        )
        generation = self.on_update()
        if synced and generation is not None:
            self.synced_generation = generation

    def publish_org(self, key: Key, synced: bool = False) -> None:
        """Publish after one org's poll, refreshing only its entries.

        A full publish walks every org: with one publish per poll that made a cycle cost orgs
        squared (1,000 orgs: a million health checks). Stalls of the other orgs are the
        watchdog's to publish (a full publish when one starts or ends).
        """
        loop = self.loops.get(key)
        prev = self.snapshot
        if loop is None or not self._started or key not in prev.health:
            self.publish(synced)
            return
        orgs = dict(prev.orgs)
        if loop.last_snapshot is not None:
            orgs[key] = loop.last_snapshot
        health = dict(prev.health)
        health[key] = loop.health(self.clock())
        self.snapshot = dataclasses.replace(
            prev, orgs=orgs, health=health,
            requests={name: src.stats.view() for name, src in self.sources.items()},
            state_persistent=self.store.persistent if self.store else None,
            state_write_errors=self.store.write_errors if self.store else None,
        )
        generation = self.on_update()
        if synced and generation is not None:
            self.synced_generation = generation

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Return (ready, details): ready once every discovery succeeded and every org polled.

        The rule is one: every `organizations: auto` source had a successful discovery (else
        its orgs are not even known) and every org's first poll completed, successfully or not,
        and /metrics shows its result. An org that never succeeds reads asyncjob_up 0 instead of
        holding a rolling update forever; orgs down now (failed polls, or stalled) are listed.
        """
        if not self._started:
            return False, {"ready": False, "starting": True, "missing": [], "orgs": 0}
        snap = self.snapshot
        discovering = sorted(n for n, d in self.discovery.items() if not d.succeeded_once)
        missing = [f"{s}/{o}" for (s, o), h in snap.health.items() if not h.polled]
        down = [f"{s}/{o}" for (s, o), h in snap.health.items() if h.polled and not h.up]
        ready = not missing and not discovering
        return ready, {"ready": ready, "missing": missing, "down": down,
                       "discovering": discovering, "stalled": list(self._stalled),
                       "orgs": len(snap.health)}


def _carry_health(old: OrgLoop, new: OrgLoop) -> None:
    """Hand an org's health over to its restarted loop: counters must not reset on reload."""
    new.errors = old.errors
    new.poll_hist = old.poll_hist
    new.up, new.last_success, new.last_full = old.up, old.last_success, old.last_full
    new.last_snapshot = old.last_snapshot
    new.completed = old.completed


__all__ = ["Scheduler", "build_source"]
