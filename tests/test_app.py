"""Daemon wiring: registry, readiness through the render cache, reload, watchdog, shutdown."""

from __future__ import annotations

import asyncio
import gc
import http.client
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from exporter import app as app_mod
from exporter.app import GC_THRESHOLDS, Daemon, RunOptions, make_registry
from exporter.config import load_config
from exporter.render import MetricsCache
from exporter.scheduler import Scheduler
from exporter.state.fileguard import StateFileError
from exporter.state.store import StateStore
from tests.fakes import FakeClock, FakeSource, FullDisk, fake_job, scheduler_config
from tests.faketime import FakeTime

CONFIG = """
state: {path: ":memory:"}
sources:
  - name: v
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {token: t}
    organizations: [{address: "0x1111111111111111111111111111111111111111", name: acme}]
"""


@pytest.fixture
def cache(tmp_path: Path) -> MetricsCache:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    cache = MetricsCache(make_registry(Scheduler(load_config(path))))
    cache.render_now()
    return cache


def test_process_and_platform_families_are_served_through_the_render_cache(
    cache: MetricsCache,
) -> None:
    text = cache.get(openmetrics=False, gzip=False).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds",
            "process_start_time_seconds", "python_info"} <= names
    om = cache.get(openmetrics=True, gzip=False).decode()
    assert "process_resident_memory_bytes" in om and om.rstrip().endswith("# EOF")


def test_promtool_accepts_the_exposition(cache: MetricsCache) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found on PATH: run scripts/ensure-prometheus.sh (as root)")
    text = cache.get(openmetrics=False, gzip=False)
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


# --- Daemon: startup, readiness, reload, watchdog, shutdown ------------------------------------

A = "0x" + "a" * 40
B = "0x" + "b" * 40


def _daemon_config(tmp_path: Path, *addresses: str, state: str | None = None) -> Path:
    path = tmp_path / "daemon.yaml"
    path.write_text(scheduler_config([(a, f"org{a[2]}") for a in addresses],
                                     state=state or tmp_path / "state.db"))
    return path


def _daemon(path: Path, source: FakeSource, clock: FakeClock | None = None) -> Daemon:
    return Daemon(load_config(path), RunOptions(str(path), listen="127.0.0.1:0"),
                  clock=clock or FakeClock(), build=lambda cfg: source)


async def _steps(predicate: Callable[[], bool], limit: int = 2000) -> None:
    """Let the event loop run until `predicate` holds; no wall time involved."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def test_not_ready_until_metrics_shows_the_first_sync(tmp_path: Path) -> None:
    """/readyz waits for the render cache to have rendered the snapshot of the first poll."""
    source = FakeSource()
    daemon = _daemon(_daemon_config(tmp_path, A), source)

    async def scenario() -> None:
        await daemon.scheduler.start()
        await _steps(lambda: daemon.scheduler.readiness()[0])
        ready, details = daemon.readiness()
        assert not ready and details["rendering"] and details["ready"] is False
        daemon.cache.render_now()
        assert daemon.cache.rendered_sequence == daemon.scheduler.synced_sequence
        ready, details = daemon.readiness()
        assert ready and "rendering" not in details
        await daemon.scheduler.loops[("fake", "orga")].poll_once()  # later polls: still ready
        assert daemon.cache.rendered_sequence < daemon.scheduler.snapshot.sequence
        assert daemon.readiness()[0]
        await daemon.scheduler.stop()

    asyncio.run(scenario())


def test_reload_applies_a_good_file_and_keeps_running_on_a_broken_one(tmp_path: Path) -> None:
    source = FakeSource()
    path = _daemon_config(tmp_path, A)
    daemon = _daemon(path, source)

    async def scenario() -> None:
        assert daemon.reload_from_thread() == (False, "not running")
        await daemon.scheduler.start()
        _daemon_config(tmp_path, A, B)
        assert await daemon.reload() == (True, "ok")
        assert set(daemon.scheduler.loops) == {("fake", "orga"), ("fake", "orgb")}
        assert daemon.scheduler.snapshot.reload_success
        path.write_text(path.read_text().replace("kind: vocdoni", "kind: nope"))
        with structlog.testing.capture_logs() as logs:
            ok, message = await daemon.reload()
        assert not ok and "sources[0].kind" in message
        assert any(e["event"] == "config_reload_failed" for e in logs)
        assert not daemon.scheduler.snapshot.reload_success
        assert set(daemon.scheduler.loops) == {("fake", "orga"), ("fake", "orgb")}  # kept
        await daemon.scheduler.stop()

    asyncio.run(scenario())


def test_reload_that_cannot_be_applied_keeps_the_old_config(tmp_path: Path) -> None:
    source = FakeSource()
    path = _daemon_config(tmp_path, A)
    daemon = _daemon(path, source)

    def broken(cfg: Any) -> FakeSource:
        raise RuntimeError("cannot build")

    async def scenario() -> None:
        await daemon.scheduler.start()
        daemon.scheduler.pool._build = broken
        path.write_text(path.read_text().replace("name: fake", "name: other"))
        with structlog.testing.capture_logs():
            assert await daemon.reload() == (False, "cannot apply config: RuntimeError")
        assert not daemon.scheduler.snapshot.reload_success
        await daemon.scheduler.stop()

    asyncio.run(scenario())


def test_watchdog_reports_a_stall_on_the_injected_clock_and_its_end(tmp_path: Path) -> None:
    source = FakeSource()
    clock = FakeClock()
    daemon = _daemon(_daemon_config(tmp_path, A), source, clock)

    async def scenario() -> None:
        await daemon.scheduler.start()
        await _steps(lambda: daemon.scheduler.readiness()[0])
        loop = daemon.scheduler.loops[("fake", "orga")]
        with structlog.testing.capture_logs() as logs:
            assert daemon._watch(set()) == set()
            clock.now += 3 * 3600 + 1  # three intervals without a poll or an answer
            stalled = daemon._watch(set())
            assert stalled == {("fake", "orga")}
            assert daemon.scheduler.readiness()[1]["stalled"] == ["fake/orga"]
            assert not daemon.scheduler.snapshot.health[("fake", "orga")].up
            await loop.poll_once()
            assert daemon._watch(stalled) == set()
        events = [e["event"] for e in logs]
        assert events.count("poll_stalled") == 1 and events.count("poll_stall_cleared") == 1
        await daemon.scheduler.stop()

    asyncio.run(scenario())


def test_watchdog_runs_on_the_injected_sleep_and_survives_a_failing_check(
    tmp_path: Path,
) -> None:
    source = FakeSource()
    naps: list[float] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    path = _daemon_config(tmp_path, A)
    daemon = Daemon(load_config(path), RunOptions(str(path), listen="127.0.0.1:0"),
                    sleep=sleep, build=lambda cfg: source)

    def boom(stalled: set[tuple[str, str]]) -> set[tuple[str, str]]:
        raise RuntimeError("bug")

    daemon._watch = boom  # type: ignore[method-assign]

    async def scenario() -> None:
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(asyncio.CancelledError):
                await daemon._watchdog()
        assert naps == [1.0, 1.0, 1.0]
        assert [e["event"] for e in logs].count("watchdog_check_failed") == 2

    asyncio.run(scenario())
    daemon.store.close()


def test_sigterm_saves_what_a_full_disk_held_back_and_exits_0(tmp_path: Path) -> None:
    """The SIGTERM path: serve, count a finish the disk refused, save it at shutdown."""
    source = FakeSource()
    source.jobs[A] = [fake_job("a", "running")]
    daemon = _daemon(_daemon_config(tmp_path, A), source)
    disk = FullDisk(daemon.store.db)
    daemon.store.db = disk  # type: ignore[assignment]
    scraped: list[str] = []

    def scrape() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", daemon.server.port, timeout=5)
        for path in ("/readyz", "/metrics"):
            conn.request("GET", path)
            resp = conn.getresponse()
            scraped.append(f"{resp.status} {resp.read().decode()}")
        conn.close()

    async def scenario() -> int:
        run = asyncio.create_task(daemon.run())
        await _steps(lambda: daemon.scheduler.readiness()[0] and daemon.scheduler.loops
                     and daemon.scheduler.loops[("fake", "orga")].completed)
        daemon.cache.render_now()  # what the renderer thread does after the first poll
        await asyncio.to_thread(scrape)
        disk.full = True
        source.jobs[A] = [fake_job("a", "completed")]
        assert await daemon.scheduler.loops[("fake", "orga")].poll_once()
        assert daemon.scheduler.snapshot.state_persistent is False
        disk.full = False  # the disk has room again by the time we stop
        os.kill(os.getpid(), signal.SIGTERM)
        return await run

    thresholds = gc.get_threshold()
    try:
        assert asyncio.run(scenario()) == 0
        assert gc.get_threshold() == GC_THRESHOLDS  # the daemon's collections are tuned
    finally:
        gc.set_threshold(*thresholds)
    assert scraped[0].startswith("200 ") and '"ready": true' in scraped[0]
    assert 'asyncjob_up{org="orga",source="fake"} 1.0' in scraped[1]
    db = StateStore(str(tmp_path / "state.db")).db
    # a counted finished job is a packed row (schema 4): status code 0 = completed
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    assert db.execute("SELECT kind & 7 FROM finished").fetchall() == [(0,)]


def test_state_file_of_another_application_is_refused_before_listening(tmp_path: Path) -> None:
    state = tmp_path / "notes.txt"
    state.write_text("my notes, not a database\n")
    path = _daemon_config(tmp_path, A, state=str(state))
    with pytest.raises(StateFileError, match="not a SQLite database"):
        _daemon(path, FakeSource())
    assert state.read_text() == "my notes, not a database\n"


def test_a_finish_reaches_metrics_within_one_interval_and_one_render_spacing(
    tmp_path: Path,
) -> None:
    """Detection latency on a fake clock: poll interval (+ jitter) plus the render spacing."""
    path = tmp_path / "detect.yaml"
    path.write_text(scheduler_config([(A, "orga")], interval="10s", jitter=0.1,
                                     state=tmp_path / "state.db"))
    source = FakeSource()
    source.jobs[A] = [fake_job("a", "running")]
    t = FakeTime()
    daemon = Daemon(load_config(path), RunOptions(str(path), listen="127.0.0.1:0"),
                    build=lambda cfg: source, **t.kwargs())
    shown = 'asyncjob_finished_total{job_type="publish_process",org="orga",source="fake"' \
            ',status="completed"} 1.0'

    def metrics() -> str:
        daemon.cache.tick(t.now)  # what the renderer thread does when it wakes
        return daemon.cache.get(openmetrics=False, gzip=False).decode()

    async def scenario() -> float:
        await daemon.scheduler.start()
        await t.settle()
        assert shown not in metrics() and daemon.readiness()[0]
        source.jobs[A] = [fake_job("a", "completed")]  # finishes just after the first poll
        finished_at = t.now
        for _ in range(2000):
            await t.advance(0.01)
            if shown in metrics():
                break
        await daemon.scheduler.stop()
        return t.now - finished_at

    latency = asyncio.run(scenario())
    assert 9.0 <= latency <= 10.0 * 1.1 + 0.25 + 0.02  # interval x jitter + min render spacing


class _Loop:
    """A loop the watchdog checks: stalled or not, and how often it was asked."""

    def __init__(self, stalled: bool = False) -> None:
        self.stalled, self.checks = stalled, 0

    def check(self, now: float) -> bool:
        self.checks += 1
        return self.stalled


def test_watchdog_checks_many_loops_in_batches_and_keeps_what_it_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 checks a second cost ~3% of the loop: a batch a tick, every loop in turn."""
    monkeypatch.setattr(app_mod, "WATCH_BATCH", 2)
    loops = {("s", f"o{n}"): _Loop(stalled=n == 4) for n in range(5)}
    published: list[int] = []
    fake = SimpleNamespace(scheduler=SimpleNamespace(loops=loops,
                                                     publish=lambda: published.append(1)),
                           _clock=lambda: 0.0, _watch_cursor=0)
    stalled: set[tuple[str, str]] = set()
    for _ in range(2):
        stalled = Daemon._watch(fake, stalled)  # type: ignore[arg-type]
    assert stalled == set() and published == []  # o4 not checked yet
    assert [loop.checks for loop in loops.values()] == [1, 1, 1, 1, 0]
    stalled = Daemon._watch(fake, stalled)  # type: ignore[arg-type]
    assert stalled == {("s", "o4")} and published == [1]
    stalled = Daemon._watch(fake, stalled)  # type: ignore[arg-type]
    assert stalled == {("s", "o4")} and published == [1]  # o4 not in this batch: still stalled
    loops[("s", "o4")].stalled = False
    while loops[("s", "o4")].checks < 3:
        stalled = Daemon._watch(fake, stalled)  # type: ignore[arg-type]
    assert stalled == set() and published == [1, 1]
    del loops[("s", "o1")]  # an org removed from the config is no longer reported
    assert Daemon._watch(fake, {("s", "o1")}) == set()  # type: ignore[arg-type]
