"""Finished jobs packed in arrays: all a counted terminal job needs until it leaves the list.

A finished job is "seen, counted": its id (to recognise it when listed again), its type and
status (the jobs-by-status gauge), its creation time (a reused id is another job) and when it was
first seen. At a million jobs one Python object per job costs ~0.5 KB; here a job is a few
array slots and its packed id in one bytearray (~90 bytes for a 64-hex id), found through an
open-addressing hash table that is itself an array (state/packed.py).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator

from exporter.sources.base import FINISHED_JOB_STATUSES
from exporter.state.packed import PackedIds, pack_id, unpack_id

__all__ = ["FinishedJobs", "pack_id", "unpack_id"]

_DEAD = 0xFFFFFFFF  # kind of a row whose job left the list
_STATUS_BITS = 3  # kind = type index << 3 | index in FINISHED_JOB_STATUSES


class FinishedJobs:
    """Counted terminal jobs of one org, in insertion order, without a Python object per job.

    Rows from `fresh` on were added since the state store last saved (a first sync's history):
    the store writes them without one id string each in a dirty set.
    """

    def __init__(self) -> None:
        self._ids = PackedIds()
        self._kind = array("I")  # type index << 3 | status index; _DEAD once gone
        self._created = array("d")  # created_at, NaN = unknown
        self._first = array("d")  # first_seen
        self._types: list[str] = []
        self._type_ix: dict[str, int] = {}
        self.live = 0
        self.fresh = 0  # first row not saved yet

    def __len__(self) -> int:
        return self.live

    # --- lookups ----------------------------------------------------------------
    def find(self, job_id: str) -> int:
        """Return the row of a live job, or -1."""
        return self._ids.find(pack_id(job_id), self._alive)

    def find_packed(self, packed: bytes) -> int:
        """Return the row of a live job by its packed id, or -1."""
        return self._ids.find(packed, self._alive)

    def _alive(self, row: int) -> bool:
        return self._kind[row] != _DEAD

    def job_id(self, row: int) -> str:
        """Return a row's job id."""
        return self._ids.job_id(row)

    def packed(self, row: int) -> bytes:
        """Return a row's packed id (the state file stores it as is)."""
        return self._ids.packed(row)

    def job_type(self, row: int) -> str:
        """Return a row's job type label."""
        return self._types[self._kind[row] >> _STATUS_BITS]

    def status(self, row: int) -> str:
        """Return a row's (terminal) status."""
        return FINISHED_JOB_STATUSES[self._kind[row] & ((1 << _STATUS_BITS) - 1)]

    def created_at(self, row: int) -> float | None:
        """Return a row's creation time, None when the API gave none."""
        value = self._created[row]
        return None if math.isnan(value) else value

    def first_seen(self, row: int) -> float:
        """Return when the job was first seen."""
        return self._first[row]

    def set_created_at(self, row: int, created_at: float) -> None:
        """Remember a creation time learnt later (a list without times, then a detail)."""
        self._created[row] = created_at

    def rows(self, start: int = 0) -> Iterator[int]:
        """Yield live rows from `start` on, oldest first."""
        kind = self._kind
        return (row for row in range(start, len(kind)) if kind[row] != _DEAD)

    def ids(self) -> Iterator[str]:
        """Yield live job ids, oldest first."""
        return (self.job_id(row) for row in self.rows())

    def fresh_ids(self) -> Iterator[str]:
        """Yield the ids of live rows added since the last mark_saved()."""
        return (self.job_id(row) for row in self.rows(self.fresh))

    def has_fresh(self) -> bool:
        """Return True when a live row was added since the last mark_saved()."""
        return next(self.rows(self.fresh), None) is not None

    def is_fresh(self, row: int) -> bool:
        """Return True when a row was added since the last mark_saved()."""
        return row >= self.fresh

    def mark_saved(self) -> None:
        """Note that every row so far is on file."""
        self.fresh = len(self._kind)

    # --- changes ----------------------------------------------------------------
    def reserve(self, rows: int) -> None:
        """Make room for `rows` live jobs without a re-hash while they arrive."""
        self._ids.reserve(rows)

    def add(self, job_id: str, job_type: str, status: str, created_at: float | None,
            first_seen: float) -> None:
        """Remember a counted terminal job (not known yet: callers check with find())."""
        self.add_packed(pack_id(job_id), job_type, status, created_at, first_seen)

    def add_packed(self, packed: bytes, job_type: str, status: str, created_at: float | None,
                   first_seen: float) -> None:
        """Remember a job by its packed id (restore from the state file)."""
        type_ix = self._type_ix.get(job_type)
        if type_ix is None:
            type_ix = self._type_ix[job_type] = len(self._types)
            self._types.append(job_type)
        self._kind.append(type_ix << _STATUS_BITS | FINISHED_JOB_STATUSES.index(status))
        self._created.append(math.nan if created_at is None else created_at)
        self._first.append(first_seen)
        self._ids.append(packed)
        self.live += 1

    def remove(self, row: int) -> None:
        """Forget a row; the space is reclaimed once dead rows outnumber live ones."""
        self._kind[row] = _DEAD
        self.live -= 1
        dead = len(self._kind) - self.live
        if dead > 1024 and dead > self.live:
            self._drop_dead()

    def _drop_dead(self) -> None:
        """Rewrite the arrays with live rows only, keeping their order."""
        live = array("Q", self.rows())
        self.fresh = sum(1 for row in live if row < self.fresh)
        self._ids.keep(live)
        self._kind = array("I", (self._kind[row] for row in live))
        self._created = array("d", (self._created[row] for row in live))
        self._first = array("d", (self._first[row] for row in live))

    def nbytes(self) -> int:
        """Return the bytes the arrays hold (for the benchmark's bytes-per-job curve)."""
        arrays = (self._kind, self._created, self._first)
        return self._ids.nbytes() + sum(a.itemsize * len(a) for a in arrays)
