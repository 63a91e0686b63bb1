"""The gitlab-ci preset against a loopback fake GitLab, through the real exporter process."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.integration.fakeapi import JsonHandler, serve_handler
from tests.integration.harness import after_a_poll, exporter, scrape, select, wait_for

TOKEN = "glpat-test"
T0 = 1_796_385_600  # 2026-12-04T12:00:00Z
PER_PAGE_CAP = 2  # small pages so the Link / x-next-page paging is exercised
PROJECT = "grp/app"
PREFIX = "/api/v4/projects/grp%2Fapp/pipelines"  # :id as a URL-encoded path
OVERLAP = 2  # seconds, jobs.incremental.overlap
# A pipeline unchanged this long is out of every list: the overlap, plus the whole seconds of
# `updated_after` (rounded down) and of the Date header the server's clock is read from.
UNCHANGED = OVERLAP + 2


def ts(offset: float | None) -> str | None:
    """Return T0 + offset as GitLab spells times, or None."""
    if offset is None:
        return None
    return datetime.fromtimestamp(T0 + offset, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def pipeline(pid: int, status: str, start: float | None, end: float | None) -> dict[str, Any]:
    """Return a pipeline detail (job-apis.md §3.1/3.3); the list shows only some fields."""
    return {"id": pid, "iid": pid, "project_id": 7, "status": status, "source": "push",
            "ref": "main", "sha": "abc", "name": None, "web_url": f"https://gl/p/{pid}",
            "created_at": ts((start or 0) - 3), "started_at": ts(start), "finished_at": ts(end),
            "duration": None if end is None or start is None else int(end - start),
            "queued_duration": 3}


LIST_FIELDS = ("id", "iid", "project_id", "status", "source", "ref", "sha", "name", "web_url",
               "created_at", "updated_at")


def ci_job(jid: int, name: str, status: str, start: float | None,
           end: float | None) -> dict[str, Any]:
    """Return a pipeline job (job-apis.md §3.3); retries get new ids."""
    return {"id": jid, "name": name, "stage": "test", "status": status,
            "created_at": ts((start or 0) - 1), "started_at": ts(start), "finished_at": ts(end),
            "duration": None if end is None or start is None else end - start,
            "allow_failure": False}


class FakeGitLab:
    """One project: pipelines with a server-side updated_at, jobs, RateLimit-* headers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipelines: dict[int, tuple[float, dict[str, Any]]] = {}
        self.jobs: dict[int, list[dict[str, Any]]] = {}
        self.hits: Counter[str] = Counter()
        self.remaining = 2000
        self.afters: list[float] = []  # every list's updated_after, in order
        self.late = (0, 0.0)  # (list answers left, seconds): answers read that late

    def put(self, detail: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        self.pipelines[detail["id"]] = (time.time(), detail)
        self.jobs[detail["id"]] = jobs

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        self.remaining -= 1
        headers = {"RateLimit-Limit": "2000", "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(int(time.time()) + 60)}
        if path == PREFIX:
            self.hits["list"] += 1
            if "updated_after" in query:
                self.afters.append(datetime.fromisoformat(query["updated_after"]).timestamp())
            return 200, headers | self.page_headers(path, query), self.listing(query)
        rest = path.removeprefix(PREFIX + "/").split("/")
        if not path.startswith(PREFIX + "/") or int(rest[0]) not in self.pipelines:
            return 404, headers, {"message": "404 Not found"}
        pid = int(rest[0])
        if rest[1:] == ["jobs"] and query.get("include_retried") == "true":
            self.hits["jobs"] += 1
            return 200, headers, sorted(self.jobs[pid], key=lambda j: -j["id"])
        self.hits["detail"] += 1
        updated, detail = self.pipelines[pid]
        return 200, headers, {**detail, "updated_at": ts(updated - T0)}

    def rows(self, query: dict[str, str]) -> list[dict[str, Any]]:
        after = query.get("updated_after")
        floor = datetime.fromisoformat(after).timestamp() if after else float("-inf")
        before = query.get("updated_before")
        top = datetime.fromisoformat(before).timestamp() if before else float("inf")
        found = [(u, d) for u, d in self.pipelines.values() if floor <= u <= top]
        found.sort(key=lambda x: -x[0])  # order_by=updated_at, sort=desc
        return [{k: ({**d, "updated_at": ts(u - T0)})[k] for k in LIST_FIELDS}
                for u, d in found]

    def listing(self, query: dict[str, str]) -> list[dict[str, Any]]:
        page = int(query.get("page", 1))
        return self.rows(query)[(page - 1) * PER_PAGE_CAP:page * PER_PAGE_CAP]

    def date_lag(self, path: str) -> float:
        """Return how far behind the answer's Date is: the list answers made late."""
        left, seconds = self.late
        if path != PREFIX or left <= 0:
            return 0.0
        self.late = (left - 1, seconds)
        return seconds

    def page_headers(self, path: str, query: dict[str, str]) -> dict[str, str]:
        page, total = int(query.get("page", 1)), len(self.rows(query))
        more = page * PER_PAGE_CAP < total
        out = {"x-page": str(page), "x-total": str(total),
               "x-next-page": str(page + 1) if more else ""}
        if more:
            out["Link"] = f'<{self.base}{path}?{urlencode({**query, "page": page + 1})}>; ' \
                          'rel="next"'
        return out

    base = ""


class Handler(JsonHandler):
    """HTTP face of FakeGitLab."""

    fake: FakeGitLab
    lag = 0.0

    def do_GET(self) -> None:
        url = urlsplit(self.path)  # raw: %2F stays encoded, as GitLab needs it
        if self.headers.get("PRIVATE-TOKEN") != TOKEN:
            status, headers, body = 401, {}, {"message": "401 Unauthorized"}
        else:
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self.fake.lock:
                status, headers, body = self.fake.answer(url.path, query)
                self.lag = self.fake.date_lag(url.path)
        self.send_json(status, body, headers)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """Write Date `lag` seconds early, as an answer that waited that long to be read."""
        return super().date_time_string(time.time() - self.lag)


@pytest.fixture
def gitlab() -> Iterator[tuple[FakeGitLab, str]]:
    fake = FakeGitLab()
    with serve_handler(type("H", (Handler,), {"fake": fake})) as url:
        fake.base = url  # before any request: Link headers name it
        yield fake, url


def config(url: str, state: Path) -> str:
    return f"""
state:
  path: {state}
sources:
  - name: gl
    kind: json
    preset: gitlab-ci
    base_url: {url}
    auth: {{token: "{TOKEN}"}}
    interval: 0.5s
    jitter: 0
    jobs: {{incremental: {{overlap: {OVERLAP}s}}}}
    organizations:
      - address: {PROJECT}
"""


def value(url: str, name: str, **labels: str) -> float:
    return sum(select(scrape(url), name, source="gl", org=PROJECT, **labels).values())



def requests_over(fake: FakeGitLab, url: str, seconds: float) -> tuple[Counter[str], float, int]:
    """Count the fake's answers by route and the exporter's polls over whole polls."""
    def hits() -> tuple[Counter[str], int]:
        with fake.lock:
            return Counter(fake.hits), fake.remaining

    def polls() -> float:
        return value(url, "asyncjob_poll_duration_seconds_count")

    polls_before, (before, _) = after_a_poll(polls, hits)
    time.sleep(seconds)
    polls_after, (after, remaining) = after_a_poll(polls, hits)
    delta = Counter({k: v - before[k] for k, v in after.items() if v > before[k]})
    return delta, polls_after - polls_before, remaining


def test_gitlab_preset_details_changed_pipelines_counts_retries_and_finishes_once(
        gitlab: tuple[FakeGitLab, str], tmp_path: Path) -> None:
    fake, api = gitlab
    with fake.lock:
        for pid in (1, 2, 3):  # history over two Link pages
            fake.put(pipeline(pid, "success", pid * 10, pid * 10 + 5), [])
        fake.put(pipeline(4, "running", 100, None),
                 [ci_job(40, "build", "success", 101, 110), ci_job(41, "test", "failed", 111, 115),
                  ci_job(42, "test", "running", 116, None)])  # 42 retries 41
    with exporter(tmp_path, config(api, tmp_path / "state.db")) as (url, proc):
        wait_for(lambda: value(url, "asyncjob_jobs", job_type="push", status="running") == 1,
                 20, f"pipeline 4 running\n{proc.output()}")
        assert value(url, "asyncjob_jobs", job_type="push", status="completed") == 3
        assert value(url, "asyncjob_finished_total", job_type="push") == 0  # history
        assert value(url, "asyncjob_steps", step_type="test", step_status="running") == 1
        # one active pipeline (A = 1), unchanged past the overlap: 1 + A requests per poll
        time.sleep(UNCHANGED)
        delta, polls, _ = requests_over(fake, url, 3)
        assert set(delta) == {"list", "jobs"}, delta
        assert all(abs(n - polls) <= 1 for n in delta.values()) and polls >= 4, (delta, polls)
        with fake.lock:
            fake.put(pipeline(4, "success", 100, 150),
                     [ci_job(40, "build", "success", 101, 110),
                      ci_job(41, "test", "failed", 111, 115),
                      ci_job(42, "test", "success", 116, 146)])
            fake.put(pipeline(5, "canceled", 160, 161), [])
        wait_for(lambda: value(url, "asyncjob_finished_total", job_type="push",
                               status="completed") == 1
                 and value(url, "asyncjob_finished_total", job_type="push",
                           status="cancelled") == 1, 20, f"finishes\n{proc.output()}")
        labels = {"job_type": "push", "status": "completed"}
        assert value(url, "asyncjob_duration_seconds_sum", **labels) == 50  # from the detail
        step = {"job_type": "push", "step_type": "test", "step_status": "success"}
        assert value(url, "asyncjob_step_finished_total", **step) == 1
        assert value(url, "asyncjob_step_duration_seconds_sum", **step) == 30
        time.sleep(UNCHANGED)  # past the overlap: nothing changed since
        delta, polls, remaining = requests_over(fake, url, 3)
        assert set(delta) == {"list"} and abs(delta["list"] - polls) <= 1 and polls >= 4
        assert value(url, "asyncjob_finished_total", job_type="push") == 2  # exactly once
        rate = select(scrape(url), "asyncjob_api_rate_limit_remaining", source="gl")
        assert 0 <= remaining - next(iter(rate.values())) <= 2


def test_late_list_answers_do_not_widen_the_next_lists(
        gitlab: tuple[FakeGitLab, str], tmp_path: Path) -> None:
    """Answers read 6 s after their Date was written must not make later lists re-read 6 s."""
    fake, api = gitlab
    with fake.lock:
        fake.put(pipeline(4, "running", 100, None), [ci_job(40, "build", "running", 101, None)])
    with exporter(tmp_path, config(api, tmp_path / "state.db")) as (url, proc):
        wait_for(lambda: value(url, "asyncjob_jobs", job_type="push", status="running") == 1,
                 20, f"pipeline 4 running\n{proc.output()}")
        time.sleep(1)  # a few more Date samples
        with fake.lock:  # unchanged for a second longer than any prompt list re-reads
            fake.pipelines[4] = (time.time() - UNCHANGED - 1, fake.pipelines[4][1])
        after_a_poll(lambda: value(url, "asyncjob_poll_duration_seconds_count"), lambda: None)
        with fake.lock:
            fake.late = (3, 6.0)
            before, start = fake.afters[-1], len(fake.afters)
        delta, polls, _ = requests_over(fake, url, 3)
        with fake.lock:
            assert fake.late[0] == 0, "the late answers were not all sent"
            window = fake.afters[start:]
        assert set(delta) == {"list", "jobs"}, delta  # pipeline 4 was not listed again
        assert polls >= 4 and min(window) >= before - 1, (before, window)
        assert value(url, "asyncjob_jobs", job_type="push", status="running") == 1
