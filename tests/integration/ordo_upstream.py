"""Play the workers of the real Ordo service that benchmarks/ordo_real.py runs on loopback.

Ordo itself never moves a job along: n8n workers write job and step rows straight into
PostgreSQL. `Worker` does the same with SQL through the `psql` client, and keeps the history of
step attempts that PostgreSQL overwrites (Ordo has no attempt log), so tests can compare the
exporter with the truth. Everything binds 127.0.0.1 on free ports and is bounded in time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# The starter lives in benchmarks/ordo_real.py (the benchmarks run the same service); these
# names stay importable from here for the integration tests.
from benchmarks.ordo_real import SCHEMA, TOKEN, OrdoService, Postgres, real_ordo_service

__all__ = ["SCHEMA", "TOKEN", "Attempt", "OrdoService", "Postgres", "Worker", "real_ordo_service",
           "recipe_definition", "register_executors", "wait_until"]


# --- playing Ordo's n8n workers -------------------------------------------------------------

EXECUTORS = ("FETCH", "PROCESS", "PUBLISH")


def register_executors(pg: Postgres) -> None:
    """Register the step types the test recipes use (n8n's registry is a table too)."""
    for step_type in EXECUTORS:
        pg.psql(
            f"INSERT INTO {SCHEMA}.step_executor (step_type, n8n_workflow, accepts, produces, "
            f"description) VALUES ('{step_type}', 'wf-{step_type.lower()}', "
            """'{"src": "any"}', '{"out": "any"}', 'test executor') ON CONFLICT DO NOTHING""")


def recipe_definition(steps: list[tuple[str, str]]) -> dict[str, Any]:
    """Return a linear recipe: each step reads the previous step's `out` (the first: job:src)."""
    recipe = []
    prev = "job:src"
    for step_id, step_type in steps:
        recipe.append({"id": step_id, "type": step_type, "inputs": {"src": prev},
                       "outputs": {"out": f"step:{step_id}.out"}})
        prev = f"step:{step_id}.out"
    return {"recipe": recipe}


@dataclass(frozen=True)
class Attempt:
    """One finished step attempt as a worker ended it: the truth Ordo keeps no history of."""

    job_id: int
    job_type: str
    step_id: str
    step_type: str
    attempt: int
    status: str
    seconds: float | None  # None: never started (skipped), so no run time
    seen: bool = True  # False: overwritten by the retry before anyone could read it


@dataclass
class Worker:
    """Play n8n: move jobs and steps along with SQL; remember every ended attempt."""

    ordo: OrdoService
    attempts: list[Attempt] = field(default_factory=list)
    retries: list[tuple[str, str]] = field(default_factory=list)  # (job type, step type) claims

    def recipe(self, name: str, steps: list[tuple[str, str]]) -> int:
        """Create a recipe through the API; return its id."""
        register_executors(self.ordo.pg)
        body = {"name": name, "version": "1.0.0", "definition": recipe_definition(steps)}
        return int(self.ordo.post("/recipes", body)["id"])

    def job(self, recipe_id: int, age_s: float = 120.0) -> int:
        """Create a job through the API, created `age_s` ago so every timestamp is in the past."""
        body = {"recipe_id": recipe_id,
                "inputs": {"job:src": {"type": "any", "uri": "s3://b/in", "hash": "h0"}}}
        job_id = int(self.ordo.post("/jobs", body)["id"])
        self.sql(f"UPDATE {SCHEMA}.job SET created_at = now() - interval '{age_s} seconds' "
                 f"WHERE id = {job_id}")
        return job_id

    def sql(self, statement: str) -> str:
        """Run one SQL statement on Ordo's database."""
        return self.ordo.pg.psql(statement)

    def start_job(self, job_id: int, wait_s: float) -> None:
        """Claim the job: running, started `wait_s` after it was created."""
        self.sql(f"UPDATE {SCHEMA}.job SET status = 'running', started_at = created_at + "
                 f"interval '{wait_s} seconds' WHERE id = {job_id}")

    def run_step(self, job_id: int, step_id: str, attempt: int, at_s: float) -> None:
        """Claim a step's attempt `attempt`, started `at_s` after the job started."""
        self.sql(
            f"UPDATE {SCHEMA}.job_step s SET status = 'running', attempt = {attempt}, "
            "claimed_by = 'n8n-worker-1', claimed_at = j.started_at + "
            f"interval '{at_s} seconds', started_at = j.started_at + interval '{at_s} seconds', "
            f"finished_at = NULL, error = NULL FROM {SCHEMA}.job j WHERE j.id = s.job_id "
            f"AND s.job_id = {job_id} AND s.step_id = '{step_id}'")
        if attempt > 1:
            row = self._names(job_id, step_id)
            self.retries.append((row["name"], row["step_type"]))
            ended = any(a.job_id == job_id and a.step_id == step_id and a.attempt == attempt - 1
                        for a in self.attempts)
            if not ended:  # a lost lease: the earlier attempt ended unsuccessfully, untimed
                self.attempts.append(Attempt(job_id, row["name"], step_id, row["step_type"],
                                             attempt - 1, "failed", None, seen=False))

    def _names(self, job_id: int, step_id: str) -> dict[str, Any]:
        """Return the recipe name, step type and attempt of one step row."""
        return self.ordo.pg.rows(
            f"SELECT r.name, s.step_type, s.attempt FROM {SCHEMA}.job_step s JOIN {SCHEMA}.job j "
            f"ON j.id = s.job_id JOIN {SCHEMA}.recipe r ON r.id = j.recipe_id "
            f"WHERE s.job_id = {job_id} AND s.step_id = '{step_id}'")[0]

    def detail(self, job_id: int, step_id: str, percent: float) -> None:
        """Append a progress row, as n8n does while a step runs."""
        self.sql(f"INSERT INTO {SCHEMA}.job_step_detailing (job_id, step_id, log, progress) "
                 f"VALUES ({job_id}, '{step_id}', 'working', "
                 f"""'{{"progress": {percent}}}')""")

    def end_step(self, job_id: int, step_id: str, status: str, seconds: float,
                 seen: bool = True) -> None:
        """End the running attempt of a step; `seen=False` when a retry overwrites it at once."""
        error = "'boom'" if status == "failed" else "NULL"
        self.sql(f"UPDATE {SCHEMA}.job_step SET status = '{status}', finished_at = started_at + "
                 f"interval '{seconds} seconds', error = {error} WHERE job_id = {job_id} "
                 f"AND step_id = '{step_id}'")
        row = self._names(job_id, step_id)
        self.attempts.append(Attempt(job_id, row["name"], step_id, row["step_type"],
                                     int(row["attempt"]), status, seconds, seen))

    def skip(self, job_id: int, step_id: str) -> None:
        """Skip a step that never ran (its input failed): finished, never started."""
        self.sql(f"UPDATE {SCHEMA}.job_step s SET status = 'skipped', finished_at = j.started_at "
                 f"FROM {SCHEMA}.job j WHERE j.id = s.job_id AND s.job_id = {job_id} "
                 f"AND s.step_id = '{step_id}'")
        row = self._names(job_id, step_id)
        self.attempts.append(Attempt(job_id, row["name"], step_id, row["step_type"],
                                     int(row["attempt"]), "skipped", None))

    def finish_job(self, job_id: int, status: str, run_s: float) -> None:
        """Finalize the job as n8n's finalizer does."""
        self.sql(f"UPDATE {SCHEMA}.job SET status = '{status}', finished_at = started_at + "
                 f"interval '{run_s} seconds' WHERE id = {job_id}")

    def complete(self, job_id: int, steps: list[str], wait_s: float = 2.0,
                 retried: str | None = None) -> None:
        """Run a whole job to success in one go; `retried` fails once and succeeds on attempt 2."""
        self.start_job(job_id, wait_s)
        at = 0.5
        for step_id in steps:
            if step_id == retried:
                self.run_step(job_id, step_id, 1, at)
                self.end_step(job_id, step_id, "failed", 1.25, seen=False)
                at += 2.0
                self.run_step(job_id, step_id, 2, at)
            else:
                self.run_step(job_id, step_id, 1, at)
            self.end_step(job_id, step_id, "success", 3.5)
            at += 4.0
        self.finish_job(job_id, "success", at + 0.5)


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    """Poll a predicate every 0.1 s until truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
