"""An Airflow 2.x face of the simulated Ordo world: DAG runs, task instances, updated_at_gte.

Both lists answer instance-wide (`dags/~/dagRuns`, `dags/~/dagRuns/~/taskInstances`) with the
hidden `updated_at` filters, and one run's task instances by its ids (job-apis.md §4).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from exporter.simulator.http import Request, Response
from exporter.simulator.ordo_world import OJob, StepPlan
from exporter.simulator.world import World

USER = "admin"  # basic auth: admin / the simulator token
MAX_LIMIT = 100  # [api] maximum_page_limit: larger limits are silently reduced
RUN_STATES = {"pending": "queued", "running": "running", "success": "success",
              "failed": "failed", "partial": "failed"}


def iso(seconds: float | None) -> str | None:
    """Render a time as Airflow does (+00:00)."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def _seen(t: float | None, now: float) -> float | None:
    """Return a planned time only once it has happened."""
    return t if t is not None and t <= now else None


def updated_at(job: OJob, now: float) -> float:
    """Return the last change of a job or its steps up to `now` (Airflow's updated_at)."""
    times = [job.created, job.started, job.finish]
    for step in job.steps:
        times.extend(t for attempt in step.attempts for t in attempt)
        times.append(step.finish)
    return max(t for t in times if t is not None and t <= now)


def task_updated_at(job: OJob, step: StepPlan, now: float) -> float:
    """Return the last change of one task instance up to `now` (created with its run)."""
    times = [job.created, step.finish, *(t for attempt in step.attempts for t in attempt)]
    return max(t for t in times if t is not None and t <= now)


def run_id(job: OJob) -> str:
    """Return the dag_run_id of a simulated job."""
    return f"manual__{job.jid}"


def run_json(job: OJob, now: float) -> dict[str, Any]:
    """Render one simulated job as a v1 DAGRun."""
    return {"dag_id": job.recipe.name, "dag_run_id": run_id(job),
            "logical_date": iso(job.created), "execution_date": iso(job.created),
            "start_date": iso(_seen(job.started, now)),
            "end_date": iso(_seen(job.finish, now)) if job.status(now) not in (
                "pending", "running") else None,
            "state": RUN_STATES.get(job.status(now), "running"), "run_type": "manual",
            "external_trigger": True, "conf": {}}


def task_json(job: OJob, step: StepPlan, now: float) -> dict[str, Any]:
    """Render one step as a v1 TaskInstance."""
    tries = [a for a in step.attempts if a[0] <= now]
    done = step.finish is not None and step.finish <= now and step.outcome is not None
    state = (step.outcome if done else "running" if tries else "queued" if step.attempts
             else None)
    return {"dag_id": job.recipe.name, "dag_run_id": run_id(job),
            "task_id": step.sdef.step_id, "map_index": -1, "state": state,
            "start_date": iso(tries[-1][0]) if tries else None,
            "end_date": iso(step.finish) if done else None, "try_number": len(tries),
            "max_tries": max(1, len(step.attempts)), "operator": step.sdef.step_type}


def _json(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body).encode(), "application/json")


def _window(req: Request) -> tuple[float, float] | None:
    """Read [updated_at_gte, updated_at_lte] (open ends allowed); None when malformed."""
    gte, lte = (req.query.get(k, [""])[0] for k in ("updated_at_gte", "updated_at_lte"))
    try:
        low = datetime.fromisoformat(gte).timestamp() if gte else float("-inf")
        high = datetime.fromisoformat(lte).timestamp() if lte else float("inf")
    except ValueError:
        return None
    return low, high


def _page(req: Request, rows: list[dict[str, Any]], key: str) -> Response:
    """Answer one limit/offset page with total_entries."""
    offset = max(0, int((req.query.get("offset") or ["0"])[0] or 0))
    limit = min(MAX_LIMIT, max(1, int((req.query.get("limit") or ["100"])[0] or 100)))
    return _json(200, {key: rows[offset:offset + limit], "total_entries": len(rows)})


class AirflowApi:
    """Serve /api/v1/dags/~/dagRuns and task instances (all runs' or one's) from the world."""

    def __init__(self, world: World) -> None:
        self.world = world

    def resolve(self, req: Request) -> tuple[str, Callable[[], Response]]:
        """Return the route template and a thunk answering the request."""
        parts = req.path.strip("/").split("/")
        if parts == ["api", "v1", "dags", "~", "dagRuns"]:
            return "/api/v1/dags/~/dagRuns", lambda: self._auth(req) or self._runs(req)
        if parts == ["api", "v1", "dags", "~", "dagRuns", "~", "taskInstances"]:
            return ("/api/v1/dags/~/dagRuns/~/taskInstances",
                    lambda: self._auth(req) or self._all_tasks(req))
        if len(parts) == 7 and parts[:3] == ["api", "v1", "dags"] and parts[6] == "taskInstances":
            return ("/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
                    lambda: self._auth(req) or self._tasks(req, parts[5]))
        return "/*", lambda: _json(404, {"title": "Not Found", "status": 404})

    def _auth(self, req: Request) -> Response | None:
        """Require basic auth (the basic_auth API backend)."""
        pair = f"{USER}:{self.world.opts.token}".encode()
        if req.headers.get("authorization") != "Basic " + base64.b64encode(pair).decode():
            return _json(401, {"title": "Unauthorized", "status": 401})
        return None

    def _runs(self, req: Request) -> Response:
        """List runs changed in [updated_at_gte, updated_at_lte], by updated_at."""
        def rows(now: float, low: float, high: float) -> list[dict[str, Any]]:
            found = [(updated_at(j, now), j) for j in self.world.ordo.jobs if not j.deleted]
            return [run_json(j, now) for u, j in sorted(found, key=lambda x: (x[0], x[1].jid))
                    if low <= u <= high]

        return self._windowed(req, rows, "dag_runs")

    def _all_tasks(self, req: Request) -> Response:
        """List the task instances of every run changed in the window (no order_by in v1)."""
        def rows(now: float, low: float, high: float) -> list[dict[str, Any]]:
            return [task_json(j, s, now) for j in self.world.ordo.jobs if not j.deleted
                    and j.created <= now for s in j.steps
                    if low <= task_updated_at(j, s, now) <= high]

        return self._windowed(req, rows, "task_instances")

    def _windowed(self, req: Request, rows: Callable[[float, float, float], list[dict[str, Any]]],
                  key: str) -> Response:
        """Answer a list filtered by the updated_at window, as Airflow pages it (400 without)."""
        window = _window(req)
        if window is None:
            return _json(400, {"title": "Bad Request", "status": 400})
        with self.world.lock:
            found = rows(self.world.sync(), *window)
        return _page(req, found, key)

    def _tasks(self, req: Request, run_id: str) -> Response:
        """List the task instances of one run."""
        jid = run_id.removeprefix("manual__")
        with self.world.lock:
            now = self.world.sync()
            job = self.world.ordo.by_id.get(int(jid)) if jid.isdigit() else None
            if job is None or job.deleted:
                return _json(404, {"title": "DAGRun not found", "status": 404})
            rows = [task_json(job, s, now) for s in job.steps]
        return _page(req, rows, "task_instances")
