"""MetricsCache: scrapes copy bytes, invalidations coalesce, ages refresh on their own.

Pacing runs on a fake clock through tick(); only the thread tests use the real renderer thread,
and they wait for events, never for wall time.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.payload import Payload
from exporter.render import RENDER_SHARE, MetricsCache


class FakeClock:
    """A monotonic clock that moves only when told to (or by a collector that costs time)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingCollector:
    """Collector exposing a settable value and recording which threads collected."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.value = 1.0
        self.threads: list[int] = []
        self.fail = False
        self.cost = 0.0  # fake seconds one collect takes
        self.clock = clock
        self.collected = threading.Event()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.get_ident())
        self.collected.set()
        if self.clock is not None:
            self.clock.now += self.cost
        if self.fail:
            raise RuntimeError("boom")
        yield GaugeMetricFamily("render_test_value", "Test value.", value=self.value)


def make(
    min_interval: float = 0.05, max_age: float = 60.0, clock: FakeClock | None = None,
    sequence: Callable[[], int] = lambda: 0,
) -> tuple[MetricsCache, CountingCollector]:
    collector = CountingCollector(clock)
    registry = CollectorRegistry()
    registry.register(collector)
    if clock is None:
        return MetricsCache(registry, min_interval=min_interval, max_age=max_age,
                            sequence=sequence), collector
    return MetricsCache(registry, min_interval=min_interval, max_age=max_age,
                        sequence=sequence, monotonic=clock), collector


def test_first_get_renders_once_then_never_on_the_caller() -> None:
    cache, collector = make()
    body = cache.get(openmetrics=False, gzip=False)
    assert b"render_test_value 1.0" in body
    assert cache.renders == 1
    collector.value = 2.0
    cache.invalidate()  # no thread running: nothing may render on the scrape path
    for _ in range(20):
        assert b"render_test_value 1.0" in cache.get(openmetrics=False, gzip=False)
    assert cache.renders == 1


def test_every_variant_comes_from_one_render() -> None:
    cache, _ = make()
    cache.render_now()
    text = cache.get(openmetrics=False, gzip=False)
    om = cache.get(openmetrics=True, gzip=False)
    assert om.endswith(b"# EOF\n") and not text.endswith(b"# EOF\n")
    assert gzip.decompress(cache.get(openmetrics=False, gzip=True)) == text
    assert gzip.decompress(cache.get(openmetrics=True, gzip=True)) == om
    assert cache.renders == 1
    assert cache.last_render_seconds > 0


def test_renders_compress_only_the_gzip_variants_scrapers_ask_for() -> None:
    """Compressing ~60 MB per format at 10,000 orgs is wasted on variants nobody scrapes."""
    cache, _ = make()
    cache.render_now()
    text = cache.serve(openmetrics=False, gzip=False)
    om = cache.serve(openmetrics=True, gzip=False)
    assert isinstance(text, Payload) and isinstance(om, Payload)
    assert not text.has_gzip() and not om.has_gzip()
    cache.serve(openmetrics=True, gzip=True)  # a Prometheus scrape
    cache.render_now()
    text, om = cache.serve(False, False), cache.serve(True, False)
    assert isinstance(text, Payload) and isinstance(om, Payload)
    assert om.has_gzip() and not text.has_gzip()  # compressed by the render, not the scrape


def test_invalidate_bursts_coalesce() -> None:
    clock = FakeClock()
    cache, collector = make(min_interval=0.2, clock=clock)
    cache.tick(clock.now)  # the first render
    base = cache.renders
    collector.value = 3.0
    for _ in range(100):
        cache.invalidate()
    wait, pending = cache.tick(clock.now)
    assert pending and abs(wait - 0.2) < 1e-9 and cache.renders == base  # spaced, not at once
    clock.now += 0.2
    assert cache.tick(clock.now) == (60.0, False)
    assert cache.renders == base + 1  # a hundred invalidations, one render
    assert b" 3.0" in cache.get(openmetrics=False, gzip=False)
    clock.now += 1.0
    assert cache.tick(clock.now)[0] > 0 and cache.renders == base + 1  # nothing new asked


def test_renderer_thread_renders_invalidations_off_the_caller_thread() -> None:
    cache, collector = make(min_interval=0.01)
    cache.render_now()
    on_main = len(collector.threads)  # collects done by render_now() on this thread
    cache.start()
    try:
        collector.collected.clear()
        collector.value = 3.0
        cache.invalidate()
        assert collector.collected.wait(5)
        renderer = collector.threads[on_main:]
        assert renderer and threading.get_ident() not in renderer
    finally:
        cache.stop()


def test_renders_at_most_once_per_min_interval() -> None:
    clock = FakeClock()
    cache, _ = make(min_interval=0.1, clock=clock)
    cache.tick(clock.now)
    start, origin = cache.renders, clock.now
    for ms in range(0, 500, 10):  # an invalidation every 10 ms for 0.5 s
        clock.now = origin + ms / 1000
        cache.invalidate()
        cache.tick(clock.now)
    assert cache.renders - start <= 6  # 0.5 s / 0.1 s (+1 in flight)
    assert cache.renders - start >= 3
    assert cache.renders - start == 4  # at 0.1, 0.2, 0.3, 0.4 s: exactly once per interval


def test_expensive_renders_are_spaced_by_their_cost() -> None:
    """A render taking 1 s is followed by RENDER_SHARE seconds without one, not min_interval."""
    clock = FakeClock()
    cache, collector = make(min_interval=0.1, clock=clock)
    collector.cost = 1.0
    cache.tick(clock.now)
    assert cache.last_render_seconds == 1.0
    cache.invalidate()
    wait, pending = cache.tick(clock.now)
    assert pending and wait == RENDER_SHARE * 1.0  # counted from the end of the last render
    clock.now += wait - 0.01
    assert cache.tick(clock.now)[1] and cache.renders == 1
    clock.now += 0.01
    cache.tick(clock.now)
    assert cache.renders == 2


def test_rerenders_every_max_age_without_invalidation() -> None:
    clock = FakeClock()
    cache, collector = make(max_age=5.0, clock=clock)
    assert cache.tick(clock.now) == (5.0, False)
    collector.value = 7.0
    clock.now += 4.9
    cache.tick(clock.now)
    assert b" 1.0" in cache.get(openmetrics=False, gzip=False)
    clock.now += 0.1
    cache.tick(clock.now)
    assert b" 7.0" in cache.get(openmetrics=False, gzip=False) and cache.renders == 2


def test_failed_render_keeps_the_last_good_bytes() -> None:
    clock = FakeClock()
    cache, collector = make(clock=clock)
    cache.tick(clock.now)
    collector.fail = True
    cache.invalidate()
    clock.now += 1.0
    before = len(collector.threads)
    cache.tick(clock.now)
    assert len(collector.threads) > before  # it tried
    assert b"render_test_value 1.0" in cache.get(openmetrics=False, gzip=False)
    collector.fail = False
    collector.value = 4.0
    cache.invalidate()
    clock.now += 1.0
    cache.tick(clock.now)
    assert b" 4.0" in cache.get(openmetrics=False, gzip=False)


def test_stop_ends_the_thread() -> None:
    cache, _ = make()
    cache.start()
    thread = cache._thread
    assert thread is not None
    cache.stop()
    assert not thread.is_alive()


def test_rendered_sequence_tells_whether_served_bytes_include_a_snapshot() -> None:
    """readiness uses this: a snapshot published before a render is in the bytes after it."""
    published = [0]
    cache, collector = make(sequence=lambda: published[0])
    cache.render_now()
    assert cache.rendered_sequence == 0
    collector.value = 5.0
    published[0] = 1  # the scheduler swapped in snapshot 1
    cache.invalidate()
    assert cache.rendered_sequence == 0
    assert b"render_test_value 1.0" in cache.get(False, False)
    cache.render_now()
    assert cache.rendered_sequence == 1
    assert b"render_test_value 5.0" in cache.get(False, False)


def test_sequence_is_read_before_collecting() -> None:
    """A snapshot swapped in during a render may be in the bytes, but is not claimed to be."""
    published = [3]
    cache, _ = make(sequence=lambda: published[0])

    class Bumping(CountingCollector):
        def collect(self) -> Iterator[Metric]:
            published[0] = 4  # the scheduler publishes while the renderer collects
            yield from super().collect()

    cache._registry.register(Bumping())
    cache.render_now()
    assert cache.rendered_sequence == 3
