"""query-exporter (PyPI) as an Ordo operator would run it: six queries on a read-only role.

It is the baseline of the real-Ordo benchmark, not a project dependency: it is installed on
first use into the harness's own virtualenv, benchmarks/.venv (git-ignored), pinned below. The
queries give what an operator wants from Ordo's tables (../shared/upstream/ordo/migrations): jobs
by recipe and status, steps of active jobs, the oldest pending job, per-recipe job and per-type
step duration percentiles over the last hour, and how long running steps have been silent.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.harness import Proc, free_port, wait_for
from benchmarks.ordo_real import SCHEMA

VERSION = "5.0.2"  # the version issue 17 measured
PACKAGES = (f"query-exporter=={VERSION}", "psycopg2-binary==2.9.13")
VENV = Path(__file__).resolve().parent / ".venv"
S = SCHEMA

QUERIES: dict[str, tuple[str, list[str], str]] = {
    # name: (metric, labels, SQL)
    "jobs_by_status": ("ordo_jobs", ["recipe", "status"], f"""
SELECT coalesce(r.name, 'unknown') AS recipe, j.status, count(*) AS ordo_jobs
FROM {S}.job j LEFT JOIN {S}.recipe r ON r.id = j.recipe_id GROUP BY 1, 2"""),
    "active_steps": ("ordo_active_steps", ["recipe", "step_type", "status"], f"""
SELECT coalesce(r.name, 'unknown') AS recipe, s.step_type, s.status, count(*) AS ordo_active_steps
FROM {S}.job j JOIN {S}.job_step s ON s.job_id = j.id LEFT JOIN {S}.recipe r ON r.id = j.recipe_id
WHERE j.status IN ('pending', 'running') GROUP BY 1, 2, 3"""),
    "oldest_pending": ("ordo_oldest_pending_job_age_seconds", ["recipe"], f"""
SELECT coalesce(r.name, 'unknown') AS recipe,
  extract(epoch FROM now() - min(j.created_at)) AS ordo_oldest_pending_job_age_seconds
FROM {S}.job j LEFT JOIN {S}.recipe r ON r.id = j.recipe_id WHERE j.status = 'pending'
GROUP BY 1"""),
    "job_duration": ("ordo_job_duration_seconds", ["recipe", "quantile"], f"""
SELECT recipe, unnest(ARRAY['0.5', '0.9', '0.99']) AS quantile,
  unnest(p) AS ordo_job_duration_seconds
FROM (SELECT coalesce(r.name, 'unknown') AS recipe, percentile_cont(ARRAY[0.5, 0.9, 0.99])
        WITHIN GROUP (ORDER BY extract(epoch FROM j.finished_at - j.started_at)) AS p
      FROM {S}.job j LEFT JOIN {S}.recipe r ON r.id = j.recipe_id
      WHERE j.finished_at > now() - interval '1 hour' AND j.started_at IS NOT NULL
      GROUP BY 1) t"""),
    "step_duration": ("ordo_step_duration_seconds", ["step_type", "quantile"], f"""
SELECT step_type, unnest(ARRAY['0.5', '0.9', '0.99']) AS quantile,
  unnest(p) AS ordo_step_duration_seconds
FROM (SELECT step_type, percentile_cont(ARRAY[0.5, 0.9, 0.99])
        WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) AS p
      FROM {S}.job_step WHERE finished_at > now() - interval '1 hour' AND started_at IS NOT NULL
      GROUP BY 1) t"""),
    "stale_steps": ("ordo_running_step_stale_seconds", ["recipe", "step_type"], f"""
WITH running AS (
  SELECT s.job_id, s.step_id, s.step_type, s.started_at, j.recipe_id
  FROM {S}.job j JOIN {S}.job_step s ON s.job_id = j.id
  WHERE j.status = 'running' AND s.status = 'running'),
last AS (
  SELECT d.job_id, d.step_id, max(d.updated_at) AS at
  FROM {S}.job_step_detailing d JOIN running USING (job_id, step_id) GROUP BY 1, 2)
SELECT coalesce(r.name, 'unknown') AS recipe, running.step_type,
  max(extract(epoch FROM now() - coalesce(last.at, running.started_at)))
    AS ordo_running_step_stale_seconds
FROM running LEFT JOIN last USING (job_id, step_id) LEFT JOIN {S}.recipe r
  ON r.id = running.recipe_id GROUP BY 1, 2"""),
}


def ensure_installed() -> Path:
    """Create benchmarks/.venv with query-exporter when missing; return its executable."""
    exe = VENV / "bin" / "query-exporter"
    if exe.is_file():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES], check=True,
                   timeout=900)
    return exe


def config(pg_port: int, role: str, interval: float) -> str:
    """Return query-exporter's YAML: one database, six metrics, six queries every interval."""
    lines = ["databases:", "  ordo:",
             f"    dsn: postgresql+psycopg2://{role}@127.0.0.1:{pg_port}/{S}", "metrics:"]
    for metric, labels, _ in QUERIES.values():
        lines += [f"  {metric}:", "    type: gauge", f"    description: {metric} from SQL",
                  f"    labels: [{', '.join(labels)}]"]
    lines.append("queries:")
    for name, (metric, _, sql) in QUERIES.items():
        lines += [f"  {name}:", f"    interval: {interval:g}", "    databases: [ordo]",
                  f"    metrics: [{metric}]", "    sql: |"]
        lines += [f"      {line}" for line in sql.strip().splitlines()]
    return "\n".join(lines) + "\n"


QUERIES_TOTAL = re.compile(r'^queries_total\{[^}]*status="success"[^}]*\} ([0-9.e+]+)$', re.M)


def successful_queries(metrics_text: str) -> int:
    """Sum query-exporter's queries_total{status="success"} over every query."""
    return int(sum(float(v) for v in QUERIES_TOTAL.findall(metrics_text)))


@contextmanager
def running(tmp: Path, pg_port: int, role: str, interval: float) -> Iterator[tuple[str, Proc]]:
    """Run query-exporter on loopback; yield (base URL, process) once every query ran once."""
    exe = ensure_installed()
    cfg = tmp / "query-exporter.yaml"
    cfg.write_text(config(pg_port, role, interval))
    port = free_port()
    proc = Proc([str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "info"], tmp / "query-exporter.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: successful_queries(httpx.get(f"{url}/metrics", timeout=5).text)
                 >= len(QUERIES), 60, f"query-exporter's first queries\n{proc.output()[-2000:]}")
        yield url, proc
    finally:
        proc.stop()
