"""The simulated Ordo API: auth, routes, batch limits, step DAGs, retries and ground truth."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from exporter.simulator.clock import SimClock
from exporter.simulator.options import SimOptions
from exporter.simulator.ordo_render import step_view
from exporter.simulator.ordo_world import make_recipes, plan_job
from exporter.simulator.server import SimApp
from exporter.simulator.world import World

T0 = 1_780_000_000.0
JS_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OK = "sim-token"
LIST_KEYS = {"id", "recipe_id", "status", "created_at", "started_at", "finished_at", "error"}
STEP_KEYS = {"job_id", "step_id", "step_type", "status", "attempt", "claimed_by", "claimed_at",
             "started_at", "finished_at", "error", "max_concurrency", "last_detailing"}


def make_app(**knobs: Any) -> SimApp:
    opts = SimOptions(**{"seed": 3, "ordo_job_rate": 1.0, "ordo_history": 12, "job_rate": 0.0,
                         **knobs})
    # the fake wall clock never moves; tests advance the world clock
    return SimApp(World(opts, SimClock(source=lambda: T0, origin=T0)))


def call(app: SimApp, target: str, auth: str | None = f"Bearer {OK}") -> tuple[int, str, Any]:
    headers = {"authorization": auth} if auth is not None else {}
    resp = app.dispatch("GET", target, headers, b"")
    text = resp.body.decode()
    try:
        return resp.status, resp.content_type, json.loads(text)
    except ValueError:
        return resp.status, resp.content_type, text


@pytest.fixture()
def app() -> SimApp:
    app = make_app()
    app.world.clock.advance(20)
    return app


def test_health_is_public_and_everything_else_needs_the_exact_token(app: SimApp) -> None:
    assert call(app, "/ordo/health", None)[::2] == (200, {"status": "ok"})
    missing = {"error": "Missing or invalid Authorization header"}
    assert call(app, "/ordo/jobs", None)[::2] == (401, missing)
    assert call(app, "/ordo/jobs", "bearer sim-token")[::2] == (401, missing)
    assert call(app, "/ordo/jobs", "Bearer nope")[::2] == (401, {"error": "Invalid token"})
    assert call(app, "/ordo/nowhere", None)[0] == 401  # auth runs before routing
    status, ctype, page = call(app, "/ordo/nowhere")
    assert (status, ctype) == (404, "text/html; charset=utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<pre>Cannot GET /nowhere</pre>" in page


def test_recipes_and_list_shapes(app: SimApp) -> None:
    _, ctype, recipes = call(app, "/ordo/recipes")
    assert ctype == "application/json; charset=utf-8"
    assert [r["id"] for r in recipes] == sorted((r["id"] for r in recipes), reverse=True)
    assert {"lidar-ept", "ortho-mosaic", "vector-import"} <= {r["name"] for r in recipes}
    assert call(app, "/ordo/recipes/1")[2]["name"] == "lidar-ept"
    _, _, jobs = call(app, "/ordo/jobs?status=failed&limit=1")  # query is ignored
    assert len(jobs) == len(app.world.ordo.jobs) > 12
    assert [j["id"] for j in jobs] == sorted((j["id"] for j in jobs), reverse=True)
    for job in jobs:
        assert set(job) == LIST_KEYS
        assert JS_TIME.match(job["created_at"])
        for key in ("started_at", "finished_at"):
            assert job[key] is None or JS_TIME.match(job[key])
        assert (job["finished_at"] is None) is (job["status"] in ("pending", "running"))


def test_job_detail_shape_and_progress(app: SimApp) -> None:
    for job in call(app, "/ordo/jobs")[2]:
        status, _, body = call(app, f"/ordo/jobs/{job['id']}")
        assert status == 200
        assert set(body) == {"job", "progress", "duration_ms", "timeline", "steps", "artifacts",
                             "outputs"}
        assert set(body["job"]) == LIST_KEYS | {"params"}
        progress = body["progress"]
        assert 0 <= progress["percentage"] <= 1
        assert progress["total_steps"] == len(body["steps"])
        assert progress["completed_steps"] == sum(s["status"] in ("success", "failed")
                                                  for s in body["steps"])
        assert [s["step_id"] for s in body["steps"]] == sorted(s["step_id"] for s in body["steps"])
        for step in body["steps"]:
            assert set(step) == STEP_KEYS
            detail = step["last_detailing"]
            if detail is not None:
                assert set(detail) == {"id", "job_id", "step_id", "log", "progress", "updated_at"}
                assert 0 <= detail["progress"]["progress"] <= 100
        if body["job"]["status"] == "success":
            assert progress["percentage"] == 1 and body["duration_ms"] > 0
        if body["job"]["finished_at"] is None:
            assert body["duration_ms"] is None


def test_job_id_parsing(app: SimApp) -> None:
    assert call(app, "/ordo/jobs/abc")[::2] == (400, {"error": "Invalid job ID"})
    assert call(app, "/ordo/jobs/99999")[::2] == (404, {"error": "Job not found"})
    assert call(app, "/ordo/jobs/1abc")[2]["job"]["id"] == 1  # parseInt semantics


def test_batch_order_unknown_ids_and_limits(app: SimApp) -> None:
    status, _, items = call(app, "/ordo/jobs/3,99999,1,3")
    assert status == 200 and [i["id"] for i in items] == [3, 99999, 1, 3]
    assert items[1] == {"id": 99999, "found": False}
    assert items[0]["found"] is True and items[0]["job"]["id"] == 3 and "steps" in items[0]
    many = ",".join(str(i) for i in range(1, 102))
    assert call(app, f"/ordo/jobs/{many}")[::2] == (
        400, {"error": "Cannot request more than 100 job IDs at once"})
    assert call(app, "/ordo/jobs/0,1")[::2] == (
        400, {"error": 'Job ID must be a positive integer: "0"'})
    assert call(app, "/ordo/jobs/5,,,")[::2] == (
        400, {"error": "Batch endpoint requires at least 2 job IDs"})
    assert call(app, "/ordo/jobs/" + ",".join(["2"] * 100))[0] == 200


def _plans(**knobs: Any) -> list[Any]:
    opts = SimOptions(**knobs)
    recipes = make_recipes(opts, T0)
    rng = random.Random(11)
    return [plan_job(i, recipes[0], T0, rng, opts, allow_stuck=False) for i in range(1, 400)]


def test_failed_step_skips_its_dependents_and_sets_partial_or_failed() -> None:
    jobs = _plans(failure_ratio=0.5)
    end = T0 + 1e6
    outcomes = {j.outcome for j in jobs}
    assert {"success", "failed", "partial"} <= outcomes
    for job in jobs:
        views = {sp.sdef.step_id: step_view(sp, end).status for sp in job.steps}
        if views["reproject"] == "failed":  # both build_ept and dem depend on it
            assert views["build_ept"] == views["dem"] == "skipped" and job.outcome == "failed"
        if job.outcome == "partial":
            assert "success" in views.values() and "failed" in views.values()
        for sp in job.steps:
            claims = [c for c, _ in sp.attempts]
            deps = [s for s in job.steps if s.sdef.step_id in sp.sdef.deps]
            for dep in deps:  # DAG order: a step starts after its inputs exist
                assert all(c >= (dep.finish or 0) for c in claims)


def test_retries_blocked_and_stale_steps_exist() -> None:
    jobs = _plans(failure_ratio=0.2)
    retried = [sp for j in jobs for sp in j.steps if len(sp.attempts) > 1]
    assert retried
    sp = retried[0]
    between = sp.attempts[0][1] + 0.01
    view = step_view(sp, between)
    assert (view.status, view.attempt) == ("blocked", 1) and view.error
    assert step_view(sp, T0 + 1e6).attempt == len(sp.attempts)
    stale = [sp for j in jobs for sp in j.steps if sp.stale]
    assert stale
    claim, end = stale[0].attempts[-1]
    late = step_view(stale[0], end - 1)
    assert late.status == "running" and late.detail is not None and late.detail[1] == claim


def test_truth_matches_what_the_api_lists(app: SimApp) -> None:
    truth = app.world.truth()["ordo"]["ordo"]
    jobs = call(app, "/ordo/jobs")[2]
    names = {r["id"]: r["name"] for r in call(app, "/ordo/recipes")[2]}
    counts: dict[str, dict[str, int]] = {}
    for job in jobs:
        status = "completed" if job["status"] == "success" else job["status"]
        per = counts.setdefault(names[job["recipe_id"]], {})
        per[status] = per.get(status, 0) + 1
    assert counts == truth["jobs"] and truth["total"] == len(jobs)
    active = {str(j["id"]) for j in jobs if j["status"] in ("pending", "running")}
    assert set(truth["active_ids"]) == active
    details = call(app, "/ordo/jobs/" + ",".join(str(j["id"]) for j in jobs[:100]))[2]
    retries: dict[str, dict[str, int]] = {}
    for item in details:
        recipe = names[item["job"]["recipe_id"]]
        for step in item["steps"]:
            per = retries.setdefault(recipe, {})
            per[step["step_type"]] = per.get(step["step_type"], 0) + max(step["attempt"] - 1, 0)
    assert retries == truth["step_retries"]
    finished = sum(n for by in truth["finished"].values() for n in by.values())
    assert finished == sum(1 for j in jobs if j["finished_at"] is not None)
    assert "success" not in json.dumps(truth["jobs"])  # normalized to completed


def test_fail_job_and_delete_org_on_ordo(app: SimApp) -> None:
    world = app.world
    jid = world.add_jobs("ordo", None, "lidar-ept", 1, fail=True)[0]
    world.clock.advance(1)
    _, _, body = call(app, f"/ordo/jobs/{jid}")
    assert body["job"]["status"] == "failed" and body["job"]["error"]
    assert {s["status"] for s in body["steps"]} == {"failed", "skipped"}
    before = world.truth()["ordo"]["ordo"]["finished"]
    assert world.delete_org("ordo", None) > 0
    assert call(app, "/ordo/jobs")[2] == []
    assert world.truth()["ordo"]["ordo"]["finished"] == before


def test_hostile_recipe_and_step_types() -> None:
    app = make_app(hostile_labels=True)
    names = [r["name"] for r in call(app, "/ordo/recipes")[2]]
    assert any('"' in n and "\\" in n for n in names)
    types = {s.step_type for r in app.world.ordo.recipes for s in r.steps}
    assert any("\n" in t for t in types) and any(len(t) == 300 for t in types)
