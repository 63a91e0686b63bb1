"""The state file's packed finished jobs: one small row per counted terminal job.

Schema 4 keeps counted finished jobs apart from the `jobs` table: an integer org key, the
packed id (hex ids as raw bytes), type and status in one integer, two times. About 60 bytes a
job on disk instead of ~200 with the org address and text columns repeated on every row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from exporter.sources.base import FINISHED_JOB_STATUSES
from exporter.state.finished import pack_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS org_ids (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, org TEXT NOT NULL, UNIQUE (source, org)
);
CREATE TABLE IF NOT EXISTS job_types (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS finished (
    org_id INTEGER NOT NULL, job_id BLOB NOT NULL, kind INTEGER NOT NULL,
    created_at REAL, first_seen REAL NOT NULL,
    PRIMARY KEY (org_id, job_id)
) WITHOUT ROWID;
"""
PROBES = (
    "SELECT id, source, org FROM org_ids LIMIT 1",
    "SELECT id, name FROM job_types LIMIT 1",
    "SELECT org_id, job_id, kind, created_at, first_seen FROM finished LIMIT 1",
)
_STATUS_BITS = 3
_DONE = "counted = 1 AND status IN ({})".format(
    ", ".join(f"'{s}'" for s in FINISHED_JOB_STATUSES))
_STATUS_CODE = "CASE status {} END".format(
    " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(FINISHED_JOB_STATUSES)))
_UPSERT = ("INSERT OR REPLACE INTO finished (org_id, job_id, kind, created_at, first_seen)"
           " VALUES (?, ?, ?, ?, ?)")

def migrate(db: sqlite3.Connection) -> None:
    """Move a schema 2/3 file's counted finished jobs into packed rows (caller's transaction)."""
    db.create_function("pack_job_id", 1, pack_id, deterministic=True)
    db.execute(f"INSERT OR IGNORE INTO org_ids (source, org)"
               f" SELECT DISTINCT source, org FROM jobs WHERE {_DONE}")
    db.execute(f"INSERT OR IGNORE INTO job_types (name)"
               f" SELECT DISTINCT job_type FROM jobs WHERE {_DONE}")
    db.execute(
        f"INSERT OR REPLACE INTO finished (org_id, job_id, kind, created_at, first_seen)"
        f" SELECT o.id, pack_job_id(j.job_id), (t.id << {_STATUS_BITS}) | j.code,"
        f" j.created_at, j.first_seen FROM (SELECT *, {_STATUS_CODE} AS code FROM jobs"
        f" WHERE {_DONE}) AS j JOIN org_ids o ON o.source = j.source AND o.org = j.org"
        f" JOIN job_types t ON t.name = j.job_type")
    db.execute(f"DELETE FROM jobs WHERE {_DONE}")


class FinishedRows:
    """Read and write one file's packed rows; caches org and type keys of committed writes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._orgs: dict[tuple[str, str], int] = {}
        self._types: dict[str, int] = {}
        self._all_orgs = False  # _orgs holds every committed org key: a miss means absent

    def forget_cache(self) -> None:
        """Drop cached keys: a rolled back transaction may have taken the ones it created."""
        self._orgs.clear()
        self._types.clear()
        self._all_orgs = False

    def load_org_ids(self) -> None:
        """Read every org key at once: 10,000 single lookups cost ~0.5 s at startup."""
        self._orgs = {(source, org): int(org_id) for org_id, source, org
                      in self.db.execute("SELECT id, source, org FROM org_ids")}
        self._all_orgs = True

    def org_id(self, key: tuple[str, str], create: bool) -> int | None:
        """Return the integer key of (source, org); None when absent and not created."""
        found = self._orgs.get(key)
        if found is not None:
            return found
        row: tuple[Any, ...] | None = None
        if not self._all_orgs:
            row = self.db.execute("SELECT id FROM org_ids WHERE source = ? AND org = ?",
                                  key).fetchone()
        if row is None:
            if not create:
                return None
            row = (self.db.execute("INSERT INTO org_ids (source, org) VALUES (?, ?)",
                                   key).lastrowid,)
        self._orgs[key] = int(row[0])
        return int(row[0])

    def _type_id(self, name: str) -> int:
        found = self._types.get(name)
        if found is None:
            self.db.execute("INSERT OR IGNORE INTO job_types (name) VALUES (?)", (name,))
            found = int(self.db.execute("SELECT id FROM job_types WHERE name = ?",
                                        (name,)).fetchone()[0])
            self._types[name] = found
        return found

    def read(self, key: tuple[str, str]) -> Iterator[tuple[bytes, str, str, float | None, float]]:
        """Yield an org's packed jobs: (packed id, job type, status, created_at, first_seen)."""
        org_id = self.org_id(key, create=False)
        if org_id is None:
            return
        cursor = self.db.execute(
            f"SELECT f.job_id, t.name, f.kind, f.created_at, f.first_seen FROM finished f"
            f" JOIN job_types t ON t.id = f.kind >> {_STATUS_BITS} WHERE f.org_id = ?",
            (org_id,))
        mask = (1 << _STATUS_BITS) - 1
        for packed, name, kind, created, first in cursor:
            if kind & mask < len(FINISHED_JOB_STATUSES):  # else not a row this code wrote
                yield bytes(packed), name, FINISHED_JOB_STATUSES[kind & mask], created, first

    def write(self, key: tuple[str, str], deleted: Collection[str],
              rows: Iterable[tuple[bytes, str, str, float | None, float]]) -> None:
        """Delete the ids that left or moved, then upsert rows (caller's transaction)."""
        org_id = self.org_id(key, create=True)
        if deleted:
            self.db.executemany("DELETE FROM finished WHERE org_id = ? AND job_id = ?",
                                ((org_id, pack_id(job_id)) for job_id in deleted))
        self.db.executemany(_UPSERT, (
            (org_id, packed, self._type_id(job_type) << _STATUS_BITS
             | FINISHED_JOB_STATUSES.index(status), created, first)
            for packed, job_type, status, created, first in rows))

    def forget(self, key: tuple[str, str]) -> None:
        """Delete an org's packed rows and key (caller's transaction)."""
        org_id = self.org_id(key, create=False)
        if org_id is not None:
            self.db.execute("DELETE FROM finished WHERE org_id = ?", (org_id,))
            self.db.execute("DELETE FROM org_ids WHERE id = ?", (org_id,))
        self._orgs.pop(key, None)

    def claim(self, legacy: tuple[str, str], key: tuple[str, str], stale: bool) -> None:
        """Hand a version 2 label's rows to its address; `stale`: the address has its own."""
        if stale:
            self.forget(legacy)
            return
        self.forget(key)  # rows of the address without an org row: older than the label's
        self.db.execute("UPDATE org_ids SET org = ? WHERE source = ? AND org = ?",
                        (key[1], *legacy))
        self._orgs.pop(legacy, None)
        self._all_orgs = False  # the key now has the legacy's id: look it up again
