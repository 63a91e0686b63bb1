"""Many orgs: one org's poll publishes without walking every other org."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exporter import scheduler as scheduler_mod
from exporter.config import load_config
from exporter.orgloop import OrgLoop
from exporter.state.snapshot import OrgHealth
from tests.fakes import FakeSource, scheduler_config
from tests.fakes import fake_job as _job

ORGS = 40


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(scheduler_config([(f"0x{i:040x}", None) for i in range(ORGS)]))
    return path


def test_one_orgs_poll_rebuilds_only_its_own_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSource()
    monkeypatch.setattr(scheduler_mod, "build_source", lambda cfg: fake)
    calls: list[str] = []
    real = OrgLoop.health

    def counted(self: OrgLoop, now: float, stalled: bool | None = None) -> OrgHealth:
        calls.append(self.target.org)
        return real(self, now, stalled)

    monkeypatch.setattr(OrgLoop, "health", counted)

    async def scenario() -> None:
        sched = scheduler_mod.Scheduler(load_config(_config(tmp_path)))
        for i in range(ORGS):
            fake.jobs[f"0x{i:040x}"] = [_job(f"j{i}", "pending")]
        await sched.start()
        loops = list(sched.loops.values())
        await asyncio.gather(*(loop.poll_once() for loop in loops))
        before = sched.snapshot
        calls.clear()
        fake.jobs["0x" + "0" * 40] = [_job("j0", "completed")]
        assert await loops[0].poll_once()
        assert calls == [loops[0].target.org]  # not one health rebuild per org
        after = sched.snapshot
        assert after is not before and len(after.orgs) == len(after.health) == ORGS
        key = ("fake", loops[0].target.org)
        assert after.orgs[key].finished == {("publish_process", "completed"): 1}
        assert all(after.orgs[k] is before.orgs[k] for k in after.orgs if k != key)
        await sched.stop()

    asyncio.run(scenario())
