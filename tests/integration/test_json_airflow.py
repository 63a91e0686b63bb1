"""The airflow preset against a loopback fake Airflow 2.x API, through the real exporter process."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.fakeapi import JsonHandler, serve_handler
from tests.integration.harness import exporter, scrape, select, wait_for

USER, PASSWORD = "exporter", "af-secret"
T0 = 1_796_385_600  # 2026-12-04T12:00:00Z
PAGE_CAP = 2  # [api] maximum_page_limit: a larger limit is silently reduced


def ts(offset: float | None) -> str | None:
    """Return T0 + offset as Airflow spells times (with +00:00), or None."""
    if offset is None:
        return None
    return datetime.fromtimestamp(T0 + offset, UTC).isoformat()


def dag_run(dag_id: str, run_id: str, state: str, start: float | None,
            end: float | None) -> dict[str, Any]:
    """Return a v1 DAGRun (job-apis.md §4.3): no updated_at in the body, no queued_at in 2.10."""
    return {"dag_id": dag_id, "dag_run_id": run_id, "logical_date": ts(start),
            "execution_date": ts(start), "start_date": ts(start), "end_date": ts(end),
            "state": state, "run_type": "manual", "external_trigger": True, "conf": {}}


def task(task_id: str, state: str | None, start: float | None, end: float | None,
         try_number: int = 1) -> dict[str, Any]:
    """Return a v1 TaskInstance (job-apis.md §4.3)."""
    return {"task_id": task_id, "map_index": -1, "state": state, "start_date": ts(start),
            "end_date": ts(end), "try_number": try_number, "max_tries": 1,
            "operator": "PythonOperator", "duration": None if end is None or start is None
            else end - start}


class FakeAirflow:
    """One deployment: DAG runs with a server-side updated_at, task instances, offset paging."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.tasks: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.hits: Counter[str] = Counter()
        self.since: list[str] = []

    def put(self, run: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        """Create or change a run now (bumps its updated_at, as Airflow does)."""
        key = (run["dag_id"], run["dag_run_id"])
        self.runs[key] = (time.time(), run)
        self.tasks[key] = tasks

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 100)), PAGE_CAP)
        if parts == ["api", "v1", "dags", "~", "dagRuns"]:
            self.hits["runs"] += 1
            gte = query.get("updated_at_gte")
            if gte is not None:
                self.since.append(gte)
            floor = datetime.fromisoformat(gte).timestamp() if gte else float("-inf")
            lte = query.get("updated_at_lte")
            top = datetime.fromisoformat(lte).timestamp() if lte else float("inf")
            rows = [r for (updated, r) in sorted(self.runs.values(), key=lambda x: x[0])
                    if floor <= updated <= top]
            return 200, {"dag_runs": rows[offset:offset + limit], "total_entries": len(rows)}
        if len(parts) == 7 and parts[:3] == ["api", "v1", "dags"] and parts[6] == "taskInstances":
            key = (parts[3], parts[5])
            if key not in self.runs:
                return 404, {"title": "DAGRun not found", "status": 404}
            self.hits["tasks"] += 1
            rows = self.tasks[key]
            return 200, {"task_instances": rows[offset:offset + limit],
                         "total_entries": len(rows)}
        return 404, {"title": "Not Found", "status": 404}


class Handler(JsonHandler):
    """HTTP face of FakeAirflow; basic auth as `auth_backends = basic_auth` does."""

    fake: FakeAirflow

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            status, body = 401, {"title": "Unauthorized", "status": 401}
        else:
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self.fake.lock:
                status, body = self.fake.answer(url.path, query)
        self.send_json(status, body)  # with the Date header the watermark comes from


@pytest.fixture
def airflow() -> Iterator[tuple[FakeAirflow, str]]:
    fake = FakeAirflow()
    with serve_handler(type("H", (Handler,), {"fake": fake})) as url:
        yield fake, url


def config(url: str, state: Path, secret: Path) -> str:
    return f"""
state:
  path: {state}
sources:
  - name: af
    kind: json
    preset: airflow
    base_url: {url}
    auth: {{username: {USER}, password_file: {secret}}}
    interval: 0.5s
    jitter: 0
    jobs: {{incremental: {{overlap: 2s}}}}   # the preset's 60 s would re-read this whole test
    organizations:
      - address: prod
"""


def value(url: str, name: str, **labels: str) -> float:
    return sum(select(scrape(url), name, source="af", org="prod", **labels).values())


def test_airflow_preset_pages_by_total_watermarks_and_counts_each_finish_once(
        airflow: tuple[FakeAirflow, str], tmp_path: Path) -> None:
    fake, api = airflow
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    with fake.lock:
        for i in range(3):  # history, read over two capped pages
            fake.put(dag_run("etl", f"old{i}", "success", i * 10, i * 10 + 5), [])
        fake.put(dag_run("etl", "m1", "running", 100, None),
                 [task("extract", "success", 101, 111), task("load", "running", 112, None),
                  task("notify", None, None, None)])
    with exporter(tmp_path, config(api, tmp_path / "state.db", secret)) as (url, proc):
        wait_for(lambda: value(url, "asyncjob_jobs", job_type="etl", status="running") == 1,
                 20, f"m1 running\n{proc.output()}")
        assert value(url, "asyncjob_jobs", job_type="etl", status="completed") == 3
        assert value(url, "asyncjob_finished_total", job_type="etl") == 0  # history
        assert value(url, "asyncjob_steps", step_type="notify", step_status="pending") == 1
        with fake.lock:  # only the task changes: the run's updated_at stays
            fake.tasks[("etl", "m1")][2] = task("notify", "running", 113, None)
        wait_for(lambda: value(url, "asyncjob_steps", step_type="notify",
                               step_status="running") == 1, 20,
                 f"steps of a run whose updated_at did not move are re-read\n{proc.output()}")
        with fake.lock:
            fake.put(dag_run("etl", "m1", "success", 100, 160),
                     [task("extract", "success", 101, 111), task("load", "success", 112, 150),
                      task("notify", "skipped", None, None)])
            fake.put(dag_run("etl", "m2", "failed", 170, 175), [task("extract", "failed",
                                                                      170, 175)])
        wait_for(lambda: value(url, "asyncjob_finished_total", job_type="etl",
                               status="completed") == 1
                 and value(url, "asyncjob_finished_total", job_type="etl",
                           status="failed") == 1, 20, f"finishes\n{proc.output()}")
        labels = {"job_type": "etl", "status": "completed"}
        assert value(url, "asyncjob_duration_seconds_sum", **labels) == 60
        step = {"job_type": "etl", "step_type": "load", "step_status": "success"}
        assert value(url, "asyncjob_step_finished_total", **step) == 1
        assert value(url, "asyncjob_step_duration_seconds_sum", **step) == 38
        # steady state: no active runs, nothing changed within the overlap -> one runs request
        # per poll, filtered by the server's clock minus the overlap; no task-instance requests
        time.sleep(3)
        with fake.lock:
            before = Counter(fake.hits)
        polls_before = value(url, "asyncjob_poll_duration_seconds_count")
        time.sleep(3)
        polls = value(url, "asyncjob_poll_duration_seconds_count") - polls_before
        with fake.lock:
            delta = {k: v - before[k] for k, v in fake.hits.items() if v > before[k]}
            last_since = datetime.fromisoformat(fake.since[-1]).timestamp()
        assert set(delta) == {"runs"} and abs(delta["runs"] - polls) <= 1 and polls >= 4
        # overlap 2 s + Date header truncated to the second + up to one interval since the poll
        assert fake.since[-1].endswith("Z") and 2 <= time.time() - last_since <= 5
        assert value(url, "asyncjob_finished_total", job_type="etl") == 2  # exactly once
