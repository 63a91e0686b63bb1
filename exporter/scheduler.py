"""Poll every (source, org) on its own asyncio loop and publish immutable snapshots."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from exporter.config import Config, OrgConfig, SourceConfig
from exporter.orgloop import OrgLoop, org_key
from exporter.sharding import Shard
from exporter.sources.base import OrgTarget, Source
from exporter.state.snapshot import ExporterSnapshot, OrgHealth, OrgSnapshot
from exporter.state.store import StateStore

log = structlog.get_logger()

# Seconds between `organizations: auto` refreshes; a source's full_resync_interval, when shorter,
# wins (both are "notice what was added or removed upstream").
DISCOVERY_INTERVAL = 300.0
RETIRE_GRACE = 60.0  # seconds a replaced HTTP client stays open for polls still using it


def discovery_interval(cfg: SourceConfig) -> float:
    """Return how often a source's organizations are rediscovered."""
    return min(DISCOVERY_INTERVAL, cfg.full_resync_interval)


def build_source(cfg: SourceConfig) -> Source:
    """Create the API client of one configured source."""
    settings = cfg.client_settings()
    if cfg.kind == "ordo":
        from exporter.sources.ordo import OrdoSource

        return OrdoSource(cfg.name, settings, token=cfg.token or "")
    from exporter.sources.vocdoni import VocdoniSource

    return VocdoniSource(
        cfg.name, settings, token=cfg.token, email=cfg.email, password=cfg.password, api=cfg.api
    )


def _source_identity(cfg: SourceConfig) -> tuple[Any, ...]:
    """Return what forces a new HTTP client when it changes on reload."""
    return (cfg.kind, cfg.base_url, cfg.api, cfg.token, cfg.email, cfg.password, cfg.timeout,
            cfg.concurrency, cfg.max_requests_per_second, cfg.retries)


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
    ) -> None:
        self.config = config
        self.on_update = on_update
        self.shard = shard
        self.store = store
        self.clock = clock
        self.sources: dict[str, Source] = {}
        self._identities: dict[str, tuple[Any, ...]] = {}
        self.loops: dict[tuple[str, str], OrgLoop] = {}
        self._discovery: dict[str, asyncio.Task[None]] = {}
        self._discovered: dict[str, tuple[OrgConfig, ...]] = {}
        self.reload_success = True
        self.reload_timestamp = clock()
        self.snapshot = ExporterSnapshot(shard=shard.as_tuple() if shard else None)
        self._running = False
        self._started = False  # /readyz is 503 until start() has created every org's loop
        self.synced_generation = 0  # update generation of the latest first sync of any org
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
            self.store.close()
        for source in [*self.sources.values(), *self._retired]:
            try:
                await source.aclose()
            except Exception as exc:  # closing must not keep the process from exiting
                log.warning("client_close_failed", error=type(exc).__name__)

    async def poll_all_once(self) -> bool:
        """Poll every org once (the `once` command); return True when all succeeded."""
        self._running = False
        self._apply(self.config)
        for cfg in self.config.sources:
            if cfg.organizations_auto:
                await self._discover(cfg)
        results = await asyncio.gather(*(loop.poll_once() for loop in self.loops.values()))
        self.publish()
        return all(results)

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
        self.reload_success = False
        self.reload_timestamp = self.clock()
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
        task = self._discovery.pop(name, None)
        if task is not None:
            task.cancel()
        self._discovered.pop(name, None)
        source = self.sources.pop(name)
        self._identities.pop(name, None)
        self._bg(source.aclose())

    def _sync_orgs(self, cfg: SourceConfig, orgs: tuple[OrgConfig, ...]) -> None:
        wanted = {
            (cfg.name, o.label): o
            for o in orgs
            if self.shard is None or self.shard.owns(cfg.name, o.address)
        }
        for key in [k for k in self.loops if k[0] == cfg.name and k not in wanted]:
            self._drop_loop(key)
        for key, org in wanted.items():
            loop = self.loops.get(key)
            if loop is not None and loop.org_config == org:
                loop.source = self.sources[cfg.name]
                continue
            if loop is not None:  # settings changed: keep the tracker, restart the loop
                tracker = loop.tracker
                self._drop_loop(key, keep_state=True)
            else:
                tracker = None
            target = OrgTarget(cfg.name, org.label, org.address, org.job_types)
            new_loop = OrgLoop(target, org, self.sources[cfg.name], publish=self.publish,
                               store=self.store, clock=self.clock, tracker=tracker)
            self.loops[key] = new_loop
            if self._running:
                new_loop.start()

    def _drop_loop(self, key: tuple[str, str], keep_state: bool = False) -> None:
        loop = self.loops.pop(key)
        self._bg(loop.stop())
        if not keep_state and self.store is not None:
            self.store.forget_org(*key)

    # --- organizations: auto ---------------------------------------------------
    def _ensure_discovery(self, cfg: SourceConfig) -> None:
        if cfg.name in self._discovery or not self._running:
            return

        async def refresh() -> None:
            while True:
                await self._discover(cfg)
                await asyncio.sleep(discovery_interval(cfg) * random.uniform(0.9, 1.1))

        self._discovery[cfg.name] = asyncio.get_event_loop().create_task(refresh())

    async def _discover(self, cfg: SourceConfig) -> None:
        source = self.sources.get(cfg.name)
        discover = getattr(source, "discover_orgs", None)
        if discover is None:
            return
        try:
            addresses: list[str] = await discover()
        except Exception as exc:  # keep the orgs we had; the loops report their own health
            log.warning("org_discovery_failed", source=cfg.name, host=getattr(source, "host", None),
                        reason=getattr(exc, "reason", None), error=type(exc).__name__)
            return
        orgs = []
        for address in sorted(set(addresses)):
            try:
                orgs.append(cfg.discovered_org(address))
            except ValueError:
                log.warning("discovered_org_ignored", source=cfg.name, reason="bad address")
        found = tuple(orgs)
        if found != self._discovered.get(cfg.name):
            log.info("orgs_discovered", source=cfg.name, orgs=len(found))
            self._discovered[cfg.name] = found
            self._sync_orgs(cfg, found)
            self.publish()

    # --- snapshots -------------------------------------------------------------
    def publish(self, synced: bool = False) -> None:
        """Swap in a new immutable snapshot built from every loop's latest state.

        `synced` marks the publish of an org's first successful poll: the update generation
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
        )
        generation = self.on_update()
        if synced and generation is not None:
            self.synced_generation = generation

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Return (ready, details): ready once every org had one successful poll.

        Orgs that synced once but are down now (failed polls, or stalled: no poll completed for
        STALL_INTERVALS intervals) are listed but keep the exporter ready: one broken upstream
        org must not take the other orgs' metrics, and its own asyncjob_up 0, out of rotation.
        """
        if not self._started:
            return False, {"ready": False, "starting": True, "missing": [], "orgs": 0}
        snap = self.snapshot
        missing = [f"{s}/{o}" for (s, o), h in snap.health.items() if not h.synced]
        down = [f"{s}/{o}" for (s, o), h in snap.health.items() if h.synced and not h.up]
        ready = not missing
        return ready, {"ready": ready, "missing": missing, "down": down,
                       "stalled": list(self._stalled), "orgs": len(snap.health)}


__all__ = ["Scheduler", "build_source", "org_key"]
