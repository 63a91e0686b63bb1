"""Steps of a json source's jobs: one request per job, or one stream of every changed step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

import jmespath
import structlog

from exporter.sources.base import (
    INVALID_ITEM,
    JobObservation,
    OrgTarget,
    PollError,
    StepObservation,
)
from exporter.sources.http import gather_limited
from exporter.sources.http_status import NotFound
from exporter.sources.json_config import StepsModel, StepStreamModel
from exporter.sources.json_mapping import MapNotes, Mapper, ident, search, step_progress
from exporter.sources.json_paging import Page, PageReader, Params

log = structlog.get_logger()

Fetcher = Callable[[str, bool], Callable[[str, Params], Awaitable[Page]]]
Fill = Callable[[str, Mapping[str, str]], str]
Key = tuple[str, str]  # (org address, job id)


def iso(seconds: float) -> str:
    """Render a watermark as RFC 3339 with Z (Airflow rejects an unencoded +)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StepReader:
    """Read steps per job, or, once a stream has a watermark, every changed step at once."""

    def __init__(self, spec: StepsModel, mapper: Mapper, fetcher: Fetcher, fill: Fill,
                 base_url: str, concurrency: int) -> None:
        self.spec = spec
        self._mapper = mapper
        self._fetcher = fetcher
        self._fill = fill
        self._base_url = base_url
        self._concurrency = concurrency
        self._latest: dict[Key, dict[str, StepObservation]] = {}  # steps of active jobs
        self._marks: dict[str, float] = {}  # org address -> server time the stream read up to
        stream = spec.stream
        self._parent = jmespath.compile(stream.job_id) if stream is not None else None

    async def read(self, target: OrgTarget, jobs: list[JobObservation],
                   vars_of: Callable[[str], Mapping[str, str] | None],
                   org_vars: Mapping[str, str], notes: MapNotes, *, full: bool,
                   listed_at: float, server_now: float) -> dict[str, JobObservation]:
        """Read the steps of `jobs`: by stream on incremental polls, else one list per job.

        `listed_at` is the server time the job list covered: a change before it to a job that
        was not listed as active or finishing can belong to no job the poll follows.
        """
        stream, mark = self.spec.stream, self._marks.get(target.address)
        if stream is None or full or mark is None:
            if stream is not None:  # the per-job lists read below are newer than the list
                self._marks[target.address] = listed_at
            return await self._per_job(target, jobs, vars_of, notes)
        if not jobs:
            self._marks[target.address] = max(mark, listed_at)
            return {}
        return await self._stream(stream, target, jobs, org_vars, notes, mark, server_now)

    async def _per_job(self, target: OrgTarget, jobs: list[JobObservation],
                       vars_of: Callable[[str], Mapping[str, str] | None],
                       notes: MapNotes) -> dict[str, JobObservation]:
        """Read each job's whole step list (`path`); progress defaults to their share."""
        steps = self.spec
        if not jobs:
            return {}
        reader = PageReader(self._fetcher(steps.path, steps.etag), steps.paging, steps.items,
                            steps.path, self._base_url)

        async def one(job: JobObservation) -> JobObservation | None:
            path_vars = vars_of(job.job_id)
            if path_vars is None:
                return None
            try:
                listing = await reader.read(self._fill(steps.path, path_vars),
                                            dict(steps.params))
            except NotFound:  # the job went away between list and steps: keep what is known
                return job
            found = [self._mapper.step_or_none(item, notes) for item in listing.items]
            seen = {s.step_id: s for s in found if s is not None}
            self._latest[(target.address, job.job_id)] = seen
            return self._with(job, tuple(seen.values()), seen)

        done = await gather_limited([partial(one, j) for j in jobs], self._concurrency)
        return {job.job_id: job for job in done if job is not None}

    async def _stream(self, stream: StepStreamModel, target: OrgTarget,
                      jobs: list[JobObservation], org_vars: Mapping[str, str], notes: MapNotes,
                      mark: float, server_now: float) -> dict[str, JobObservation]:
        """Read every step changed since the mark in one list and give each to its job."""
        inc = stream.incremental
        params: Params = dict(stream.params)
        params[inc.since_param or ""] = iso(mark - inc.overlap)
        if inc.until_param is not None:  # freeze the set so offset pages stay stable
            params[inc.until_param] = iso(server_now)
        reader = PageReader(self._fetcher(stream.path, stream.etag), stream.paging,
                            stream.items, stream.path, self._base_url)
        listing = await reader.read(self._fill(stream.path, org_vars), params)
        changed = self._by_job(listing.items, {j.job_id for j in jobs}, notes)
        if listing.complete:
            self._marks[target.address] = server_now
        else:  # read again from the same mark next poll rather than miss a step
            log.warning("json_steps_stream_incomplete", org=target.org, pages=listing.pages)
        out: dict[str, JobObservation] = {}
        for job in jobs:
            latest = self._latest.setdefault((target.address, job.job_id), {})
            fresh = changed.get(job.job_id, {})
            latest.update(fresh)
            out[job.job_id] = self._with(job, tuple(fresh.values()) or None, latest)
        return out

    def _by_job(self, items: Iterable[object], wanted: set[str],
                notes: MapNotes) -> dict[str, dict[str, StepObservation]]:
        """Group stream items by their job; items of jobs not followed are skipped."""
        out: dict[str, dict[str, StepObservation]] = {}
        assert self._parent is not None
        for item in items:
            try:
                parent = ident(search(self._parent, item, "job_id"))
            except PollError:  # a function on a missing field: this item only
                parent = None
            if parent is None:
                notes.note(INVALID_ITEM)
                continue
            if parent not in wanted:
                continue
            step = self._mapper.step_or_none(item, notes)
            if step is not None:
                out.setdefault(parent, {})[step.step_id] = step
        return out

    @staticmethod
    def _with(job: JobObservation, steps: tuple[StepObservation, ...] | None,
              latest: Mapping[str, StepObservation]) -> JobObservation:
        """Attach steps; without an API progress, use the share of terminal steps known."""
        progress = job.progress
        if progress is None:
            progress = step_progress(tuple(latest.values()))
        return replace(job, steps=steps, progress=progress)

    def forget(self, address: str, job_ids: Iterable[str], keep: Callable[[str], bool]) -> None:
        """Drop the steps of ended jobs, and of any job of the org `keep` refuses."""
        for job_id in job_ids:
            self._latest.pop((address, job_id), None)
        for key in [k for k in self._latest if k[0] == address and not keep(k[1])]:
            del self._latest[key]
