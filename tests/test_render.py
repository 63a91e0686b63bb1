"""MetricsCache: scrapes copy bytes, invalidations coalesce, ages refresh on their own."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.render import MetricsCache


class CountingCollector:
    """Collector exposing a settable value and recording which threads collected."""

    def __init__(self) -> None:
        self.value = 1.0
        self.threads: list[int] = []
        self.fail = False

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.get_ident())
        if self.fail:
            raise RuntimeError("boom")
        yield GaugeMetricFamily("render_test_value", "Test value.", value=self.value)


def make(
    min_interval: float = 0.05, max_age: float = 60.0
) -> tuple[MetricsCache, CountingCollector]:
    collector = CountingCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    return MetricsCache(registry, min_interval=min_interval, max_age=max_age), collector


def wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll `cond` until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


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


def test_all_variants_are_precomputed() -> None:
    cache, _ = make()
    cache.render_now()
    text = cache.get(openmetrics=False, gzip=False)
    om = cache.get(openmetrics=True, gzip=False)
    assert om.endswith(b"# EOF\n") and not text.endswith(b"# EOF\n")
    assert gzip.decompress(cache.get(openmetrics=False, gzip=True)) == text
    assert gzip.decompress(cache.get(openmetrics=True, gzip=True)) == om
    assert cache.renders == 1
    assert cache.last_render_seconds > 0


def test_invalidate_bursts_coalesce_on_the_renderer_thread() -> None:
    cache, collector = make(min_interval=0.2)
    cache.render_now()
    on_main = len(collector.threads)  # collects done by render_now() on this thread
    cache.start()
    try:
        base = cache.renders
        collector.value = 3.0
        for _ in range(100):
            cache.invalidate()
        assert wait_for(lambda: b" 3.0" in cache.get(openmetrics=False, gzip=False))
        time.sleep(0.3)
        assert 1 <= cache.renders - base <= 2
        main = threading.get_ident()
        renderer = collector.threads[on_main:]
        assert renderer and main not in renderer
    finally:
        cache.stop()


def test_renders_at_most_once_per_min_interval() -> None:
    cache, _ = make(min_interval=0.1)
    cache.start()
    try:
        assert wait_for(lambda: cache.renders >= 1)
        start = cache.renders
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            cache.invalidate()
            time.sleep(0.01)
        assert cache.renders - start <= 6  # 0.5 s / 0.1 s (+1 in flight)
        assert cache.renders - start >= 3
    finally:
        cache.stop()


def test_rerenders_every_max_age_without_invalidation() -> None:
    cache, collector = make(max_age=0.05)
    cache.start()
    try:
        assert wait_for(lambda: cache.renders >= 1)
        collector.value = 7.0
        assert wait_for(lambda: b" 7.0" in cache.get(openmetrics=False, gzip=False))
    finally:
        cache.stop()


def test_failed_render_keeps_the_last_good_bytes() -> None:
    cache, collector = make()
    cache.render_now()
    cache.start()
    try:
        collector.fail = True
        before = len(collector.threads)
        cache.invalidate()
        assert wait_for(lambda: len(collector.threads) > before)
        assert b"render_test_value 1.0" in cache.get(openmetrics=False, gzip=False)
        collector.fail = False
        collector.value = 4.0
        cache.invalidate()
        assert wait_for(lambda: b" 4.0" in cache.get(openmetrics=False, gzip=False))
    finally:
        cache.stop()


def test_stop_ends_the_thread() -> None:
    cache, _ = make()
    cache.start()
    thread = cache._thread
    assert thread is not None
    cache.stop()
    assert not thread.is_alive()


def test_generation_tells_whether_served_bytes_include_an_update() -> None:
    """readiness uses this: an update published before a render is in the bytes after it."""
    cache, collector = make()
    cache.render_now()
    assert cache.rendered_generation == cache.generation == 0
    collector.value = 5.0
    cache.invalidate()
    assert cache.generation == 1 and cache.rendered_generation == 0
    assert b"render_test_value 1.0" in cache.get(False, False)
    cache.render_now()
    assert cache.rendered_generation == 1
    assert b"render_test_value 5.0" in cache.get(False, False)
