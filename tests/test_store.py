"""State store: resume without double counting; only its own corrupt file is moved aside."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from exporter.sources.base import JobObservation, PollResult, StepObservation
from exporter.state import store as store_mod
from exporter.state.fileguard import APPLICATION_ID, StateFileError
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker, TrackerSettings


def _poll(*pairs: tuple[str, str]) -> PollResult:
    jobs = tuple(JobObservation(job_id=j, job_type="t", status=s) for j, s in pairs)
    return PollResult(jobs=jobs, complete=True)


def _tracker(store: StateStore) -> OrgTracker:
    tracker = OrgTracker("src", "org", TrackerSettings())
    store.restore(tracker)
    return tracker


def test_restart_counts_jobs_finished_while_down_once(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    first = _tracker(store)
    first.apply(_poll(("old", "completed"), ("a", "pending"), ("b", "pending")), 1.0)
    first.apply(_poll(("old", "completed"), ("a", "completed"), ("b", "pending")), 2.0)
    store.save(first)
    assert first.snapshot(2.0).finished == {("t", "completed"): 1}
    store.close()

    store = StateStore(path)
    second = _tracker(store)
    assert second.synced and len(second) == 3
    # while down: b failed, c arrived and completed
    second.apply(_poll(("old", "completed"), ("a", "completed"), ("b", "failed"),
                       ("c", "completed")), 10.0)
    assert second.snapshot(10.0).finished == {("t", "failed"): 1, ("t", "completed"): 1}
    store.save(second)
    store.close()


def test_removed_jobs_are_deleted_from_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending"), ("b", "pending")), 1.0)
    store.save(tracker)
    tracker.apply(_poll(("a", "pending")), 2.0)
    tracker.apply(_poll(("a", "pending")), 3.0)  # dropped after two complete lists lack it
    store.save(tracker)
    again = _tracker(store)
    assert set(again.jobs) == {"a"}


def test_forget_org(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "s.db"))
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    store.save(tracker)
    store.forget_org("src", "org")
    assert len(_tracker(store)) == 0


def test_non_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(StateFileError, match="not a SQLite database") as err:
        StateStore(str(path))
    assert str(path) in str(err.value)
    assert path.read_bytes() == b"this is not a database" * 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def _corrupt_own_file(path: Path) -> None:
    """Write a state file with many pages, then overwrite its b-tree pages with garbage."""
    store = StateStore(str(path))
    tracker = _tracker(store)
    tracker.apply(_poll(*((f"job-{i:05d}", "pending") for i in range(3000))), 1.0)
    assert store.save(tracker)
    store.close()
    data = bytearray(path.read_bytes())
    assert int.from_bytes(data[68:72], "big") == APPLICATION_ID
    data[4096 * 2:4096 * 6] = b"\xa5" * (4096 * 4)
    path.write_bytes(bytes(data))


def test_own_corrupt_file_is_moved_aside_loudly_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _corrupt_own_file(path)
    damaged = path.read_bytes()
    with capture_logs() as logs:
        store = StateStore(str(path))
    assert store.write_errors == 1  # exported as asyncjob_state_write_errors_total
    assert [e for e in logs if e["event"] == "state_file_corrupt_moved_aside"
            and e["log_level"] == "error"]
    moved = list(tmp_path.glob("state.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == damaged
    tracker = _tracker(store)
    assert len(tracker) == 0 and not tracker.synced


def test_memory_store() -> None:
    store = StateStore(":memory:")
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    store.save(tracker)
    assert len(_tracker(store)) == 1


def _ordo_poll(status: str, steps: tuple[tuple[str, str, int], ...]) -> PollResult:
    obs = tuple(StepObservation(step_id=sid, step_type="scan", status=st, attempt=att)
                for sid, st, att in steps)
    job = JobObservation(job_id="j", job_type="lidar", status=status, steps=obs)
    return PollResult(jobs=(job,), complete=True)


def test_step_finishes_and_retries_are_not_recounted_after_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    first = _tracker(store)
    first.apply(PollResult(jobs=(), complete=True), 0.5)  # first sync: nothing yet
    first.apply(_ordo_poll("running", (("s1", "success", 2), ("s2", "running", 1))), 1.0)
    store.save(first)
    snap = first.snapshot(1.0)
    # s1's first attempt ended (failed) before this poll: one finish per attempt
    assert snap.step_finished == {("lidar", "scan", "success"): 1, ("lidar", "scan", "failed"): 1}
    assert snap.step_attempts == {("lidar", "scan"): 1}
    store.close()

    store = StateStore(path)
    second = _tracker(store)
    second.apply(_ordo_poll("running", (("s1", "success", 2), ("s2", "success", 1))), 2.0)
    snap = second.snapshot(2.0)
    assert snap.step_finished == {("lidar", "scan", "success"): 1}  # only s2, not s1 again
    assert snap.step_attempts == {}
    assert snap.steps == {("lidar", "scan", "success"): 2}
    store.save(second)
    second.apply(_ordo_poll("completed", (("s1", "success", 2), ("s2", "success", 1))), 3.0)
    store.save(second)
    assert store.db.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == 0  # job ended
    store.close()


def test_org_without_jobs_stays_synced_across_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    first = _tracker(store)
    first.apply(PollResult(jobs=(), complete=True), 1.0)
    assert store.save(first)
    store.close()
    store = StateStore(path)
    second = _tracker(store)
    assert second.synced  # so a job that finished while down is new, not history
    second.apply(_poll(("a", "completed")), 5.0)
    assert second.snapshot(5.0).finished == {("t", "completed"): 1}


_CRASH = """
import os, sys
from exporter.state.fileguard import APPLICATION_ID, StateFileError
from exporter.state.store import StateStore
store = StateStore(sys.argv[1])
store.db.execute("BEGIN")
store.db.executemany(
    "INSERT INTO jobs VALUES ('src', 'org', ?, 't', 'completed', 1, 1, 1, NULL)",
    [(f"x{i}",) for i in range(5000)])
os.kill(os.getpid(), 9)
"""


def test_kill_9_mid_transaction_leaves_a_usable_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    store.save(tracker)
    store.close()
    proc = subprocess.run([sys.executable, "-c", _CRASH, path], timeout=60)
    assert proc.returncode == -9
    store = StateStore(path)
    again = _tracker(store)
    assert set(again.jobs) == {"a"} and again.synced  # the cut batch left nothing behind
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_foreign_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StateFileError, match="another application"):
        StateStore(str(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_sqlite_file_with_another_application_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id = 1234")
    db.executescript(store_mod._SCHEMA)  # even with tables that look like ours
    db.execute("INSERT INTO meta VALUES ('schema', '3')")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StateFileError, match="application_id 0x000004d2"):
        StateStore(str(path))
    assert path.read_bytes() == before


def test_unopenable_path_is_refused_naming_path_and_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = blocker / "sub" / "state.db"  # parent is a file: cannot create
    with pytest.raises(StateFileError) as err:
        StateStore(str(bad))
    assert str(err.value) == f"cannot use state file {bad}: cannot create its directory: " \
                             "Not a directory"
    assert blocker.read_text() == "x"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="is a directory"):
        StateStore(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_empty_file_not_created_by_the_exporter_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    with pytest.raises(StateFileError, match="empty file"):
        StateStore(str(path))
    assert path.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_second_store_on_the_same_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = StateStore(path)
    with pytest.raises(StateFileError, match="in use by another asyncjob-exporter"):
        StateStore(path)
    first.close()
    StateStore(path).close()


def test_file_created_by_the_exporter_carries_its_application_id(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(str(path)).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


def test_missing_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    store = StateStore(str(path))
    store.close()
    assert path.exists()


def test_failed_save_keeps_changes_for_the_next_one(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state.db"))
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    store.db.execute("DROP TABLE jobs")
    assert not store.save(tracker)
    assert tracker.dirty == {"a"}
    store.db.executescript(store_mod._SCHEMA)
    assert store.save(tracker) and not tracker.dirty
    assert set(_tracker(store).jobs) == {"a"}


class _FullDisk:
    """Fail every commit like SQLite does on a full disk."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().upper().startswith("COMMIT"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        return self.db.executemany(sql, rows)


def test_failed_writes_are_counted_and_flip_persistence(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state.db"))
    assert store.persistent is True and store.write_errors == 0
    tracker = _tracker(store)
    tracker.apply(_poll(("a", "pending")), 1.0)
    real = store.db
    store.db = _FullDisk(real)  # type: ignore[assignment]
    assert not store.save(tracker)
    assert not store.save(tracker)
    store.forget_org("src", "other")
    assert store.persistent is False and store.write_errors == 3
    assert tracker.dirty == {"a"}
    store.db = real
    assert store.save(tracker) and store.persistent is True and store.write_errors == 3
    assert set(_tracker(store).jobs) == {"a"}


def test_memory_store_has_no_persistence_flag() -> None:
    store = StateStore(":memory:")
    assert store.persistent is None and store.write_errors == 0


def test_state_is_keyed_by_address_not_label(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state.db"))
    tracker = OrgTracker("src", "acme", TrackerSettings())
    store.restore(tracker, "0xaaa")
    tracker.apply(_poll(("a", "pending")), 1.0)
    assert store.save(tracker, "0xaaa")
    renamed = OrgTracker("src", "acme-renamed", TrackerSettings())
    store.restore(renamed, "0xaaa")
    assert set(renamed.jobs) == {"a"} and renamed.synced
    moved = OrgTracker("src", "acme", TrackerSettings())
    store.restore(moved, "0xbbb")
    assert len(moved) == 0 and not moved.synced


def test_version_2_file_is_adopted_and_migrated_by_label_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    shutil.copy(Path(__file__).parent / "data" / "state-v2.db", path)  # written by v2 code
    store = StateStore(str(path))
    assert not list(tmp_path.glob("*.corrupt-*"))
    tracker = OrgTracker("src", "acme", TrackerSettings())
    store.restore(tracker, "0xacme")
    assert set(tracker.jobs) == {"old", "a"} and tracker.synced
    tracker.apply(_poll(("old", "completed"), ("a", "completed")), 5.0)
    assert tracker.snapshot(5.0).finished == {("t", "completed"): 1}  # a only, old is history
    assert store.save(tracker, "0xacme")
    store.close()
    store = StateStore(str(path))
    assert store.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    renamed = OrgTracker("src", "acme-renamed", TrackerSettings())
    store.restore(renamed, "0xacme")  # found by address now, whatever its name
    assert set(renamed.jobs) == {"old", "a"} and renamed.jobs["a"].counted
    stale = OrgTracker("src", "acme", TrackerSettings())
    store.restore(stale, "0xnew")  # the label's old rows were claimed by 0xacme
    assert len(stale) == 0 and not stale.synced
    other = OrgTracker("src", "other", TrackerSettings())
    store.restore(other, "0xother")
    assert set(other.jobs) == {"x"}


def test_version_2_org_restored_even_when_its_migration_cannot_be_written(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    shutil.copy(Path(__file__).parent / "data" / "state-v2.db", path)
    store = StateStore(str(path))
    real = store.db
    store.db = _FullDisk(real)  # type: ignore[assignment]
    tracker = OrgTracker("src", "acme", TrackerSettings())
    store.restore(tracker, "0xacme")
    assert set(tracker.jobs) == {"old", "a"} and tracker.synced  # read under the label
    assert store.write_errors == 1
    store.db = real
    assert store.save(tracker, "0xacme")  # everything written under the address now
    store.close()
    store = StateStore(str(path))
    again = OrgTracker("src", "acme", TrackerSettings())
    store.restore(again, "0xacme")
    assert set(again.jobs) == {"old", "a"} and again.synced
    assert store.db.execute("SELECT COUNT(*) FROM jobs WHERE org LIKE 'v2-label:acme'"
                            ).fetchone()[0] == 0  # the stale label rows are gone


def test_org_keys_are_read_once_at_open_not_once_per_org(tmp_path: Path) -> None:
    """10,000 orgs looked up one by one cost ~0.5 s of a cycle; new and claimed keys still work."""
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    for n in range(20):
        tracker = OrgTracker("src", f"org{n}", TrackerSettings())
        store.restore(tracker)
        tracker.apply(_poll(("a", "completed")), 1.0)
        tracker.apply(_poll(("a", "completed"), ("b", "failed")), 2.0)
        store.save(tracker)
    store.close()
    store = StateStore(path)
    lookups: list[str] = []
    store.db.set_trace_callback(lambda sql: lookups.append(sql) if "org_ids" in sql else None)
    for n in range(21):  # 20 known orgs and a new one
        tracker = OrgTracker("src", f"org{n}", TrackerSettings())
        assert store.restore(tracker) == (2 if n < 20 else 0)
        tracker.apply(_poll(("a", "completed"), ("b", "failed"), ("c", "completed")), 3.0)
        assert store.save(tracker)
    assert [sql for sql in lookups if "SELECT id FROM org_ids" in sql] == []
    assert len([sql for sql in lookups if sql.startswith("INSERT INTO org_ids")]) == 1
    assert store.db.execute("SELECT COUNT(*) FROM org_ids").fetchone()[0] == 21
    assert store.db.execute("SELECT COUNT(*) FROM finished").fetchone()[0] == 20 * 3 + 3
