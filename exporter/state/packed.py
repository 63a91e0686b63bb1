"""Job ids packed in one bytearray and found through an open-addressing table in an array.

At a million jobs one `str` per id costs ~110 bytes plus a dict or set slot; here an id is its
packed bytes (a 64-hex id: 33 bytes) and three array slots, with no Python object per id. Used
by the tracker's finished jobs and by a poll's observed jobs (sources/observed.py).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet

_TAG_HEX = 1  # lowercase hex of even length, stored as raw bytes
_TAG_TEXT = 0  # anything else, stored as UTF-8 (lone surrogates kept)
_HEX_TAG, _TEXT_TAG = bytes((_TAG_HEX,)), bytes((_TAG_TEXT,))
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


class PackedIds:
    """Append-only rows of packed ids with a hash table from id to row."""

    def __init__(self) -> None:
        self._blob = bytearray()  # packed ids, one after the other
        self._ends = array("Q")  # row i's id ends at _ends[i]
        self._hash = array("q")  # hash of the packed id (process-local, never persisted)
        self._table = array("I", bytes(4 * _MIN_TABLE))  # row + 1, 0 = empty slot

    def __len__(self) -> int:
        return len(self._ends)

    def find(self, packed: bytes, alive: Callable[[int], bool] | None = None) -> int:
        """Return the row holding `packed` (and `alive`, when given), or -1."""
        h = hash(packed)
        table, hashes = self._table, self._hash
        mask = len(table) - 1
        i, perturb = h & mask, h & 0xFFFFFFFFFFFFFFFF
        while (slot := table[i]) != 0:
            row = slot - 1
            if hashes[row] == h and (alive is None or alive(row)) and self.packed(row) == packed:
                return row
            perturb >>= 5
            i = (i * 5 + perturb + 1) & mask
        return -1

    def packed(self, row: int) -> bytes:
        """Return a row's packed id."""
        start = self._ends[row - 1] if row else 0
        return bytes(self._blob[start:self._ends[row]])

    def job_id(self, row: int) -> str:
        """Return a row's job id."""
        return unpack_id(self.packed(row))

    def append(self, packed: bytes) -> int:
        """Add a row (callers check with find() first); return its number."""
        row = len(self._ends)
        self._blob += packed
        self._ends.append(len(self._blob))
        self._hash.append(hash(packed))
        if 2 * len(self._ends) > len(self._table):
            self._rehash(len(self._ends))
        else:
            self._place(row)
        return row

    def reserve(self, rows: int) -> None:
        """Size the table for `rows` rows now: no re-hash of every row in the middle of a sync.

        A re-hash walks every row in Python (17 ms at 65k rows, ~0.3 s at 1M) holding the GIL.
        """
        if 2 * rows > len(self._table):
            self._rehash(rows)

    def keep(self, rows: Iterable[int]) -> None:
        """Rewrite with the given rows only (in that order), then re-hash."""
        blob, ends, hashes = bytearray(), array("Q"), array("q")
        for row in rows:
            blob += self.packed(row)
            ends.append(len(blob))
            hashes.append(self._hash[row])
        self._blob, self._ends, self._hash = blob, ends, hashes
        self._rehash(len(ends))

    def _place(self, row: int) -> None:
        h = self._hash[row]
        table = self._table
        mask = len(table) - 1
        i, perturb = h & mask, h & 0xFFFFFFFFFFFFFFFF
        while table[i] != 0:
            perturb >>= 5
            i = (i * 5 + perturb + 1) & mask
        table[i] = row + 1

    def _rehash(self, rows: int) -> None:
        """Re-hash every row into a table at most a quarter full for `rows` rows."""
        size = _MIN_TABLE
        while size < 4 * max(1, rows):
            size *= 2
        self._table = array("I", bytes(4 * size))
        for row in range(len(self._ends)):
            self._place(row)

    def nbytes(self) -> int:
        """Return the bytes the arrays hold."""
        arrays = (self._ends, self._hash, self._table)
        return len(self._blob) + sum(a.itemsize * len(a) for a in arrays)


class PackedIdSet(AbstractSet[str]):
    """A set of job ids without a string each (~65 bytes a 64-hex id instead of ~180).

    A resync pass over a million-job org remembers every id it saw until the pass ends.
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids = PackedIds()
        self.update(ids)

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self._ids.find(pack_id(job_id)) >= 0

    def __iter__(self) -> Iterator[str]:
        return (self._ids.job_id(row) for row in range(len(self._ids)))

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, job_id: str) -> None:
        """Add an id (a no-op when present)."""
        packed = pack_id(job_id)
        if self._ids.find(packed) < 0:
            self._ids.append(packed)

    def update(self, ids: Iterable[str]) -> None:
        """Add several ids."""
        for job_id in ids:
            self.add(job_id)
