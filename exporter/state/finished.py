"""Finished jobs packed in arrays: all a counted terminal job needs until it leaves the list.

A finished job is "seen, counted": its id (to recognise it when listed again), its type and
status (the jobs-by-status gauge), its creation time (a reused id is another job) and when it was
first seen. At a million jobs one Python object per job costs ~0.5 KB; here a job is a few
array slots and its packed id in one bytearray (~90 bytes for a 64-hex id), found through an
open-addressing hash table that is itself an array.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator

from exporter.sources.base import FINISHED_JOB_STATUSES

_TAG_HEX = 1  # lowercase hex of even length, stored as raw bytes
_TAG_TEXT = 0  # anything else, stored as UTF-8 (lone surrogates kept)
_HEX_TAG, _TEXT_TAG = bytes((_TAG_HEX,)), bytes((_TAG_TEXT,))
_DEAD = 0xFFFFFFFF  # kind of a row whose job left the list
_STATUS_BITS = 3  # kind = type index << 3 | index in FINISHED_JOB_STATUSES
_MIN_TABLE = 8


def pack_id(job_id: str) -> bytes:
    """Return a lossless compact encoding of a job id (hex ids take half the bytes)."""
    if job_id and not len(job_id) % 2 and job_id.isalnum():
        try:
            raw = bytes.fromhex(job_id)
        except ValueError:
            raw = b""
        if raw and raw.hex() == job_id:  # lowercase: the round trip gives the same text
            return _HEX_TAG + raw
    return _TEXT_TAG + job_id.encode("utf-8", "surrogatepass")


def unpack_id(packed: bytes) -> str:
    """Return the job id pack_id() encoded."""
    if packed[0] == _TAG_HEX:
        return packed[1:].hex()
    return packed[1:].decode("utf-8", "surrogatepass")


class FinishedJobs:
    """Counted terminal jobs of one org, in insertion order, without a Python object per job."""

    def __init__(self) -> None:
        self._blob = bytearray()  # packed ids, one after the other
        self._ends = array("Q")  # row i's id ends at _ends[i]
        self._hash = array("q")  # hash of the packed id (process-local, never persisted)
        self._kind = array("I")  # type index << 3 | status index; _DEAD once gone
        self._created = array("d")  # created_at, NaN = unknown
        self._first = array("d")  # first_seen
        self._table = array("I", bytes(4 * _MIN_TABLE))  # row + 1, 0 = empty slot
        self._types: list[str] = []
        self._type_ix: dict[str, int] = {}
        self.live = 0

    def __len__(self) -> int:
        return self.live

    # --- lookups ----------------------------------------------------------------
    def find(self, job_id: str) -> int:
        """Return the row of a live job, or -1."""
        return self._find(pack_id(job_id))

    def find_packed(self, packed: bytes) -> int:
        """Return the row of a live job by its packed id, or -1."""
        return self._find(packed)

    def _find(self, packed: bytes) -> int:
        h = hash(packed)
        table, hashes = self._table, self._hash
        mask = len(table) - 1
        i, perturb = h & mask, h & 0xFFFFFFFFFFFFFFFF
        while (slot := table[i]) != 0:
            row = slot - 1
            if hashes[row] == h and self._kind[row] != _DEAD and self._packed(row) == packed:
                return row
            perturb >>= 5
            i = (i * 5 + perturb + 1) & mask
        return -1

    def _packed(self, row: int) -> bytes:
        start = self._ends[row - 1] if row else 0
        return bytes(self._blob[start:self._ends[row]])

    def job_id(self, row: int) -> str:
        """Return a row's job id."""
        return unpack_id(self._packed(row))

    def packed(self, row: int) -> bytes:
        """Return a row's packed id (the state file stores it as is)."""
        return self._packed(row)

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

    def rows(self) -> Iterator[int]:
        """Yield live rows, oldest first."""
        kind = self._kind
        return (row for row in range(len(kind)) if kind[row] != _DEAD)

    def ids(self) -> Iterator[str]:
        """Yield live job ids, oldest first."""
        return (self.job_id(row) for row in self.rows())

    # --- changes ----------------------------------------------------------------
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
        row = len(self._kind)
        self._blob += packed
        self._ends.append(len(self._blob))
        self._hash.append(hash(packed))
        self._kind.append(type_ix << _STATUS_BITS | FINISHED_JOB_STATUSES.index(status))
        self._created.append(math.nan if created_at is None else created_at)
        self._first.append(first_seen)
        self.live += 1
        if 2 * len(self._kind) > len(self._table):
            self._rebuild()
        else:
            self._place(row)

    def remove(self, row: int) -> None:
        """Forget a row; the space is reclaimed once dead rows outnumber live ones."""
        self._kind[row] = _DEAD
        self.live -= 1
        dead = len(self._kind) - self.live
        if dead > 1024 and dead > self.live:
            self._rebuild()

    def _place(self, row: int) -> None:
        h = self._hash[row]
        table = self._table
        mask = len(table) - 1
        i, perturb = h & mask, h & 0xFFFFFFFFFFFFFFFF
        while table[i] != 0:
            perturb >>= 5
            i = (i * 5 + perturb + 1) & mask
        table[i] = row + 1

    def _rebuild(self) -> None:
        """Drop dead rows and re-hash into a table at most half full."""
        if self.live < len(self._kind):
            self._drop_dead()
        size = _MIN_TABLE
        while size < 4 * max(1, len(self._kind)):
            size *= 2
        self._table = array("I", bytes(4 * size))
        for row in range(len(self._kind)):
            self._place(row)

    def _drop_dead(self) -> None:
        """Rewrite the arrays with live rows only, keeping their order."""
        blob, ends = bytearray(), array("Q")
        hashes, kinds, created, first = array("q"), array("I"), array("d"), array("d")
        for row in self.rows():
            blob += self._packed(row)
            ends.append(len(blob))
            hashes.append(self._hash[row])
            kinds.append(self._kind[row])
            created.append(self._created[row])
            first.append(self._first[row])
        self._blob, self._ends, self._hash = blob, ends, hashes
        self._kind, self._created, self._first = kinds, created, first

    def nbytes(self) -> int:
        """Return the bytes the arrays hold (for the benchmark's bytes-per-job curve)."""
        arrays = (self._ends, self._hash, self._kind, self._created, self._first, self._table)
        return len(self._blob) + sum(a.itemsize * len(a) for a in arrays)
