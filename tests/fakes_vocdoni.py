"""A fake Vocdoni API on httpx.MockTransport and helpers shared by the Vocdoni source tests."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable
from typing import Any
from urllib.parse import unquote

import httpx

from exporter.sources.base import (
    TERMINAL_JOB_STATUSES,
    ClientSettings,
    KnownJob,
    OrgTarget,
    PollResult,
)
from exporter.sources.vocdoni import VocdoniSource
from tests.fakes import FakeClock
from tests.fakes import Known as SharedKnown

ORG = "0x1111111111111111111111111111111111111111"
PII = "alice@example.org row 3: invalid phone +34600000000"
T0 = 1_800_000_000.0


def err(status: int, code: int, message: str) -> httpx.Response:
    """Answer like Go's http.Error: JSON body served as text/plain."""
    body = json.dumps({"error": message, "code": code}) + "\n"
    return httpx.Response(status, text=body, headers={"Content-Type": "text/plain; charset=utf-8"})


class FakeVocdoni:
    """In-memory Vocdoni API; `jobs` is oldest first, lists are served newest first."""

    def __init__(self, api: str = "v2") -> None:
        self.api = api
        self.jobs: list[dict[str, Any]] = []
        self.v1_status: dict[str, str] = {}  # tx job id -> status for v1 GET /jobs/{id}
        self.members: dict[str, dict[str, Any]] = {}  # v1 members/job answers
        self.tokens = {"static-token"}
        self.credentials = ("ops@example.org", "hunter2-secret")
        self.issued = 0
        self.expirity = "2027-01-30T08:00:00Z"
        self.log: list[tuple[str, str]] = []
        self.hook: Any = None  # called after each list page is served
        self.next_id = 0

    def add(self, n: int = 1, **fields: Any) -> list[str]:
        """Append n new jobs (newest) and return their ids."""
        ids = []
        for _ in range(n):
            self.next_id += 1
            job_id = f"{self.next_id:032x}"
            job: dict[str, Any] = {"jobId": job_id, "type": "publish_process",
                                   "status": "completed"}
            if self.api == "v1":
                job = {"jobId": job_id, "type": "publish_process", "total": 0, "added": 0,
                       "errors": [], "createdAt": "2026-07-01T10:00:00.123Z",
                       "completedAt": "2026-07-01T10:00:12.456Z", "completed": True}
            job.update(fields)
            self.jobs.append(job)
            ids.append(job_id)
        return ids

    def find(self, job_id: str) -> dict[str, Any] | None:
        return next((j for j in self.jobs if j["jobId"] == job_id), None)

    def count(self, path_prefix: str, method: str = "GET") -> int:
        return sum(1 for m, p in self.log if m == method and p.startswith(path_prefix))

    def authorized(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.tokens

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        self.log.append((request.method, path))
        if path.startswith("/auth/"):
            return self.auth_route(request, path)
        if path == "/jobs":
            if self.api == "v1":
                return httpx.Response(404, text="404 page not found\n")
            return self.list_jobs(request)
        if path.startswith("/jobs/"):
            return self.job(path[len("/jobs/"):])
        if path == f"/organizations/{ORG}/jobs" and self.api == "v1":
            return self.list_jobs(request)
        prefix = f"/organizations/{ORG}/members/job/"
        if path.startswith(prefix) and self.api == "v1":
            if not self.authorized(request):
                return err(401, 40001, "authentication required")
            found = self.members.get(path[len(prefix):])
            return httpx.Response(200, json=found) if found else err(404, 40026, "job not found")
        return httpx.Response(404, text="404 page not found\n")

    def list_jobs(self, request: httpx.Request) -> httpx.Response:
        if not self.authorized(request):
            return err(401, 40001, "authentication required")
        params = request.url.params
        limit = min(int(params.get("limit", 10)), 100)
        page = int(params.get("page", 1))
        rows = [j for j in reversed(self.jobs)
                if "type" not in params or j["type"] == params["type"]]
        last = max(1, math.ceil(len(rows) / limit))
        if page < 1 or page > last:
            return err(400, 40010, "invalid URL parameter: page not found")
        body = {
            "pagination": {"totalItems": len(rows), "previousPage": page - 1 or None,
                           "currentPage": page, "nextPage": page + 1 if page < last else None,
                           "lastPage": last},
            "jobs": rows[(page - 1) * limit: page * limit],
        }
        if self.hook is not None:
            self.hook(page)
        return httpx.Response(200, text=json.dumps(body) + "\n")

    def job(self, job_id: str) -> httpx.Response:
        job = self.find(job_id)
        if job is None:
            return err(404, 40026, "job not found")
        if self.api == "v2":
            return httpx.Response(200, json=job)
        default = "" if job["type"] in ("org_members", "census_participants") else "completed"
        status = self.v1_status.get(job_id, default)
        return httpx.Response(200, json={"jobId": job_id, "type": job["type"], "status": status})

    def auth_route(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "/auth/login":
            body = json.loads(request.content)
            if (body.get("email"), body.get("password")) != self.credentials:
                return err(401, 40102, "invalid login credentials")
            return self.new_token()
        if not self.authorized(request):
            return err(401, 40001, "authentication required")
        if path == "/auth/refresh":
            return self.new_token()
        return httpx.Response(200, json={"addresses": [ORG, "0x" + "2" * 40]})

    def new_token(self) -> httpx.Response:
        self.issued += 1
        token = f"jwt-{self.issued}"
        self.tokens.add(token)
        return httpx.Response(200, json={"token": token, "expirity": self.expirity})


class Known(SharedKnown):
    """The tracker's view, as the source sees it, updated as the tracker would."""

    def absorb(self, result: PollResult) -> None:
        """Update like the tracker would."""
        if result.complete:
            seen = {o.job_id for o in result.jobs}
            self.jobs = {j: k for j, k in self.jobs.items() if j in seen}
        for job_id in result.gone:
            self.jobs.pop(job_id, None)
        for o in result.jobs:
            self.jobs[o.job_id] = KnownJob(o.job_id, o.job_type, o.status,
                                           o.status in TERMINAL_JOB_STATUSES)


def make_source(fake: FakeVocdoni, clock: FakeClock | None = None, **kw: Any) -> VocdoniSource:
    clock = clock or FakeClock(T0)
    kw.setdefault("token", "static-token")
    settings = ClientSettings(base_url="http://vocdoni.test", max_requests_per_second=1e6)
    return VocdoniSource("voc", settings, transport=httpx.MockTransport(fake), clock=clock,
                         sleep=clock.sleep, monotonic=clock, **kw)


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(asyncio.wait_for(main(), timeout=10))


TARGET = OrgTarget(source="voc", org="main", address=ORG)


def poll(src: VocdoniSource, known: Known, full: bool, target: OrgTarget = TARGET) -> PollResult:
    result: PollResult = run(src.poll(target, known, full))
    known.absorb(result)
    return result


def by_id(result: PollResult) -> dict[str, Any]:
    return {o.job_id: o for o in result.jobs}


def login_source(fake: FakeVocdoni, clock: FakeClock | None = None,
                 password: str = "hunter2-secret") -> VocdoniSource:
    return make_source(fake, clock, token=None, email="ops@example.org", password=password)
