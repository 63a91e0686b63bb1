"""Old Vocdoni API (v1): list items say only `completed`; statuses come from GET /jobs/{id}."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from exporter.sources.base import TERMINAL_JOB_STATUSES, JobObservation, KnownJobs
from exporter.sources.http_status import NotFound
from exporter.sources.parse import ParseNotes
from exporter.sources.vocdoni_parse import IMPORT_TYPES, members_progress, v1_status

# v1 statuses resolved through GET /jobs/{id} are remembered so each job costs one request.
MAX_RESOLVED = 200_000

Getter = Callable[[str, str], Awaitable[Any]]  # (path, endpoint) -> JSON, relogin included


class V1Jobs:
    """Resolve old-API jobs: finished statuses (once per job) and running imports' progress."""

    def __init__(self, get: Getter) -> None:
        self._get = get
        self._resolved: dict[str, str] = {}

    async def observe(self, address: str, known: KnownJobs, notes: ParseNotes,
                      obs: JobObservation, completed: bool) -> JobObservation:
        """Complete a list item: progress of a running import, status of a finished job."""
        if not completed:
            if obs.job_type not in IMPORT_TYPES:
                return obs
            path = (f"/organizations/{quote(address, safe='')}/members/job/"
                    f"{quote(obs.job_id, safe='')}")
            try:
                body = await self._get(path, "/organizations/{address}/members/job/{id}")
            except NotFound:
                return obs  # evicted from the server's memory: progress unknown, not an error
            return replace(obs, **members_progress(body, notes))
        return replace(obs, status=await self._resolve(known, notes, obs))

    async def _resolve(self, known: KnownJobs, notes: ParseNotes, obs: JobObservation) -> str:
        """Return a finished job's status, asking GET /jobs/{id} once per job at most."""
        if obs.job_type in IMPORT_TYPES:
            return "completed"  # imports never fail; the API shows status "" for them
        seen = known.get(obs.job_id)
        if seen is not None and seen.terminal:
            return seen.status
        if obs.job_id in self._resolved:
            return self._resolved[obs.job_id]
        try:
            body = await self._get(f"/jobs/{quote(obs.job_id, safe='')}", "/jobs/{id}")
        except NotFound:
            notes.counts["status_unresolved"] += 1
            return "unknown"
        status = v1_status(body, obs.job_type, notes)
        if status in TERMINAL_JOB_STATUSES:
            if len(self._resolved) >= MAX_RESOLVED:
                self._resolved.pop(next(iter(self._resolved)))
            self._resolved[obs.job_id] = status
        return status

    async def fetch(self, known: KnownJobs, notes: ParseNotes, job_id: str
                    ) -> JobObservation | None:
        """GET /jobs/{id} (status only); None when the API no longer knows the job."""
        try:
            body = await self._get(f"/jobs/{quote(job_id, safe='')}", "/jobs/{id}")
        except NotFound:
            return None
        seen = known.get(job_id)
        job_type = seen.job_type if seen is not None else "unknown"
        return JobObservation(job_id=job_id, job_type=job_type,
                              status=v1_status(body, job_type, notes))

