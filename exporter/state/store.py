"""SQLite persistence of tracked jobs so finishes are counted once across restarts."""

from __future__ import annotations

import os
import sqlite3
import time

import structlog

from exporter.state.tracker import JobRecord, OrgTracker

log = structlog.get_logger()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    source TEXT NOT NULL, org TEXT NOT NULL, job_id TEXT NOT NULL,
    job_type TEXT NOT NULL, status TEXT NOT NULL, first_seen REAL NOT NULL,
    finished_seen REAL, counted INTEGER NOT NULL, created_at REAL,
    PRIMARY KEY (source, org, job_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_UPSERT = (
    "INSERT OR REPLACE INTO jobs (source, org, job_id, job_type, status, first_seen,"
    " finished_seen, counted, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class StateStore:
    """One SQLite file (or :memory:) holding every org's known jobs and counted flags."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = self._open(path)

    def _open(self, path: str) -> sqlite3.Connection:
        try:
            return self._connect(path)
        except sqlite3.DatabaseError as exc:
            if path == ":memory:":
                raise
            aside = f"{path}.corrupt-{int(time.time())}"
            os.replace(path, aside)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.replace(path + suffix, aside + suffix)
            log.error("state file unusable, moved aside; starting fresh",
                      path=path, moved_to=aside, error=str(exc)[:200])
            return self._connect(path)

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
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def restore(self, tracker: OrgTracker) -> int:
        """Load an org's jobs into a fresh tracker; return how many."""
        rows = self.db.execute(
            "SELECT job_id, job_type, status, first_seen, finished_seen, counted, created_at"
            " FROM jobs WHERE source = ? AND org = ?",
            (tracker.source, tracker.org),
        ).fetchall()
        for job_id, job_type, status, first_seen, finished_seen, counted, created_at in rows:
            tracker.restore(job_id, JobRecord(
                job_type=job_type, status=status, first_seen=first_seen,
                finished_seen=finished_seen, counted=bool(counted), created_at=created_at,
                queue_observed=True,
            ))
        if rows:
            log.info("state restored", source=tracker.source, org=tracker.org, jobs=len(rows))
        return len(rows)

    def save(self, tracker: OrgTracker) -> None:
        """Write the jobs changed by the last poll in one transaction."""
        if not tracker.dirty and not tracker.removed:
            return
        key = (tracker.source, tracker.org)
        rows = []
        for job_id in tracker.dirty:
            rec = tracker.jobs.get(job_id)
            if rec is not None:
                rows.append((*key, job_id, rec.job_type, rec.status, rec.first_seen,
                             rec.finished_seen, int(rec.counted), rec.created_at))
        with self._transaction():
            self.db.executemany(_UPSERT, rows)
            self.db.executemany(
                "DELETE FROM jobs WHERE source = ? AND org = ? AND job_id = ?",
                [(*key, job_id) for job_id in tracker.removed],
            )
        tracker.dirty.clear()
        tracker.removed.clear()

    def forget_org(self, source: str, org: str) -> None:
        """Delete an org removed from the config."""
        with self._transaction():
            self.db.execute("DELETE FROM jobs WHERE source = ? AND org = ?", (source, org))

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
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
