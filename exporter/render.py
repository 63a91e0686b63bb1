"""Render the exposition once per change on a background thread, so scrapes only copy bytes.

Rendering is pure Python and grows with the series count; doing it on the scrape path would let
several scrapers (HA Prometheus pairs) multiply the cost and would tie scrape latency to it.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as _om

# The OpenMetrics encoder is untyped upstream; pin its type once here.
generate_openmetrics: Callable[[CollectorRegistry], bytes] = _om.generate_latest

log = structlog.get_logger()

GZIP_LEVEL = 6
RENDER_SHARE = 4.0  # wait at least this many render durations between two renders


class _Collected:
    """Already collected families, replayed to the text and OpenMetrics encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        """Return the families collected once for this render."""
        return self._families


@dataclass(frozen=True, slots=True)
class Rendered:
    """One render in every variant a scrape can ask for; swapped in whole."""

    text: bytes
    text_gzip: bytes
    openmetrics: bytes
    openmetrics_gzip: bytes

    def pick(self, openmetrics: bool, gzipped: bool) -> bytes:
        """Return the variant a scrape negotiated."""
        if openmetrics:
            return self.openmetrics_gzip if gzipped else self.openmetrics
        return self.text_gzip if gzipped else self.text


def _compress(data: bytes) -> bytes:
    """Gzip with a fixed mtime so equal renders give equal bytes."""
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


class MetricsCache:
    """Cached exposition bytes, refreshed by a daemon thread on invalidate() and every max_age."""

    def __init__(
        self, registry: CollectorRegistry, *, min_interval: float = 0.25, max_age: float = 5.0,
        fragments: Callable[[], tuple[list[bytes], list[bytes]]] | None = None,
    ) -> None:
        self._registry = registry
        # Encodes the job families first (text, OpenMetrics without # EOF), reusing unchanged
        # orgs' lines (exporter/fragments.py); the registry then holds the other collectors.
        self._fragments = fragments
        self._min_interval = min_interval
        self._max_age = max_age
        self._rendered: Rendered | None = None
        self._render_lock = threading.Lock()  # one render at a time
        self._first_lock = threading.Lock()  # concurrent first scrapes render once
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_render_seconds = 0.0
        self.renders = 0
        self.generation = 0  # invalidate() calls so far
        self.rendered_generation = 0  # the generation the served bytes include

    def start(self) -> None:
        """Start the renderer thread; renders now unless something was rendered already."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="metrics-render", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the renderer thread and wait for it."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def invalidate(self) -> int:
        """Ask for a re-render soon and return this update's generation; bursts coalesce."""
        self.generation += 1
        self._wake.set()
        return self.generation

    def render_now(self) -> None:
        """Render synchronously (startup, tests); keeps the last good bytes if rendering fails."""
        with self._render_lock:
            started = time.perf_counter()
            generation = self.generation  # updates published after this are not in this render
            # Collect once for both formats: half the collector work, and text and OpenMetrics
            # always show the same data.
            families = _Collected(list(self._registry.collect()))
            text = generate_text(families)
            om = generate_openmetrics(families)  # type: ignore[arg-type]
            if self._fragments is not None:
                head_text, head_om = self._fragments()
                text, om = b"".join((*head_text, text)), b"".join((*head_om, om))
            self._rendered = Rendered(text, _compress(text), om, _compress(om))
            self.rendered_generation = generation
            self.last_render_seconds = time.perf_counter() - started
            self.renders += 1

    def get(self, openmetrics: bool, gzip: bool) -> bytes:
        """Return cached bytes; renders on the caller's thread only if nothing was rendered yet."""
        rendered = self._rendered
        if rendered is None:
            with self._first_lock:
                if self._rendered is None:
                    self.render_now()
            rendered = self._rendered
            assert rendered is not None
        return rendered.pick(openmetrics, gzip)

    def _run(self) -> None:
        """Re-render on invalidation (at most once per min_interval) or when max_age passed."""
        last = time.monotonic() - self._min_interval
        if self._rendered is None:
            self._render_safely()
            last = time.monotonic()
        while not self._stopping.is_set():
            self._wake.wait(timeout=self._max_age)
            if self._stopping.is_set():
                return
            delay = last + self._spacing() - time.monotonic()
            if delay > 0 and self._stopping.wait(delay):
                return
            self._wake.clear()
            self._render_safely()
            last = time.monotonic()

    def _spacing(self) -> float:
        """Return the pause between renders, longer when renders are expensive."""
        # Polls invalidate constantly with many orgs; rendering back to back then holds the GIL
        # most of the time and starves the poll loop (1,000 orgs: a 32 s first cycle instead of
        # 9 s). Waiting RENDER_SHARE render durations keeps rendering under 20% of a core.
        return max(self._min_interval, RENDER_SHARE * self.last_render_seconds)

    def _render_safely(self) -> None:
        """Render, logging failures instead of killing the thread (scrapes keep old bytes)."""
        try:
            self.render_now()
        except Exception as exc:  # a broken collector must not stop future renders
            log.error("render_failed", error=type(exc).__name__, detail=str(exc))
