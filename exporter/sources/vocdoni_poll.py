"""One Vocdoni poll: items normalized as pages arrive, stragglers located, positions kept."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from exporter.sources.base import JobObservation, KnownJobs, OrgTarget, PollError, PollReason
from exporter.sources.observed import COMPLETED, LEFT_OUT, ObservedJobs
from exporter.sources.parse import ParseNotes
from exporter.sources.vocdoni_pages import Read, Stream
from exporter.sources.vocdoni_parse import job_identity, v1_job, v2_job
from exporter.sources.vocdoni_resync import StreamKey

T = TypeVar("T")


@dataclass
class PollContext:
    """State of one poll of one org."""

    api: str
    target: OrgTarget
    known: KnownJobs
    notes: ParseNotes = field(default_factory=ParseNotes)
    gone: set[str] = field(default_factory=set)
    full: bool = False
    observed: ObservedJobs = field(default_factory=ObservedJobs)  # every stream's jobs, packed
    readable: int = 0  # list items of the target's types that normalized
    attempted: int = 0  # list items of the target's types

    def parse_item(self, job: dict[str, Any]) -> tuple[JobObservation, int] | None:
        """Normalize a list item the moment its page arrives: (observation, flags) or None."""
        job_id, job_type = job_identity(job)
        if self.target.job_types and job_type not in self.target.job_types:
            return JobObservation(job_id, job_type, "unknown"), LEFT_OUT  # listed, not observed
        self.attempted += 1
        found: tuple[JobObservation, int] | None = None
        if self.api == "v2":
            obs = one_item(v2_job, job, self.notes)
            found = None if obs is None else (obs, 0)
        else:
            item = one_item(v1_job, job, self.notes)
            found = None if item is None else (item[0], COMPLETED if item[1] else 0)
        self.readable += found is not None
        return found

    def check_readable(self) -> None:
        """Fail the poll when not one item normalized: the API changed shape."""
        if self.attempted and not self.readable and self.notes.last_error is not None:
            raise self.notes.last_error


def one_item(parse: Callable[[dict[str, Any], ParseNotes], T], job: dict[str, Any],
             notes: ParseNotes) -> T | None:
    """Normalize one item; a malformed one is left out and counted, the poll goes on."""
    try:
        return parse(job, notes)
    except PollError as exc:
        if exc.reason is not PollReason.SCHEMA:
            raise
        notes.drop(exc)
        return None


def locate(streams: Mapping[StreamKey, Stream], reads: Mapping[StreamKey, Read], job_id: str
           ) -> tuple[StreamKey, int] | None:
    """Estimate the unread page holding a job from its remembered position."""
    for key, read in reads.items():
        state = streams.get(key)
        if state is None or job_id not in state.pos:
            continue
        index = read.total - 1 - state.pos[job_id]
        page = index // read.limit + 1
        if index < 0 or page in read.pages or page > read.last_page:
            return None
        return key, page
    return None


def plan_rechecks(streams: Mapping[StreamKey, Stream], reads: Mapping[StreamKey, Read],
                  missing: list[str], api: str
                  ) -> tuple[dict[tuple[StreamKey, int], list[str]], list[str]]:
    """Split jobs to re-check into pages to read again and jobs to ask for one by one."""
    plan: dict[tuple[StreamKey, int], list[str]] = {}
    one_by_one: list[str] = []
    for job_id in missing:
        where = locate(streams, reads, job_id)
        if where is None:
            one_by_one.append(job_id)
        else:
            plan.setdefault(where, []).append(job_id)
    # v2: a page costs one request, like a GET /jobs/{id}; read it only when it covers 2+
    if api == "v2":
        for where, ids in list(plan.items()):
            if len(ids) == 1:
                one_by_one.extend(plan.pop(where))
    return plan, one_by_one


def save_streams(streams: dict[StreamKey, Stream], ctx: PollContext,
                 reads: Mapping[StreamKey, Read]) -> None:
    """Remember totals, newest job and positions of active jobs for the next poll."""
    # The active jobs are indexed as they are read: no pass over a first sync's 100k jobs.
    observed = ctx.observed
    active = {observed.job_id(row): row for row in observed.active_rows()}
    keep = {j for j in ctx.known.active_ids() if j not in ctx.gone
            and (not observed.has_id(j) or j in active)}
    keep |= active.keys()
    for key, read in reads.items():
        old = streams.get(key)
        pos = dict(old.pos) if old is not None and not read.full else {}
        pos.update((j, observed.position(row)) for j, row in active.items()
                   if observed.stream(row) == read.stream)
        pos = {j: p for j, p in pos.items() if j in keep}
        streams[key] = Stream(read.total, read.anchor, read.limit, pos)
