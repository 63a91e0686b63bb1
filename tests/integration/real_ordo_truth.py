"""SQL truth of the real Ordo, and the exporter's metrics, in one comparable shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.harness import scrape, select
from tests.integration.ordo_upstream import SCHEMA, OrdoService, Worker

ORG = "realordo"
INTERVAL = 0.5
TERMINAL = {"success", "completed", "failed", "partial"}
# Ordo's n8n finalizer writes `success`; the exporter's job status vocabulary says `completed`.
JOB_STATUS = {"success": "completed"}
Metrics = dict[str, dict[tuple[str, ...], float]]


def config(ordo: OrdoService, state: Path) -> str:
    """Return an exporter config watching the real Ordo every 0.5 s."""
    return f"""
state: {{path: "{state}"}}
defaults: {{interval: {INTERVAL}s, timeout: 5s, jitter: 0}}
sources:
  - name: ordo
    kind: ordo
    base_url: {ordo.url}
    auth: {{token: "${{REAL_ORDO_TOKEN}}"}}
    organization: {ORG}
"""


@dataclass
class Baseline:
    """What was already history when the exporter first synced (never counted)."""

    terminal: set[int] = field(default_factory=set)
    waited: set[int] = field(default_factory=set)  # queue wait already observed (restarts)
    attempts: int = 0
    retries: int = 0


def baseline(ordo: OrdoService, worker: Worker, restart: bool = False) -> Baseline:
    """Record what a fresh exporter process has not to count: history, or (`restart`) what the
    process before it counted already (counters restart at 0, like every Prometheus counter)."""
    rows = _jobs(ordo)
    waited = {r["id"] for r in rows if r["started_at"] is not None} if restart else set()
    return Baseline({r["id"] for r in rows if r["status"] in TERMINAL}, waited,
                    len(worker.attempts), len(worker.retries))


def _jobs(ordo: OrdoService) -> list[dict[str, Any]]:
    return ordo.pg.rows(
        f"SELECT j.id, r.name AS jt, j.status, j.started_at, "
        "EXTRACT(EPOCH FROM j.finished_at - j.started_at)::float AS run, "
        "EXTRACT(EPOCH FROM j.started_at - j.created_at)::float AS wait "
        f"FROM {SCHEMA}.job j JOIN {SCHEMA}.recipe r ON r.id = j.recipe_id")


def _add(out: Metrics, name: str, key: tuple[str, ...], value: float) -> None:
    bucket = out.setdefault(name, {})
    bucket[key] = round(bucket.get(key, 0.0) + value, 3)


def truth(ordo: OrdoService, worker: Worker, base: Baseline) -> Metrics:
    """Compute every job and step metric from PostgreSQL (and the worker's attempt log)."""
    out: Metrics = {}
    for job in _jobs(ordo):
        status = JOB_STATUS.get(job["status"], job["status"])
        key: tuple[str, ...] = (job["jt"], status)
        _add(out, "asyncjob_jobs", key, 1)
        if job["status"] in TERMINAL and job["id"] not in base.terminal:
            _add(out, "asyncjob_finished_total", key, 1)
            if job["run"] is not None:
                _add(out, "asyncjob_duration_seconds_count", key, 1)
                _add(out, "asyncjob_duration_seconds_sum", key, job["run"])
        # A job not yet finished at the first sync is watched: its queue wait is observed once.
        if job["started_at"] is not None and job["id"] not in base.terminal | base.waited:
            _add(out, "asyncjob_queue_wait_seconds_count", (job["jt"],), 1)
            _add(out, "asyncjob_queue_wait_seconds_sum", (job["jt"],), job["wait"])
    for step in ordo.pg.rows(
            f"SELECT r.name AS jt, s.step_type, s.status FROM {SCHEMA}.job_step s "
            f"JOIN {SCHEMA}.job j ON j.id = s.job_id JOIN {SCHEMA}.recipe r ON r.id = j.recipe_id"
            " WHERE j.status NOT IN ('success', 'completed', 'failed', 'partial')"):
        _add(out, "asyncjob_steps", (step["jt"], step["step_type"], step["status"]), 1)
    # Every attempt ends once. One that no API answer showed (a retry overwrote it at once) is
    # known from the attempt counter only: counted as failed (the worker failed it), never timed.
    for a in worker.attempts[base.attempts:]:
        key = (a.job_type, a.step_type, a.status)
        _add(out, "asyncjob_step_finished_total", key, 1)
        if a.seen and a.seconds is not None:
            _add(out, "asyncjob_step_duration_seconds_count", key, 1)
            _add(out, "asyncjob_step_duration_seconds_sum", key, a.seconds)
    for job_type, step_type in worker.retries[base.retries:]:
        _add(out, "asyncjob_step_retries_total", (job_type, step_type), 1)
    progress = _ordo_progress(ordo)
    if progress:
        out["asyncjob_progress_ratio"] = progress
    return out


def _ordo_progress(ordo: OrdoService) -> dict[tuple[str, ...], float]:
    """Ask Ordo itself for progress.percentage of every running job."""
    out: dict[tuple[str, ...], float] = {}
    for job in ordo.get("/jobs").json():
        if job["status"] == "running":
            detail = ordo.get(f"/jobs/{job['id']}").json()
            name = ordo.pg.psql(f"SELECT name FROM {SCHEMA}.recipe WHERE id = {job['recipe_id']}")
            out[(name, str(job["id"]))] = round(float(detail["progress"]["percentage"]), 3)
    return out


LABELS = {
    "asyncjob_jobs": ("job_type", "status"),
    "asyncjob_finished_total": ("job_type", "status"),
    "asyncjob_duration_seconds_count": ("job_type", "status"),
    "asyncjob_duration_seconds_sum": ("job_type", "status"),
    "asyncjob_queue_wait_seconds_count": ("job_type",),
    "asyncjob_queue_wait_seconds_sum": ("job_type",),
    "asyncjob_steps": ("job_type", "step_type", "step_status"),
    "asyncjob_step_finished_total": ("job_type", "step_type", "step_status"),
    "asyncjob_step_duration_seconds_count": ("job_type", "step_type", "step_status"),
    "asyncjob_step_duration_seconds_sum": ("job_type", "step_type", "step_status"),
    "asyncjob_step_retries_total": ("job_type", "step_type"),
    "asyncjob_progress_ratio": ("job_type", "job_id"),
}

# Counters and histograms: they keep their values; the rest are gauges of the current state.
COUNTERS = tuple(name for name in LABELS if name.endswith(("_total", "_count", "_sum")))


def metrics(url: str) -> Metrics:
    """Scrape the exporter and keep the non-zero job and step samples of the Ordo org."""
    samples = scrape(url)
    out: Metrics = {}
    for name, labels in LABELS.items():
        for lbls, value in select(samples, name, source="ordo", org=ORG).items():
            d = dict(lbls)
            if value or name == "asyncjob_progress_ratio":
                out.setdefault(name, {})[tuple(d[k] for k in labels)] = round(value, 3)
    return out


def diff(got: Metrics, want: Metrics) -> dict[str, Any]:
    """Return {metric: {labels: (exporter, truth)}} for every disagreement."""
    out: dict[str, Any] = {}
    for name in sorted(set(got) | set(want)):
        g, w = got.get(name, {}), want.get(name, {})
        bad = {k: (g.get(k), w.get(k)) for k in set(g) | set(w)
               if abs((g.get(k) or 0.0) - (w.get(k) or 0.0)) > 0.002}
        if bad:
            out[name] = bad
    return out

