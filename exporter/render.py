"""Render the exposition once per change on a background thread, so scrapes only copy bytes.

Rendering is pure Python and grows with the series count; doing it on the scrape path would let
several scrapers (HA Prometheus pairs) multiply the cost and would tie scrape latency to it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as _om

from exporter.payload import Payload

# The OpenMetrics encoder is untyped upstream; pin its type once here.
generate_openmetrics: Callable[[CollectorRegistry], bytes] = _om.generate_latest

log = structlog.get_logger()

RENDER_SHARE = 8.0  # wait at least this many render durations between two renders


class _Collected:
    """Already collected families, replayed to the text and OpenMetrics encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        """Return the families collected once for this render."""
        return self._families


@dataclass(frozen=True, slots=True)
class Rendered:
    """One render in both formats, swapped in whole; gzip variants are made on demand."""

    text: Payload
    openmetrics: Payload

    def pick(self, openmetrics: bool, gzipped: bool) -> Payload | bytes:
        """Return the variant a scrape negotiated."""
        payload = self.openmetrics if openmetrics else self.text
        return payload.gzipped() if gzipped else payload


class MetricsCache:
    """Cached exposition bytes, refreshed by a daemon thread on invalidate() and every max_age.

    When to render is decided by tick(now), a pure function of the injected clock, so the
    pacing is testable without threads or sleeps; the thread only waits between ticks.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        min_interval: float = 0.25,
        max_age: float = 5.0,
        sequence: Callable[[], int] = lambda: 0,
        monotonic: Callable[[], float] = time.monotonic,
        fragments: Callable[[], tuple[list[bytes], list[bytes]]] | None = None,
    ) -> None:
        self._registry = registry
        # Encodes the job families first (text, OpenMetrics without # EOF), reusing unchanged
        # orgs' lines (exporter/fragments.py); the registry then holds the other collectors.
        self._fragments = fragments
        self._min_interval = min_interval
        self._max_age = max_age
        self._sequence = sequence  # the sequence number of the snapshot the registry shows
        self._monotonic = monotonic
        self._rendered: Rendered | None = None
        self._render_lock = threading.Lock()  # one render at a time
        self._first_lock = threading.Lock()  # concurrent first scrapes render once
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty = False  # invalidated since the last render started
        self._last: float | None = None  # when the last render started
        self.last_render_seconds = 0.0
        self.renders = 0
        self.rendered_sequence = 0  # the served bytes show this snapshot or a later one
        # gzip variants scrapers asked for: compressed by each render, not by the next scrape
        self._wanted_gzip: set[bool] = set()

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

    def invalidate(self) -> None:
        """Ask for a re-render soon; bursts coalesce."""
        self._dirty = True
        self._wake.set()

    def render_now(self) -> None:
        """Render synchronously (startup, tests); keeps the last good bytes if rendering fails."""
        with self._render_lock:
            started = self._monotonic()
            sequence = self._sequence()  # snapshots published after this may be in it, or not
            # Collect once for both formats: half the collector work, and text and OpenMetrics
            # always show the same data.
            families = _Collected(list(self._registry.collect()))
            text = generate_text(families)
            om = generate_openmetrics(families)  # type: ignore[arg-type]
            text_parts, om_parts = [text], [om]
            if self._fragments is not None:
                head_text, head_om = self._fragments()
                text_parts, om_parts = [*head_text, text], [*head_om, om]
            rendered = Rendered(Payload(text_parts), Payload(om_parts))
            for openmetrics in tuple(self._wanted_gzip):
                rendered.pick(openmetrics, True)
            self._rendered = rendered
            self.rendered_sequence = sequence
            self.last_render_seconds = self._monotonic() - started
            self.renders += 1

    def serve(self, openmetrics: bool, gzip: bool) -> Payload | bytes:
        """Return cached bytes; renders on the caller's thread only if nothing was rendered yet."""
        rendered = self._rendered
        if rendered is None:
            with self._first_lock:
                if self._rendered is None:
                    self.render_now()
            rendered = self._rendered
            assert rendered is not None
        if gzip:
            self._wanted_gzip.add(openmetrics)
        return rendered.pick(openmetrics, gzip)

    def get(self, openmetrics: bool, gzip: bool) -> bytes:
        """Return what serve() does as one bytes object."""
        body = self.serve(openmetrics, gzip)
        return body if isinstance(body, bytes) else body.join()

    def tick(self, now: float) -> tuple[float, bool]:
        """Render if due at `now`; return (seconds until the next tick, whether a render waits).

        Due: nothing rendered yet, an invalidation at least one spacing after the last render
        ended, or max_age since then. A waiting render ignores further invalidations.
        """
        last = self._last
        if last is not None:
            wait = last + (self._spacing() if self._dirty else self._max_age) - now
            if wait > 0:
                return wait, self._dirty
        self._dirty = False  # invalidations during the render ask for the next one
        self._render_safely()
        self._last = self._monotonic()
        return self._max_age, False

    def _run(self) -> None:
        """Tick until stopped: sleep until woken by invalidate() or until the tick is due."""
        if self._last is None and self._rendered is not None:  # rendered at startup already
            self._last = self._monotonic() - self._min_interval
        while not self._stopping.is_set():
            self._wake.clear()
            wait, pending = self.tick(self._monotonic())
            # while a render waits out its spacing only stop() ends the wait: bursts coalesce
            (self._stopping if pending else self._wake).wait(wait)

    def _spacing(self) -> float:
        """Return the pause between renders, longer when renders are expensive."""
        # Polls invalidate constantly with many orgs; rendering back to back then holds the GIL
        # most of the time and starves the poll loop (1,000 orgs: a 32 s first cycle instead of
        # 9 s). Waiting RENDER_SHARE render durations keeps rendering under 11% of a core (at
        # 10,000 orgs a render costs ~0.15 s even when few orgs changed: 8 rather than 4 took
        # the first cycle from ~25 s to ~23 s, for /metrics at most ~1.5 s older).
        return max(self._min_interval, RENDER_SHARE * self.last_render_seconds)

    def _render_safely(self) -> None:
        """Render, logging failures instead of killing the thread (scrapes keep old bytes)."""
        try:
            self.render_now()
        except Exception as exc:  # a broken collector must not stop future renders
            log.error("render_failed", error=type(exc).__name__, detail=str(exc))
