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
from tests.integration.harness import after_a_poll, exporter, scrape, select, wait_for

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


def window(query: dict[str, str]) -> tuple[float, float]:
    """Read [updated_at_gte, updated_at_lte]; Airflow filters on updated_at but never returns it."""
    gte, lte = query.get("updated_at_gte"), query.get("updated_at_lte")
    return (datetime.fromisoformat(gte).timestamp() if gte else float("-inf"),
            datetime.fromisoformat(lte).timestamp() if lte else float("inf"))


class FakeAirflow:
    """One deployment: runs and task instances with a server-side updated_at, offset paging."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.tasks: dict[tuple[str, str], dict[str, tuple[float, dict[str, Any]]]] = {}
        self.hits: Counter[str] = Counter()
        self.since: list[str] = []
        self.cap = PAGE_CAP

    def put(self, run: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        """Create or change a run now (bumps its updated_at, as Airflow does) and its tasks."""
        key = (run["dag_id"], run["dag_run_id"])
        self.runs[key] = (time.time(), run)
        for ti in tasks:
            self.put_task(key, ti)

    def put_task(self, key: tuple[str, str], ti: dict[str, Any]) -> None:
        """Create or change one task instance now; an unchanged one keeps its updated_at."""
        row = {"dag_id": key[0], "dag_run_id": key[1], **ti}
        old = self.tasks.setdefault(key, {}).get(ti["task_id"])
        if old is None or old[1] != row:
            self.tasks[key][ti["task_id"]] = (time.time(), row)

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 100)), self.cap)
        floor, top = window(query)
        if parts == ["api", "v1", "dags", "~", "dagRuns"]:
            self.hits["runs"] += 1
            if "updated_at_gte" in query:
                self.since.append(query["updated_at_gte"])
            rows = [r for (updated, r) in sorted(self.runs.values(), key=lambda x: x[0])
                    if floor <= updated <= top]
            return 200, {"dag_runs": rows[offset:offset + limit], "total_entries": len(rows)}
        if parts == ["api", "v1", "dags", "~", "dagRuns", "~", "taskInstances"]:
            self.hits["stream"] += 1  # every run's task instances changed in the window
            rows = [r for tis in self.tasks.values() for updated, r in tis.values()
                    if floor <= updated <= top]
            return 200, {"task_instances": rows[offset:offset + limit],
                         "total_entries": len(rows)}
        if len(parts) == 7 and parts[:3] == ["api", "v1", "dags"] and parts[6] == "taskInstances":
            key = (parts[3], parts[5])
            if key not in self.runs:
                return 404, {"title": "DAGRun not found", "status": 404}
            self.hits["tasks"] += 1
            rows = [r for _, r in self.tasks.get(key, {}).values()]
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
    # the preset's 60 s overlaps would re-read this whole test: 1 s for both lists
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
    jobs: {{incremental: {{overlap: 1s}}}}
    steps: {{stream: {{incremental: {{overlap: 1s}}}}}}
    organizations:
      - address: prod
"""


def value(url: str, name: str, **labels: str) -> float:
    return sum(select(scrape(url), name, source="af", org="prod", **labels).values())


def steady(fake: FakeAirflow, url: str, span: float = 2.0) -> tuple[dict[str, int], float]:
    """Return the requests per endpoint and the polls over whole polls (pages of <= 100)."""
    def hits() -> Counter[str]:
        with fake.lock:
            return Counter(fake.hits)

    def polls() -> float:
        return value(url, "asyncjob_poll_duration_seconds_count")

    with fake.lock:
        fake.cap = 100  # what a window holds now fits one page, as the cost model counts
    polls_before, before = after_a_poll(polls, hits)
    time.sleep(span)
    polls_after, after = after_a_poll(polls, hits)
    with fake.lock:
        fake.cap = PAGE_CAP
    return {k: v - before[k] for k, v in after.items() if v > before[k]}, polls_after - polls_before


def test_airflow_preset_pages_by_total_watermarks_and_counts_each_finish_once(
        airflow: tuple[FakeAirflow, str], tmp_path: Path) -> None:
    fake, api = airflow
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    m1 = ("etl", "m1")
    with fake.lock:
        for i in range(3):  # history, read over two capped pages
            fake.put(dag_run("etl", f"old{i}", "success", i * 10, i * 10 + 5), [])
        fake.put(dag_run("etl", "m1", "running", 100, None),
                 [task("extract", "success", 101, 111), task("load", "running", 112, None),
                  task("notify", None, None, None)])
        for i in range(3):  # three more active runs: the steady cost must not grow with them
            fake.put(dag_run("ml", f"a{i}", "running", 200, None),
                     [task("train", "running", 200, None)])
    with exporter(tmp_path, config(api, tmp_path / "state.db", secret)) as (url, proc):
        wait_for(lambda: value(url, "asyncjob_jobs", job_type="etl", status="running") == 1,
                 20, f"m1 running\n{proc.output()}")
        assert value(url, "asyncjob_jobs", job_type="ml", status="running") == 3
        assert value(url, "asyncjob_jobs", job_type="etl", status="completed") == 3
        assert value(url, "asyncjob_finished_total", job_type="etl") == 0  # history
        assert value(url, "asyncjob_steps", step_type="notify", step_status="pending") == 1
        with fake.lock:  # only the task changes: the run's updated_at stays
            fake.put_task(m1, task("notify", "running", 113, None))
        # steady state with 4 active runs: the runs list + one task-instance stream per poll
        delta, polls = steady(fake, url)
        assert set(delta) == {"runs", "stream"} and polls >= 3, (delta, polls)
        assert abs(delta["runs"] - polls) <= 1 and abs(delta["stream"] - polls) <= 1
        wait_for(lambda: value(url, "asyncjob_steps", step_type="notify",
                               step_status="running") == 1, 20,
                 f"the stream brings the task of a run whose updated_at did not move\n"
                 f"{proc.output()}")
        with fake.lock:
            fake.put(dag_run("etl", "m1", "success", 100, 160),
                     [task("extract", "success", 101, 111), task("load", "success", 112, 150),
                      task("notify", "skipped", None, None)])
            fake.put(dag_run("etl", "m2", "failed", 170, 175), [task("extract", "failed",
                                                                      170, 175)])
            for i in range(3):
                fake.put(dag_run("ml", f"a{i}", "success", 200, 230 + i),
                         [task("train", "success", 200, 220 + i)])
        wait_for(lambda: value(url, "asyncjob_finished_total", job_type="etl",
                               status="completed") == 1
                 and value(url, "asyncjob_finished_total", job_type="etl",
                           status="failed") == 1
                 and value(url, "asyncjob_finished_total", job_type="ml") == 3, 20,
                 f"finishes\n{proc.output()}")
        labels = {"job_type": "etl", "status": "completed"}
        assert value(url, "asyncjob_duration_seconds_sum", **labels) == 60
        step = {"job_type": "etl", "step_type": "load", "step_status": "success"}
        assert value(url, "asyncjob_step_finished_total", **step) == 1
        assert value(url, "asyncjob_step_duration_seconds_sum", **step) == 38
        train = {"job_type": "ml", "step_type": "train", "step_status": "success"}
        assert value(url, "asyncjob_step_finished_total", **train) == 3
        assert value(url, "asyncjob_step_duration_seconds_sum", **train) == 20 + 21 + 22
        # steady state with nothing active: one runs request per poll, no task requests,
        # filtered by the server's clock minus the overlap
        delta, polls = steady(fake, url)
        assert set(delta) == {"runs"} and abs(delta["runs"] - polls) <= 1 and polls >= 3
        with fake.lock:
            last_since = datetime.fromisoformat(fake.since[-1]).timestamp()
            per_run = fake.hits["tasks"]
        # overlap 1 s + Date header truncated to the second + up to one interval since the poll
        assert fake.since[-1].endswith("Z") and 1 <= time.time() - last_since <= 4
        assert per_run == 2 + 3  # m1's 3 tasks (2 pages) and each ml run's, once: the full poll
        assert value(url, "asyncjob_finished_total", job_type="etl") == 2  # exactly once
