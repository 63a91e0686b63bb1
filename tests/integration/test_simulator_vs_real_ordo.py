"""The simulator's Ordo answers equal the real Ordo's for the same data: the fake cannot drift.

The simulator's world (recipes, jobs, steps, detailing rows, artifacts, outputs) is written into
the real Ordo's PostgreSQL as n8n would; then both services answer the same routes and the JSON
shapes (keys, value types, ordering of ids) and status vocabularies must agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exporter.simulator.clock import SimClock
from exporter.simulator.options import SimOptions
from exporter.simulator.server import SimApp
from exporter.simulator.world import World
from tests.integration.ordo_upstream import SCHEMA, TOKEN, OrdoService

# What Ordo's own code and its n8n workflows write (ordo-jobs-api.md section 6).
JOB_STATUSES = {"pending", "running", "success", "completed", "failed", "partial"}
STEP_STATUSES = {"pending", "running", "success", "failed", "skipped", "blocked"}
TABLES = ("recipe", "job", "job_step", "job_step_detailing", "job_artifact", "job_output")


class Sim:
    """The simulator's Ordo mount, in process, on a frozen clock (its world does not move)."""

    def __init__(self) -> None:
        t0 = time.time() - 120.0  # every timestamp in the past, like a real deployment
        opts = SimOptions(seed=5, ordo_job_rate=1.0, ordo_history=14, job_rate=0.0,
                          vocdoni_orgs=0, vocdoni_v1_orgs=0, token=TOKEN)
        self.app = SimApp(World(opts, SimClock(source=lambda: t0, origin=t0)))
        self.app.world.clock.advance(60)

    def get(self, path: str, token: str | None = TOKEN) -> tuple[int, str, Any]:
        """Answer GET `path` as (status, content type, JSON or text)."""
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        resp = self.app.dispatch("GET", f"/ordo{path}", headers, b"")
        return resp.status, resp.content_type, _decode(resp.body.decode())


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def real_get(ordo: OrdoService, path: str, token: str | None = TOKEN) -> tuple[int, str, Any]:
    """Answer GET `path` from the real Ordo in the same form as Sim.get."""
    resp: httpx.Response = ordo.get(path, token)
    return resp.status_code, resp.headers.get("content-type", ""), _decode(resp.text)


def _rows(sim: Sim) -> dict[str, list[dict[str, Any]]]:
    """Turn the simulator's answers into the rows of Ordo's tables."""
    _, _, recipes = sim.get("/recipes")
    _, _, jobs = sim.get("/jobs")
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    rows["recipe"] = recipes
    for item in jobs:
        _, _, detail = sim.get(f"/jobs/{item['id']}")
        rows["job"].append(detail["job"])
        for step in detail["steps"]:
            if step["last_detailing"] is not None:
                rows["job_step_detailing"].append(step["last_detailing"])
            rows["job_step"].append({k: v for k, v in step.items() if k != "last_detailing"})
        rows["job_artifact"] += detail["artifacts"]
        rows["job_output"] += detail["outputs"]
    return rows


def _load(ordo: OrdoService, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Write rows into PostgreSQL in one transaction, as the workers would have."""
    sql = ["BEGIN;"]
    for table in TABLES:
        data = json.dumps(rows[table]).replace("$j$", "")
        sql.append(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM "
                   f"json_populate_recordset(NULL::{SCHEMA}.{table}, $j${data}$j$);")
    for table in ("recipe", "job", "job_step_detailing"):
        sql.append(f"SELECT setval(pg_get_serial_sequence('{SCHEMA}.{table}', 'id'), "
                   f"(SELECT coalesce(max(id), 0) + 1 FROM {SCHEMA}.{table}), false);")
    sql.append("COMMIT;")
    ordo.pg.psql("\n".join(sql))


@pytest.fixture(scope="module")
def both(real_ordo: OrdoService) -> Iterator[tuple[Sim, OrdoService]]:
    """The simulator and the real Ordo holding the same data (the real one reset first)."""
    sim = Sim()
    real_ordo.reset_database()
    _load(real_ordo, _rows(sim))
    yield sim, real_ordo


def shape(value: Any) -> Any:
    """Return the JSON shape: keys and value types, list items as the set of their shapes."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return sorted({json.dumps(shape(v), sort_keys=True) for v in value})
    if isinstance(value, bool) or value is None:
        return repr(value) if value is None else "bool"
    if isinstance(value, (int, float)):
        return "number"  # JSON has one number type; Node writes 1 where Python writes 1.0
    return type(value).__name__


def _pair(both: tuple[Sim, OrdoService], path: str,
          token: str | None = TOKEN) -> tuple[tuple[int, str, Any], tuple[int, str, Any]]:
    sim, ordo = both
    return sim.get(path, token), real_get(ordo, path, token)


def test_the_data_is_the_same_in_both(both: tuple[Sim, OrdoService]) -> None:
    sim_jobs, real_jobs = _pair(both, "/jobs")
    assert len(real_jobs[2]) >= 10, "too few jobs to compare anything"
    assert [j["id"] for j in sim_jobs[2]] == [j["id"] for j in real_jobs[2]]


@pytest.mark.parametrize("path", ["/jobs", "/recipes", "/recipes/1"])
def test_list_and_recipe_shapes_match(both: tuple[Sim, OrdoService], path: str) -> None:
    sim, real = _pair(both, path)
    assert sim[:2] == real[:2]
    assert shape(sim[2]) == shape(real[2])
    assert sim[2] == real[2]


def test_job_detail_shapes_match_for_every_job(both: tuple[Sim, OrdoService]) -> None:
    sim, ordo = both
    for item in real_get(ordo, "/jobs")[2]:
        path = f"/jobs/{item['id']}"
        s, r = sim.get(path), real_get(ordo, path)
        assert s[:2] == r[:2], path
        assert shape(s[2]) == shape(r[2]), path


def test_job_detail_values_match(both: tuple[Sim, OrdoService]) -> None:
    """Progress, durations, timeline order and step order are Ordo's, not the simulator's idea."""
    sim, ordo = both
    for item in real_get(ordo, "/jobs")[2]:
        path = f"/jobs/{item['id']}"
        s, r = sim.get(path)[2], real_get(ordo, path)[2]
        for key in ("job", "progress", "duration_ms", "timeline", "steps", "artifacts",
                    "outputs"):
            assert s[key] == r[key], f"{path} {key}"
        assert s == r


def test_batch_with_unknown_ids_matches(both: tuple[Sim, OrdoService]) -> None:
    ids = [j["id"] for j in real_get(both[1], "/jobs")[2]][:3]
    path = "/jobs/" + ",".join(str(i) for i in [*ids, 999999])
    sim, real = _pair(both, path)
    assert sim[:2] == real[:2]
    assert [(b["id"], b["found"]) for b in sim[2]] == [(b["id"], b["found"]) for b in real[2]]
    assert real[2][-1] == sim[2][-1] == {"id": 999999, "found": False}
    assert shape(sim[2]) == shape(real[2])


@pytest.mark.parametrize(("path", "token"), [
    ("/jobs", None), ("/jobs", "wrong"), ("/jobs/999999", TOKEN), ("/recipes/999999", TOKEN),
    ("/jobs/abc", TOKEN), ("/jobs/1", None), ("/jobs/1,0", TOKEN), ("/jobs/1,x", TOKEN),
])
def test_error_answers_match(both: tuple[Sim, OrdoService], path: str, token: str | None) -> None:
    sim, real = _pair(both, path, token)
    assert sim == real


def test_unknown_path_is_expresss_html_404_in_both(both: tuple[Sim, OrdoService]) -> None:
    sim, real = _pair(both, "/nowhere")
    assert sim[:2] == real[:2] == (404, "text/html; charset=utf-8")
    assert sim[2] == real[2]


def test_status_vocabularies_are_ordos(both: tuple[Sim, OrdoService]) -> None:
    sim, ordo = both
    jobs = real_get(ordo, "/jobs")[2]
    job_statuses = {j["status"] for j in jobs}
    step_statuses = {s["status"] for j in jobs for s in real_get(ordo, f"/jobs/{j['id']}")[2][
        "steps"]}
    assert job_statuses <= JOB_STATUSES and step_statuses <= STEP_STATUSES
    assert {"pending", "running", "failed"} <= job_statuses
    assert {"pending", "running", "success"} <= step_statuses
    assert {j["status"] for j in sim.get("/jobs")[2]} == job_statuses
