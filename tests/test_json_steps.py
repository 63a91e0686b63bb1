"""Steps stream of the json source: one list of every changed step instead of one per job."""

from __future__ import annotations

from datetime import datetime
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from exporter.sources.base import INVALID_ITEM
from exporter.sources.json_source import JsonSource
from tests.fakes_json import Known, poll, source, spec

T0 = 1_796_385_600.0  # 2026-12-04T12:00:00Z
STREAM = "/api/v1/dags/~/dagRuns/~/taskInstances"
RUNS = "/api/v1/dags/~/dagRuns"


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Airflow:
    """An Airflow 2.x deployment in memory: rows carry a hidden updated_at, as the real one."""

    def __init__(self) -> None:
        self.now = T0
        self.runs: dict[str, tuple[float, dict[str, Any]]] = {}
        self.tis: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.cap = 100  # maximum_page_limit

    def run(self, run_id: str, state: str) -> None:
        self.runs[run_id] = (self.now, {"dag_id": "etl", "dag_run_id": run_id, "state": state,
                                        "start_date": "2026-12-04T11:00:00+00:00",
                                        "end_date": None})

    def ti(self, run_id: str, task_id: str, state: str | None, tries: int = 1) -> None:
        self.tis[(run_id, task_id)] = (self.now, {
            "dag_id": "etl", "dag_run_id": run_id, "task_id": task_id, "map_index": -1,
            "state": state, "try_number": tries, "start_date": "2026-12-04T11:00:00+00:00",
            "end_date": "2026-12-04T11:00:30+00:00" if state == "success" else None})

    def handle(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        path = request.url.raw_path.decode().split("?")[0]
        self.calls.append((path, query))
        path = path.replace("/api/v2/", "/api/v1/")  # Airflow 3.x: same lists, other prefix
        low = at(query["updated_at_gte"]) if "updated_at_gte" in query else float("-inf")
        high = at(query["updated_at_lte"]) if "updated_at_lte" in query else float("inf")
        if path == RUNS:
            rows, key = [r for u, r in self.runs.values() if low <= u <= high], "dag_runs"
        elif path == STREAM:
            rows, key = [r for u, r in self.tis.values() if low <= u <= high], "task_instances"
        else:  # one run's task instances
            run_id = path.split("/")[6]
            rows, key = [r for (rid, _), (_, r) in self.tis.items() if rid == run_id], \
                "task_instances"
        offset, limit = int(query.get("offset", 0)), min(self.cap, int(query.get("limit", 100)))
        return httpx.Response(200, json={key: rows[offset:offset + limit],
                                         "total_entries": len(rows)},
                              headers={"Date": formatdate(self.now, usegmt=True)})

    def paths(self, since: int = 0) -> list[str]:
        return [p for p, _ in self.calls[since:]]


def airflow(fake: Airflow, **keys: Any) -> JsonSource:
    return source(spec(preset="airflow", **keys), fake.handle, clock=lambda: fake.now)


def test_incremental_polls_read_every_changed_step_of_all_runs_in_one_request() -> None:
    fake = Airflow()
    fake.now = T0 - 120  # the runs started before the overlap the stream re-reads
    for run_id in ("a", "b", "c"):
        fake.run(run_id, "running")
        fake.ti(run_id, "extract", "running")
        fake.ti(run_id, "load", None)
    fake.now = T0
    src = airflow(fake)
    first = poll(src)  # full poll: each active run's own list, to learn every task
    assert fake.paths()[0] == RUNS and sorted(fake.paths()[1:]) == [
        f"/api/v1/dags/etl/dagRuns/{r}/taskInstances" for r in "abc"]
    assert {j.job_id: j.progress for j in first.jobs} == {"etl/a": 0, "etl/b": 0, "etl/c": 0}
    known = Known({f"etl/{r}": ("running", False) for r in "abc"})
    fake.now += 30
    fake.ti("a", "extract", "success")  # one task of run a moves; nothing else changes
    fake.ti("zz", "extract", "running")  # a run the job list has not shown: not attached
    mark = len(fake.calls)
    result = poll(src, known, full=False)
    assert fake.paths(mark) == [RUNS, STREAM]  # two requests, however many runs are active
    stream = fake.calls[mark + 1][1]
    assert stream["updated_at_gte"] == "2026-12-04T11:59:00Z"  # the full list's Date - 60 s
    assert stream["updated_at_lte"] == "2026-12-04T12:00:30Z"  # frozen at the server's now
    jobs = {j.job_id: j for j in result.jobs}
    assert jobs.keys() == {"etl/a", "etl/b", "etl/c"}
    a = jobs["etl/a"]
    assert a.steps is not None and [(s.step_id, s.status) for s in a.steps] == [
        ("extract/-1", "success")]
    assert a.progress == 0.5  # share of terminal steps among all steps known for the run
    assert jobs["etl/b"].steps is None and jobs["etl/b"].progress == 0  # unchanged: kept
    fake.now += 30
    mark = len(fake.calls)
    poll(src, known, full=False)
    assert fake.calls[mark + 1][1]["updated_at_gte"] == "2026-12-04T11:59:30Z"  # last lte - 60


def test_a_run_finishing_gets_its_last_steps_from_the_stream() -> None:
    fake = Airflow()
    fake.run("a", "running")
    fake.ti("a", "extract", "running")
    src = airflow(fake)
    poll(src)
    fake.now += 30
    fake.ti("a", "extract", "success")
    fake.run("a", "success")
    result = poll(src, Known({"etl/a": ("running", False)}), full=False)
    job, = result.jobs
    assert job.status == "completed" and job.steps is not None
    assert job.steps[0].status == "success" and job.steps[0].finished_at == at(
        "2026-12-04T11:00:30+00:00")


def test_no_active_run_skips_the_stream_and_moves_its_mark_to_the_list() -> None:
    fake = Airflow()
    fake.run("old", "success")
    src = airflow(fake)
    poll(src)
    known = Known({"etl/old": ("completed", True)})
    for _ in range(3):
        fake.now += 30
        mark = len(fake.calls)
        poll(src, known, full=False)
        assert fake.paths(mark) == [RUNS]  # steady state with nothing active: one request
    fake.now += 30
    fake.run("new", "running")
    fake.ti("new", "extract", "running")
    mark = len(fake.calls)
    result = poll(src, known, full=False)
    assert fake.paths(mark) == [RUNS, STREAM]
    # the skipped polls moved the mark to their list's bound (12:01:30), not left it at 12:00
    assert fake.calls[mark + 1][1]["updated_at_gte"] == "2026-12-04T12:00:30Z"
    job, = result.jobs
    assert job.steps is not None and job.steps[0].step_type == "extract"


def test_a_stream_cut_by_the_page_cap_is_read_again_from_the_same_mark() -> None:
    fake = Airflow()
    fake.cap = 1  # Airflow silently caps limit
    fake.run("a", "running")
    for task in ("t1", "t2", "t3"):
        fake.ti("a", task, "running")
    src = airflow(fake, steps={"stream": {"paging": {"max_pages": 2}}})
    poll(src)
    known = Known({"etl/a": ("running", False)})
    fake.now += 30
    for task in ("t1", "t2", "t3"):
        fake.ti("a", task, "success")
    mark = len(fake.calls)
    job, = poll(src, known, full=False).jobs
    sinces = [q["updated_at_gte"] for p, q in fake.calls[mark:] if p == STREAM]
    assert sinces == ["2026-12-04T11:59:00Z"] * 2  # two pages, the cap: incomplete
    assert job.steps is not None and len(job.steps) == 2
    fake.now += 30
    mark = len(fake.calls)
    poll(src, known, full=False)
    assert fake.calls[mark + 1][1]["updated_at_gte"] == "2026-12-04T11:59:00Z"  # not moved


def test_a_stream_item_without_its_run_is_left_out_and_counted() -> None:
    fake = Airflow()
    fake.run("a", "running")
    fake.ti("a", "extract", "running")
    src = airflow(fake)
    poll(src)
    fake.now += 30
    fake.ti("a", "extract", "success")
    fake.tis[("a", "broken")] = (fake.now, {"task_id": "broken", "dag_id": "etl",
                                            "dag_run_id": None, "state": "running"})
    result = poll(src, Known({"etl/a": ("running", False)}), full=False)
    assert result.notes == {INVALID_ITEM: 1}
    job, = result.jobs
    assert job.steps is not None and [s.step_id for s in job.steps] == ["extract/-1"]


def test_without_the_stream_each_active_run_is_read_on_its_own() -> None:
    fake = Airflow()
    for run_id in ("a", "b"):
        fake.run(run_id, "running")
        fake.ti(run_id, "extract", "running")
    src = airflow(fake, steps={"stream": None})
    poll(src)
    fake.now += 30
    mark = len(fake.calls)
    poll(src, Known({"etl/a": ("running", False), "etl/b": ("running", False)}), full=False)
    assert fake.paths(mark)[0] == RUNS and sorted(fake.paths(mark)[1:]) == [
        f"/api/v1/dags/etl/dagRuns/{r}/taskInstances" for r in "ab"]


def test_a_stream_needs_a_changed_since_filter() -> None:
    with pytest.raises(ValidationError, match="steps stream needs incremental mode since"):
        spec(preset="airflow", steps={"stream": {"incremental": {"mode": "none"}}})


def test_airflow_3_streams_under_api_v2() -> None:
    fake = Airflow()
    fake.run("a", "running")
    fake.ti("a", "extract", "running")
    src = airflow(fake, api="v2")
    poll(src)
    fake.now += 30
    fake.ti("a", "extract", "success")
    mark = len(fake.calls)
    job, = poll(src, Known({"etl/a": ("running", False)}), full=False).jobs
    assert fake.paths(mark) == ["/api/v2/dags/~/dagRuns", "/api/v2/dags/~/dagRuns/~/taskInstances"]
    assert job.steps is not None and job.steps[0].status == "success"
