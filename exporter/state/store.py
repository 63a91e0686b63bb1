"""SQLite persistence of tracked jobs so finishes are counted once across restarts."""

from __future__ import annotations

import os
import sqlite3
import time

import structlog

from exporter.sources.base import TERMINAL_JOB_STATUSES
from exporter.state.tracker import JobRecord, OrgTracker

log = structlog.get_logger()

SCHEMA_VERSION = "2"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    source TEXT NOT NULL, org TEXT NOT NULL, job_id TEXT NOT NULL,
    job_type TEXT NOT NULL, status TEXT NOT NULL, first_seen REAL NOT NULL,
    finished_seen REAL, counted INTEGER NOT NULL, created_at REAL,
    PRIMARY KEY (source, org, job_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS steps (
    source TEXT NOT NULL, org TEXT NOT NULL, job_id TEXT NOT NULL, step_id TEXT NOT NULL,
    job_type TEXT NOT NULL, step_type TEXT NOT NULL, status TEXT NOT NULL,
    attempt INTEGER NOT NULL, counted INTEGER NOT NULL, last_progress_at REAL,
    PRIMARY KEY (source, org, job_id, step_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orgs (
    source TEXT NOT NULL, org TEXT NOT NULL, synced_at REAL NOT NULL,
    PRIMARY KEY (source, org)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Reading every column once at open turns a foreign or half-migrated file into "unusable".
_PROBES = (
    "SELECT source, org, job_id, job_type, status, first_seen, finished_seen, counted,"
    " created_at FROM jobs LIMIT 1",
    "SELECT source, org, job_id, step_id, job_type, step_type, status, attempt, counted,"
    " last_progress_at FROM steps LIMIT 1",
    "SELECT source, org, synced_at FROM orgs LIMIT 1",
)
_UPSERT = (
    "INSERT OR REPLACE INTO jobs (source, org, job_id, job_type, status, first_seen,"
    " finished_seen, counted, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_STEP = (
    "INSERT OR REPLACE INTO steps (source, org, job_id, step_id, job_type, step_type, status,"
    " attempt, counted, last_progress_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class StateStore:
    """One SQLite file (or :memory:) holding every org's known jobs and counted flags."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = self._open(path)
        self._synced: set[tuple[str, str]] = set()  # orgs whose first sync is on file

    def _open(self, path: str) -> sqlite3.Connection:
        """Open the file; move an unusable one aside, and never refuse to start."""
        if path == ":memory:":
            return self._connect(path)
        parent = os.path.dirname(path)
        try:
            if parent:
                os.makedirs(parent, exist_ok=True)
            return self._connect(path)
        except (sqlite3.DatabaseError, OSError) as exc:
            error = str(exc)[:200]
        aside = f"{path}.corrupt-{int(time.time())}"
        try:
            if os.path.lexists(path):
                os.replace(path, aside)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.replace(path + suffix, aside + suffix)
            db = self._connect(path)
        except (sqlite3.DatabaseError, OSError) as exc2:
            log.error("state_file_unusable", effect="cannot be replaced: state in memory only,"
                      " counts will not survive a restart", path=path, error=error,
                      replace_error=str(exc2)[:200])
            return self._connect(":memory:")
        log.error("state_file_unusable", effect="moved aside, starting fresh (first-sync rule)",
                  path=path, moved_to=aside, error=error)
        return db

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
            db.executescript(_SCHEMA)
            for probe in _PROBES:
                db.execute(probe).fetchall()
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                       (SCHEMA_VERSION,))
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def restore(self, tracker: OrgTracker) -> int:
        """Load an org's jobs and active steps into a fresh tracker; return how many jobs."""
        key = (tracker.source, tracker.org)
        try:
            synced = self.db.execute(
                "SELECT 1 FROM orgs WHERE source = ? AND org = ?", key).fetchone()
            rows = self.db.execute(
                "SELECT job_id, job_type, status, first_seen, finished_seen, counted, created_at"
                " FROM jobs WHERE source = ? AND org = ?", key).fetchall()
            steps = self.db.execute(
                "SELECT job_id, step_id, job_type, step_type, status, attempt, counted,"
                " last_progress_at FROM steps WHERE source = ? AND org = ?", key).fetchall()
        except sqlite3.Error as exc:
            log.error("state_restore_failed", effect="org starts fresh", source=key[0], org=key[1],
                      error=str(exc)[:200])
            return 0
        for job_id, job_type, status, first_seen, finished_seen, counted, created_at in rows:
            tracker.restore(job_id, JobRecord(
                job_type=job_type, status=status, first_seen=first_seen,
                finished_seen=finished_seen, counted=bool(counted), created_at=created_at,
                queue_observed=True,
            ))
        restored_steps = 0
        for job_id, step_id, _type, step_type, status, attempt, counted, progress in steps:
            rec = tracker.jobs.get(job_id)
            if rec is None or rec.status in TERMINAL_JOB_STATUSES:
                continue
            tracker.steps.restore(job_id, rec.job_type, step_id, step_type, status, attempt,
                                  bool(counted), progress)
            restored_steps += 1
        if synced is not None:
            tracker.synced = True  # an org that had no job at all is still past its first sync
            self._synced.add(key)
        if rows or synced is not None:
            log.info("state_restored", source=key[0], org=key[1], jobs=len(rows),
                     steps=restored_steps)
        return len(rows)

    def save(self, tracker: OrgTracker) -> bool:
        """Write what the last poll changed in one transaction; False (and retry later) on error."""
        key = (tracker.source, tracker.org)
        book = tracker.steps
        first = tracker.synced and key not in self._synced
        if not (tracker.dirty or tracker.removed or book.dirty or first):
            return True
        rows = _job_rows(tracker)
        step_jobs = book.dirty | tracker.removed
        step_rows = _step_rows(tracker)
        try:
            with self._transaction():
                self.db.executemany(_UPSERT, rows)
                self.db.executemany(
                    "DELETE FROM jobs WHERE source = ? AND org = ? AND job_id = ?",
                    [(*key, job_id) for job_id in tracker.removed],
                )
                self.db.executemany(
                    "DELETE FROM steps WHERE source = ? AND org = ? AND job_id = ?",
                    [(*key, job_id) for job_id in step_jobs],
                )
                self.db.executemany(_INSERT_STEP, step_rows)
                if first:
                    self.db.execute("INSERT OR REPLACE INTO orgs (source, org, synced_at)"
                                    " VALUES (?, ?, ?)", (*key, time.time()))
        except sqlite3.Error as exc:
            log.error("state_save_failed", effect="kept in memory, retried after the next poll",
                      source=key[0], org=key[1], error=str(exc)[:200])
            return False
        tracker.dirty.clear()
        tracker.removed.clear()
        book.dirty.clear()
        self._synced.add(key)
        return True

    def forget_org(self, source: str, org: str) -> None:
        """Delete an org removed from the config."""
        self._synced.discard((source, org))
        try:
            with self._transaction():
                for table in ("jobs", "steps", "orgs"):
                    self.db.execute(f"DELETE FROM {table} WHERE source = ? AND org = ?",
                                    (source, org))
        except sqlite3.Error as exc:
            log.error("state_forget_failed", source=source, org=org, error=str(exc)[:200])

    def _transaction(self) -> _Tx:
        return _Tx(self.db)

    def close(self) -> None:
        """Close the database."""
        self.db.close()


class _Tx:
    """BEGIN/COMMIT around a batch; ROLLBACK on error so the file stays consistent."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        """Undo the batch so a failed write leaves the file as the last commit left it."""
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the failed statement may already have ended the transaction


def _job_rows(tracker: OrgTracker) -> list[tuple[object, ...]]:
    """Return the jobs rows the last poll changed."""
    key = (tracker.source, tracker.org)
    rows: list[tuple[object, ...]] = []
    for job_id in tracker.dirty:
        rec = tracker.jobs.get(job_id)
        if rec is not None:
            rows.append((*key, job_id, rec.job_type, rec.status, rec.first_seen,
                         rec.finished_seen, int(rec.counted), rec.created_at))
    return rows


def _step_rows(tracker: OrgTracker) -> list[tuple[object, ...]]:
    """Return the step rows of changed jobs that are still active (finished jobs need none)."""
    key = (tracker.source, tracker.org)
    rows: list[tuple[object, ...]] = []
    for job_id in tracker.steps.dirty:
        rec = tracker.jobs.get(job_id)
        if rec is None or rec.status in TERMINAL_JOB_STATUSES:
            continue
        rows.extend((*key, job_id, sid, rec.job_type, stype, status, attempt, int(counted),
                     progress)
                    for sid, stype, status, attempt, counted, progress
                    in tracker.steps.export(job_id))
    return rows
