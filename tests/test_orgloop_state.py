"""Org loops publish a finish only once the state file holds it (disk full, I/O errors)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from exporter.config import load_config
from exporter.orgloop import OrgLoop
from exporter.sources.base import JobObservation, OrgTarget, PollResult, RequestStats
from exporter.state.store import StateStore
from tests.fakes import FullDisk, SourceFacts

CONFIG = """
state: {{path: "{state}"}}
defaults: {{interval: 1s, jitter: 0}}
sources:
  - name: src
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {{token: t}}
    organizations:
      - address: "0x{addr}"
        name: acme
"""
ADDRESS = "0x" + "a" * 40
DONE = {("t", "completed"): 1}





class ScriptedSource(SourceFacts):
    """Answers every poll with the current job list, or fails."""

    def __init__(self) -> None:
        self.stats = RequestStats()
        self.jobs: list[JobObservation] = []
        self.fail = False

    async def poll(self, target: OrgTarget, known: Any, full: bool) -> PollResult:
        from exporter.sources.base import PollError

        if self.fail:
            raise PollError("http_5xx", "HTTP 500")
        return PollResult(jobs=tuple(self.jobs), complete=True)

    async def aclose(self) -> None:
        return None


def _loop(tmp_path: Path, store: StateStore, source: ScriptedSource) -> OrgLoop:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(state=store.path, addr="a" * 40))
    cfg = load_config(path).sources[0]
    org = cfg.orgs[0]
    target = OrgTarget(cfg.name, org.label, org.address, org.job_types)
    return OrgLoop(target, org, source, publish=lambda **_: None, store=store,  # type: ignore[arg-type]
                   clock=lambda: 100.0)


def _jobs(*pairs: tuple[str, str]) -> list[JobObservation]:
    return [JobObservation(job_id=j, job_type="t", status=s) for j, s in pairs]


def _full_disk_store(path: Path) -> tuple[StateStore, FullDisk]:
    store = StateStore(str(path))
    disk = FullDisk(store.db)
    store.db = disk  # type: ignore[assignment]
    return store, disk


def test_finish_is_held_while_the_state_file_cannot_be_written(tmp_path: Path) -> None:
    store, disk = _full_disk_store(tmp_path / "state.db")
    source = ScriptedSource()
    loop = _loop(tmp_path, store, source)
    source.jobs = _jobs(("a", "pending"))
    assert asyncio.run(loop.poll_once())
    disk.full = True
    source.jobs = _jobs(("a", "completed"), ("b", "running"))
    assert asyncio.run(loop.poll_once())
    snap = loop.last_snapshot
    assert snap is not None
    assert snap.jobs == {("t", "completed"): 1, ("t", "running"): 1}  # gauges keep moving
    assert snap.finished == {} and snap.last_finished == {} and snap.durations == {}
    assert store.persistent is False and store.write_errors == 1
    assert asyncio.run(loop.poll_once())
    assert loop.last_snapshot is not None and loop.last_snapshot.finished == {}
    assert store.write_errors == 2  # every failed write is counted
    disk.full = False
    assert asyncio.run(loop.poll_once())
    assert loop.last_snapshot is not None and loop.last_snapshot.finished == DONE
    assert store.persistent is True and store.write_errors == 2
    store.close()
    again = StateStore(str(tmp_path / "state.db"))
    loop2 = _loop(tmp_path, again, source)
    assert asyncio.run(loop2.poll_once())
    assert loop2.last_snapshot is not None and loop2.last_snapshot.finished == {}  # not twice


def test_held_finish_is_published_when_a_save_succeeds_during_failing_polls(
    tmp_path: Path,
) -> None:
    store, disk = _full_disk_store(tmp_path / "state.db")
    source = ScriptedSource()
    loop = _loop(tmp_path, store, source)
    source.jobs = _jobs(("a", "pending"))
    asyncio.run(loop.poll_once())
    disk.full = True
    source.jobs = _jobs(("a", "completed"))
    asyncio.run(loop.poll_once())
    assert loop.last_snapshot is not None and loop.last_snapshot.finished == {}
    disk.full = False
    source.fail = True
    assert not asyncio.run(loop.poll_once())
    assert loop.last_snapshot is not None and loop.last_snapshot.finished == DONE


def test_unsaved_finish_is_never_lost_nor_counted_twice_after_restart(tmp_path: Path) -> None:
    store, disk = _full_disk_store(tmp_path / "state.db")
    source = ScriptedSource()
    loop = _loop(tmp_path, store, source)
    source.jobs = _jobs(("a", "pending"), ("b", "pending"))
    asyncio.run(loop.poll_once())
    source.jobs = _jobs(("a", "completed"), ("b", "pending"))
    asyncio.run(loop.poll_once())
    run1 = dict(loop.last_snapshot.finished) if loop.last_snapshot else {}
    disk.full = True
    source.jobs = _jobs(("a", "completed"), ("b", "failed"))
    asyncio.run(loop.poll_once())
    assert loop.last_snapshot is not None and loop.last_snapshot.finished == run1 == DONE
    assert not loop.save()  # shutdown retries the save; the disk is still full
    store.close()
    again = StateStore(str(tmp_path / "state.db"))
    loop2 = _loop(tmp_path, again, source)
    asyncio.run(loop2.poll_once())
    run2 = dict(loop2.last_snapshot.finished) if loop2.last_snapshot else {}
    assert run2 == {("t", "failed"): 1}  # b: counted once, in the run that could save it
