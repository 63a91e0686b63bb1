"""The API clients of the configured sources: build, replace on reload, retire, close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from exporter.config import SourceConfig
from exporter.sources.base import Source
from exporter.sources.registry import spec_of

log = structlog.get_logger()

RETIRE_GRACE = 60.0  # seconds a replaced HTTP client stays open for polls still using it

Build = Callable[[SourceConfig], Source]


def build_source(cfg: SourceConfig) -> Source:
    """Create the API client of one configured source."""
    return spec_of(cfg.kind).build(cfg)


def source_identity(cfg: SourceConfig) -> tuple[Any, ...]:
    """Return what forces a new HTTP client when it changes on reload."""
    return spec_of(cfg.kind).identity(cfg)


class Background:
    """Housekeeping tasks, referenced until done so they are not garbage-collected."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def run(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine in the background on the running event loop."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self) -> None:
        """Cancel every task still running (shutdown)."""
        for task in list(self.tasks):
            task.cancel()


class SourcePool:
    """One client per source name; a client whose identity changed is swapped, the old retired."""

    def __init__(self, build: Build, background: Background,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._build = build
        self._background = background
        self._sleep = sleep
        self.sources: dict[str, Source] = {}
        self._identities: dict[str, tuple[Any, ...]] = {}
        self._retired: set[Source] = set()

    def ensure(self, cfg: SourceConfig, running: bool) -> bool:
        """Build the source's client if new, replace it if its identity changed; True if swapped."""
        if cfg.name not in self.sources:
            self.sources[cfg.name] = self._build(cfg)
            self._identities[cfg.name] = source_identity(cfg)
            return False
        if source_identity(cfg) == self._identities[cfg.name]:
            return False
        old = self.sources[cfg.name]
        self.sources[cfg.name] = self._build(cfg)
        self._identities[cfg.name] = source_identity(cfg)
        self._retire(old, running)
        log.info("source_client_replaced", source=cfg.name)
        return True

    def drop(self, name: str) -> None:
        """Remove a source no longer configured and close its client in the background."""
        source = self.sources.pop(name)
        self._identities.pop(name, None)
        self._background.run(source.aclose())

    def _retire(self, source: Source, running: bool) -> None:
        """Close a replaced client once polls still using it had time to finish."""
        async def close() -> None:
            try:
                await self._sleep(RETIRE_GRACE)
            finally:
                self._retired.discard(source)
                await source.aclose()

        self._retired.add(source)
        if running:
            self._background.run(close())

    async def close_all(self) -> None:
        """Close every client, current and retired; a failing close is logged, not raised."""
        for source in [*self.sources.values(), *self._retired]:
            try:
                await source.aclose()
            except Exception as exc:  # closing must not keep the process from exiting
                log.warning("client_close_failed", error=type(exc).__name__)
