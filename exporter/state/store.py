"""SQLite persistence of tracked jobs so finishes are counted once across restarts."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import structlog

from exporter.pacing import Pacer
from exporter.sources.base import TERMINAL_JOB_STATUSES
from exporter.state import finished_rows
from exporter.state.dbfile import open_db
from exporter.state.finished_rows import FinishedRows
from exporter.state.jobbook import JobRecord
from exporter.state.tracker import OrgTracker

log = structlog.get_logger()

SCHEMA_VERSION = "4"  # 4: counted finished jobs packed; 3: org = address; 2: org = label
WRITE_SLICE = 500  # rows written between two looks at the pacer's clock
_Row = TypeVar("_Row")
LEGACY_PREFIX = "v2-label:"  # org keys of a version 2 file, until their org claims them
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
""" + finished_rows.SCHEMA
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
    """One SQLite file (or :memory:) holding every org's known jobs and counted flags.

    Orgs are keyed by (source, address): renaming an org keeps its state, a new address is a
    new org. Writes are accounted (`persistent`, `write_errors`) for the state health metrics.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        opened = open_db(path, _prepare, _is_our_legacy_file)  # raises StateFileError
        self.db = opened.db
        self._claim = opened.claim
        self._finished = FinishedRows(self.db)
        try:
            self._finished.load_org_ids()
        except sqlite3.Error as exc:  # looked up one by one instead
            log.warning("state_org_ids_unread", error=str(exc)[:200])
        self._synced: set[tuple[str, str]] = set()  # orgs whose first sync is on file
        # None with :memory: (nothing to persist); else whether the last write committed
        self.persistent: bool | None = None if path == ":memory:" else True
        self.write_errors = 0
        if opened.moved_aside is not None:
            self.write_errors += 1  # the state the corrupt file held is lost: count it

    def _wrote(self, ok: bool) -> None:
        """Account one write attempt of the state file."""
        if not ok:
            self.write_errors += 1
        if self.persistent is not None:
            self.persistent = ok

    def restore(self, tracker: OrgTracker, address: str | None = None) -> int:
        """Load an org's jobs and active steps into a fresh tracker; return how many jobs."""
        key = (tracker.source, address or tracker.org)
        try:
            found = self._claim_legacy(key, tracker.org)
            synced = self.db.execute(
                "SELECT 1 FROM orgs WHERE source = ? AND org = ?", found).fetchone()
            rows = self.db.execute(
                "SELECT job_id, job_type, status, first_seen, finished_seen, counted, created_at"
                " FROM jobs WHERE source = ? AND org = ?", found).fetchall()
            steps = self.db.execute(
                "SELECT job_id, step_id, job_type, step_type, status, attempt, counted,"
                " last_progress_at FROM steps WHERE source = ? AND org = ?", found).fetchall()
            packed = self._restore_finished(tracker, found)
        except sqlite3.Error as exc:
            log.error("state_restore_failed", effect="org starts fresh", source=key[0],
                      org=tracker.org,
                      error=str(exc)[:200])
            tracker.forget_jobs()
            return 0
        for job_id, job_type, status, first_seen, finished_seen, counted, created_at in rows:
            tracker.restore(job_id, JobRecord(
                job_type=job_type, status=status, first_seen=first_seen,
                finished_seen=finished_seen, counted=bool(counted), created_at=created_at,
            ))
        restored_steps = 0
        for job_id, step_id, _type, step_type, status, attempt, counted, progress in steps:
            rec = tracker.jobs.get(job_id)
            if rec is None or rec.status in TERMINAL_JOB_STATUSES:
                continue
            tracker.steps.restore(job_id, rec.job_type, step_id, step_type, status, attempt,
                                  bool(counted), progress)
            restored_steps += 1
        tracker.read_scope = _load_scope(self.db, found)
        if found != key:  # read under the legacy key: the next save writes it all by address
            tracker.dirty.update(tracker.jobs)
            tracker.steps.dirty.update(job_id for job_id, *_ in steps)
        elif synced is not None:
            self._synced.add(key)
        if synced is not None:
            tracker.synced = True  # an org that had no job at all is still past its first sync
        if rows or packed or synced is not None:
            log.info("state_restored", source=key[0], org=tracker.org, jobs=len(rows) + packed,
                     steps=restored_steps)
        return len(rows) + packed

    def _restore_finished(self, tracker: OrgTracker, key: tuple[str, str]) -> int:
        """Load an org's packed finished jobs, streamed (a million rows are never a list)."""
        count = 0
        for packed, job_type, status, created_at, first_seen in self._finished.read(key):
            tracker.restore_finished(packed, job_type, status, created_at, first_seen)
            count += 1
        return count

    def save(self, tracker: OrgTracker, address: str | None = None) -> bool:
        """Write what the last poll changed in one transaction; False (and retry later) on error."""
        key = (tracker.source, address or tracker.org)
        book = tracker.steps
        first = tracker.synced and key not in self._synced
        if not (tracker.dirty or tracker.removed or book.dirty or first or tracker.scope_dirty):
            return True
        step_jobs = book.dirty | tracker.removed
        step_rows = _step_rows(tracker, key)
        deleted = tracker.jobs.moved | tracker.removed  # left, or now in the other table
        pacer = Pacer()  # a first sync writes 100k rows: scrapes get the GIL between slices
        try:
            with self._transaction():
                if deleted:  # (empty statements skipped: 10,000 orgs save a cycle)
                    self.db.executemany(
                        "DELETE FROM jobs WHERE source = ? AND org = ? AND job_id = ?",
                        _paced(((*key, job_id) for job_id in deleted), pacer),
                    )
                self.db.executemany(_UPSERT, _paced(_job_rows(tracker, key), pacer))
                self._finished.write(key, deleted, _paced(_packed_rows(tracker), pacer))
                if step_jobs:
                    self.db.executemany(
                        "DELETE FROM steps WHERE source = ? AND org = ? AND job_id = ?",
                        [(*key, job_id) for job_id in step_jobs],
                    )
                if step_rows:
                    self.db.executemany(_INSERT_STEP, step_rows)
                if first or tracker.scope_dirty:
                    _save_scope(self.db, key, tracker.read_scope)
                if first:
                    self.db.execute("INSERT OR REPLACE INTO orgs (source, org, synced_at)"
                                    " VALUES (?, ?, ?)", (*key, time.time()))
        except sqlite3.Error as exc:
            self._wrote(False)
            self._finished.forget_cache()
            log.error("state_save_failed", effect="finishes held until a write succeeds",
                      source=key[0], org=tracker.org, error=str(exc)[:200],
                      write_errors=self.write_errors)
            return False
        self._wrote(True)
        tracker.dirty.clear()
        tracker.scope_dirty = False
        tracker.removed.clear()
        tracker.jobs.moved.clear()
        book.dirty.clear()
        self._synced.add(key)
        return True

    def forget_org(self, source: str, address: str) -> None:
        """Delete an org removed from the config (keyed by its address)."""
        self._synced.discard((source, address))
        try:
            with self._transaction():
                for table in ("jobs", "steps", "orgs", "read_scopes"):
                    self.db.execute(f"DELETE FROM {table} WHERE source = ? AND org = ?",
                                    (source, address))
                self._finished.forget((source, address))
        except sqlite3.Error as exc:
            self._wrote(False)
            self._finished.forget_cache()
            log.error("state_forget_failed", source=source, error=str(exc)[:200])
            return
        self._wrote(True)

    def _claim_legacy(self, key: tuple[str, str], label: str) -> tuple[str, str]:
        """Move a version 2 org's rows (keyed by its label) to its address, once.

        Return the key to read the org's state from: the legacy one when the move failed.
        """
        legacy = (key[0], LEGACY_PREFIX + label)
        found = self.db.execute("SELECT 1 FROM orgs WHERE source = ? AND org = ? UNION ALL"
                                " SELECT 1 FROM jobs WHERE source = ? AND org = ? UNION ALL"
                                " SELECT 1 FROM org_ids WHERE source = ? AND org = ? LIMIT 1",
                                (*legacy, *legacy, *legacy)).fetchone()
        if found is None:
            return key
        mine = self.db.execute("SELECT 1 FROM orgs WHERE source = ? AND org = ?", key).fetchone()
        try:
            with self._transaction():
                for table in ("jobs", "steps", "orgs"):
                    if mine is not None:  # the address has its own state: the label's is stale
                        self.db.execute(f"DELETE FROM {table} WHERE source = ? AND org = ?",
                                        legacy)
                    else:
                        self.db.execute(f"UPDATE {table} SET org = ? WHERE source = ?"
                                        " AND org = ?", (key[1], *legacy))
                self._finished.claim(legacy, key, stale=mine is not None)
        except sqlite3.Error as exc:
            self._wrote(False)
            self._finished.forget_cache()
            log.error("state_migration_failed", effect="retried at the next save",
                      source=key[0], org=label, error=str(exc)[:200])
            return legacy if mine is None else key
        self._wrote(True)
        log.info("state_migrated", source=key[0], org=label)
        return key

    def _transaction(self) -> _Tx:
        return _Tx(self.db)

    def close(self) -> None:
        """Close the database, then release the lock that kept other exporters out."""
        self.db.close()
        if self._claim is not None:
            self._claim.release()


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


def _paced(rows: Iterable[_Row], pacer: Pacer) -> Iterator[_Row]:
    """Yield rows, pausing every WRITE_SLICE: one transaction, yet scrapes get the GIL."""
    for count, row in enumerate(rows, 1):
        yield row
        if count % WRITE_SLICE == 0:
            pacer.breathe_blocking()


def _job_rows(tracker: OrgTracker, key: tuple[str, str]) -> Iterator[tuple[object, ...]]:
    """Yield the `jobs` rows (live jobs) the last poll changed."""
    full = tracker.jobs.full
    for job_id in tracker.dirty:
        rec = full.get(job_id)
        if rec is not None:
            yield (*key, job_id, rec.job_type, rec.status, rec.first_seen,
                   rec.finished_seen, int(rec.counted), rec.created_at)


def _packed_rows(tracker: OrgTracker) -> Iterator[tuple[bytes, str, str, float | None, float]]:
    """Yield the packed rows (counted finished jobs) the last poll changed."""
    full, done = tracker.jobs.full, tracker.jobs.done
    for job_id in tracker.dirty:
        if job_id in full:
            continue
        row = done.find(job_id)
        if row >= 0:
            yield (done.packed(row), done.job_type(row), done.status(row), done.created_at(row),
                   done.first_seen(row))


def _step_rows(tracker: OrgTracker, key: tuple[str, str]) -> list[tuple[object, ...]]:
    """Return the step rows of changed jobs that are still active (finished jobs need none)."""
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


def _prepare(db: sqlite3.Connection) -> None:
    """Create or check the schema; a version 2 file's label keys become legacy keys."""
    db.executescript(_SCHEMA)
    db.execute(_SCOPE_TABLE)
    for probe in (*_PROBES, *finished_rows.PROBES):
        db.execute(probe).fetchall()
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    with _Tx(db):
        if row is not None and row[0] == "2":
            for table in ("jobs", "steps", "orgs"):
                db.execute(f"UPDATE {table} SET org = ? || org", (LEGACY_PREFIX,))
        if row is not None and row[0] in ("2", "3"):
            finished_rows.migrate(db)  # counted finished jobs become packed rows
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                   (SCHEMA_VERSION,))


def _is_our_legacy_file(db: sqlite3.Connection) -> bool:
    """Tell whether a file without application_id was written by an earlier exporter."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"jobs", "steps", "orgs", "meta"} <= tables:
        return False
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None or row[0] not in ("2", "3", SCHEMA_VERSION):
        return False
    for probe in _PROBES:
        db.execute(probe).fetchall()
    return True


# Which job types of an org were read (its streams): a type read for the first time after a
# restart is a first sync, so its finished jobs stay history. Kept apart from the jobs tables.
_SCOPE_TABLE = """
CREATE TABLE IF NOT EXISTS read_scopes (
    source TEXT NOT NULL, org TEXT NOT NULL, scope TEXT NOT NULL,
    PRIMARY KEY (source, org)
) WITHOUT ROWID
"""


def _load_scope(db: sqlite3.Connection, key: tuple[str, str]) -> frozenset[str] | None:
    """Return the job types an org's last poll read ([] = all), None when never recorded."""
    try:
        row = db.execute("SELECT scope FROM read_scopes WHERE source = ? AND org = ?",
                         key).fetchone()
        types = json.loads(row[0]) if row is not None else None
    except (sqlite3.Error, ValueError) as exc:
        log.error("state_read_scope_unreadable", source=key[0], org=key[1], error=str(exc)[:200])
        return None
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        return None
    return frozenset(types)


def _save_scope(db: sqlite3.Connection, key: tuple[str, str],
                scope: frozenset[str] | None) -> None:
    """Record which job types were read, in the caller's transaction."""
    if scope is not None:
        db.execute("INSERT OR REPLACE INTO read_scopes (source, org, scope) VALUES (?, ?, ?)",
                   (*key, json.dumps(sorted(scope))))
