"""The jobs one poll observed, packed: a first sync of a million jobs holds no object per job.

Each list item is normalized the moment its page arrives and kept as a few array slots (packed
id, type and status indices, progress, position in its stream); the raw page is dropped. Only a
job whose observation carries more (times, counts: imports, old-API items) keeps its
JobObservation. The tracker iterates the observations one at a time and asks membership by id.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Container, Iterator, Sequence
from typing import overload

from exporter.sources.base import TERMINAL_JOB_STATUSES, JobObservation
from exporter.state.packed import PackedIds, pack_id

NO_STREAM = 255  # a job read one by one (GET /jobs/{id}), not from a list page
LEFT_OUT = 1  # flag: listed, but not an observation of this poll (other type, unreadable)
COMPLETED = 2  # flag: an old-API item whose `completed` is true (status resolved later)
RESERVE_MAX = 1 << 21  # rows sized up front from a list's total; a lying total is not trusted


class ObservedJobs(Sequence[JobObservation]):
    """Observed jobs by id, in the order read; listed-but-left-out ones are skipped."""

    def __init__(self) -> None:
        self._ids = PackedIds()
        self._pos = array("q")  # position in its stream, from the oldest end
        self._stream = array("B")
        self._kind = array("I")  # type index << 8 | status index
        self._flags = array("B")
        self._progress = array("d")  # NaN = none (votes relayed in bulk carry one)
        self._types: list[str] = []  # one string each
        self._type_ix: dict[str, int] = {}
        self._statuses: list[str] = []  # normalized statuses: the contract's few
        self._status_ix: dict[str, int] = {}
        self._extra: dict[int, JobObservation] = {}  # rows with more than that
        self._active: dict[int, None] = {}  # rows whose status is not terminal, in order
        self._kept = 0  # rows not LEFT_OUT

    # --- reading ------------------------------------------------------------------
    def __len__(self) -> int:
        return self._kept

    def __iter__(self) -> Iterator[JobObservation]:
        flags = self._flags
        return (self.observation(row) for row in range(len(flags)) if not flags[row] & LEFT_OUT)

    @overload
    def __getitem__(self, index: int) -> JobObservation: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[JobObservation]: ...

    def __getitem__(self, index: int | slice) -> JobObservation | Sequence[JobObservation]:
        if isinstance(index, slice):
            return list(self)[index]
        if self._kept == len(self._flags):
            return self.observation(range(len(self._flags))[index])
        return list(self)[index]

    def __contains__(self, item: object) -> bool:
        """Tell whether a job (by id or observation) is among the observations."""
        job_id = item.job_id if isinstance(item, JobObservation) else item
        return isinstance(job_id, str) and self.has_id(job_id)

    def has_id(self, job_id: str) -> bool:
        """Tell whether a job is among the observations (not merely listed)."""
        row = self.row_of(job_id)
        return row >= 0 and not self._flags[row] & LEFT_OUT

    @property
    def ids(self) -> Container[str]:
        """Return the observed ids as a container (membership without a set of strings)."""
        return _Ids(self)

    def row_of(self, job_id: str) -> int:
        """Return the row of a job listed or observed this poll, or -1."""
        return self._ids.find(pack_id(job_id))

    def observation(self, row: int) -> JobObservation:
        """Return a row's observation (built on demand for the plain ones)."""
        extra = self._extra.get(row)
        if extra is not None:
            return extra
        kind, progress = self._kind[row], self._progress[row]
        return JobObservation(job_id=self._ids.job_id(row), job_type=self._types[kind >> 8],
                              status=self._statuses[kind & 0xFF],
                              progress=None if math.isnan(progress) else progress)

    def job_id(self, row: int) -> str:
        """Return a row's job id."""
        return self._ids.job_id(row)

    def status(self, row: int) -> str:
        """Return a row's status."""
        return self._statuses[self._kind[row] & 0xFF]

    def position(self, row: int) -> int:
        """Return a row's position in its stream."""
        return self._pos[row]

    def stream(self, row: int) -> int:
        """Return the stream a row was listed in (NO_STREAM: read one by one)."""
        return self._stream[row]

    def flags(self, row: int) -> int:
        """Return a row's flags (LEFT_OUT, COMPLETED)."""
        return self._flags[row]

    def active_rows(self) -> list[int]:
        """Return the observed rows whose status is not terminal (few: pending jobs)."""
        return list(self._active)

    def listed_ids(self) -> Iterator[str]:
        """Yield the id of every job a list page showed, left-out ones too."""
        streams = self._stream
        return (self._ids.job_id(row) for row in range(len(streams))
                if streams[row] != NO_STREAM)

    def kept_rows(self) -> Iterator[int]:
        """Yield the rows that are observations (not left out)."""
        flags = self._flags
        return (row for row in range(len(flags)) if not flags[row] & LEFT_OUT)

    # --- changes ------------------------------------------------------------------
    def reserve(self, rows: int) -> None:
        """Size the id table for a list's announced total (bounded: totals may lie)."""
        self._ids.reserve(min(rows, RESERVE_MAX))

    def add(self, obs: JobObservation, stream: int = NO_STREAM, pos: int = -1,
            flags: int = 0) -> int:
        """Add a job not added yet (callers check with row_of()); return its row."""
        row = self._ids.append(pack_id(obs.job_id))
        self._pos.append(pos)
        self._stream.append(stream)
        self._kind.append(0)
        self._flags.append(flags)
        self._progress.append(math.nan)
        self._kept += not flags & LEFT_OUT
        self._store(row, obs)
        return row

    def replace(self, row: int, obs: JobObservation, flags: int | None = None) -> None:
        """Replace a row's observation (an old-API status resolved); optionally its flags."""
        if flags is not None:
            self._kept += (not flags & LEFT_OUT) - (not self._flags[row] & LEFT_OUT)
            self._flags[row] = flags
        self._store(row, obs)

    def _store(self, row: int, obs: JobObservation) -> None:
        self._kind[row] = (_index(obs.job_type, self._types, self._type_ix) << 8
                           | _index(obs.status, self._statuses, self._status_ix))
        if _plain(obs):
            self._progress[row] = math.nan if obs.progress is None else obs.progress
            self._extra.pop(row, None)
        else:
            self._extra[row] = obs
        if obs.status in TERMINAL_JOB_STATUSES or self._flags[row] & LEFT_OUT:
            self._active.pop(row, None)
        else:
            self._active[row] = None

    def nbytes(self) -> int:
        """Return the bytes the arrays hold (plain rows only; for tests and benchmarks)."""
        arrays = (self._pos, self._stream, self._kind, self._flags, self._progress)
        return self._ids.nbytes() + sum(a.itemsize * len(a) for a in arrays)


def _index(name: str, names: list[str], index: dict[str, int]) -> int:
    """Return a name's number, adding it when new."""
    ix = index.get(name)
    if ix is None:
        ix = index[name] = len(names)
        names.append(name)
    return ix


def _plain(obs: JobObservation) -> bool:
    """Tell an observation that is its id, type, status and progress only (list items)."""
    return (obs.created_at is None and obs.started_at is None and obs.finished_at is None
            and obs.duration_s is None and obs.items_added is None
            and obs.items_errored is None and obs.steps is None
            and (obs.progress is None or not math.isnan(obs.progress)))


class _Ids(Container[str]):
    """The ids of an ObservedJobs, for `in` tests."""

    def __init__(self, jobs: ObservedJobs) -> None:
        self._jobs = jobs

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self._jobs.has_id(job_id)
