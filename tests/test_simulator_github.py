"""The simulator's GitHub Actions face (the Ordo world as runs), read by the github preset."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from exporter.simulator.clock import SimClock
from exporter.simulator.options import SimOptions
from exporter.simulator.server import SimApp, start_simulator
from exporter.simulator.world import World
from exporter.sources.base import ClientSettings, OrgTarget, PollResult
from exporter.sources.json_config import JsonSourceModel
from exporter.sources.json_source import JsonSource

T0 = 1_780_000_000.0
OPTS = {"seed": 3, "ordo_job_rate": 1.0, "ordo_history": 12, "job_rate": 0.0}
RUNS = "/github/repos/sim/ordo/actions/runs"


def call(app: SimApp, target: str, **headers: str) -> tuple[int, dict[str, str], Any]:
    resp = app.dispatch("GET", target, {"authorization": "Bearer sim-token", **headers}, b"")
    return resp.status, resp.headers, json.loads(resp.body) if resp.body else None


def test_runs_etag_304_link_paging_and_attempt_jobs() -> None:
    app = SimApp(World(SimOptions(**OPTS), SimClock(source=lambda: T0, origin=T0)))
    status, headers, body = call(app, f"{RUNS}?per_page=5")
    assert status == 200 and len(body["workflow_runs"]) == 5
    assert body["total_count"] == len(app.world.ordo.jobs)
    assert 'page=2>; rel="next"' in headers["Link"] and headers["Link"].startswith("<http://")
    ids = [r["id"] for r in body["workflow_runs"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    again, same, _ = call(app, f"{RUNS}?per_page=5", **{"if-none-match": headers["ETag"]})
    assert again == 304 and same["X-RateLimit-Remaining"] == headers["X-RateLimit-Remaining"]
    run = body["workflow_runs"][0]
    status, _, jobs = call(app, f"{RUNS}/{run['id']}/attempts/1/jobs")
    assert status == 200 and jobs["total_count"] == len(app.world.ordo.by_id[run["id"]].steps)
    assert call(app, f"{RUNS}/{run['id']}/attempts/1")[2]["id"] == run["id"]
    assert call(app, f"{RUNS}/999999/attempts/1")[0] == 404
    assert call(app, RUNS, authorization="Bearer nope")[0] == 401


def test_github_preset_reads_the_simulator_over_http() -> None:
    sim = start_simulator(SimOptions(listen_host="127.0.0.1", listen_port=0, **OPTS),
                          SimClock(source=lambda: T0, origin=T0))  # frozen: no new jobs
    try:
        spec = JsonSourceModel.model_validate({
            "name": "gh", "kind": "json", "preset": "github-actions",
            "base_url": f"{sim.url}/github", "auth": {"token": "sim-token"},
            "organizations": [{"address": "sim/ordo"}]})
        src = JsonSource("gh", ClientSettings(base_url=f"{sim.url}/github"), spec)

        async def poll() -> PollResult:
            try:
                return await src.poll(OrgTarget("gh", "sim/ordo", "sim/ordo"), _NoJobs(), True)
            finally:
                await src.aclose()

        result = asyncio.run(poll())
        with sim.world.lock:
            truth = {(f"{j.jid}#1", j.recipe.name) for j in sim.world.ordo.jobs}
        assert {(j.job_id, j.job_type) for j in result.jobs} == truth
        assert result.complete and not result.unknown_statuses
    finally:
        sim.stop()


class _NoJobs:
    def get(self, job_id: str) -> None:
        return None

    def active_ids(self) -> frozenset[str]:
        return frozenset()

    def __len__(self) -> int:
        return 0

    def settled_id(self) -> None:
        return None


def test_airflow_face_filters_by_updated_at_and_pages_by_total_entries() -> None:
    import base64

    app = SimApp(World(SimOptions(**OPTS), SimClock(source=lambda: T0, origin=T0)))
    auth = "Basic " + base64.b64encode(b"admin:sim-token").decode()
    runs = "/airflow/api/v1/dags/~/dagRuns"
    status, _, body = call(app, f"{runs}?limit=500&offset=0", authorization=auth)
    assert status == 200 and len(body["dag_runs"]) == min(100, body["total_entries"])
    assert body["total_entries"] == len(app.world.ordo.jobs)
    late = "2100-01-01T00:00:00Z"
    assert call(app, f"{runs}?updated_at_gte={late}", authorization=auth)[2] == {
        "dag_runs": [], "total_entries": 0}
    run = body["dag_runs"][0]
    status, _, tasks = call(app, f"/airflow/api/v1/dags/{run['dag_id']}/dagRuns/"
                                 f"{run['dag_run_id']}/taskInstances", authorization=auth)
    assert status == 200 and tasks["total_entries"] >= 1
    assert call(app, runs)[0] == 401


def test_airflow_face_streams_the_task_instances_of_every_run_changed_in_a_window() -> None:
    import base64

    from exporter.simulator.airflow import task_updated_at

    app = SimApp(World(SimOptions(**OPTS), SimClock(source=lambda: T0, origin=T0)))
    auth = "Basic " + base64.b64encode(b"admin:sim-token").decode()
    stream = "/airflow/api/v1/dags/~/dagRuns/~/taskInstances"
    page = call(app, f"{stream}?limit=10&offset=10", authorization=auth)[2]
    steps = [(j, s) for j in app.world.ordo.jobs for s in j.steps]
    assert page["total_entries"] == len(steps) > 20 and len(page["task_instances"]) == 10
    updated = sorted(task_updated_at(j, s, T0) for j, s in steps)
    low, high = int(updated[len(updated) // 4]), int(updated[len(updated) // 2])
    window = {(j.recipe.name, f"manual__{j.jid}", s.sdef.step_id) for j, s in steps
              if low <= task_updated_at(j, s, T0) <= high}
    gte, lte = (datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                for t in (low, high))
    got = call(app, f"{stream}?updated_at_gte={gte}&updated_at_lte={lte}&limit=100",
               authorization=auth)[2]
    assert 0 < got["total_entries"] == len(window) < len(steps)
    assert {(t["dag_id"], t["dag_run_id"], t["task_id"]) for t in got["task_instances"]} == window
    assert call(app, f"{stream}?updated_at_gte=soon", authorization=auth)[0] == 400
    assert call(app, stream)[0] == 401


def test_gitlab_face_lists_pages_details_and_retried_jobs() -> None:
    app = SimApp(World(SimOptions(**OPTS), SimClock(source=lambda: T0, origin=T0)))
    base = "/gitlab/api/v4/projects/sim%2Fordo/pipelines"
    tok = {"private-token": "sim-token"}
    status, headers, first = call(app, f"{base}?per_page=3", **tok)
    assert status == 200 and len(first) == 3 and "started_at" not in first[0]
    assert headers["X-Next-Page"] == "2" and 'page=2>; rel="next"' in headers["Link"]
    assert int(headers["RateLimit-Remaining"]) < 2000
    pid = first[0]["id"]
    detail = call(app, f"{base}/{pid}", **tok)[2]
    assert detail["id"] == pid and "started_at" in detail and "duration" in detail
    jobs = call(app, f"{base}/{pid}/jobs?include_retried=true", **tok)[2]
    attempts = sum(len([a for a in s.attempts if a[0] <= T0])
                   for s in app.world.ordo.by_id[pid].steps)
    assert len(jobs) == attempts  # every attempt is a job of its own
    assert call(app, f"{base}?updated_after=2100-01-01T00:00:00Z", **tok)[2] == []
    assert call(app, base, authorization="Bearer nope")[0] == 401
