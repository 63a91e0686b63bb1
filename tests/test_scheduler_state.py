"""Scheduler and state file: orgs keyed by address, and a last save at shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exporter import scheduler as scheduler_mod
from exporter.config import load_config
from exporter.state.store import StateStore
from tests.fakes import FakeSource, FullDisk, fake_job, scheduler_config
from tests.faketime import FakeTime, until

A = "0x" + "a" * 40
B = "0x" + "b" * 40
DONE = {("publish_process", "completed"): 1}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    source = FakeSource()
    monkeypatch.setattr(scheduler_mod, "build_source", lambda cfg: source)
    return source


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def _config(tmp_path: Path, address: str, name: str) -> Path:
    path = tmp_path / f"{name}-{address[2]}.yaml"
    path.write_text(scheduler_config([(address, name)], interval="0.05s",
                                     state=tmp_path / "state.db"))
    return path


def _finished(sched: scheduler_mod.Scheduler, name: str) -> dict[tuple[str, str], int] | None:
    snap = sched.snapshot.orgs.get(("fake", name))
    return None if snap is None else dict(snap.finished)


def test_renamed_org_keeps_its_state_and_a_new_address_is_a_first_sync(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    async def scenario() -> None:
        store = StateStore(str(tmp_path / "state.db"))
        sched = scheduler_mod.Scheduler(load_config(_config(tmp_path, A, "acme")), store=store,
                                        **t.kwargs())
        fake.jobs[A] = [fake_job("old", "completed"), fake_job("a", "pending")]
        await sched.start()
        await until(t, lambda: _finished(sched, "acme") == {})
        await t.advance(0.15)  # a few polls: saved
        # renamed, and meanwhile a finished and c arrived already completed
        fake.jobs[A] = [fake_job("old", "completed"), fake_job("a", "completed"),
                        fake_job("c", "completed")]
        await sched.reload(load_config(_config(tmp_path, A, "acme-renamed")))
        await until(t, lambda: _finished(sched, "acme-renamed") is not None)
        await t.advance(0.15)
        assert _finished(sched, "acme-renamed") == {("publish_process", "completed"): 2}
        # same name, another address: its history is not counted
        fake.jobs[B] = [fake_job("x", "completed"), fake_job("y", "failed")]
        await sched.reload(load_config(_config(tmp_path, B, "acme-renamed")))
        await until(t, lambda: ("fake", "acme-renamed") in sched.snapshot.orgs
                       and sched.snapshot.orgs[("fake", "acme-renamed")].tracked_jobs == 2)
        await t.advance(0.15)
        assert _finished(sched, "acme-renamed") == {}
        await sched.stop()
        db = StateStore(str(tmp_path / "state.db")).db
        orgs = {r[0] for r in db.execute("SELECT org FROM orgs")}
        assert orgs == {B}  # the address no longer configured was forgotten

    asyncio.run(scenario())


def test_shutdown_retries_the_last_save(
    tmp_path: Path, fake: FakeSource, t: FakeTime
) -> None:
    async def scenario() -> None:
        store = StateStore(str(tmp_path / "state.db"))
        disk = FullDisk(store.db)
        store.db = disk  # type: ignore[assignment]
        sched = scheduler_mod.Scheduler(load_config(_config(tmp_path, A, "acme")), store=store,
                                        **t.kwargs())
        fake.jobs[A] = [fake_job("a", "pending")]
        await sched.start()
        await until(t, lambda: _finished(sched, "acme") == {})
        await t.advance(0.15)
        disk.full = True
        fake.jobs[A] = [fake_job("a", "completed")]
        await until(t, lambda: sched.snapshot.state_persistent is False)
        await t.advance(0.15)
        assert _finished(sched, "acme") == {} and (sched.snapshot.state_write_errors or 0) >= 2
        fake.hang = True  # no more polls: only the shutdown save can record the finish
        await t.advance(0.15)
        disk.full = False
        await sched.stop()

    asyncio.run(scenario())
    db = StateStore(str(tmp_path / "state.db")).db
    # a counted finished job is a packed row (schema 4): status code 0 = completed
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    assert db.execute("SELECT kind & 7 FROM finished").fetchall() == [(0,)]
