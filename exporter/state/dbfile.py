"""Open the SQLite state file only when it is the exporter's; refuse everything else at start."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from exporter.state.fileguard import APPLICATION_ID, Claim, StateFileError, claim

log = structlog.get_logger()

_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
Prepare = Callable[[sqlite3.Connection], None]  # create/check the schema; raise when unusable


class CorruptError(sqlite3.DatabaseError):
    """SQLite itself reported the file as damaged."""


@dataclass(slots=True)
class Opened:
    """A usable connection, the lock that keeps other exporters out, and what was moved aside."""

    db: sqlite3.Connection
    claim: Claim | None
    moved_aside: str | None = None


def open_db(path: str, prepare: Prepare, legacy: Callable[[sqlite3.Connection], bool]) -> Opened:
    """Open `path` for the exporter; raise StateFileError naming the reason when it cannot.

    `legacy` tells whether a SQLite file without application_id holds the exporter's own tables
    (files written before application_id existed).
    """
    if path == ":memory:":
        db = _connect(path)
        prepare(db)
        return Opened(db, None)
    held = claim(path)
    try:
        return Opened(_open_claimed(held, prepare, legacy), held)
    except CorruptError as exc:
        aside = _move_aside(held)
        log.error("state_file_corrupt_moved_aside", path=path, moved_to=aside,
                  error=str(exc)[:200])
        fresh = claim(path)
        try:
            return Opened(_open_claimed(fresh, prepare, legacy), fresh, aside)
        except BaseException:
            _give_up(fresh)
            raise
    except BaseException:
        _give_up(held)
        raise


def _open_claimed(held: Claim, prepare: Prepare, legacy: Callable[[sqlite3.Connection], bool]
                  ) -> sqlite3.Connection:
    """Connect to a locked file whose header was read; decide by its application_id."""
    app_id = held.application_id
    if app_id is not None and app_id not in (0, APPLICATION_ID):
        raise StateFileError(held.path, f"SQLite file of another application "
                                        f"(application_id {app_id:#010x})")
    if app_id == 0 and not _is_legacy(held.path, legacy):
        raise StateFileError(held.path, "SQLite file of another application")
    db = _connect(held.path)
    try:
        if app_id == APPLICATION_ID:
            _check_integrity(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        prepare(db)  # writes: a full disk or a lock held elsewhere fails here, at start
    except CorruptError:
        db.close()
        raise
    except sqlite3.Error as exc:
        db.close()
        if app_id == APPLICATION_ID and _is_corrupt(exc):
            raise CorruptError(str(exc)) from None
        raise StateFileError(held.path, str(exc)[:200]) from None
    return db


def _is_legacy(path: str, legacy: Callable[[sqlite3.Connection], bool]) -> bool:
    """Tell, reading only, whether a file without application_id holds our tables."""
    try:
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return False
    try:
        return legacy(ro)
    except sqlite3.Error:
        return False
    finally:
        ro.close()


def _check_integrity(db: sqlite3.Connection) -> None:
    """Raise CorruptError when SQLite finds the exporter's own file damaged."""
    try:
        row = db.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as exc:
        if _is_corrupt(exc):
            raise CorruptError(str(exc)) from None
        raise
    if row is None or row[0] != "ok":
        raise CorruptError(f"quick_check: {row[0] if row else 'no answer'}")


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPT_CODES


def _connect(path: str) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    except sqlite3.Error as exc:
        raise StateFileError(path, str(exc)[:200]) from None


def _move_aside(held: Claim) -> str:
    """Rename the exporter's own corrupt file (and its WAL) so a fresh one can start."""
    aside = f"{held.path}.corrupt-{int(time.time())}"
    try:
        for suffix in ("-wal", "-shm", ""):
            if os.path.exists(held.path + suffix):
                os.replace(held.path + suffix, aside + suffix)
    except OSError as exc:
        raise StateFileError(held.path, f"corrupt, and cannot be moved aside: "
                                        f"{exc.strerror or type(exc).__name__}") from None
    finally:
        held.release()
    return aside


def _give_up(held: Claim) -> None:
    """Release the lock; remove the file only when this start created it empty."""
    held.release()
    if held.created:
        for suffix in ("-wal", "-shm", ""):
            try:
                os.unlink(held.path + suffix)
            except OSError:
                pass
