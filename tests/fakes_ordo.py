"""A fake Ordo API on httpx.MockTransport and helpers shared by the Ordo source tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from exporter.sources.base import (
    ClientSettings,
    KnownJob,
    OrgTarget,
    PollResult,
)
from exporter.sources.ordo import OrdoSource
from tests.fakes import Known as SharedKnown

TOKEN = "s3cret-ordo-token"
JOB_ERROR = "worker crashed on tile 7 for client-x"
TARGET = OrgTarget(source="ordo-lidar", org="lidar", address="lidar")
BATCH_ROUTE = re.compile(r"^/jobs/([0-9,]+,[0-9,]+)$")
SINGLE_ROUTE = re.compile(r"^/jobs/([^/]+)$")
T = TypeVar("T")


def iso(second: int) -> str:
    """Format like Express serializes a pg timestamptz."""
    return f"2026-02-26T12:{second // 60 % 60:02d}:{second % 60:02d}.000Z"


class FakeOrdo:
    """In-memory Ordo: jobs by id, recipes, and a log of request paths."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.jobs: dict[int, dict[str, Any]] = {}
        self.recipes: dict[int, str] = {1: "lidar-dem", 2: "ortho"}
        self.paths: list[str] = []
        self.override: dict[str, httpx.Response] = {}  # route path -> canned answer

    def add(self, job_id: int, status: str, recipe_id: int = 1) -> None:
        """Add a job with one step per lifecycle phase."""
        started = iso(5) if status != "pending" else None
        done = status in ("success", "completed", "failed", "partial")
        self.jobs[job_id] = {
            "id": job_id, "recipe_id": recipe_id, "status": status, "created_at": iso(0),
            "started_at": started, "finished_at": iso(50) if done else None,
            "error": JOB_ERROR if status == "failed" else None,
        }

    def detail(self, job_id: int) -> dict[str, Any]:
        """Build the JobStatusResponse of one job."""
        job = self.jobs[job_id]
        done = job["finished_at"] is not None
        return {
            "job": {**job, "params": {}},
            "progress": {"percentage": 1 if done else 0.5, "completed_steps": 1,
                         "total_steps": 2},
            "duration_ms": 45000 if done else None,
            "timeline": [],
            "steps": [
                {"job_id": job_id, "step_id": "dem", "step_type": "GENERATE_DEM",
                 "status": "success" if done else "running", "attempt": 2,
                 "claimed_by": "n8n-1", "claimed_at": iso(4), "started_at": iso(5),
                 "finished_at": iso(40) if done else None, "error": JOB_ERROR,
                 "max_concurrency": 2,
                 "last_detailing": {"id": 1, "job_id": job_id, "step_id": "dem", "log": "x",
                                    "progress": {"progress": 50}, "updated_at": iso(30)}},
                {"job_id": job_id, "step_id": "tiles", "step_type": "BUILD_EPT",
                 "status": "success" if done else "pending", "attempt": 0,
                 "claimed_by": None, "claimed_at": None, "started_at": None,
                 "finished_at": None, "error": None, "max_concurrency": None},
            ],
            "artifacts": [],
            "outputs": [],
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Route like src/app.ts: auth first, then the Express routes, else an HTML 404."""
        path = request.url.path
        self.paths.append(path)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return httpx.Response(401, json={"error": "Missing or invalid Authorization header"})
        if auth != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": "Invalid token"})
        if not path.startswith(self.prefix + "/"):
            return self.html_404(path)
        route = path[len(self.prefix):]
        if route in self.override:
            return self.override[route]
        return self.route(route) or self.html_404(path)

    def route(self, route: str) -> httpx.Response | None:
        """Answer the known GET routes."""
        if route == "/jobs":
            return httpx.Response(200, json=[self.jobs[i] for i in sorted(self.jobs, reverse=True)])
        if route == "/recipes":
            return httpx.Response(200, json=[
                {"id": i, "name": n, "version": "1", "definition": {}, "created_at": iso(0)}
                for i, n in sorted(self.recipes.items(), reverse=True)
            ])
        if match := BATCH_ROUTE.match(route):
            return self.batch(match.group(1).split(","))
        if match := SINGLE_ROUTE.match(route):
            job_id = int(match.group(1))
            if job_id not in self.jobs:
                return httpx.Response(404, json={"error": "Job not found"})
            return httpx.Response(200, json=self.detail(job_id))
        return None

    def batch(self, ids: list[str]) -> httpx.Response:
        """Answer the batch route with its documented validation."""
        if len(ids) > 100:
            return httpx.Response(400, json={"error": "Cannot request more than 100 job IDs"})
        items = [
            {"id": int(i), "found": True, **self.detail(int(i))} if int(i) in self.jobs
            else {"id": int(i), "found": False}
            for i in ids
        ]
        return httpx.Response(200, json=items)

    @staticmethod
    def html_404(path: str) -> httpx.Response:
        """Express's default page for a route that does not exist."""
        body = f"<!DOCTYPE html><html><body><pre>Cannot GET {path}</pre></body></html>"
        return httpx.Response(404, text=body, headers={"Content-Type": "text/html"})

    def count(self, kind: str) -> int:
        """Count requests by route template."""
        return sum(1 for p in self.paths if template(p[len(self.prefix):]) == kind)

    def batches(self) -> list[list[int]]:
        """Return the id lists of every batch or single detail request, in order."""
        out: list[list[int]] = []
        for path in self.paths:
            route = path[len(self.prefix):]
            if template(route) in ("/jobs/{ids}", "/jobs/{id}"):
                out.append([int(i) for i in route.removeprefix("/jobs/").split(",")])
        return out


def template(route: str) -> str:
    """Map a raw path to its route template."""
    if route in ("/jobs", "/recipes"):
        return route
    if BATCH_ROUTE.match(route):
        return "/jobs/{ids}"
    return "/jobs/{id}" if SINGLE_ROUTE.match(route) else "other"


class Known(SharedKnown):
    """KnownJobs over a dict, as the tracker would hand it over."""

    def learn(self, result: PollResult) -> None:
        """Remember what a poll saw, like the tracker."""
        for job in result.jobs:
            terminal = job.status in ("completed", "failed", "partial")
            self.jobs[job.job_id] = KnownJob(job.job_id, job.job_type, job.status, terminal)
        for job_id in result.gone:
            self.jobs.pop(job_id, None)


async def _no_sleep(_: float) -> None:
    """Skip retry backoff in tests."""


def make_source(fake: FakeOrdo, base_url: str = "http://ordo.test", token: str = TOKEN,
                id_window: int = 25, **settings: Any) -> OrdoSource:
    """Build a source wired to the fake through MockTransport (id_window=0: list every poll)."""
    options: dict[str, Any] = {"max_requests_per_second": 10000.0, "retries": 1}
    options.update(settings)
    return OrdoSource("ordo-lidar", ClientSettings(base_url=base_url, **options), token=token,
                      transport=httpx.MockTransport(fake.handle), sleep=_no_sleep,
                      id_window=id_window)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def poll(source: OrdoSource, known: Known, full: bool = False,
         target: OrgTarget = TARGET) -> PollResult:
    """Poll once, then close nothing: the source is reused across polls."""
    return run(source.poll(target, known, full))


def by_id(result: PollResult) -> dict[str, Any]:
    """Index observations by job id."""
    return {job.job_id: job for job in result.jobs}
