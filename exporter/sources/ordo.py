"""Ordo source: list jobs at a full poll; in between, one batch call for new and active ids.

Ordo job ids come from a SERIAL sequence, so new jobs are the ids past the highest one seen:
a steady-state poll asks the batch route for the active jobs, the highest known job (a
sentinel: its loss or change means deletions or a database reset, answered with a list) and
a window of ids past it, so its cost does not grow with the history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

import httpx
import structlog

from exporter.pacing import Pacer
from exporter.sources import ordo_config
from exporter.sources.base import (
    ClientSettings,
    JobObservation,
    KnownJobs,
    OrgTarget,
    PollResult,
    RequestStats,
)
from exporter.sources.body import ArrayItems
from exporter.sources.http import ApiClient
from exporter.sources.http_status import NotFound
from exporter.sources.ordo_merge import (
    UNNAMED_JOB_TYPE,
    any_reused,
    created_at_of,
    empty_sample,
    known_status,
    known_type,
    merge_new,
    moved,
    needs_detail,
    observe_all,
    resolved,
    unlisted_active,
)
from exporter.sources.ordo_parse import (
    JOB_STATUS_MAP,
    BatchResult,
    JobListReader,
    ListedJob,
    detail_recipe_id,
    parse_batch,
    parse_detail,
    parse_recipes,
    schema_error,
)
from exporter.sources.parse import ParseNotes
from exporter.sources.settings import SourceConfig
from exporter.sources.spec import SourceSpec

log = structlog.get_logger()

# Ordo's batch route accepts 2..100 ids; a single id only matches GET /jobs/{id}.
BATCH_MAX = 100
# What Ordo's status vocabulary normalizes to (ordo_parse.JOB_STATUS_MAP); anything else, or a
# status_map target outside this set, joins the dense series once seen.
ORDO_JOB_STATUSES: tuple[str, ...] = tuple(dict.fromkeys(JOB_STATUS_MAP.values()))
# ids probed past the highest known: tolerates this many burned ids in a row
ID_WINDOW = ordo_config.ID_WINDOW
PROBE_ROUNDS = 20  # windows probed per poll at most; a burst beyond continues next poll


class OrdoSource:
    """Poll one Ordo deployment; Ordo has no tenants, so each target is a whole deployment."""

    job_statuses: tuple[str, ...] = ORDO_JOB_STATUSES

    def __init__(
        self,
        name: str,
        settings: ClientSettings,
        *,
        token: str,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        status_map: Mapping[str, str] | None = None,
        id_window: int = ID_WINDOW,
    ) -> None:
        self.name = name
        self._status_map = dict(status_map or {})
        self.host = httpx.URL(settings.base_url).host  # for log lines
        self.stats = RequestStats()
        self._token = token
        self._clock = clock  # wall clock: Retry-After dates and poll timing in logs
        self._client = ApiClient(
            settings, self.stats, transport=transport, auth=self._auth_headers, sleep=sleep,
            wall_clock=clock,
        )
        self._recipes: dict[int, str] = {}
        self._recipes_missing: set[int] = set()  # absent after a refresh: do not refetch
        self._id_window = max(0, min(id_window, BATCH_MAX - 1))  # 0: list every poll
        # org -> (highest job id Ordo showed, its created_at): where new ids start
        self._high: dict[str, tuple[int, float | None]] = {}
        # orgs whose last complete list lacked known jobs: list once more at the next poll, so
        # the second complete list that drops them comes one interval later, not a resync later
        self._relist: set[str] = set()

    async def _auth_headers(self) -> dict[str, str]:
        """Send Ordo's single static deployment token."""
        return {"Authorization": f"Bearer {self._token}"}

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        """Probe new and active ids; list every job on full polls or on doubt; raises PollError."""
        high = self._high.get(target.org)
        again = target.org in self._relist
        self._relist.discard(target.org)
        if not full and high is not None and self._id_window and not again:
            notes = ParseNotes(status_map=self._status_map)
            result = await self._poll_ids(target, known, high, notes)
            if result is not None:
                return result
            log.info("ordo_top_job_changed", source=self.name, org=target.org)
            # deleted, or a database reset: recipe ids may have restarted too, so read them anew
            self._recipes, self._recipes_missing = {}, set()
        return await self._poll_list(target, known, full, again)

    async def _poll_ids(self, target: OrgTarget, known: KnownJobs,
                        high: tuple[int, float | None], notes: ParseNotes) -> PollResult | None:
        """Detail active jobs and probe ids past the highest; None asks for a full list."""
        active = sorted(int(j) for j in known.active_ids() if j.isdigit()
                        and known_status(known, j) != "unknown")  # re-detailed on full polls only
        window = list(range(high[0] + 1, high[0] + 1 + self._id_window))
        batch = await self._fetch_details(list(dict.fromkeys([*active, high[0], *window])), notes)
        sentinel = batch.found.get(high[0])
        if sentinel is None or moved(sentinel, high[1]) or any(
            moved(batch.found[i], created_at_of(known, i)) for i in active if i in batch.found
        ):
            return None  # the highest job was deleted, or ids were reused: a reset
        new = merge_new({}, batch, window)
        for _ in range(PROBE_ROUNDS):
            if not new or max(new) < window[0]:
                break
            window = list(range(max(new) + 1, max(new) + 1 + self._id_window))
            new = merge_new(new, await self._fetch_details(window, notes), window)
        await self._name_recipes({recipe_id for _, recipe_id in new.values()})
        jobs = [replace(batch.found[i], job_type=known_type(known, i))
                for i in active if i in batch.found]
        for job_id in sorted(new):
            job_type = self.job_type(new[job_id][1])
            if not target.job_types or job_type in target.job_types:
                jobs.append(replace(new[job_id][0], job_type=job_type))
        if new:
            top = max(new)
            self._high[target.org] = (top, new[top][0].created_at)
        return PollResult(
            jobs=tuple(jobs), complete=False,
            gone=tuple(str(i) for i in batch.missing if i in set(active)),
            unknown_statuses=tuple(notes.unknown_statuses), notes=dict(notes.counts),
        )

    async def _poll_list(self, target: OrgTarget, known: KnownJobs, full: bool,
                         again: bool = False) -> PollResult:
        """List every job, name recipes, detail only what can still change; raises PollError."""
        started = self._clock()
        listed, notes, top = await self._read_list()
        self._note_high(target.org, top)
        pacer = Pacer()  # 100k jobs: let scrapes in every few ms of this work
        if await any_reused(listed, known, pacer):
            # Ids restart after a database reset, and recipe ids with them: rename recipes.
            log.info("ordo_job_ids_reused", source=self.name, org=target.org)
            self._recipes, self._recipes_missing = {}, set()
        await self._refresh_recipes(listed)
        typed, wanted = await self._sort_out(listed, target, known, full, pacer)
        unlisted = unlisted_active(listed, known)
        sample = empty_sample(listed, known)
        extra = [job_id for job_id in sample if job_id not in unlisted]
        batch = await self._fetch_details(wanted + unlisted + extra, notes)
        gone = set(batch.missing)
        jobs = await observe_all(typed, batch, gone, pacer) + resolved(unlisted, known, batch)
        log.debug(
            "ordo_poll", source=self.name, org=target.org, listed=len(listed), kept=len(jobs),
            detailed=len(batch.found), gone=len(gone),
            seconds=round(self._clock() - started, 3),
        )
        # A left-out item is not a vanished job; an empty list after a non-empty one is
        # complete only if a known job is gone too.
        complete = not notes.dropped and (bool(listed) or len(known) == 0
                                          or any(job_id in gone for job_id in sample))
        if complete and len(known) > len(jobs) and not again:
            self._relist.add(target.org)
        return PollResult(
            jobs=jobs,
            complete=complete,
            gone=tuple(str(job_id) for job_id in batch.missing),
            unknown_statuses=tuple(notes.unknown_statuses),
            notes=dict(notes.counts),
        )

    async def _read_list(self) -> tuple[list[ListedJob], ParseNotes, ListedJob | None]:
        """Stream GET /jobs into small ListedJobs (a fresh reader per attempt); never whole."""
        readers: list[JobListReader] = []

        def start(charset: str | None) -> ArrayItems:
            readers.append(JobListReader(ParseNotes(status_map=self._status_map)))
            return ArrayItems(readers[-1].add, "/jobs", charset)

        document = await self._client.get_array("/jobs", "/jobs", start)
        listed = readers[-1].finish(document)
        top = readers[-1].top if document is None else max(listed, key=lambda j: j.job_id,
                                                             default=None)
        return listed, readers[-1].notes, top

    async def _sort_out(self, listed: Sequence[ListedJob], target: OrgTarget, known: KnownJobs,
                        full: bool, pacer: Pacer) -> tuple[list[tuple[ListedJob, str]], list[int]]:
        """Name each listed job's type, keep the target's types, pick the ones to detail."""
        first_sync = full and len(known) == 0
        typed: list[tuple[ListedJob, str]] = []
        wanted: list[int] = []
        for job in listed:
            job_type = self.job_type(job.recipe_id)
            if not target.job_types or job_type in target.job_types:
                typed.append((job, job_type))
                if needs_detail(job, known, first_sync, full):
                    wanted.append(job.job_id)
            await pacer.breathe()
        return typed, wanted

    def job_type(self, recipe_id: int | None) -> str:
        """Name a job by its recipe, the only grouping Ordo has."""
        if recipe_id is None:
            return UNNAMED_JOB_TYPE
        return self._recipes.get(recipe_id) or f"recipe-{recipe_id}"

    def _note_high(self, org: str, top: ListedJob | None) -> None:
        """Remember the highest listed id: steady-state polls probe the ids past it."""
        if top is None:
            self._high.pop(org, None)
            return
        self._high[org] = (top.job_id, top.created_at)

    async def _refresh_recipes(self, listed: Sequence[ListedJob]) -> None:
        """Fetch /recipes only when a recipe id never seen before shows up."""
        await self._name_recipes({job.recipe_id for job in listed})

    async def _name_recipes(self, recipe_ids: set[int | None]) -> None:
        """Fetch /recipes only when a recipe id never seen before shows up."""
        unseen = {
            recipe_id
            for recipe_id in recipe_ids
            if recipe_id is not None
            and recipe_id not in self._recipes
            and recipe_id not in self._recipes_missing
        }
        if not unseen:
            return
        names = parse_recipes(await self._client.get_json("/recipes", "/recipes"))
        self._recipes = names
        self._recipes_missing = (self._recipes_missing | unseen) - names.keys()
        still = sorted(unseen - names.keys())
        log.debug("ordo_recipes_refreshed", source=self.name, recipes=len(names), unnamed=still)

    async def _fetch_details(self, ids: Sequence[int], notes: ParseNotes) -> BatchResult:
        """Detail jobs in chunks of BATCH_MAX, concurrently; the client bounds concurrency."""
        chunks = [ids[i : i + BATCH_MAX] for i in range(0, len(ids), BATCH_MAX)]
        results = await asyncio.gather(
            *(self._fetch_chunk(chunk, notes) for chunk in chunks), return_exceptions=True
        )
        found: dict[int, JobObservation] = {}
        missing: list[int] = []
        recipe_ids: dict[int, int | None] = {}
        for result in results:
            if isinstance(result, BaseException):
                raise result
            found.update(result.found)
            missing.extend(result.missing)
            recipe_ids.update(result.recipe_ids)
        return BatchResult(found=found, missing=tuple(missing), recipe_ids=recipe_ids)

    async def _fetch_chunk(self, chunk: Sequence[int], notes: ParseNotes) -> BatchResult:
        """Use the batch route for 2+ ids and the single route for one."""
        if len(chunk) == 1:
            return await self._fetch_one(chunk[0], notes)
        path = "/jobs/" + ",".join(str(job_id) for job_id in chunk)
        return parse_batch(await self._client.get_json(path, "/jobs/{ids}"), chunk, notes)

    async def _fetch_one(self, job_id: int, notes: ParseNotes) -> BatchResult:
        """Detail one job; a JSON 404 means Ordo no longer has it."""
        try:
            body = await self._client.get_json(f"/jobs/{job_id}", "/jobs/{id}")
        except NotFound:
            return BatchResult(found={}, missing=(job_id,))
        detail = parse_detail(body, notes)
        if detail.job_id != str(job_id):
            raise schema_error("/jobs/{id} answered another job")
        return BatchResult(found={job_id: detail}, missing=(),
                           recipe_ids={job_id: detail_recipe_id(body)})

    async def aclose(self) -> None:
        """Release the HTTP client."""
        await self._client.aclose()


def build(cfg: SourceConfig) -> OrdoSource:
    """Create the API client of one configured ordo source."""
    own = cfg.kind_as(ordo_config.OrdoSettings)
    return OrdoSource(cfg.name, cfg.client_settings(), token=cfg.token or "",
                      status_map=dict(cfg.status_map), id_window=own.id_window)


SPEC = SourceSpec(kind="ordo", rank=1, model=ordo_config.OrdoSourceModel, build=build,
                  configure=ordo_config.configure, required=ordo_config.REQUIRED)
