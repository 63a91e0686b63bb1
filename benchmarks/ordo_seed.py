"""Fill the real Ordo's database with N jobs of history in SQL, and play its workers meanwhile.

History is bulk-inserted with generate_series, as years of n8n work would have left it: three
recipes of 2-4 steps, mostly `success` with some `failed` and `partial`, one input artifact and
one progress row (`job_step_detailing`) per step. About 50 jobs are active: 48 recent ones (10
running, 38 pending) and two stuck deep in the history. `Workload` then, every second, creates a
job, starts the oldest recent pending one and finishes the oldest recent running one, so a few new
jobs show up per poll and the active count stays put. Roles: Ordo connects as `postgres`; the
harness and the workers as `bench`; query-exporter as the read-only `qe_reader`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from benchmarks.ordo_real import SCHEMA, Postgres

S = SCHEMA
BENCH_ROLE = "bench"
READER_ROLE = "qe_reader"
RECENT_ACTIVE = 48
RUNNING = 10
SPACING_S = 20  # seconds between two jobs of history
RECIPES: dict[str, list[tuple[str, str]]] = {
    "lidar-dem": [("reproject", "REPROJECT_LAS"), ("dem", "GENERATE_DEM"),
                  ("publish", "PUBLISH")],
    "ortho-mosaic": [("fetch", "FETCH"), ("mosaic", "MOSAIC")],
    "change-detect": [("fetch", "FETCH"), ("align", "ALIGN"), ("diff", "DIFF"),
                      ("report", "REPORT")],
}
# every step of every recipe, with its place in the recipe (the definition is the source)
STEPS = f"""SELECT r.id AS recipe_id, e.value->>'id' AS step_id, e.value->>'type' AS step_type,
  e.ord AS ord, jsonb_array_length(r.definition->'recipe') AS n
FROM {S}.recipe r, jsonb_array_elements(r.definition->'recipe') WITH ORDINALITY e(value, ord)"""


def roles_sql() -> str:
    """Return the SQL creating the harness and reader roles and pg_stat_statements (idempotent)."""
    return f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{BENCH_ROLE}') THEN
    CREATE ROLE {BENCH_ROLE} LOGIN SUPERUSER;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
    CREATE ROLE {READER_ROLE} LOGIN;
  END IF;
END $$;
ALTER ROLE {READER_ROLE} SET default_transaction_read_only = on;
GRANT USAGE ON SCHEMA {S} TO {READER_ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA {S} TO {READER_ROLE};
"""


def _definition(steps: list[tuple[str, str]]) -> str:
    recipe, prev = [], "job:src"
    for step_id, step_type in steps:
        recipe.append({"id": step_id, "type": step_type, "inputs": {"src": prev},
                       "outputs": {"out": f"step:{step_id}.out"}})
        prev = f"step:{step_id}.out"
    return json.dumps({"recipe": recipe}).replace("'", "''")


def recipes_sql() -> str:
    """Return the SQL inserting the executors and recipes."""
    types = sorted({t for steps in RECIPES.values() for _, t in steps})
    executors = ", ".join(f"('{t}', 'wf-{t.lower()}', '{{}}', '{{}}', '{t} worker')" for t in types)
    recipes = ", ".join(f"('{name}', '1.0.0', '{_definition(steps)}')"
                        for name, steps in RECIPES.items())
    return (f"INSERT INTO {S}.step_executor (step_type, n8n_workflow, accepts, produces, "
            f"description) VALUES {executors} ON CONFLICT DO NOTHING;\n"
            f"INSERT INTO {S}.recipe (name, version, definition) VALUES {recipes};\n")


def history_sql(n: int) -> str:
    """Return the SQL bulk-inserting n finished jobs with their steps, artifacts and details."""
    return f"""
INSERT INTO {S}.job (recipe_id, status, created_at, started_at, finished_at, error, params)
SELECT r.ids[1 + g % 3],
  CASE WHEN g % 20 = 7 THEN 'failed' WHEN g % 50 = 13 THEN 'partial' ELSE 'success' END,
  c, c + make_interval(secs => 2 + g % 11),
  c + make_interval(secs => 2 + g % 11 + 60 + g * 37 % 600),
  CASE WHEN g % 20 = 7 THEN 'step failed' END, '{{}}'
FROM generate_series(1, {n}) g,
  LATERAL (SELECT now() - make_interval(secs => ({n} - g + 100) * {SPACING_S}) AS c) t,
  (SELECT array_agg(id ORDER BY id) AS ids FROM {S}.recipe) r;
INSERT INTO {S}.job_step (job_id, step_id, step_type, status, attempt, claimed_by, claimed_at,
                          started_at, finished_at, error)
SELECT j.id, s.step_id, s.step_type, x.status, 1 + (j.id % 7 = 0)::int,
  'n8n-worker-' || j.id % 4, x.b, x.b, x.b + (j.finished_at - j.started_at) / s.n,
  CASE WHEN x.status = 'failed' THEN 'boom' END
FROM {S}.job j JOIN ({STEPS}) s USING (recipe_id),
  LATERAL (SELECT j.started_at + (j.finished_at - j.started_at) * (s.ord - 1) / s.n AS b,
    CASE WHEN j.status <> 'success' AND s.ord = s.n THEN 'failed' ELSE 'success' END AS status) x;
INSERT INTO {S}.job_artifact (job_id, name, type, uri, hash, created_at)
SELECT id, 'src', 'any', 's3://bucket/in/' || id, md5(id::text), created_at FROM {S}.job;
INSERT INTO {S}.job_step_detailing (job_id, step_id, log, progress, updated_at)
SELECT job_id, step_id, 'done', '{{"progress": 100}}', finished_at FROM {S}.job_step;
"""


def stuck_ids(n: int) -> list[int]:
    """Return the ids of the two old active jobs: one pending, one running for days."""
    return [n // 3, 2 * n // 3]


def active_sql(n: int) -> str:
    """Return the SQL turning the newest jobs and two old ones back into active jobs."""
    first = n - RECENT_ACTIVE + 1
    running = f"(id BETWEEN {first} AND {first + RUNNING - 1} OR id = {stuck_ids(n)[1]})"
    pending = f"(id > {first + RUNNING - 1} OR id = {stuck_ids(n)[0]})"
    return f"""
UPDATE {S}.job SET status = 'running', finished_at = NULL, error = NULL WHERE {running};
UPDATE {S}.job SET status = 'pending', started_at = NULL, finished_at = NULL, error = NULL
  WHERE {pending};
UPDATE {S}.job_step s SET status = CASE WHEN s.step_id = f.first THEN 'running' ELSE 'pending' END,
  attempt = (s.step_id = f.first)::int, finished_at = NULL, error = NULL,
  started_at = CASE WHEN s.step_id = f.first THEN s.started_at END,
  claimed_at = CASE WHEN s.step_id = f.first THEN s.claimed_at END,
  claimed_by = CASE WHEN s.step_id = f.first THEN s.claimed_by END
FROM (SELECT job_id, min(step_id) AS first FROM {S}.job_step GROUP BY job_id) f
WHERE f.job_id = s.job_id AND s.job_id IN (SELECT id FROM {S}.job WHERE {running});
UPDATE {S}.job_step SET status = 'pending', attempt = 0, started_at = NULL, finished_at = NULL,
  claimed_at = NULL, claimed_by = NULL, error = NULL
WHERE job_id IN (SELECT id FROM {S}.job WHERE {pending});
DELETE FROM {S}.job_step_detailing d USING {S}.job_step s
  WHERE s.job_id = d.job_id AND s.step_id = d.step_id AND s.status = 'pending';
UPDATE {S}.job_step_detailing d SET log = 'working', progress = '{{"progress": 40}}',
  updated_at = now() FROM {S}.job_step s
  WHERE s.job_id = d.job_id AND s.step_id = d.step_id AND s.status = 'running';
"""


def seed(pg: Postgres, n: int) -> dict[str, Any]:
    """Fill a fresh Ordo schema with n jobs (about 50 active); return what was made."""
    pg.psql(roles_sql() + recipes_sql() + history_sql(n) + active_sql(n), timeout=900)
    pg.psql(f"VACUUM ANALYZE {S}.job, {S}.job_step, {S}.job_artifact, {S}.job_step_detailing",
            timeout=900)
    pg.psql(roles_sql())  # SELECT on the tables made since
    counts = pg.rows(
        f"SELECT (SELECT count(*) FROM {S}.job) AS jobs, "
        f"(SELECT count(*) FROM {S}.job WHERE status IN ('pending', 'running')) AS active, "
        f"(SELECT count(*) FROM {S}.job_step) AS steps, "
        f"(SELECT count(*) FROM {S}.job_step_detailing) AS details, "
        f"(SELECT array_agg(id ORDER BY id) FROM {S}.recipe) AS recipes")[0]
    counts["stuck"] = stuck_ids(n)
    return counts


def tick_sql(tick: int, recipe_id: int, stuck: list[int]) -> str:
    """Return one second of worker activity: a new job, one started, one finished."""
    recent = f"id > (SELECT max(id) - 5000 FROM {S}.job) AND id NOT IN ({stuck[0]}, {stuck[1]})"
    outcome = "failed" if tick % 10 == 9 else "success"
    return f"""
BEGIN;
WITH new AS (INSERT INTO {S}.job (recipe_id, status, params) VALUES ({recipe_id}, 'pending', '{{}}')
             RETURNING id, recipe_id)
INSERT INTO {S}.job_artifact (job_id, name, type, uri, hash)
SELECT id, 'src', 'any', 's3://bucket/in/' || id, md5(id::text) FROM new;
INSERT INTO {S}.job_step (job_id, step_id, step_type, status, attempt)
SELECT j.id, s.step_id, s.step_type, 'pending', 0 FROM {S}.job j JOIN ({STEPS}) s USING (recipe_id)
WHERE j.id = (SELECT max(id) FROM {S}.job);
WITH pick AS (SELECT id FROM {S}.job WHERE {recent} AND status = 'running' ORDER BY id LIMIT 1),
done AS (UPDATE {S}.job j SET status = '{outcome}', finished_at = now() FROM pick
         WHERE j.id = pick.id RETURNING j.id)
UPDATE {S}.job_step s SET status = 'success', attempt = greatest(attempt, 1),
  started_at = coalesce(started_at, now() - interval '1 second'), finished_at = now()
FROM done WHERE s.job_id = done.id;
WITH pick AS (SELECT id FROM {S}.job WHERE {recent} AND status = 'pending' ORDER BY id LIMIT 1),
go AS (UPDATE {S}.job j SET status = 'running', started_at = now() FROM pick
       WHERE j.id = pick.id RETURNING j.id),
step AS (UPDATE {S}.job_step s SET status = 'running', attempt = 1, claimed_by = 'n8n-worker-1',
           claimed_at = now(), started_at = now()
         FROM go WHERE s.job_id = go.id
           AND s.step_id = (SELECT min(step_id) FROM {S}.job_step WHERE job_id = go.id)
         RETURNING s.job_id, s.step_id)
INSERT INTO {S}.job_step_detailing (job_id, step_id, log, progress)
SELECT job_id, step_id, 'started', '{{"progress": 0}}' FROM step;
COMMIT;
"""


class Workload:
    """Play n8n once a second in a thread, as role `bench`, until stopped."""

    def __init__(self, pg: Postgres, recipes: list[int], stuck: list[int]) -> None:
        self.pg, self.recipes, self.stuck = pg, recipes, stuck
        self.ticks = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            recipe = self.recipes[self.ticks % len(self.recipes)]
            try:
                self.pg.psql(tick_sql(self.ticks, recipe, self.stuck), role=BENCH_ROLE)
            except Exception as exc:  # reported with the results; never hangs
                self.errors.append(str(exc)[:300])
            self.ticks += 1
