"""An org's known jobs: full records for live ones, packed rows for counted finished ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSet
from dataclasses import dataclass

from exporter.sources.base import TERMINAL_JOB_STATUSES
from exporter.state.finished import FinishedJobs


@dataclass(slots=True)
class JobRecord:
    """What is remembered of one job; persisted by the state store."""

    job_type: str
    status: str
    first_seen: float
    finished_seen: float | None = None
    counted: bool = False  # its finish was counted, or it was already history at first sync
    created_at: float | None = None
    progress: float | None = None
    queue_observed: bool = False
    seen_active: bool = False  # seen pending/running at least once: first-seen timing is sound


def compactable(rec: JobRecord) -> bool:
    """Tell whether a record holds nothing a packed row does not: finished and counted."""
    return rec.counted and rec.status in TERMINAL_JOB_STATUSES


class JobBook(Mapping[str, JobRecord]):
    """Every known job of one org, by id; reads of a packed job return a detached record.

    `full` holds the jobs that still change (pending, running, not counted yet); `done` the
    counted finished ones, without a Python object each. `moved` collects the ids that changed
    representation or left since the last state save, so the store deletes their old row.
    """

    def __init__(self) -> None:
        self.full: dict[str, JobRecord] = {}
        self.done = FinishedJobs()
        self.moved: set[str] = set()

    def __len__(self) -> int:
        return len(self.full) + len(self.done)

    def __iter__(self) -> Iterator[str]:
        yield from self.done.ids()
        yield from self.full

    def __contains__(self, job_id: object) -> bool:
        if not isinstance(job_id, str):
            return False
        return job_id in self.full or self.done.find(job_id) >= 0

    def __getitem__(self, job_id: str) -> JobRecord:
        rec = self.full.get(job_id)
        if rec is not None:
            return rec
        row = self.done.find(job_id)
        if row < 0:
            raise KeyError(job_id)
        return self._record(row)

    def _record(self, row: int) -> JobRecord:
        done = self.done
        return JobRecord(job_type=done.job_type(row), status=done.status(row),
                         first_seen=done.first_seen(row), counted=True,
                         created_at=done.created_at(row), queue_observed=True)

    def type_of(self) -> Iterator[tuple[str, str]]:
        """Yield (job id, job type) of every job without building records."""
        done = self.done
        for row in done.rows():
            yield done.job_id(row), done.job_type(row)
        for job_id, rec in self.full.items():
            yield job_id, rec.job_type

    def add(self, job_id: str, rec: JobRecord) -> None:
        """Remember a job, packed when it is finished and counted."""
        if compactable(rec):
            self.done.add(job_id, rec.job_type, rec.status, rec.created_at, rec.first_seen)
        else:
            self.full[job_id] = rec

    def compact(self, job_id: str) -> None:
        """Pack a full record that became finished and counted."""
        rec = self.full.pop(job_id)
        self.done.add(job_id, rec.job_type, rec.status, rec.created_at, rec.first_seen)
        self.moved.add(job_id)

    def promote(self, job_id: str, row: int) -> JobRecord:
        """Turn a packed job back into a full record (its status changed, or steps came)."""
        rec = self._record(row)
        self.done.remove(row)
        self.full[job_id] = rec
        self.moved.add(job_id)
        return rec

    def pop(self, job_id: str) -> tuple[str, str]:
        """Forget a job; return its (type, status). KeyError when unknown."""
        rec = self.full.pop(job_id, None)
        self.moved.add(job_id)
        if rec is not None:
            return rec.job_type, rec.status
        row = self.done.find(job_id)
        if row < 0:
            raise KeyError(job_id)
        found = self.done.job_type(row), self.done.status(row)
        self.done.remove(row)
        return found


class DirtyIds(MutableSet[str]):
    """Job ids the state store must write: a set, plus the packed rows added since the last save.

    A first sync of a million jobs adds a million packed rows; naming each in a set of id
    strings cost ~150 MB until the save. The packed ones are rows past FinishedJobs.fresh.
    """

    def __init__(self, done: Callable[[], FinishedJobs]) -> None:
        self._ids: set[str] = set()
        self._done = done

    def __contains__(self, job_id: object) -> bool:
        if job_id in self._ids:
            return True
        if not isinstance(job_id, str):
            return False
        done = self._done()
        row = done.find(job_id)
        return row >= 0 and done.is_fresh(row)

    def __iter__(self) -> Iterator[str]:
        yield from self._ids
        yield from (j for j in self._done().fresh_ids() if j not in self._ids)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return bool(self._ids) or self._done().has_fresh()

    def add(self, value: str) -> None:
        """Name a job to write."""
        self._ids.add(value)

    def discard(self, value: str) -> None:
        """Forget a job named to write (a packed row that left is dead: never yielded)."""
        self._ids.discard(value)

    def update(self, values: Iterable[str]) -> None:
        """Name several jobs to write."""
        self._ids.update(values)

    def clear(self) -> None:
        """Note that everything named is on file."""
        self._ids.clear()
        self._done().mark_saved()
