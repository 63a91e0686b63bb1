"""Publisher: numbered snapshots, the first-sync sequence, one stall check per loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exporter import scheduler as scheduler_mod
from exporter.config import load_config
from exporter.orgloop import STALL_INTERVALS
from tests.fakes import FakeSource, write_config_at
from tests.faketime import FakeTime, until


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    source = FakeSource()
    monkeypatch.setattr(scheduler_mod, "build_source", lambda cfg: source)
    return source


def test_every_publish_is_numbered_and_asks_each_loop_once_whether_it_stalled(
    tmp_path: Path, fake: FakeSource,
) -> None:
    async def scenario() -> None:
        t = FakeTime()
        sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1", "2"], "10s")),
                                        **t.kwargs())
        await sched.start()
        await until(t, lambda: sched.readiness()[0])
        asked: list[str] = []
        for key, loop in sched.loops.items():
            def stalled(now: float, org: str = key[1], real=loop.stalled) -> bool:
                asked.append(org)
                return real(now)
            loop.stalled = stalled  # type: ignore[method-assign]
        before = sched.snapshot.sequence
        sched.publish()
        assert sorted(asked) == ["org1", "org2"]  # once per loop per publish
        assert sched.snapshot.sequence == before + 1
        assert sched.synced_sequence < sched.snapshot.sequence  # not a first sync
        fake.hang = True
        t.now += STALL_INTERVALS * 10.0 + 1
        asked.clear()
        sched.publish()
        assert sorted(asked) == ["org1", "org2"]
        ready, details = sched.readiness()
        assert ready and details["stalled"] == ["fake/org1", "fake/org2"]
        assert details["down"] == ["fake/org1", "fake/org2"]
        await sched.stop()

    asyncio.run(scenario())


def test_on_update_is_told_after_the_swap(tmp_path: Path, fake: FakeSource) -> None:
    seen: list[int] = []
    sched = scheduler_mod.Scheduler(load_config(write_config_at(tmp_path, ["1"])))
    sched.on_update = lambda: seen.append(sched.snapshot.sequence)
    sched.publish()
    sched.publish(synced=True)
    assert seen == [1, 2] and sched.synced_sequence == 2
