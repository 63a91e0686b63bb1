"""Health and membership of one source's `organizations: auto` discovery.

A discovery that fails must be as visible as a failed poll (a metric, a readiness answer, an exit
code) and must be retried soon, not one discovery interval later. A discovery that answers without
an org is not taken at its word at once: an API that lists nothing for one call (a deploy, a
replica behind) would otherwise drop the org with its state and lose the jobs that finish
meanwhile.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from exporter.config import OrgConfig, SourceConfig
from exporter.sources.base import Discoverer, PollError, PollReason, Source
from exporter.state.snapshot import DiscoveryHealth, OrgSnapshot
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker

log = structlog.get_logger()

# Seconds between `organizations: auto` refreshes; a source's full_resync_interval, when shorter,
# wins (both are "notice what was added or removed upstream").
DISCOVERY_INTERVAL = 300.0
BACKOFF_START = 2.0  # first retry after a failed discovery; doubles up to the interval
MISSES_TO_DROP = 2  # consecutive successful discoveries that must lack an org to drop it
_RNG = random.Random()


def error_reason(exc: BaseException) -> PollReason:
    """Return the poll error reason a failed discovery is counted under."""
    return exc.reason if isinstance(exc, PollError) else PollReason.INTERNAL


@dataclass(slots=True)
class DiscoveryState:
    """One source's discovery: health counters, retry backoff and org membership."""

    source: str
    up: bool = False
    last_success: float | None = None
    errors: Counter[PollReason] = field(default_factory=Counter)
    failures: int = 0  # consecutive failed discoveries (backoff)
    misses: dict[str, int] = field(default_factory=dict)  # address -> successes lacking it

    @property
    def succeeded_once(self) -> bool:
        """Tell whether any discovery of this source succeeded (readiness)."""
        return self.last_success is not None

    def failed(self, reason: PollReason) -> None:
        """Count a failed discovery; the orgs found before keep being polled."""
        self.up = False
        self.failures += 1
        self.errors[reason] += 1

    def succeeded(self, addresses: set[str], now: float) -> set[str]:
        """Record an answer; return the addresses to poll (those missing only once stay)."""
        self.up = True
        self.failures = 0
        self.last_success = now
        for address in list(self.misses):
            if address not in addresses:
                self.misses[address] += 1
                if self.misses[address] >= MISSES_TO_DROP:
                    del self.misses[address]
        for address in addresses:
            self.misses[address] = 0
        return set(self.misses)

    def next_delay(self, interval: float, rng: random.Random | None = None) -> float:
        """Return seconds until the next discovery: backoff after failures, else the interval."""
        if self.failures:
            return min(interval, BACKOFF_START * 2.0 ** min(self.failures - 1, 30))
        return interval * (rng or _RNG).uniform(0.9, 1.1)

    def health(self) -> DiscoveryHealth:
        """Return an immutable view for the snapshot."""
        return DiscoveryHealth(self.source, self.up, self.last_success, dict(self.errors))


def discovery_interval(cfg: SourceConfig) -> float:
    """Return how often a source's organizations are rediscovered."""
    return min(DISCOVERY_INTERVAL, cfg.full_resync_interval)


Key = tuple[str, str]


@dataclass(slots=True)
class Parked:
    """A discovered org no longer listed: its state, kept until `until` in case it returns."""

    address: str
    tracker: OrgTracker
    committed: OrgSnapshot | None
    until: float


class Parking:
    """Orgs discovery stopped listing: tracker and committed counters kept for a grace period."""

    def __init__(self, store: StateStore | None, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._parked: dict[Key, Parked] = {}

    def park(self, key: Key, address: str, tracker: OrgTracker,
             committed: OrgSnapshot | None, keep_for: float) -> None:
        """Keep an org's state for `keep_for` seconds."""
        self._parked[key] = Parked(address, tracker, committed, self._clock() + keep_for)
        log.info("discovered_org_parked", source=key[0], org=key[1], keep_for=keep_for)

    def unpark(self, key: Key, address: str) -> tuple[OrgTracker | None, OrgSnapshot | None]:
        """Return a parked org's tracker and committed counters when discovery lists it again."""
        parked = self._parked.pop(key, None)
        if parked is None or parked.address != address:
            return None, None
        return parked.tracker, parked.committed

    def expire(self, source: str, everything: bool = False) -> None:
        """Forget parked orgs whose grace is over (or all of a source being dropped)."""
        now = self._clock()
        for key, parked in list(self._parked.items()):
            if key[0] == source and (everything or parked.until <= now):
                del self._parked[key]
                if self._store is not None:
                    self._store.forget_org(source, parked.address)


FoundFn = Callable[[SourceConfig, tuple[OrgConfig, ...]], None]


class Discovery:
    """Run every `organizations: auto` source's discovery: a task each, retried with backoff."""

    def __init__(
        self,
        sources: Mapping[str, Source],
        *,
        current: Callable[[str], SourceConfig | None],
        on_found: FoundFn,
        publish: Callable[..., None],
        parking: Parking,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._sources = sources
        self._current = current  # the running config's version of a source (reloads)
        self._on_found = on_found
        self._publish = publish
        self.parking = parking
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or _RNG
        self.states: dict[str, DiscoveryState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._found: dict[str, tuple[OrgConfig, ...]] = {}

    def orgs(self, name: str) -> tuple[OrgConfig, ...]:
        """Return the orgs the last successful discoveries of a source listed."""
        return self._found.get(name, ())

    def ensure(self, cfg: SourceConfig, running: bool) -> None:
        """Track a source's discovery health; start its refresh task when running."""
        if isinstance(self._sources.get(cfg.name), Discoverer):
            self.states.setdefault(cfg.name, DiscoveryState(cfg.name))
        if cfg.name in self._tasks or not running:
            return
        self._tasks[cfg.name] = asyncio.create_task(self._refresh(cfg))

    async def _refresh(self, cfg: SourceConfig) -> None:
        """Discover forever: the interval between successes, backoff after failures."""
        while True:
            current = self._current(cfg.name) or cfg
            await self.discover(current)
            state = self.states.get(cfg.name)
            delay = discovery_interval(current)
            await self._sleep(state.next_delay(delay, self._rng) if state else delay)

    def restart(self, name: str) -> None:
        """Cancel a source's task (its client was replaced); ensure() starts a new one."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    def stop(self, name: str) -> None:
        """Stop a source's discovery (source removed, or orgs now listed in the config)."""
        self.restart(name)
        self._found.pop(name, None)
        self.states.pop(name, None)
        self.parking.expire(name, everything=True)

    def cancel_all(self) -> None:
        """Cancel every discovery task (shutdown)."""
        for task in self._tasks.values():
            task.cancel()

    async def discover(self, cfg: SourceConfig) -> bool:
        """Refresh a source's orgs once; return False when the discovery failed."""
        source = self._sources.get(cfg.name)
        if not isinstance(source, Discoverer):
            return True
        state = self.states.setdefault(cfg.name, DiscoveryState(cfg.name))
        try:
            addresses: list[str] = await source.discover_orgs()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the orgs we had; the loops report their own health
            state.failed(error_reason(exc))
            log.warning("org_discovery_failed", source=cfg.name, host=source.host,
                        reason=error_reason(exc), error=type(exc).__name__,
                        failures=state.failures)
            self._publish()
            return False
        first = not state.succeeded_once
        self._found_orgs(cfg, state.succeeded(set(addresses), self._clock()))
        self._publish(synced=first)
        return True

    def _found_orgs(self, cfg: SourceConfig, addresses: set[str]) -> None:
        """Turn discovered addresses into orgs; hand a changed set to the scheduler."""
        orgs = []
        for address in sorted(addresses):
            try:
                orgs.append(cfg.discovered_org(address))
            except ValueError:
                log.warning("discovered_org_ignored", source=cfg.name, reason="bad address")
        self.parking.expire(cfg.name)
        found = tuple(orgs)
        if found != self._found.get(cfg.name):
            log.info("orgs_discovered", source=cfg.name, orgs=len(found))
            self._found[cfg.name] = found
            self._on_found(cfg, found)
