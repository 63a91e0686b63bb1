"""Counted finished jobs are packed (memory and file) and still never counted twice."""

from __future__ import annotations

import sqlite3
import tracemalloc
from pathlib import Path

from exporter.sources.base import JobObservation, PollResult, StepObservation
from exporter.state.fileguard import APPLICATION_ID
from exporter.state.finished import FinishedJobs, pack_id, unpack_id
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker, TrackerSettings


def _job(job_id: str, status: str, **kw: object) -> JobObservation:
    return JobObservation(job_id=job_id, job_type="relay_vote", status=status, **kw)  # type: ignore[arg-type]


def _poll(*jobs: JobObservation, complete: bool = False) -> PollResult:
    return PollResult(jobs=tuple(jobs), complete=complete)


def _tracker(store: StateStore | None = None) -> OrgTracker:
    tracker = OrgTracker("src", "org", TrackerSettings())
    if store is not None:
        store.restore(tracker, "0xorg")
    return tracker


def _finished(t: OrgTracker) -> int:
    return sum(t.snapshot(0.0).finished.values())


def _hex(i: int) -> str:
    return f"{i:064x}"


def test_ids_pack_losslessly() -> None:
    for job_id in (_hex(7), "ABCDEF", "abc", "12", "123", "", "ünï", "a\ud800b", "0" * 300):
        assert unpack_id(pack_id(job_id)) == job_id
    assert len(pack_id(_hex(1))) == 33  # 64 hex characters, 32 bytes and a tag


def test_finished_job_holds_no_record_and_is_not_recounted_when_listed_again() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("a", "pending")), 2.0)
    t.apply(_poll(_job("a", "completed")), 3.0)
    assert "a" not in t.jobs.full and t.jobs.done.find("a") >= 0
    for now in (4.0, 5.0):
        t.apply(_poll(_job("a", "completed")), now)
    assert _finished(t) == 1 and len(t) == 1
    assert t.get("a") is not None and t.get("a").terminal  # type: ignore[union-attr]
    assert t.snapshot(5.0).jobs == {("relay_vote", "completed"): 1}


def test_history_is_packed_at_first_sync_and_never_counted() -> None:
    t = _tracker()
    t.apply(_poll(*(_job(_hex(i), "completed") for i in range(200)), complete=True), 1.0)
    assert not t.jobs.full and len(t.jobs.done) == 200
    t.apply(_poll(*(_job(_hex(i), "completed") for i in range(200)), complete=True), 2.0)
    assert _finished(t) == 0 and len(t) == 200


def test_packed_job_with_a_new_creation_time_is_a_new_job() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("1", "completed", created_at=100.0)), 2.0)
    t.apply(_poll(_job("1", "completed", created_at=100.0)), 3.0)
    assert _finished(t) == 1
    t.apply(_poll(_job("1", "completed", created_at=900.0)), 4.0)  # ids restarted
    assert _finished(t) == 2 and len(t) == 1


def test_packed_job_that_changes_status_is_not_recounted() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("a", "completed")), 2.0)
    t.apply(_poll(_job("a", "pending")), 3.0)  # re-run under the same id: a live record again
    assert "a" in t.jobs.full and t.snapshot(3.0).jobs == {("relay_vote", "pending"): 1}
    t.apply(_poll(_job("a", "failed")), 4.0)
    assert _finished(t) == 1 and t.jobs.done.find("a") >= 0


def test_packed_job_listed_with_steps_merges_them_like_before() -> None:
    t = _tracker()
    t.apply(_poll(), 1.0)
    t.apply(_poll(_job("a", "completed")), 2.0)
    step = StepObservation(step_id="s", step_type="scan", status="success")
    t.apply(_poll(_job("a", "completed", steps=(step,))), 3.0)
    assert _finished(t) == 1 and len(t) == 1 and t.jobs.done.find("a") >= 0


def test_packed_jobs_missing_from_two_complete_lists_leave() -> None:
    t = _tracker()
    t.apply(_poll(_job("a", "completed"), _job("b", "completed"), complete=True), 1.0)
    t.apply(_poll(_job("a", "completed"), complete=True), 2.0)
    assert "b" in t.jobs
    t.apply(_poll(_job("a", "completed"), complete=True), 3.0)
    assert set(t.jobs) == {"a"} and t.snapshot(3.0).vanished == {}


def test_restart_from_the_packed_file_does_not_recount(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    t = _tracker(store)
    t.apply(_poll(_job(_hex(1), "completed"), complete=True), 1.0)  # history
    t.apply(_poll(_job(_hex(1), "completed"), _job(_hex(2), "pending")), 2.0)
    t.apply(_poll(_job(_hex(2), "failed")), 3.0)
    assert store.save(t, "0xorg") and _finished(t) == 1
    rows = store.db.execute("SELECT COUNT(*) FROM finished").fetchone()[0]
    assert rows == 2 and store.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    store.close()
    store = StateStore(path)
    again = _tracker(store)
    assert not again.jobs.full and set(again.jobs) == {_hex(1), _hex(2)}
    again.apply(_poll(_job(_hex(1), "completed"), _job(_hex(2), "failed")), 4.0)
    assert _finished(again) == 0
    assert again.snapshot(4.0).jobs == {("relay_vote", "completed"): 1,
                                        ("relay_vote", "failed"): 1}


def test_jobs_that_leave_are_deleted_from_the_packed_table(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state.db"))
    t = _tracker(store)
    t.apply(_poll(_job("a", "completed"), _job("b", "completed"), complete=True), 1.0)
    assert store.save(t, "0xorg")
    for now in (2.0, 3.0):
        t.apply(_poll(_job("a", "completed"), complete=True), now)
    assert store.save(t, "0xorg")
    assert set(_tracker(store).jobs) == {"a"}
    store.forget_org("src", "0xorg")
    assert store.db.execute("SELECT COUNT(*) FROM finished").fetchone()[0] == 0


def _v3_file(path: Path) -> None:
    """Write a schema 3 file as the exporter before packed rows did."""
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.executescript("""
        CREATE TABLE jobs (source TEXT NOT NULL, org TEXT NOT NULL, job_id TEXT NOT NULL,
            job_type TEXT NOT NULL, status TEXT NOT NULL, first_seen REAL NOT NULL,
            finished_seen REAL, counted INTEGER NOT NULL, created_at REAL,
            PRIMARY KEY (source, org, job_id)) WITHOUT ROWID;
        CREATE TABLE steps (source TEXT NOT NULL, org TEXT NOT NULL, job_id TEXT NOT NULL,
            step_id TEXT NOT NULL, job_type TEXT NOT NULL, step_type TEXT NOT NULL,
            status TEXT NOT NULL, attempt INTEGER NOT NULL, counted INTEGER NOT NULL,
            last_progress_at REAL, PRIMARY KEY (source, org, job_id, step_id)) WITHOUT ROWID;
        CREATE TABLE orgs (source TEXT NOT NULL, org TEXT NOT NULL, synced_at REAL NOT NULL,
            PRIMARY KEY (source, org)) WITHOUT ROWID;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '3');
        INSERT INTO orgs VALUES ('src', '0xorg', 1);
    """)
    db.executemany("INSERT INTO jobs VALUES ('src', '0xorg', ?, 'relay_vote', ?, 1, 2, ?, 50)",
                   [(_hex(1), "completed", 1), ("x", "failed", 1), ("p", "pending", 0)])
    db.commit()
    db.close()


def test_schema_3_file_is_migrated_to_packed_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _v3_file(path)
    store = StateStore(str(path))
    db = store.db
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "4"
    assert db.execute("SELECT job_id FROM jobs").fetchall() == [("p",)]
    assert db.execute("SELECT COUNT(*) FROM finished").fetchone()[0] == 2
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    t = _tracker(store)
    assert set(t.jobs) == {_hex(1), "x", "p"} and t.synced and list(t.jobs.full) == ["p"]
    assert t.jobs[_hex(1)].counted and t.jobs["x"].created_at == 50.0
    t.apply(_poll(_job(_hex(1), "completed", created_at=50.0),
                  _job("x", "failed", created_at=50.0), _job("p", "completed")), 5.0)
    assert _finished(t) == 1  # only p


def test_packed_jobs_cost_under_120_bytes_each() -> None:
    ids = [_hex(i) for i in range(20_000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    done = FinishedJobs()
    for i, job_id in enumerate(ids):
        done.add(job_id, "relay_vote", "completed", None, float(i))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert used / len(ids) < 120
    for i in range(0, 20_000, 2):
        done.remove(done.find(ids[i]))  # dead rows are reclaimed
    assert len(done) == 10_000 and done.find(ids[0]) == -1
    assert all(done.find(ids[i]) >= 0 for i in range(1, 20_000, 2))
    assert list(done.ids())[:2] == [ids[1], ids[3]]  # insertion order kept
