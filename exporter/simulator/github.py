"""A GitHub Actions face of the simulated Ordo world: runs, attempt jobs, ETags, Link paging."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from exporter.simulator.http import Request, Response
from exporter.simulator.ordo_world import OJob, StepPlan
from exporter.simulator.world import World

REPO = ("sim", "ordo")  # the one repository: address sim/ordo
RATE_LIMIT = 5000
CONCLUSIONS = {"success": "success", "failed": "failure", "partial": "failure",
               "skipped": "skipped"}


def iso(seconds: float | None) -> str | None:
    """Render a time as GitHub does (second resolution, Z)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_json(job: OJob, now: float) -> dict[str, Any]:
    """Render one simulated job as a workflow run (attempt 1)."""
    raw = job.status(now)
    status = {"pending": "queued", "running": "in_progress"}.get(raw, "completed")
    done = status == "completed"
    started = job.started if job.started is not None and now >= job.started else None
    return {
        "id": job.jid, "name": job.recipe.name, "display_title": f"job {job.jid}",
        "run_number": job.jid, "run_attempt": 1, "event": "workflow_dispatch",
        "head_branch": "main", "status": status,
        "conclusion": CONCLUSIONS.get(raw) if done else None,
        "created_at": iso(job.created), "run_started_at": iso(started or job.created),
        "updated_at": iso(job.finish if done else (started or job.created)),
        "path": f".github/workflows/{job.recipe.name}.yml@main",
    }


def job_json(job: OJob, index: int, step: StepPlan, now: float) -> dict[str, Any]:
    """Render one step of a simulated job as a workflow job."""
    claimed = step.attempts[0][0] if step.attempts else None
    started = claimed if claimed is not None and now >= claimed else None
    done = step.finish is not None and now >= step.finish and step.outcome is not None
    status = "completed" if done else "in_progress" if started is not None else "queued"
    return {
        "id": job.jid * 1000 + index, "run_id": job.jid, "run_attempt": 1,
        "name": step.sdef.step_type, "status": status,
        "conclusion": CONCLUSIONS.get(step.outcome or "") if done else None,
        "created_at": iso(job.created), "started_at": iso(started),
        "completed_at": iso(step.finish) if done else None, "steps": [],
    }


def _json(status: int, body: Any, headers: dict[str, str]) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    return Response(status, data, "application/json; charset=utf-8", headers)


class GitHubApi:
    """Serve GET runs / attempt / attempt jobs of repo sim/ordo from the Ordo world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.remaining = RATE_LIMIT

    def resolve(self, req: Request) -> tuple[str, Callable[[], Response]]:
        """Return the route template and a thunk answering the request."""
        parts = req.path.strip("/").split("/")
        if parts[:5] != ["repos", *REPO, "actions", "runs"] or req.method != "GET":
            return "/*", lambda: _json(404, {"message": "Not Found"}, {})
        if len(parts) == 5:
            return "/repos/{o}/{r}/actions/runs", lambda: self._answer(req, self._runs(req))
        if len(parts) in (8, 9) and parts[6] == "attempts" and parts[5].isdigit():
            jobs = len(parts) == 9 and parts[8] == "jobs"
            template = "/repos/{o}/{r}/actions/runs/{id}/attempts/{n}" + ("/jobs" if jobs else "")
            return template, lambda: self._answer(req, self._run(int(parts[5]), jobs))
        return "/*", lambda: _json(404, {"message": "Not Found"}, {})

    def _runs(self, req: Request) -> tuple[Any, dict[str, str]]:
        """List runs newest first, page + per_page (max 100) with a Link to the next page."""
        page = max(1, int((req.query.get("page") or ["1"])[0] or 1))
        per_page = min(100, max(1, int((req.query.get("per_page") or ["30"])[0] or 30)))
        with self.world.lock:
            now = self.world.sync()
            jobs = list(reversed(self.world.ordo.jobs))
            runs = [run_json(j, now) for j in jobs[(page - 1) * per_page:page * per_page]]
        headers = {}
        if page * per_page < len(jobs):
            host = req.headers.get("host", "127.0.0.1")  # GitHub's Link URLs are absolute
            nxt = f"http://{host}/github/repos/{REPO[0]}/{REPO[1]}/actions/runs" \
                  f"?per_page={per_page}&page={page + 1}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return {"total_count": len(jobs), "workflow_runs": runs}, headers

    def _run(self, jid: int, jobs: bool) -> tuple[Any, dict[str, str]]:
        """Return one run (attempt 1) or its jobs; None when the run does not exist."""
        with self.world.lock:
            now = self.world.sync()
            job = self.world.ordo.by_id.get(jid)
            if job is None or job.deleted:
                return None, {}
            if not jobs:
                return run_json(job, now), {}
            items = [job_json(job, i, s, now) for i, s in enumerate(job.steps)]
        return {"total_count": len(items), "jobs": items}, {}

    def _answer(self, req: Request, found: tuple[Any, dict[str, str]]) -> Response:
        """Check the token, then answer 200 with an ETag or 304 (free of the rate limit)."""
        if req.headers.get("authorization") != f"Bearer {self.world.opts.token}":
            return _json(401, {"message": "Bad credentials"}, {})
        body, headers = found
        if body is None:
            return _json(404, {"message": "Not Found"}, {})
        etag = '"' + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest() + '"'
        limits = {"ETag": etag, "X-RateLimit-Limit": str(RATE_LIMIT),
                  "X-RateLimit-Reset": str(int(time.time()) + 3600)}
        if req.headers.get("if-none-match") == etag:
            return Response(304, b"", "application/json",
                            {**limits, "X-RateLimit-Remaining": str(self.remaining)})
        self.remaining = max(0, self.remaining - 1)
        return _json(200, body, {**headers, **limits, "X-RateLimit-Remaining": str(self.remaining)})
