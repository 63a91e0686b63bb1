"""Decide whether a state file is the exporter's before touching it, and hold it exclusively."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass

# PRAGMA application_id of every state file the exporter creates ("AJEX"): SQLite files of other
# applications are never opened for writing, let alone moved aside.
APPLICATION_ID = 0x414A4558
_SQLITE_MAGIC = b"SQLite format 3\x00"


class StateFileError(OSError):
    """The state file cannot be used; the exporter refuses to start and touches nothing."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot use state file {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(slots=True)
class Claim:
    """An exclusively locked state path: the lock lives as long as the open descriptor."""

    path: str
    fd: int
    created: bool  # the exporter created this file just now (a 0-byte file it may fill)
    application_id: int | None  # None while the file has no SQLite header yet

    def release(self) -> None:
        """Drop the lock (after SQLite closed the file: closing any descriptor of it would
        drop SQLite's own POSIX locks too)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def claim(path: str) -> Claim:
    """Open, lock and identify the file at `path`; raise StateFileError with the reason."""
    parent = os.path.dirname(path)
    try:
        if parent:
            os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise StateFileError(path, f"cannot create its directory: {_why(exc)}") from None
    fd, created = _open(path)
    try:
        _lock(path, fd)
        return Claim(path, fd, created, None if created else _identify(path, fd))
    except BaseException:
        os.close(fd)
        if created:
            _unlink(path)
        raise


def _open(path: str) -> tuple[int, bool]:
    """Open the file read-write, creating it only when absent; return (fd, created)."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        is_dir = False
    except OSError as exc:
        raise StateFileError(path, _why(exc)) from None
    if is_dir:
        raise StateFileError(path, "is a directory")
    flags = os.O_RDWR | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateFileError(path, _why(exc)) from None
    try:
        return os.open(path, flags), False
    except OSError as exc:
        raise StateFileError(path, _why(exc)) from None


def _lock(path: str, fd: int) -> None:
    """Take the exclusive advisory lock another exporter on the same file would hold."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StateFileError(path, "in use by another asyncjob-exporter process") from None
        raise StateFileError(path, f"cannot lock: {_why(exc)}") from None


def _identify(path: str, fd: int) -> int:
    """Return the application_id of an existing SQLite file; refuse anything else."""
    try:
        header = os.pread(fd, 100, 0)
    except OSError as exc:
        raise StateFileError(path, f"cannot read: {_why(exc)}") from None
    if not header:
        raise StateFileError(path, "empty file the exporter did not create")
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StateFileError(path, "not a SQLite database")
    return int.from_bytes(header[68:72], "big")


def _unlink(path: str) -> None:
    """Remove the empty file this start created and could not use."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _why(exc: OSError) -> str:
    """Return the OS reason without the path (the message names the path once)."""
    return exc.strerror or type(exc).__name__
