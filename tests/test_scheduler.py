"""Scheduler and org loops with a fake source: health, last good data, reload, stalls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from exporter import scheduler as scheduler_mod
from exporter.config import load_config
from exporter.discovery import discovery_interval
from exporter.sharding import Shard
from exporter.sources.base import (
    JobObservation,
    PollError,
)
from tests.fakes import FakeSource, fake_job, write_config_at
from tests.faketime import FakeTime, until


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    source = FakeSource()
    monkeypatch.setattr(scheduler_mod, "build_source", lambda cfg: source)
    return source


async def _until(predicate: Any, rounds: int = 5000) -> None:
    """Let the event loop run until `predicate` holds (tests that bring their own sleep)."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def test_polls_publish_snapshots_and_keep_last_good_data(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    async def scenario() -> None:
        updates: list[int] = []
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"])),
                                        on_update=lambda: updates.append(1), **t.kwargs())
        fake.jobs["0x" + "1" * 40] = [fake_job("a", "pending")]
        await sched.start()
        await until(t, lambda: ("fake", "org1") in sched.snapshot.orgs)
        assert sched.readiness()[0]
        assert sched.snapshot.orgs[("fake", "org1")].jobs == {("publish_process", "pending"): 1}
        assert fake.polls[0] == ("org1", True)  # first poll is a full sync
        await until(t, lambda: len(fake.polls) >= 2)
        assert fake.polls[1] == ("org1", False)
        fake.fail = PollError("http_5xx", "HTTP 500")
        await until(t, lambda: not sched.snapshot.health[("fake", "org1")].up)
        health = sched.snapshot.health[("fake", "org1")]
        # every failed poll counted once, under its reason only (no await since the last one)
        assert fake.failures >= 1 and health.poll_errors == {"http_5xx": fake.failures}
        assert health.last_success is not None and not health.up
        # the last good data stays
        assert sched.snapshot.orgs[("fake", "org1")].jobs == {("publish_process", "pending"): 1}
        fake.fail = None
        await until(t, lambda: sched.snapshot.health[("fake", "org1")].up)
        assert updates and sched.snapshot.requests["fake"].requests[("/jobs", "200")] >= 3
        await sched.stop()

    asyncio.run(scenario())


def test_unexpected_exception_is_a_counted_error_not_a_crash(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"])), **t.kwargs())
        fake.fail = KeyError("boom")  # type: ignore[assignment]
        await sched.start()
        await until(t, lambda: sched.snapshot.health[("fake", "org1")].poll_errors.get("internal"))
        assert "schema" not in sched.snapshot.health[("fake", "org1")].poll_errors
        # one readiness rule: the first poll completed (and failed), so ready with up 0
        ready, details = sched.readiness()
        assert ready and details["down"] == ["fake/org1"]
        assert not sched.snapshot.health[("fake", "org1")].up
        await sched.stop()

    asyncio.run(scenario())


def test_reload_keeps_unchanged_orgs_and_drops_removed(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    async def scenario() -> None:
        config = load_config(write_config_at(tmp_path, ["1", "2"]))
        sched = scheduler_mod.Scheduler(config, **t.kwargs())
        await sched.start()
        await until(t, lambda: len(sched.snapshot.orgs) == 2)
        loop1 = sched.loops[("fake", "org1")]
        await sched.reload(load_config(write_config_at(tmp_path, ["1", "3"])))
        assert sched.loops[("fake", "org1")] is loop1
        assert set(sched.loops) == {("fake", "org1"), ("fake", "org3")}
        await until(t, lambda: ("fake", "org3") in sched.snapshot.orgs)
        assert ("fake", "org2") not in sched.snapshot.orgs
        assert ("fake", "org2") not in sched.snapshot.health
        assert sched.snapshot.reload_success
        succeeded_at = sched.snapshot.reload_timestamp
        sched.reload_failed()
        assert not sched.snapshot.reload_success
        # the timestamp is of the last SUCCESSFUL reload (Prometheus' convention)
        assert sched.snapshot.reload_timestamp == succeeded_at
        await sched.stop()

    asyncio.run(scenario())


def test_stalled_loop_reads_as_down(tmp_path: Path, fake: FakeSource, t: FakeTime) -> None:
    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"])), **t.kwargs())
        await sched.start()
        await until(t, lambda: sched.snapshot.health.get(("fake", "org1")) is not None
                       and sched.snapshot.health[("fake", "org1")].up)
        fake.hang = True
        loop = sched.loops[("fake", "org1")]
        await until(t, lambda: loop.stalled(sched.clock()))
        sched.publish()
        assert not sched.snapshot.health[("fake", "org1")].up
        await sched.stop()

    asyncio.run(scenario())


def test_dead_task_is_restarted(tmp_path: Path, fake: FakeSource, t: FakeTime) -> None:
    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"])), **t.kwargs())
        await sched.start()
        loop = sched.loops[("fake", "org1")]
        assert loop._task is not None
        loop._task.cancel()
        await t.settle()
        before = len(fake.polls)
        loop.check(sched.clock())
        await until(t, lambda: len(fake.polls) > before)
        await sched.stop()

    asyncio.run(scenario())


def test_shard_filters_orgs(tmp_path: Path, fake: FakeSource, t: FakeTime) -> None:
    async def scenario() -> None:
        config = load_config(write_config_at(tmp_path, [str(i) for i in range(1, 10)]))
        owned = []
        for index in range(3):
            sched = scheduler_mod.Scheduler(config, shard=Shard(index, 3), **t.kwargs())
            sched._apply(config)
            owned.append(set(sched.loops))
            assert sched.snapshot.shard == (index, 3)
        assert sum(len(o) for o in owned) == 9
        assert set().union(*owned) == {("fake", f"org{i}") for i in range(1, 10)}

    asyncio.run(scenario())


def test_readiness_lists_stalled_orgs_but_stays_ready(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"])), **t.kwargs())
        await sched.start()
        await until(t, lambda: sched.readiness()[0])
        fake.hang = True
        loop = sched.loops[("fake", "org1")]
        await until(t, lambda: loop.stalled(sched.clock()))
        sched.publish()
        ready, details = sched.readiness()
        assert ready and details["stalled"] == ["fake/org1"] and details["down"] == ["fake/org1"]
        await sched.stop()

    asyncio.run(scenario())


def test_reload_with_new_credentials_keeps_loops_and_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, t: FakeTime
) -> None:
    built: list[FakeSource] = []

    def build(cfg: Any) -> FakeSource:
        built.append(FakeSource())
        built[-1].jobs["0x" + "1" * 40] = [fake_job("a", "pending")]
        return built[-1]

    monkeypatch.setattr(scheduler_mod, "build_source", build)

    async def scenario() -> None:
        path = write_config_at(tmp_path, ["1"])
        sched = scheduler_mod.Scheduler(load_config(path), **t.kwargs())
        await sched.start()
        await until(t, lambda: ("fake", "org1") in sched.snapshot.orgs)
        loop, tracker = sched.loops[("fake", "org1")], sched.loops[("fake", "org1")].tracker
        path.write_text(path.read_text().replace("token: t", "token: t2"))
        await sched.reload(load_config(path))
        assert len(built) == 2 and sched.sources["fake"] is built[1]
        assert sched.loops[("fake", "org1")] is loop and loop.tracker is tracker
        await until(t, lambda: bool(built[1].polls))  # the next poll goes through the new client
        assert sched.snapshot.health[("fake", "org1")].up
        await sched.stop()

    asyncio.run(scenario())


AUTO_CONFIG = """
state: {path: ":memory:"}
defaults: {interval: 0.05s, jitter: 0}
sources:
  - name: fake
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {email: ops@example.org, password: pw}
    full_resync_interval: 0.05s
    organizations: auto
"""


def test_discovery_follows_added_and_removed_orgs(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    found = ["0x" + "1" * 40]

    async def discover() -> list[str]:
        return list(found)

    fake.discover_orgs = discover  # type: ignore[attr-defined]
    path = tmp_path / "c.yaml"
    path.write_text(AUTO_CONFIG)
    config = load_config(path)
    assert discovery_interval(config.sources[0]) == 0.05

    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(config, **t.kwargs())
        await sched.start()
        await until(t, lambda: set(sched.snapshot.orgs) == {("fake", "0x" + "1" * 40)})
        found.append("0x" + "2" * 40)
        await until(t, lambda: len(sched.snapshot.orgs) == 2)
        found.pop(0)
        await until(t, lambda: set(sched.snapshot.health) == {("fake", "0x" + "2" * 40)})
        await sched.stop()

    asyncio.run(scenario())


def test_slow_poll_that_gets_answers_is_not_stalled(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    """A poll longer than 3 intervals is not a stall while the API keeps answering."""
    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"])), **t.kwargs())
        await sched.start()
        await until(t, lambda: sched.snapshot.health.get(("fake", "org1")) is not None
                       and sched.snapshot.health[("fake", "org1")].up)
        fake.hang = True
        loop = sched.loops[("fake", "org1")]
        interval = loop.org_config.interval
        for _ in range(8):  # the source answers requests while the poll goes on
            fake.answered()
            await t.advance(interval)
            assert not loop.stalled(sched.clock())
        await until(t, lambda: loop.stalled(sched.clock()))  # answers stop: now it is stuck
        await sched.stop()

    asyncio.run(scenario())


def test_not_ready_before_start(tmp_path: Path, fake: FakeSource, t: FakeTime) -> None:
    """An exporter that has not created its org loops yet must not look ready (no org missing)."""
    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"])), **t.kwargs())
        ready, details = sched.readiness()
        assert not ready and details["starting"]
        await sched.start()
        assert not sched.readiness()[0]  # started, but org1 has not polled yet
        await until(t, lambda: sched.readiness()[0])
        await sched.stop()

    asyncio.run(scenario())


def test_health_is_cached_between_polls(tmp_path: Path, fake: FakeSource, t: FakeTime) -> None:
    """Publishing reuses an org's health object until that org polls again."""
    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"], "10s")),
                                        **t.kwargs())
        await sched.start()
        await until(t, lambda: sched.snapshot.health[("fake", "org1")].up)
        loop = sched.loops[("fake", "org1")]
        first = loop.health(sched.clock())
        sched.publish()
        assert sched.snapshot.health[("fake", "org1")] is first
        await loop.poll_once()
        assert sched.snapshot.health[("fake", "org1")] is not first
        assert sched.snapshot.health[("fake", "org1")].poll_duration.count == 2
        await sched.stop()

    asyncio.run(scenario())


def test_first_sync_records_its_snapshot_sequence(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    """The publish of an org's first poll is the snapshot /readyz waits to be rendered."""
    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"], "10s")),
                                        **t.kwargs())
        await sched.start()  # publish 1: nothing synced yet
        assert sched.snapshot.sequence == 1 and sched.synced_sequence == 0
        await until(t, lambda: sched.readiness()[0])
        first = sched.synced_sequence
        assert first == sched.snapshot.sequence >= 2
        await sched.loops[("fake", "org1")].poll_once()  # later polls are not first syncs
        assert sched.snapshot.sequence == first + 1 and sched.synced_sequence == first
        await sched.stop()

    asyncio.run(scenario())


SLOW_AUTO_CONFIG = """
state: {path: ":memory:"}
defaults: {interval: 3600s, jitter: 0}
sources:
  - name: fake
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {email: ops@example.org, password: pw}
    full_resync_interval: 60s
    organizations: auto
"""
ADDR = "0x" + "1" * 40


def test_failed_discovery_is_counted_retried_with_backoff_and_blocks_readiness(
    tmp_path: Path, fake: FakeSource
) -> None:
    answers: list[Any] = [PollError("auth", "HTTP 401")] * 6 + [[ADDR]]
    calls: list[float] = []

    async def discover() -> list[str]:
        answer = answers[min(len(calls), len(answers) - 1)]
        calls.append(1)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    fake.discover_orgs = discover  # type: ignore[attr-defined]
    path = tmp_path / "c.yaml"
    path.write_text(SLOW_AUTO_CONFIG)
    delays: list[float] = []
    gate = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:  # a fake clock: no real waiting
        delays.append(seconds)
        if len(delays) == 4:
            await gate.wait()  # hold here while the test looks at the failing state
        if len(delays) >= 8:
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(path), sleep=fake_sleep)
        await sched.start()
        await _until(lambda: len(delays) == 4)
        ready, details = sched.readiness()
        assert not ready and details["discovering"] == ["fake"]
        health = sched.snapshot.discovery["fake"]
        assert not health.up and health.errors == {"auth": 4} and health.last_success is None
        gate.set()
        await _until(lambda: len(delays) >= 8)
        # backoff doubles from 2 s up to the discovery interval (60 s), then the interval
        assert delays[:6] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
        assert 54.0 <= delays[6] <= 66.0
        await _until(lambda: sched.readiness()[0])
        health = sched.snapshot.discovery["fake"]
        assert health.up and health.errors == {"auth": 6} and health.last_success is not None
        assert set(sched.snapshot.health) == {("fake", ADDR)}
        await sched.stop()

    asyncio.run(scenario())


def test_once_fails_when_discovery_fails(tmp_path: Path, fake: FakeSource, t: FakeTime) -> None:
    async def discover() -> list[str]:
        raise PollError("connect", "refused")

    fake.discover_orgs = discover  # type: ignore[attr-defined]
    path = tmp_path / "c.yaml"
    path.write_text(SLOW_AUTO_CONFIG)

    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(path), **t.kwargs())
        assert await sched.poll_all_once() is False
        assert sched.snapshot.discovery["fake"].errors == {"connect": 1}

    asyncio.run(scenario())


def test_empty_discovery_once_keeps_the_org_and_counts_its_finish(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    answer: list[str] = [ADDR]

    async def discover() -> list[str]:
        return list(answer)

    fake.discover_orgs = discover  # type: ignore[attr-defined]
    path = tmp_path / "c.yaml"
    path.write_text(SLOW_AUTO_CONFIG)
    config = load_config(path)
    cfg = config.sources[0]
    key = ("fake", ADDR)

    def finished(sched: scheduler_mod.Scheduler) -> int:
        return sched.snapshot.orgs[key].finished.get(("publish_process", "completed"), 0)

    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(config, **t.kwargs())
        fake.jobs[ADDR] = [fake_job("a", "running"), fake_job("b", "running")]
        assert await sched.poll_all_once()  # discovery + first poll: both jobs active
        tracker = sched.loops[key].tracker
        answer.clear()  # the API lists no org, once
        assert await sched.discoverer.discover(cfg)
        assert key in sched.loops and sched.loops[key].tracker is tracker
        fake.jobs[ADDR] = [fake_job("a", "completed"), fake_job("b", "running")]
        assert await sched.loops[key].poll_once()
        assert finished(sched) == 1  # the job that finished meanwhile is counted
        # two discoveries in a row without it: parked, its state kept for full_resync_interval
        assert await sched.discoverer.discover(cfg)
        assert key not in sched.loops
        fake.jobs[ADDR] = [fake_job("a", "completed"), fake_job("b", "completed")]
        answer.append(ADDR)
        assert await sched.discoverer.discover(cfg)
        assert sched.loops[key].tracker is tracker  # back: same state, no new first sync
        assert await sched.loops[key].poll_once()
        assert finished(sched) == 2
        await sched.stop()

    asyncio.run(scenario())


def test_parked_org_is_forgotten_after_full_resync_interval(
    tmp_path: Path, fake: FakeSource
) -> None:
    answer: list[str] = [ADDR]
    now = [1_000.0]

    async def discover() -> list[str]:
        return list(answer)

    fake.discover_orgs = discover  # type: ignore[attr-defined]
    path = tmp_path / "c.yaml"
    path.write_text(SLOW_AUTO_CONFIG)
    config = load_config(path)
    cfg = config.sources[0]

    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(config, clock=lambda: now[0])
        assert await sched.poll_all_once()
        tracker = sched.loops[("fake", ADDR)].tracker
        answer.clear()
        await sched.discoverer.discover(cfg)
        await sched.discoverer.discover(cfg)  # parked until now + 60 s
        now[0] += 61.0
        await sched.discoverer.discover(cfg)  # grace over: forgotten
        answer.append(ADDR)
        await sched.discoverer.discover(cfg)
        assert sched.loops[("fake", ADDR)].tracker is not tracker
        await sched.stop()

    asyncio.run(scenario())


CAPPED_CONFIG = """
state: {{path: ":memory:"}}
defaults: {{interval: 3600s, jitter: 0, max_job_types_per_org: {cap}}}
sources:
  - name: fake
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {{token: t}}
    organizations:
      - address: "{addr}"
        name: org1
"""


def test_reload_keeps_health_counters_and_applies_a_raised_cap_at_once(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    path = tmp_path / "c.yaml"
    key = ("fake", "org1")
    fake.jobs[ADDR] = [JobObservation(job_id=str(i), job_type=t, status="running")
                       for i, t in enumerate(("alpha", "beta", "gamma"))]

    async def scenario() -> None:
        path.write_text(CAPPED_CONFIG.format(cap=1, addr=ADDR))
        sched = scheduler_mod.Scheduler(load_config(path), **t.kwargs())
        await sched.start()
        await until(t, lambda: key in sched.snapshot.orgs)
        fake.fail = PollError("http_5xx", "HTTP 500")
        assert not await sched.loops[key].poll_once()
        fake.fail = None
        assert set(sched.snapshot.orgs[key].job_types) == {"alpha", "other"}
        before = sched.snapshot.health[key]
        assert before.poll_errors == {"http_5xx": 1} and before.poll_duration.count == 2
        path.write_text(CAPPED_CONFIG.format(cap=5, addr=ADDR))
        await sched.reload(load_config(path))
        assert sched.snapshot.health[key].poll_errors == {"http_5xx": 1}
        assert sched.snapshot.health[key].poll_duration.count == 2
        assert sched.snapshot.health[key].last_success == before.last_success
        assert await sched.loops[key].poll_once()  # the raised cap admits the new types now
        fake.jobs[ADDR].append(JobObservation(job_id="9", job_type="delta", status="running"))
        assert await sched.loops[key].poll_once()
        assert {"alpha", "delta"} <= set(sched.snapshot.orgs[key].job_types)
        assert sched.snapshot.health[key].poll_duration.count >= 4  # kept counting from 2
        await sched.stop()

    asyncio.run(scenario())
