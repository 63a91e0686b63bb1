"""The github-actions preset against a loopback fake GitHub, through the real exporter process."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.fakeapi import JsonHandler, serve_handler
from tests.integration.harness import after_a_poll, exporter, scrape, select, wait_for

TOKEN = "ghp-test-token"
T0 = 1_796_385_600  # 2026-12-04T12:00:00Z


def ts(offset: float) -> str:
    """Return T0 + offset as GitHub spells times."""
    return datetime.fromtimestamp(T0 + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(run_id: int, name: str, status: str, conclusion: str | None, start: float,
        end: float | None, attempt: int = 1) -> dict[str, Any]:
    """Return a workflow-run object with the fields job-apis.md §2.3 lists."""
    return {"id": run_id, "name": name, "display_title": f"t{run_id}", "run_number": run_id,
            "run_attempt": attempt, "event": "push", "head_branch": "main", "status": status,
            "conclusion": conclusion, "created_at": ts(start - 5), "run_started_at": ts(start),
            "updated_at": ts(end if end is not None else start + 1),
            "path": ".github/workflows/ci.yml@main"}


def job(job_id: int, name: str, status: str, conclusion: str | None, start: float,
        end: float | None) -> dict[str, Any]:
    """Return a workflow-job object (job-apis.md §2.3)."""
    return {"id": job_id, "run_id": 0, "run_attempt": 1, "name": name, "status": status,
            "conclusion": conclusion, "created_at": ts(start - 1), "started_at": ts(start),
            "completed_at": ts(end) if end is not None else None, "steps": []}


class FakeGitHub:
    """The repo octo/app: runs, their jobs, ETags, 304s and a primary rate-limit budget."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: dict[tuple[int, int], dict[str, Any]] = {}  # (run id, attempt) -> run
        self.jobs: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self.remaining = 5000
        self.hits: Counter[tuple[str, int]] = Counter()

    def put(self, run: dict[str, Any], jobs: list[dict[str, Any]] | None = None) -> None:
        """Create or change one attempt of a run (a re-run adds attempt n + 1)."""
        key = (run["id"], run["run_attempt"])
        self.attempts[key] = run
        self.jobs[key] = jobs or []

    def latest(self) -> dict[int, dict[str, Any]]:
        """Return each run as the list shows it: its latest attempt."""
        out: dict[int, dict[str, Any]] = {}
        for (run_id, _), run in sorted(self.attempts.items()):
            out[run_id] = run
        return out

    def answer(self, path: str, if_none_match: str | None) -> tuple[int, dict[str, str], Any]:
        """Route one GET: (status, headers, body)."""
        parts = path.strip("/").split("/")
        if parts[:5] != ["repos", "octo", "app", "actions", "runs"]:
            return 404, {}, {"message": "Not Found"}
        key = (int(parts[5]), int(parts[7])) if len(parts) >= 8 else None
        if len(parts) == 5:
            runs = sorted(self.latest().values(), key=lambda r: -r["id"])  # newest first
            body: Any = {"total_count": len(runs), "workflow_runs": runs}
            route = "runs"
        elif key in self.attempts and parts[6] == "attempts" and parts[8:] == ["jobs"]:
            jobs = self.jobs[key]
            body, route = {"total_count": len(jobs), "jobs": jobs}, "jobs"
        elif key in self.attempts and parts[6] == "attempts" and len(parts) == 8:
            body, route = self.attempts[key], "run"
        else:
            return 404, {}, {"message": "Not Found"}
        etag = '"' + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest() + '"'
        headers = {"ETag": etag, "X-RateLimit-Limit": "5000",
                   "X-RateLimit-Reset": str(int(time.time()) + 3600)}
        if if_none_match == etag:  # free against the primary limit
            self.hits[(route, 304)] += 1
            return 304, {**headers, "X-RateLimit-Remaining": str(self.remaining)}, None
        self.remaining -= 1
        self.hits[(route, 200)] += 1
        return 200, {**headers, "X-RateLimit-Remaining": str(self.remaining)}, body


class Handler(JsonHandler):
    """HTTP face of FakeGitHub."""

    fake: FakeGitHub

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_json(401, {"message": "Bad credentials"})
            return
        with self.fake.lock:
            status, headers, body = self.fake.answer(urlsplit(self.path).path,
                                                     self.headers.get("If-None-Match"))
        self.send_json(status, body, headers)


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, str]]:
    fake = FakeGitHub()
    handler = type("H", (Handler,), {"fake": fake})
    with serve_handler(handler) as url:
        yield fake, url


def config(url: str, state: Path) -> str:
    return f"""
state:
  path: {state}
sources:
  - name: gh
    kind: json
    preset: github-actions
    base_url: {url}
    auth: {{token: "{TOKEN}"}}
    interval: 0.5s
    jitter: 0
    organizations:
      - address: octo/app
"""


def value(url: str, name: str, **labels: str) -> float:
    return sum(select(scrape(url), name, source="gh", org="octo/app", **labels).values())



def requests_over(fake: FakeGitHub, url: str, seconds: float) -> tuple[Counter[tuple[str, int]],
                                                                        float, int]:
    """Count the fake's answers and the exporter's polls over whole polls; the budget is unspent."""
    def hits() -> tuple[Counter[tuple[str, int]], int]:
        with fake.lock:
            return Counter(fake.hits), fake.remaining

    def polls() -> float:
        return value(url, "asyncjob_poll_duration_seconds_count")

    polls_before, (before, budget) = after_a_poll(polls, hits)
    time.sleep(seconds)
    polls_after, (after, remaining) = after_a_poll(polls, hits)
    assert remaining == budget  # 304s are free against the primary limit
    delta = Counter({k: v - before[k] for k, v in after.items() if v > before[k]})
    return delta, polls_after - polls_before, budget


def test_github_preset_counts_finishes_once_durations_steps_and_costs_one_304_per_poll(
        github: tuple[FakeGitHub, str], tmp_path: Path) -> None:
    fake, api = github
    fake.put(run(1, "CI", "completed", "success", 0, 30))  # history
    fake.put(run(2, "CI", "in_progress", None, 100, None),
             [job(20, "build", "completed", "success", 101, 111),
              job(21, "test", "in_progress", None, 112, None)])
    with exporter(tmp_path, config(api, tmp_path / "state.db")) as (url, proc):
        wait_for(lambda: value(url, "asyncjob_jobs", job_type="CI", status="running") == 1,
                 20, f"run 2 running\n{proc.output()}")
        assert value(url, "asyncjob_finished_total", job_type="CI") == 0  # history
        assert value(url, "asyncjob_steps", step_type="test", step_status="running") == 1
        with fake.lock:  # run 2 succeeds after 42 s, its test job after 20 s; run 3 fails
            fake.put(run(2, "CI", "completed", "success", 100, 142),
                     [job(20, "build", "completed", "success", 101, 111),
                      job(21, "test", "completed", "success", 112, 132)])
            fake.put(run(3, "CI", "completed", "failure", 150, 160))
        wait_for(lambda: value(url, "asyncjob_finished_total", job_type="CI",
                               status="failed") == 1
                 and value(url, "asyncjob_finished_total", job_type="CI",
                           status="completed") == 1, 20, f"finishes\n{proc.output()}")
        labels = {"job_type": "CI", "status": "completed"}
        assert value(url, "asyncjob_duration_seconds_count", **labels) == 1
        assert value(url, "asyncjob_duration_seconds_sum", **labels) == 42
        step = {"job_type": "CI", "step_type": "test", "step_status": "success"}
        assert value(url, "asyncjob_step_finished_total", **step) == 1
        assert value(url, "asyncjob_step_duration_seconds_sum", **step) == 20
        assert value(url, "asyncjob_jobs", job_type="CI", status="running") == 0
        with fake.lock:  # re-run of the history run 1: same id, attempt 2, then success
            fake.put(run(1, "CI", "in_progress", None, 200, None, attempt=2),
                     [job(11, "test", "in_progress", None, 201, None)])
        wait_for(lambda: value(url, "asyncjob_jobs", job_type="CI", status="running") == 1,
                 20, f"re-run running\n{proc.output()}")
        with fake.lock:
            fake.put(run(1, "CI", "completed", "success", 200, 210, attempt=2),
                     [job(11, "test", "completed", "success", 201, 209)])
        wait_for(lambda: value(url, "asyncjob_finished_total", job_type="CI",
                               status="completed") == 2, 20, f"re-run finish\n{proc.output()}")
        assert value(url, "asyncjob_duration_seconds_sum", **labels) == 42 + 10
        # steady state: nothing active, nothing changes -> one conditional list request per
        # poll, answered 304 (free against the primary limit); no step or detail requests
        time.sleep(1.5)
        delta, polls, budget = requests_over(fake, url, 3)
        assert set(delta) == {("runs", 304)} and abs(delta[("runs", 304)] - polls) <= 1, delta
        assert polls >= 4
        finished = value(url, "asyncjob_finished_total", job_type="CI")
        assert finished == 3  # each finish (a re-run's too) counted exactly once
        rate = select(scrape(url), "asyncjob_api_rate_limit_remaining", source="gh")
        assert list(rate.values()) == [budget]
        with fake.lock:  # run 4 starts and is seen active before the exporter stops
            fake.put(run(4, "CI", "in_progress", None, 300, None),
                     [job(40, "test", "in_progress", None, 301, None)])
        wait_for(lambda: value(url, "asyncjob_jobs", job_type="CI", status="running") == 1,
                 20, "run 4 running")
        # one active run (A = 1), nothing changing: 1 + A conditional requests per poll, all 304
        time.sleep(1.5)
        delta, polls, _ = requests_over(fake, url, 3)
        assert set(delta) == {("runs", 304), ("jobs", 304)}, delta
        assert all(abs(n - polls) <= 1 for n in delta.values()) and polls >= 4, (delta, polls)
    with fake.lock:  # while the exporter is down: run 5 starts and fails
        fake.put(run(5, "CI", "completed", "failure", 310, 320))
    # restart on the same state file (counters restart at 0, as Prometheus counters may)
    with exporter(tmp_path, config(api, tmp_path / "state.db"), name="again") as (url, proc):
        wait_for(lambda: value(url, "asyncjob_jobs", job_type="CI", status="running") == 1
                 and value(url, "asyncjob_finished_total", job_type="CI",
                           status="failed") == 1, 20, f"after restart\n{proc.output()}")
        with fake.lock:
            fake.put(run(4, "CI", "completed", "success", 300, 330),
                     [job(40, "test", "completed", "success", 301, 329)])
        wait_for(lambda: value(url, "asyncjob_finished_total", job_type="CI",
                               status="completed") == 1, 20, f"run 4\n{proc.output()}")
        time.sleep(1.5)  # more polls: nothing from before the restart is counted again
        assert value(url, "asyncjob_finished_total", job_type="CI") == 2
        assert value(url, "asyncjob_duration_seconds_sum", job_type="CI",
                     status="completed") == 30
