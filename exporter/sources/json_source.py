"""Generic JSON source: any job API described by config (kind: json), presets included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
import jmespath
import structlog

from exporter.sources import json_config
from exporter.sources.base import (
    JOB_STATUSES,
    TERMINAL_JOB_STATUSES,
    ClientSettings,
    JobObservation,
    KnownJobs,
    OrgTarget,
    PollError,
    PollReason,
    PollResult,
    RequestStats,
)
from exporter.sources.http import ApiClient, gather_limited
from exporter.sources.http_status import NotFound
from exporter.sources.json_auth import JsonAuth
from exporter.sources.json_config import JsonSourceModel
from exporter.sources.json_mapping import MapNotes, Mapper, search
from exporter.sources.json_paging import Listing, Page, PageReader, Params
from exporter.sources.json_ratelimit import RateLimitWatch
from exporter.sources.json_steps import StepReader, iso
from exporter.sources.server_clock import ServerClock
from exporter.sources.settings import SourceConfig
from exporter.sources.spec import SourceSpec

log = structlog.get_logger()
MAX_ETAGS = 2000  # remembered conditional-request answers per source
MAX_ETAG_BYTES = 32 * 1024 * 1024  # and their total size (as received), oldest dropped first


class JsonSource:
    """Poll one org of a configured JSON job API per call; owns its HTTP client and stats."""

    # a mapping may name any status; `unknown` joins the dense series once seen
    job_statuses: tuple[str, ...] = tuple(s for s in JOB_STATUSES if s != "unknown")

    def __init__(
        self,
        name: str,
        settings: ClientSettings,
        spec: JsonSourceModel,
        *,
        token: str | None = None,
        password: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.host = httpx.URL(settings.base_url).host  # for log lines
        self.spec = spec
        self.stats = RequestStats()
        self._clock = clock
        self._concurrency = max(1, settings.concurrency)
        self._auth = JsonAuth(spec.auth, dict(spec.headers), token=token, password=password)
        self._client = ApiClient(settings, self.stats, transport=transport,
                                 auth=self._auth.headers, sleep=sleep, wall_clock=clock)
        self._auth.bind(self._client)
        self._rate = RateLimitWatch(self._client, self.stats, clock)
        self._mapper = Mapper(spec.jobs, spec.steps, spec.status_map, spec.step_status_map)
        self._etags: dict[str, tuple[str, Any, int]] = {}  # key -> (ETag, body, size)
        self._etag_bytes = 0
        self._watermarks: dict[str, float] = {}  # org address -> server time of the last list
        self._server = ServerClock(clock)  # per org address: Date headers, not our clock
        self._vars: dict[tuple[str, str], dict[str, str]] = {}  # path vars of active jobs
        self._steps = None if spec.steps is None else StepReader(
            spec.steps, self._mapper, self._fetcher, fill, settings.base_url, self._concurrency)

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        """List jobs (incrementally unless `full`), re-check unlisted active ones, read steps."""
        notes = MapNotes()
        org_vars = {"org": target.address, "org_encoded": quote(target.address, safe=""),
                    "api": self.spec.api}
        listing, filtered, listed_at = await self._list(target, org_vars, known, full)
        listed = self._map_jobs(listing.items, org_vars, target, notes)
        jobs = dict(listed)
        complete = listing.complete and not filtered and not notes.dropped
        gone: list[str] = []
        if filtered:  # unlisted = unchanged since the watermark: only their steps may move
            jobs.update(self._carry_active(target, known, jobs))
        elif not complete and self.spec.jobs.detail_path is not None:
            missing = sorted(known.active_ids() - jobs.keys())
            jobs.update(await self._details(target, missing, org_vars, notes, gone))
        first_sync = full and len(known) == 0
        wanted = [j for j in jobs.values() if needs_steps(j, known, first_sync, full)]
        if self.spec.jobs.detail_changed:  # list items lack times: GET each changed job
            changed = [j.job_id for j in wanted if j.job_id in listed]
            jobs.update(await self._details(target, changed, org_vars, notes, gone))
            wanted = [jobs[j.job_id] for j in wanted if j.job_id not in gone]
        jobs.update(await self._with_steps(target, wanted, org_vars, notes, full, listed_at))
        for job_id in gone:
            jobs.pop(job_id, None)
        self._forget(target, jobs, gone, known)
        log.debug("json_poll", source=self.name, org=target.org, listed=len(listing.items),
                  pages=listing.pages, kept=len(jobs), steps=len(wanted), gone=len(gone))
        return PollResult(jobs=tuple(jobs.values()), complete=complete, gone=tuple(gone),
                          unknown_statuses=tuple(sorted(notes.unknown_statuses)),
                          notes=dict(notes.counts))

    def _forget(self, target: OrgTarget, jobs: Mapping[str, JobObservation],
                gone: list[str], known: KnownJobs) -> None:
        """Drop the path variables and steps of jobs that will not be asked about again."""
        done = [j for j, job in jobs.items() if job.status in TERMINAL_JOB_STATUSES]
        for job_id in [*done, *gone]:
            self._vars.pop((target.address, job_id), None)
        if self._steps is not None:
            active = known.active_ids()
            self._steps.forget(target.address, [*done, *gone],
                               lambda j: j in jobs or j in active)

    async def _list(self, target: OrgTarget, org_vars: Mapping[str, str], known: KnownJobs,
                    full: bool) -> tuple[Listing, bool, float]:
        """Read the job list; return it, whether a filter narrowed it, the server time read."""
        spec = self.spec.jobs
        params: Params = dict(spec.params)
        inc = spec.incremental
        watermark = self._watermarks.get(target.address)
        filtered = inc.mode == "since" and not full and watermark is not None
        until = None
        if filtered and inc.since_param is not None and watermark is not None:
            params[inc.since_param] = iso(watermark - inc.overlap)
            if inc.until_param is not None:  # freeze the set so offset pages stay stable
                until = self._server.now(target.address)
                params[inc.until_param] = iso(until)
        stop = None
        if inc.mode == "newest_first" and not full and len(known) > 0:
            stop = self._known_stop(known)
        reader = PageReader(self._fetcher(spec.path, spec.etag), spec.paging, spec.items,
                            spec.path, self._client.settings.base_url)
        listing = await reader.read(fill(spec.path, org_vars), params, stop)
        server_now = self._server.observe(target.address, listing.date)
        bound = until or server_now or self._clock()
        if inc.mode == "since":  # the server's clock, never ours, bounds what was read
            self._watermarks[target.address] = bound
        return listing, filtered, bound

    def _known_stop(self, known: KnownJobs) -> Callable[[list[Any]], bool]:
        """Stop a newest-first list at the first page holding an already-known job."""
        expr = self._mapper.job_exprs["id"]

        def stop(items: list[Any]) -> bool:
            ids = (search(expr, item, "id") for item in items if isinstance(item, dict))
            return any(known.get(str(i)) is not None for i in ids if i is not None)

        return stop

    def _map_jobs(self, items: list[Any], org_vars: Mapping[str, str], target: OrgTarget,
                  notes: MapNotes) -> dict[str, JobObservation]:
        """Map items to jobs (first occurrence wins) and remember their path variables."""
        out: dict[str, JobObservation] = {}
        for item in items:
            job = self._mapper.job_or_none(item, notes)
            if job is None or job.job_id in out:
                continue
            if target.job_types and job.job_type not in target.job_types:
                continue
            out[job.job_id] = job
            self._remember(target, item, job, org_vars)
        return out

    def _remember(self, target: OrgTarget, item: Any, job: JobObservation,
                  org_vars: Mapping[str, str]) -> None:
        """Keep a job's scalar fields: its steps path may name them ({dag_id}, ...)."""
        self._vars[(target.address, job.job_id)] = {
            **{k: str(v) for k, v in item.items() if isinstance(v, str | int)},
            **org_vars, "job_id": job.job_id,
        }

    def _carry_active(self, target: OrgTarget, known: KnownJobs,
                      listed: Mapping[str, JobObservation]) -> dict[str, JobObservation]:
        """Re-observe unchanged active jobs as known, so their steps are read again."""
        out: dict[str, JobObservation] = {}
        if self.spec.steps is None:
            return out
        for job_id in sorted(known.active_ids() - listed.keys()):
            seen = known.get(job_id)
            if seen is not None and (target.address, job_id) in self._vars:
                out[job_id] = JobObservation(job_id, seen.job_type, seen.status)
        return out

    async def _details(self, target: OrgTarget, ids: list[str], org_vars: Mapping[str, str],
                       notes: MapNotes, gone: list[str]) -> dict[str, JobObservation]:
        """GET each job by detail_path; a JSON 404 means the job is gone."""
        path = self.spec.jobs.detail_path or ""
        if not ids or not path:
            return {}

        async def one(job_id: str) -> JobObservation | None:
            remembered = self._vars.get((target.address, job_id), {})
            try:
                url = fill(path, {**remembered, **org_vars, "job_id": job_id})
            except PollError:  # fields not seen since a restart: the next full list has it
                return None
            try:
                page = await self._fetcher(path, False)(url, {})
            except NotFound:
                gone.append(job_id)
                return None
            job = self._mapper.job_or_none(page.body, notes)
            if job is not None:
                self._remember(target, page.body, job, org_vars)
            return job

        found = await gather_limited([partial(one, j) for j in ids], self._concurrency)
        return {job.job_id: job for job in found if job is not None}

    async def _with_steps(self, target: OrgTarget, jobs: list[JobObservation],
                          org_vars: Mapping[str, str], notes: MapNotes, full: bool,
                          listed_at: float) -> dict[str, JobObservation]:
        """Read the steps of each job that can still change (per job or by stream)."""
        if self._steps is None:
            return {}
        server_now = self._server.now(target.address)
        return await self._steps.read(
            target, jobs, lambda job_id: self._vars.get((target.address, job_id)), org_vars,
            notes, full=full, listed_at=listed_at, server_now=server_now)

    def _fetcher(self, endpoint: str, etag: bool) -> Callable[[str, Params], Awaitable[Page]]:
        """Return a GET that records `endpoint`, sends If-None-Match and reuses 304 answers."""

        async def fetch(path: str, params: Params) -> Page:
            key = path + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
            cached = self._etags.get(key) if etag else None
            headers = {"If-None-Match": cached[0]} if cached is not None else None
            response = await self._auth.retrying(lambda: self._client.request(
                "GET", path, endpoint, params=params or None,  # {} would drop a next URL's query
                expect=(200, 304, 403), headers=headers))
            self._rate.observe(response.headers)
            if response.status == 403:
                raise self._rate.forbidden(response, endpoint)
            if response.status == 304:
                if cached is None:
                    raise PollError(PollReason.HTTP_4XX, f"GET {endpoint} answered 304 unasked")
                return Page(cached[1], response.headers)
            body = response.json()
            tag = response.headers.get("ETag")
            if etag and tag:
                self._remember_etag(key, tag, body, len(response.text))
            return Page(body, response.headers)

        return fetch

    async def discover_orgs(self) -> list[str]:
        """List the org addresses under the configured group (repos, projects)."""
        spec = self.spec.discover
        if spec is None:
            return []
        group = {"group": spec.group, "group_encoded": quote(spec.group, safe="")}
        reader = PageReader(self._fetcher(spec.path, spec.etag), spec.paging, spec.items,
                            spec.path, self._client.settings.base_url)
        listing = await reader.read(spec.path.format_map(group), dict(spec.params))
        expr = jmespath.compile(spec.address)
        found = (search(expr, item, "address") for item in listing.items)
        return sorted({str(a) for a in found if isinstance(a, str | int) and str(a).strip()})

    def _remember_etag(self, key: str, tag: str, body: Any, size: int) -> None:
        """Keep an answer for its 304s, within MAX_ETAGS entries and MAX_ETAG_BYTES."""
        old = self._etags.pop(key, None)
        self._etag_bytes -= old[2] if old is not None else 0
        if size > MAX_ETAG_BYTES:
            return
        while self._etags and (len(self._etags) >= MAX_ETAGS
                               or self._etag_bytes + size > MAX_ETAG_BYTES):
            self._etag_bytes -= self._etags.pop(next(iter(self._etags)))[2]
        self._etags[key] = (tag, body, size)
        self._etag_bytes += size

    async def aclose(self) -> None:
        """Release the HTTP client."""
        await self._client.aclose()


def needs_steps(job: JobObservation, known: KnownJobs, first_sync: bool, full: bool) -> bool:
    """Read steps of active jobs and of jobs finishing now; never of finished history."""
    if job.status == "unknown":
        return full
    if job.status not in TERMINAL_JOB_STATUSES:
        return True
    seen = known.get(job.job_id)
    if seen is None:
        return not first_sync
    return not seen.terminal


def fill(template: str, values: Mapping[str, str]) -> str:
    """Fill a path template; a name the job lacks is a schema error, not a crash."""
    safe = {k: v if k in ("org", "org_encoded") else quote(v, safe="") for k, v in values.items()}
    try:
        return template.format_map(safe)
    except (KeyError, IndexError, ValueError) as exc:
        raise PollError(PollReason.SCHEMA, f"path template {template!r} needs {exc}") from None


def build(cfg: SourceConfig) -> JsonSource:
    """Create the API client of one configured json source."""
    own = cfg.kind_as(json_config.JsonSettings)
    return JsonSource(cfg.name, cfg.client_settings(), own.spec, token=cfg.token,
                      password=own.password)


SPEC = SourceSpec(kind="json", rank=2, model=JsonSourceModel, build=build,
                  configure=json_config.configure, models=json_config.JSON_MODELS,
                  auth_text=json_config.auth_text, head_text=json_config.head_text)
