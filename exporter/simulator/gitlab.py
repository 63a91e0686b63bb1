"""A GitLab CI face of the simulated Ordo world: pipelines, their jobs with retries, paging."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from exporter.simulator.airflow import updated_at
from exporter.simulator.http import Request, Response
from exporter.simulator.ordo_world import OJob
from exporter.simulator.world import World

PROJECT = "sim%2Fordo"  # :id as the URL-encoded path sim/ordo
PREFIX = ["api", "v4", "projects", PROJECT, "pipelines"]
STATUSES = {"pending": "pending", "running": "running", "success": "success",
            "failed": "failed", "partial": "failed"}
LIST_FIELDS = ("id", "iid", "project_id", "status", "source", "ref", "sha", "name", "web_url",
               "created_at", "updated_at")
RATE_LIMIT = 2000


def iso(seconds: float | None) -> str | None:
    """Render a time as GitLab does (milliseconds, Z)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _seen(t: float | None, now: float) -> float | None:
    return t if t is not None and t <= now else None


def pipeline_json(job: OJob, now: float) -> dict[str, Any]:
    """Render one simulated job as a pipeline detail."""
    status = STATUSES.get(job.status(now), "running")
    started = _seen(job.started, now)
    finished = _seen(job.finish, now) if status not in ("pending", "running") else None
    return {"id": job.jid, "iid": job.jid, "project_id": 1, "status": status, "source": "web",
            "ref": job.recipe.name, "sha": f"{job.jid:040x}", "name": job.recipe.name,
            "web_url": f"https://gitlab.sim/sim/ordo/-/pipelines/{job.jid}",
            "created_at": iso(job.created), "updated_at": iso(updated_at(job, now)),
            "started_at": iso(started), "finished_at": iso(finished),
            "duration": int(finished - started) if finished and started else None}


def jobs_json(job: OJob, now: float) -> list[dict[str, Any]]:
    """Render each attempt of each step as a CI job (retries get new ids), id descending."""
    out = []
    for index, step in enumerate(job.steps):
        for n, (claimed, ended) in enumerate(step.attempts):
            if claimed > now:
                break
            last = n == len(step.attempts) - 1
            done = ended <= now and (not last or step.outcome is not None)
            outcome = (step.outcome if last else "failed") or "failed"
            status = ("success" if outcome == "success" else "skipped"
                      if outcome == "skipped" else "failed") if done else "running"
            out.append({"id": job.jid * 10000 + index * 100 + n, "name": step.sdef.step_type,
                        "stage": "run", "status": status, "created_at": iso(claimed),
                        "started_at": iso(claimed), "finished_at": iso(ended) if done else None,
                        "duration": ended - claimed if done else None, "allow_failure": False})
    return sorted(out, key=lambda j: -j["id"])


class GitLabApi:
    """Serve project sim/ordo's pipelines, one pipeline and its jobs from the Ordo world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.remaining = RATE_LIMIT

    def resolve(self, req: Request) -> tuple[str, Callable[[], Response]]:
        """Return the route template and a thunk answering the request."""
        parts = req.path.strip("/").split("/")
        if parts[:5] != PREFIX:
            return "/*", lambda: self._json(404, {"message": "404 Not found"})
        rest = parts[5:]
        if not rest:
            return "/projects/:id/pipelines", lambda: self._guard(req) or self._list(req)
        if rest[0].isdigit() and len(rest) <= 2 and rest[1:] in ([], ["jobs"]):
            jobs = rest[1:] == ["jobs"]
            template = "/projects/:id/pipelines/:pid" + ("/jobs" if jobs else "")
            return template, lambda: self._guard(req) or self._one(int(rest[0]), jobs)
        return "/*", lambda: self._json(404, {"message": "404 Not found"})

    def _guard(self, req: Request) -> Response | None:
        """Require PRIVATE-TOKEN (or a Bearer token)."""
        token = self.world.opts.token
        if req.headers.get("private-token") != token and \
                req.headers.get("authorization") != f"Bearer {token}":
            return self._json(401, {"message": "401 Unauthorized"})
        return None

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        self.remaining = max(0, self.remaining - 1)
        limits = {"RateLimit-Limit": str(RATE_LIMIT), "RateLimit-Remaining": str(self.remaining)}
        return Response(status, json.dumps(body).encode(), "application/json",
                        {**limits, **(headers or {})})

    def _list(self, req: Request) -> Response:
        """List pipelines updated in [updated_after, updated_before], newest update first."""
        q = {k: v[0] for k, v in req.query.items() if v}
        try:
            low = datetime.fromisoformat(q["updated_after"]).timestamp() \
                if "updated_after" in q else float("-inf")
            high = datetime.fromisoformat(q["updated_before"]).timestamp() \
                if "updated_before" in q else float("inf")
        except ValueError:
            return self._json(400, {"message": "400 Bad request"})
        page, per_page = max(1, int(q.get("page", 1))), min(100, max(1, int(q.get("per_page", 20))))
        with self.world.lock:
            now = self.world.sync()
            found = sorted(((updated_at(j, now), j) for j in self.world.ordo.jobs
                            if not j.deleted), key=lambda x: (-x[0], -x[1].jid))
            rows = [pipeline_json(j, now) for u, j in found if low <= u <= high]
        chunk = [{k: r[k] for k in LIST_FIELDS} for r in rows[(page - 1) * per_page:][:per_page]]
        more = page * per_page < len(rows)
        headers = {"X-Page": str(page), "X-Total": str(len(rows)),
                   "X-Next-Page": str(page + 1) if more else ""}
        if more:
            nxt = urlencode({**q, "page": page + 1})
            host = req.headers.get("host", "127.0.0.1")
            headers["Link"] = f'<http://{host}/gitlab/{"/".join(PREFIX)}?{nxt}>; rel="next"'
        return self._json(200, chunk, headers)

    def _one(self, pid: int, jobs: bool) -> Response:
        """Return one pipeline's detail or its jobs (retried ones included)."""
        with self.world.lock:
            now = self.world.sync()
            job = self.world.ordo.by_id.get(pid)
            if job is None or job.deleted:
                return self._json(404, {"message": "404 Not found"})
            body = jobs_json(job, now) if jobs else pipeline_json(job, now)
        return self._json(200, body)
