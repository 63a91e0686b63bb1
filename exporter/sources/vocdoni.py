"""Vocdoni SaaS source: lists an org's jobs incrementally on either API generation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from exporter.sources import vocdoni_config
from exporter.sources.base import (
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
from exporter.sources.http_status import AuthError, HttpStatusError, NotFound, status_error
from exporter.sources.observed import COMPLETED, LEFT_OUT, NO_STREAM
from exporter.sources.parse import ParseNotes
from exporter.sources.settings import SourceConfig
from exporter.sources.spec import SourceSpec
from exporter.sources.vocdoni_auth import VocdoniAuth
from exporter.sources.vocdoni_pages import Read, Stream, read_rest
from exporter.sources.vocdoni_parse import (
    IMPORT_TYPES,
    Page,
    addresses,
    job_identity,
    parse_page,
    v2_job,
)
from exporter.sources.vocdoni_poll import PollContext, plan_rechecks, save_streams
from exporter.sources.vocdoni_resync import Resyncs, StreamKey, StreamView
from exporter.sources.vocdoni_v1 import V1Jobs

log = structlog.get_logger()

API_MODES = ("auto", "v1", "v2")
# Job statuses Vocdoni produces (docs: pending|completed|failed; imports derive the same three)
VOCDONI_JOB_STATUSES: tuple[str, ...] = ("pending", "completed", "failed")
MAX_PAGE_LIMIT = 100  # the API silently caps larger limits


class VocdoniSource:
    """Poll Vocdoni SaaS orgs; owns the HTTP client, credentials and paging memory."""

    # Vocdoni jobs are pending, completed or failed: never running or partial
    job_statuses: tuple[str, ...] = VOCDONI_JOB_STATUSES

    def __init__(
        self,
        name: str,
        settings: ClientSettings,
        *,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        api: str = "auto",
        page_limit: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        status_map: Mapping[str, str] | None = None,
        resync_budget: float = 0.1,
    ) -> None:
        if api not in API_MODES:
            raise ValueError(f"api must be one of {API_MODES}")
        self.name = name
        self._status_map = dict(status_map or {})
        self.host = httpx.URL(settings.base_url).host  # for log lines
        self.stats = RequestStats()
        self.detected_api: str | None = api if api != "auto" else None
        self._mode = api
        self._limit = max(1, min(page_limit, MAX_PAGE_LIMIT))
        self._workers = max(1, settings.concurrency)
        self._auth = VocdoniAuth(token=token, email=email, password=password, clock=clock,
                                 source=name)
        self._client = ApiClient(
            settings, self.stats, transport=transport, auth=self._auth.headers,
            sleep=sleep, clock=monotonic, wall_clock=clock,
        )
        self._auth.bind(self._client)
        self._streams: dict[StreamKey, Stream] = {}
        self._v1 = V1Jobs(self._get)
        self._probe_lock = asyncio.Lock()
        # amortized full resync: pages per poll are this share of the request rate
        self._resyncs = Resyncs(resync_budget * settings.max_requests_per_second)

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        """Poll one org; on `full` read every page and return a complete list."""
        api = await self._ensure_api(target.address)
        try:
            return await self._poll_api(api, target, known, full)
        except HttpStatusError as exc:
            # a non-JSON 404 on the chosen generation's list route: a missing route, or a proxy's
            # transient HTML page; with api: auto never stick to the choice, detect again
            if not (self._mode == "auto" and exc.status == 404 and not isinstance(exc, NotFound)):
                raise
        log.warning("api_route_missing", source=self.name, host=self.host, api=api)
        self.detected_api = None
        api = await self._ensure_api(target.address)
        return await self._poll_api(api, target, known, full)

    def plan_resync(self, target: OrgTarget, interval: float, due: bool) -> bool:
        """Set this org's resync page budget; start a pass when due and none runs (True)."""
        return self._resyncs.plan(target.org, interval, due)

    def resync_progress(self, target: OrgTarget) -> float | None:
        """Return how far this org's current resync pass has got (None: never planned)."""
        return self._resyncs.progress(target.org)

    async def discover_orgs(self) -> list[str]:
        """Return the addresses of the orgs the logged-in user belongs to."""
        return addresses(await self._get("/auth/addresses", "/auth/addresses"))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    # --- API generation -------------------------------------------------------------

    async def _ensure_api(self, address: str) -> str:
        """Return the API generation, probing once when it is not known yet."""
        async with self._probe_lock:
            if self.detected_api is None:
                self.detected_api = await self._probe(address)
                log.info("api_detected", source=self.name, api=self.detected_api)
            return self.detected_api

    async def _probe(self, address: str) -> str:
        """Choose a generation only on positive evidence: JSON from that one's own list route."""
        if await self._answers_json("/jobs", "/jobs", {"orgAddress": address, "limit": 1}):
            return "v2"
        path = f"/organizations/{quote(address, safe='')}/jobs"
        if await self._answers_json(path, "/organizations/{address}/jobs", {"page": 1, "limit": 1}):
            return "v1"
        raise PollError(PollReason.HTTP_4XX, "vocdoni: neither API generation's list route "
                        "answered JSON (a proxy page?); detecting again next poll")

    async def _answers_json(self, path: str, endpoint: str, params: Mapping[str, str | int]
                            ) -> bool:
        """Return True on a JSON answer, False on a non-JSON 404; raise on anything else."""
        resp = await self._client.request(
            "GET", path, endpoint, params=params, expect=(200, 400, 401, 403, 404),
        )
        try:
            resp.json()
        except PollError:
            if resp.status == 404:
                return False
            if resp.status == 200:
                raise
            raise status_error("GET", endpoint, resp.status, resp.text) from None
        return True

    async def _get(self, path: str, endpoint: str, params: Mapping[str, str | int] | None = None,
                   ) -> Any:
        """GET JSON; on a 401 log in again once (expired or revoked token) and retry."""
        try:
            return await self._client.get_json(path, endpoint, params=params)
        except AuthError as exc:
            if exc.status != 401 or not self._auth.can_login:
                raise
            generation = self._auth.generation
        log.info("vocdoni_relogin", source=self.name, host=self.host, endpoint=endpoint)
        await self._auth.relogin(generation)
        return await self._client.get_json(path, endpoint, params=params)

    # --- one poll -------------------------------------------------------------------

    async def _poll_api(self, api: str, target: OrgTarget, known: KnownJobs,
                        full: bool) -> PollResult:
        """List every stream, re-check stragglers, normalize and remember positions."""
        ctx = PollContext(api, target, known, ParseNotes(status_map=self._status_map), full=full)
        reads = {key: await self._read_stream(ctx, key, number, full)
                 for number, key in enumerate(self._keys(api, target))}
        for read in reads.values():
            ctx.notes.counts.update(read.invalid)
            ctx.notes.dropped += read.dropped
        complete = all(r.exact for r in reads.values())
        rechecked = await self._recheck(ctx, reads)  # active jobs the pages lack, even if complete
        if complete and not any(r.count for r in reads.values()):
            complete = await self._confirm_empty(ctx)
        if not complete and not rechecked and not full:
            log.info("vocdoni_positions_lost", source=self.name, org=target.org)
            return await self._poll_api(api, target, known, True)
        await self._observe(ctx)
        listed = await self._trickle(ctx, reads)
        complete = complete or listed is not None
        complete = complete and not ctx.notes.dropped  # a left-out item is not a vanished job
        save_streams(self._streams, ctx, reads)
        log.debug("vocdoni_poll", source=self.name, org=target.org, api=api, full=full,
                  jobs=len(ctx.observed), gone=len(ctx.gone), requests=self.stats.total())
        return PollResult(
            jobs=ctx.observed, complete=complete, gone=tuple(sorted(ctx.gone)),
            listed=listed or frozenset(),
            unknown_statuses=tuple(sorted(ctx.notes.unknown_statuses)),
            notes=dict(ctx.notes.counts),
        )

    async def _trickle(self, ctx: PollContext, reads: Mapping[StreamKey, Read]
                       ) -> AbstractSet[str] | None:
        """Walk the org's resync pass a budget of pages on; its ids once it ends consistent."""
        ids = ctx.observed.listed_ids()
        views = {key: StreamView(read.total, read.limit) for key, read in reads.items()}
        done = await self._resyncs.step(ctx.target.org, ids, views, self._fetch_page)
        if done is None:
            return None
        listed = done.take_listed()
        log.info("vocdoni_resync_pass_done", source=self.name, org=ctx.target.org,
                 consistent=done.ok, jobs=len(listed))
        return listed if done.ok else None

    def _keys(self, api: str, target: OrgTarget) -> list[StreamKey]:
        """Return one stream per job type, or one unfiltered stream (v1 filters imports only)."""
        types = sorted(set(target.job_types))
        if not types or (api == "v1" and not set(types) <= IMPORT_TYPES):
            return [(api, target.address, "")]
        return [(api, target.address, t) for t in types]

    async def _fetch_page(self, key: StreamKey, page: int) -> Page:
        """GET one list page of a stream."""
        api, address, job_type = key
        params: dict[str, str | int] = {"page": page, "limit": self._limit}
        if job_type:
            params["type"] = job_type
        if api == "v2":
            params["orgAddress"] = address
            return parse_page(await self._get("/jobs", "/jobs", params))
        path = f"/organizations/{quote(address, safe='')}/jobs"
        return parse_page(await self._get(path, "/organizations/{address}/jobs", params))

    async def _read_stream(self, ctx: PollContext, key: StreamKey, number: int, full: bool) -> Read:
        """Read page 1, then up to the last poll's newest job, or everything when needed."""
        first = await self._fetch_page(key, 1)
        limit = self._limit
        if first.last_page > 1 and first.jobs:
            limit = len(first.jobs) + first.dropped  # the server's own cap
        read = Read(total=first.total, limit=limit, last_page=first.last_page,
                    observed=ctx.observed, parse=ctx.parse_item, stream=number)
        read.add(1, first)
        if first.jobs:
            read.anchor = job_identity(first.jobs[0])[0]
        state = self._streams.get(key)
        if (full or state is None or state.anchor is None or first.total < state.total
                or state.limit != limit or not await self._read_to_anchor(key, read, state)):
            await self._read_rest(key, read)
        return read

    async def _read_to_anchor(self, key: StreamKey, read: Read, state: Stream) -> bool:
        """Page until the previous newest job shows up where expected; False if it moved."""
        assert state.anchor is not None
        anchor_pos = state.total - 1
        page = 1
        while not read.has(state.anchor):
            expected = (read.total - 1 - anchor_pos) // read.limit + 1
            if page >= expected or page >= read.last_page:
                return False
            page += 1
            read.add(page, await self._fetch_page(key, page))
        return read.position(state.anchor) == anchor_pos

    async def _read_rest(self, key: StreamKey, read: Read) -> None:
        """Read every page not read yet, `concurrency` at a time (vocdoni_pages.read_rest)."""
        read.observed.reserve(len(read.observed) + read.total)  # no re-hash mid-sync
        await read_rest(read, partial(self._fetch_page, key), self._workers)

    # --- re-checking known active jobs ----------------------------------------------

    async def _recheck(self, ctx: PollContext, reads: dict[StreamKey, Read]) -> bool:
        """Re-check active jobs the pages did not show; False when only a full list can."""
        listed = ctx.observed  # every job so far came from a list page
        missing = sorted(j for j in ctx.known.active_ids()
                         if listed.row_of(j) < 0 and (ctx.full or not _unknown(ctx.known, j)))
        plan, one_by_one = plan_rechecks(self._streams, reads, missing, ctx.api)
        wanted = list(plan)
        pages = await gather_limited([partial(self._fetch_page, *w) for w in wanted], self._workers)
        for (key, number), page in zip(wanted, pages, strict=True):
            reads[key].add(number, page)
            one_by_one.extend(j for j in plan[(key, number)] if not reads[key].has(j))
        fetch = self._fetch_v2_job
        if ctx.api == "v1":
            if not all(read.full for read in reads.values()):
                return not one_by_one  # a full re-list is cheaper than a GET per job
            fetch = self._fetch_v1_job  # still missing from a full list: finished or gone?
        results = await gather_limited(
            [partial(fetch, ctx, j) for j in one_by_one], self._workers
        )
        types = set(ctx.target.job_types)
        for job_id, obs in zip(one_by_one, results, strict=True):
            if obs is None:
                ctx.gone.add(job_id)
            elif ctx.observed.row_of(job_id) < 0:  # a page that showed it wins
                ctx.observed.add(obs, flags=LEFT_OUT if types and obs.job_type not in types
                                 else 0)
        return True

    async def _fetch_v2_job(self, ctx: PollContext, job_id: str) -> JobObservation | None:
        """GET /jobs/{id}; None when the API no longer knows the job (404/40026)."""
        try:
            body = await self._get(f"/jobs/{quote(job_id, safe='')}", "/jobs/{id}")
        except NotFound:
            return None
        if not isinstance(body, dict):
            raise PollError(PollReason.SCHEMA, "vocdoni: unexpected job body (not an object)")
        return v2_job(body, ctx.notes)

    async def _confirm_empty(self, ctx: PollContext) -> bool:
        """Trust an empty list after a non-empty one only when a known job's detail is gone too."""
        sample = ctx.known.settled_id()
        if sample is None or sample in ctx.gone:
            return True
        fetch = self._fetch_v2_job if ctx.api == "v2" else self._fetch_v1_job
        if await fetch(ctx, sample) is not None:
            log.warning("empty_job_list_ignored", source=self.name, org=ctx.target.org)
            return False
        ctx.gone.add(sample)
        return True

    async def _fetch_v1_job(self, ctx: PollContext, job_id: str) -> JobObservation | None:
        """Old API GET /jobs/{id} (status only); None when the API no longer knows the job."""
        return await self._v1.fetch(ctx.known, ctx.notes, job_id)

    # --- normalization --------------------------------------------------------------

    async def _observe(self, ctx: PollContext) -> None:
        """Check the poll's items normalized; old-API ones get their statuses and progress."""
        ctx.check_readable()
        if ctx.api != "v1":
            return
        observed = ctx.observed
        rows = [row for row in observed.kept_rows() if observed.stream(row) != NO_STREAM]
        found = await gather_limited(
            [partial(self._v1.observe, ctx.target.address, ctx.known, ctx.notes,
                     observed.observation(row), bool(observed.flags(row) & COMPLETED))
             for row in rows], self._workers)
        for row, obs in zip(rows, found, strict=True):
            observed.replace(row, obs, flags=0)

def _unknown(known: KnownJobs, job_id: str) -> bool:
    """Tell a job stuck in an unmapped status: re-checked on full polls only, not every poll."""
    seen = known.get(job_id)
    return seen is not None and seen.status == "unknown"


def build(cfg: SourceConfig) -> VocdoniSource:
    """Create the API client of one configured vocdoni source."""
    own = cfg.kind_as(vocdoni_config.VocdoniSettings)
    return VocdoniSource(
        cfg.name, cfg.client_settings(), token=cfg.token, email=own.email,
        password=own.password, api=own.api, status_map=dict(cfg.status_map),
        resync_budget=cfg.resync_budget,
    )


SPEC = SourceSpec(kind="vocdoni", rank=0, model=vocdoni_config.VocdoniSourceModel, build=build,
                  configure=vocdoni_config.configure, required=vocdoni_config.REQUIRED,
                  head_text=vocdoni_config.head_text)
