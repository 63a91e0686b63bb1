"""OrdoSource against a fake Ordo shaped like the reference doc (routes, auth, batch rules)."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from structlog.testing import capture_logs

from exporter.sources.base import (
    ClientSettings,
    KnownJob,
    OrgTarget,
    PollError,
    PollResult,
)
from exporter.sources.ordo import OrdoSource
from tests.fakes import Known as SharedKnown

TOKEN = "s3cret-ordo-token"
JOB_ERROR = "worker crashed on tile 7 for client-x"
TARGET = OrgTarget(source="ordo-lidar", org="lidar", address="lidar")
BATCH_ROUTE = re.compile(r"^/jobs/([0-9,]+,[0-9,]+)$")
SINGLE_ROUTE = re.compile(r"^/jobs/([^/]+)$")
T = TypeVar("T")


def iso(second: int) -> str:
    """Format like Express serializes a pg timestamptz."""
    return f"2026-02-26T12:{second // 60 % 60:02d}:{second % 60:02d}.000Z"


class FakeOrdo:
    """In-memory Ordo: jobs by id, recipes, and a log of request paths."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.jobs: dict[int, dict[str, Any]] = {}
        self.recipes: dict[int, str] = {1: "lidar-dem", 2: "ortho"}
        self.paths: list[str] = []
        self.override: dict[str, httpx.Response] = {}  # route path -> canned answer

    def add(self, job_id: int, status: str, recipe_id: int = 1) -> None:
        """Add a job with one step per lifecycle phase."""
        started = iso(5) if status != "pending" else None
        done = status in ("success", "completed", "failed", "partial")
        self.jobs[job_id] = {
            "id": job_id, "recipe_id": recipe_id, "status": status, "created_at": iso(0),
            "started_at": started, "finished_at": iso(50) if done else None,
            "error": JOB_ERROR if status == "failed" else None,
        }

    def detail(self, job_id: int) -> dict[str, Any]:
        """Build the JobStatusResponse of one job."""
        job = self.jobs[job_id]
        done = job["finished_at"] is not None
        return {
            "job": {**job, "params": {}},
            "progress": {"percentage": 1 if done else 0.5, "completed_steps": 1,
                         "total_steps": 2},
            "duration_ms": 45000 if done else None,
            "timeline": [],
            "steps": [
                {"job_id": job_id, "step_id": "dem", "step_type": "GENERATE_DEM",
                 "status": "success" if done else "running", "attempt": 2,
                 "claimed_by": "n8n-1", "claimed_at": iso(4), "started_at": iso(5),
                 "finished_at": iso(40) if done else None, "error": JOB_ERROR,
                 "max_concurrency": 2,
                 "last_detailing": {"id": 1, "job_id": job_id, "step_id": "dem", "log": "x",
                                    "progress": {"progress": 50}, "updated_at": iso(30)}},
                {"job_id": job_id, "step_id": "tiles", "step_type": "BUILD_EPT",
                 "status": "success" if done else "pending", "attempt": 0,
                 "claimed_by": None, "claimed_at": None, "started_at": None,
                 "finished_at": None, "error": None, "max_concurrency": None},
            ],
            "artifacts": [],
            "outputs": [],
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Route like src/app.ts: auth first, then the Express routes, else an HTML 404."""
        path = request.url.path
        self.paths.append(path)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return httpx.Response(401, json={"error": "Missing or invalid Authorization header"})
        if auth != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": "Invalid token"})
        if not path.startswith(self.prefix + "/"):
            return self.html_404(path)
        route = path[len(self.prefix):]
        if route in self.override:
            return self.override[route]
        return self.route(route) or self.html_404(path)

    def route(self, route: str) -> httpx.Response | None:
        """Answer the known GET routes."""
        if route == "/jobs":
            return httpx.Response(200, json=[self.jobs[i] for i in sorted(self.jobs, reverse=True)])
        if route == "/recipes":
            return httpx.Response(200, json=[
                {"id": i, "name": n, "version": "1", "definition": {}, "created_at": iso(0)}
                for i, n in sorted(self.recipes.items(), reverse=True)
            ])
        if match := BATCH_ROUTE.match(route):
            return self.batch(match.group(1).split(","))
        if match := SINGLE_ROUTE.match(route):
            job_id = int(match.group(1))
            if job_id not in self.jobs:
                return httpx.Response(404, json={"error": "Job not found"})
            return httpx.Response(200, json=self.detail(job_id))
        return None

    def batch(self, ids: list[str]) -> httpx.Response:
        """Answer the batch route with its documented validation."""
        if len(ids) > 100:
            return httpx.Response(400, json={"error": "Cannot request more than 100 job IDs"})
        items = [
            {"id": int(i), "found": True, **self.detail(int(i))} if int(i) in self.jobs
            else {"id": int(i), "found": False}
            for i in ids
        ]
        return httpx.Response(200, json=items)

    @staticmethod
    def html_404(path: str) -> httpx.Response:
        """Express's default page for a route that does not exist."""
        body = f"<!DOCTYPE html><html><body><pre>Cannot GET {path}</pre></body></html>"
        return httpx.Response(404, text=body, headers={"Content-Type": "text/html"})

    def count(self, kind: str) -> int:
        """Count requests by route template."""
        return sum(1 for p in self.paths if template(p[len(self.prefix):]) == kind)

    def batches(self) -> list[list[int]]:
        """Return the id lists of every batch or single detail request, in order."""
        out: list[list[int]] = []
        for path in self.paths:
            route = path[len(self.prefix):]
            if template(route) in ("/jobs/{ids}", "/jobs/{id}"):
                out.append([int(i) for i in route.removeprefix("/jobs/").split(",")])
        return out


def template(route: str) -> str:
    """Map a raw path to its route template."""
    if route in ("/jobs", "/recipes"):
        return route
    if BATCH_ROUTE.match(route):
        return "/jobs/{ids}"
    return "/jobs/{id}" if SINGLE_ROUTE.match(route) else "other"


class Known(SharedKnown):
    """KnownJobs over a dict, as the tracker would hand it over."""

    def learn(self, result: PollResult) -> None:
        """Remember what a poll saw, like the tracker."""
        for job in result.jobs:
            terminal = job.status in ("completed", "failed", "partial")
            self.jobs[job.job_id] = KnownJob(job.job_id, job.job_type, job.status, terminal)
        for job_id in result.gone:
            self.jobs.pop(job_id, None)


async def _no_sleep(_: float) -> None:
    """Skip retry backoff in tests."""


def make_source(fake: FakeOrdo, base_url: str = "http://ordo.test", token: str = TOKEN,
                id_window: int = 25, **settings: Any) -> OrdoSource:
    """Build a source wired to the fake through MockTransport (id_window=0: list every poll)."""
    options: dict[str, Any] = {"max_requests_per_second": 10000.0, "retries": 1}
    options.update(settings)
    return OrdoSource("ordo-lidar", ClientSettings(base_url=base_url, **options), token=token,
                      transport=httpx.MockTransport(fake.handle), sleep=_no_sleep,
                      id_window=id_window)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def poll(source: OrdoSource, known: Known, full: bool = False,
         target: OrgTarget = TARGET) -> PollResult:
    """Poll once, then close nothing: the source is reused across polls."""
    return run(source.poll(target, known, full))


def by_id(result: PollResult) -> dict[str, Any]:
    """Index observations by job id."""
    return {job.job_id: job for job in result.jobs}


def test_first_poll_details_only_active_jobs() -> None:
    fake = FakeOrdo()
    for job_id, status in [(1, "success"), (2, "failed"), (3, "partial"), (4, "running"),
                           (5, "pending")]:
        fake.add(job_id, status, recipe_id=2 if job_id == 5 else 1)
    source = make_source(fake)
    result = poll(source, Known(), full=True)
    assert result.complete is True
    assert fake.paths == ["/jobs", "/recipes", "/jobs/5,4"]
    jobs = by_id(result)
    assert set(jobs) == {"1", "2", "3", "4", "5"}
    assert [jobs[i].status for i in "12345"] == [
        "completed", "failed", "partial", "running", "pending"]
    assert jobs["1"].steps is None and jobs["1"].progress is None
    assert jobs["1"].finished_at is not None and jobs["1"].duration_s is None
    running = jobs["4"]
    assert (running.job_type, running.progress) == ("lidar-dem", 0.5)
    assert running.steps is not None and len(running.steps) == 2
    assert (running.steps[0].status, running.steps[0].attempt) == ("running", 2)
    assert jobs["5"].job_type == "ortho"
    assert JOB_ERROR not in repr(result)
    assert source.stats.requests == {
        ("/jobs", "200"): 1, ("/recipes", "200"): 1, ("/jobs/{ids}", "200"): 1}


def test_job_turning_terminal_is_detailed_once() -> None:
    fake = FakeOrdo()
    fake.add(1, "running")
    fake.add(2, "running")
    source = make_source(fake, id_window=0)  # the list path
    known = Known()
    known.learn(poll(source, known, full=True))
    fake.add(1, "success")
    fake.paths.clear()
    result = poll(source, known)
    assert fake.paths == ["/jobs", "/jobs/2,1"]
    done = by_id(result)["1"]
    assert (done.status, done.duration_s, done.progress) == ("completed", 45.0, 1.0)
    assert done.steps is not None and done.steps[0].status == "success"
    known.learn(result)
    fake.paths.clear()
    result = poll(source, known)
    assert fake.paths == ["/jobs", "/jobs/2"]  # single id: the single route
    assert by_id(result)["1"].steps is None  # finished: never fetched again
    assert source.stats.requests[("/jobs/{id}", "200")] == 1


def test_new_job_already_finished_between_polls_is_detailed() -> None:
    fake = FakeOrdo()
    fake.add(1, "success")
    source = make_source(fake, id_window=0)  # the list path
    known = Known()
    known.learn(poll(source, known, full=True))
    fake.add(2, "failed")
    fake.add(3, "success")
    fake.paths.clear()
    result = poll(source, known)
    assert fake.paths == ["/jobs", "/jobs/3,2"]
    assert by_id(result)["2"].steps is not None
    assert by_id(result)["1"].steps is None
    # a resync (full=True) with state keeps detailing jobs the tracker never saw
    fake.add(4, "partial")
    known.learn(result)
    fake.paths.clear()
    poll(source, known, full=True)
    assert fake.paths == ["/jobs", "/jobs/4"]


def test_steady_state_request_count_with_10000_finished_jobs() -> None:
    fake = FakeOrdo()
    for job_id in range(1, 10_001):
        fake.add(job_id, "success" if job_id % 3 else "failed")
    for job_id in range(10_001, 10_151):
        fake.add(job_id, "running")
    source = make_source(fake, id_window=0)  # the list path
    known = Known()
    known.learn(poll(source, known, full=True))
    for active in (50, 150, 101):
        for job_id in range(10_001, 10_151):
            fake.add(job_id, "running" if job_id < 10_001 + active else "success")
        known = Known(KnownJob(str(i), "lidar-dem", "completed", True) for i in range(1, 10_151))
        known.jobs.update((str(i), KnownJob(str(i), "lidar-dem", "running", False))
                          for i in range(10_001, 10_001 + active))
        fake.paths.clear()
        result = poll(source, known)
        assert len(fake.paths) == 1 + math.ceil(active / 100)
        assert fake.count("/jobs") == 1 and fake.count("/recipes") == 0
        assert [len(ids) for ids in fake.batches()] == [
            min(100, active - i) for i in range(0, active, 100)]
        assert len(result.jobs) == 10_150
        assert sum(1 for j in result.jobs if j.steps is not None) == active


def test_batch_chunks_at_100_and_single_remainder() -> None:
    fake = FakeOrdo()
    for job_id in range(1, 202):
        fake.add(job_id, "pending")
    source = make_source(fake)
    result = poll(source, Known(), full=True)
    chunks = fake.batches()
    assert [len(c) for c in chunks] == [100, 100, 1]
    assert sorted(i for c in chunks for i in c) == list(range(1, 202))
    assert fake.count("/jobs/{id}") == 1
    assert all(job.steps is not None for job in result.jobs)


def test_vanished_jobs_are_gone() -> None:
    fake = FakeOrdo()
    for job_id in (1, 2, 3):
        fake.add(job_id, "running")
    source = make_source(fake)
    known = Known()
    known.learn(poll(source, known, full=True))
    # job 1 is deleted between the list call and the batch call
    fake.override["/jobs"] = fake.route("/jobs") or httpx.Response(500)
    del fake.jobs[1]
    result = poll(source, known)
    assert result.gone == ("1",)
    assert set(by_id(result)) == {"2", "3"}


def test_vanished_single_job_is_gone() -> None:
    fake = FakeOrdo()
    fake.override["/jobs"] = httpx.Response(200, json=[
        {"id": 9, "recipe_id": 1, "status": "running", "created_at": iso(0),
         "started_at": None, "finished_at": None, "error": None}])
    result = poll(make_source(fake), Known(), full=True)
    assert fake.paths[-1] == "/jobs/9"
    assert result.gone == ("9",) and result.jobs == ()


def test_recipe_cache_refreshes_only_on_new_recipe_ids() -> None:
    fake = FakeOrdo()
    fake.add(1, "success", recipe_id=1)
    source = make_source(fake)
    known = Known()
    known.learn(poll(source, known, full=True))
    poll(source, known)
    assert fake.count("/recipes") == 1
    fake.recipes[3] = "contours"
    fake.add(2, "running", recipe_id=3)
    fake.add(3, "running", recipe_id=7)  # a recipe /recipes does not list
    result = poll(source, known)
    assert fake.count("/recipes") == 2
    jobs = by_id(result)
    assert (jobs["2"].job_type, jobs["3"].job_type) == ("contours", "recipe-7")
    known.learn(result)
    poll(source, known)
    assert fake.count("/recipes") == 2  # recipe 7 stays unnamed without refetching


def test_no_recipes_request_without_jobs() -> None:
    fake = FakeOrdo()
    result = poll(make_source(fake), Known(), full=True)
    assert fake.paths == ["/jobs"] and result.jobs == () and result.complete


def test_job_types_filter_skips_other_recipes() -> None:
    fake = FakeOrdo()
    fake.add(1, "running", recipe_id=1)
    fake.add(2, "running", recipe_id=2)
    target = OrgTarget(source="ordo-lidar", org="lidar", address="lidar", job_types=("ortho",))
    result = poll(make_source(fake), Known(), full=True, target=target)
    assert [job.job_id for job in result.jobs] == ["2"]
    assert fake.paths[-1] == "/jobs/2"


def test_unknown_statuses_are_reported() -> None:
    fake = FakeOrdo()
    fake.add(1, "archived")
    fake.add(2, "success")
    source = make_source(fake)
    detail = fake.detail(1)
    detail["steps"][1]["status"] = "queued"
    fake.override["/jobs/1"] = httpx.Response(200, json=detail)
    result = poll(source, Known(), full=True)
    jobs = by_id(result)
    assert (jobs["1"].status, jobs["2"].status) == ("unknown", "completed")
    assert jobs["1"].steps is not None and jobs["1"].steps[1].status == "unknown"
    assert set(result.unknown_statuses) == {"archived", "queued"}


def test_null_timestamps_missing_progress_and_bad_values() -> None:
    fake = FakeOrdo()
    fake.add(1, "pending")
    fake.jobs[1]["created_at"] = "not a time"
    detail = fake.detail(1)
    del detail["progress"]
    detail["job"]["created_at"] = "2026-02-26T12:00:00Z"
    fake.override["/jobs/1"] = httpx.Response(200, json=detail)
    result = poll(make_source(fake), Known(), full=True)
    job = result.jobs[0]
    assert job.progress is None and job.started_at is None and job.finished_at is None
    assert job.created_at == pytest.approx(1772107200.0)
    assert result.notes == {"bad_timestamp": 1}  # the list's unparsable created_at


def test_auth_failure_is_a_poll_error_and_token_never_logged() -> None:
    fake = FakeOrdo()
    fake.add(1, "failed")
    fake.add(2, "running")  # its detail carries a step error string
    with capture_logs() as logs:
        with pytest.raises(PollError) as caught:
            poll(make_source(fake, token="wrong-token"), Known(), full=True)
        assert caught.value.reason == "auth"
        result = poll(make_source(fake), Known())
    assert by_id(result)["1"].status == "failed" and by_id(result)["2"].steps is not None
    assert logs  # the capture did see the source's events
    text = json.dumps(logs, default=str)
    assert TOKEN not in text and "wrong-token" not in text and JOB_ERROR not in text
    assert "wrong-token" not in str(caught.value)


def test_base_url_with_ordo_prefix() -> None:
    fake = FakeOrdo(prefix="/ordo")
    fake.add(1, "running")
    fake.add(2, "running")
    result = poll(make_source(fake, base_url="http://proxy.test/ordo"), Known(), full=True)
    assert fake.paths == ["/ordo/jobs", "/ordo/recipes", "/ordo/jobs/2,1"]
    assert len(result.jobs) == 2


def test_missing_prefix_gives_html_404_as_http_4xx() -> None:
    fake = FakeOrdo(prefix="/ordo")
    with pytest.raises(PollError) as caught:
        poll(make_source(fake, base_url="http://proxy.test"), Known(), full=True)
    assert caught.value.reason == "http_4xx"


def test_html_page_with_200_is_a_decode_error() -> None:
    fake = FakeOrdo()
    fake.override["/jobs"] = httpx.Response(200, text="<html>login</html>")
    with pytest.raises(PollError) as caught:
        poll(make_source(fake), Known(), full=True)
    assert caught.value.reason == "decode"


@pytest.mark.parametrize(
    ("route", "response"),
    [
        ("/jobs", httpx.Response(200, json={"error": "Internal server error"})),
        ("/jobs", httpx.Response(200, json={"jobs": []})),
        ("/jobs", httpx.Response(200, json=[{"id": 1, "recipe_id": 1}])),
        ("/recipes", httpx.Response(200, json={"recipes": []})),
        ("/jobs/1", httpx.Response(200, json={"id": 1, "found": True})),
        ("/jobs/1", httpx.Response(200, json=[{"id": 1, "found": True}])),
    ],
)
def test_schema_surprises(route: str, response: httpx.Response) -> None:
    fake = FakeOrdo()
    fake.add(1, "running")
    fake.override[route] = response
    with pytest.raises(PollError) as caught:
        poll(make_source(fake), Known(), full=True)
    assert caught.value.reason == "schema"


def test_server_error_body_is_http_5xx() -> None:
    fake = FakeOrdo()
    fake.override["/jobs"] = httpx.Response(500, json={"error": "Internal server error"})
    source = make_source(fake)
    with pytest.raises(PollError) as caught:
        poll(source, Known(), full=True)
    assert caught.value.reason == "http_5xx"
    run(source.aclose())


def test_unknown_status_is_not_re_detailed_every_poll() -> None:
    """A job in a status nobody maps is detailed on full polls only, not on every poll."""
    fake = FakeOrdo()
    fake.add(1, "cancelled")
    fake.add(2, "running")
    source = make_source(fake, id_window=0)  # the list path
    first = poll(source, Known(), full=True)
    assert by_id(first)["1"].status == "unknown" and "cancelled" in first.unknown_statuses
    known = Known([KnownJob("1", "lidar-dem", "unknown", False),
                   KnownJob("2", "lidar-dem", "running", False)])
    for _ in range(3):
        fake.paths.clear()
        result = poll(source, known)
        assert by_id(result)["1"].status == "unknown"
        assert fake.paths == ["/jobs", "/jobs/2"]  # only the running job is detailed
    fake.paths.clear()
    poll(source, known, full=True)  # once per full_resync_interval
    assert fake.paths == ["/jobs", "/jobs/2,1"]


def test_status_map_turns_a_raw_status_into_a_terminal_one() -> None:
    """status_map: {cancelled: failed} makes cancelled jobs finished, not unknown."""
    fake = FakeOrdo()
    fake.add(1, "Cancelled")
    source = OrdoSource("ordo-lidar", ClientSettings(base_url="http://ordo.test",
                                                     max_requests_per_second=10000.0),
                        token=TOKEN, transport=httpx.MockTransport(fake.handle),
                        sleep=_no_sleep, status_map={"cancelled": "failed"})
    result = poll(source, Known(), full=True)
    assert by_id(result)["1"].status == "failed" and not result.unknown_statuses


def test_one_bad_item_is_left_out_and_the_poll_succeeds() -> None:
    """A job with a garbage id is counted and left out; the list is then not complete."""
    fake = FakeOrdo()
    fake.add(1, "running")
    fake.add(2, "completed")
    listing = [fake.jobs[1], fake.jobs[2], {"id": "x" * 70_000, "status": "running"}]
    fake.override["/jobs"] = httpx.Response(200, json=listing)
    result = poll(make_source(fake), Known(), full=True)
    assert sorted(by_id(result)) == ["1", "2"]
    assert result.notes == {"bad_id": 1}
    assert not result.complete  # the left-out job must not read as vanished


def test_a_70k_digit_job_id_fails_only_that_item() -> None:
    """An id Python cannot even convert is counted as bad_id; the other jobs are kept."""
    fake = FakeOrdo()
    fake.add(1, "completed")
    good = json.dumps([fake.jobs[1]])
    text = good[:-1] + ', {"id": ' + "7" * 70_000 + ', "status": "running"}]'
    fake.override["/jobs"] = httpx.Response(200, text=text)
    result = poll(make_source(fake), Known(), full=True)
    assert [job.job_id for job in result.jobs] == ["1"] and result.notes == {"bad_id": 1}


def test_unknown_status_jobs_feed_no_stuck_job_signal() -> None:
    """An `unknown` job is counted in asyncjob_jobs but not in oldest-active age or progress."""
    from exporter.state.tracker import OrgTracker, TrackerSettings

    fake = FakeOrdo()
    fake.add(1, "cancelled")
    fake.add(2, "running")
    result = poll(make_source(fake), Known(), full=True)
    tracker = OrgTracker("ordo-lidar", "lidar", TrackerSettings())
    tracker.apply(result, 1_900_000_000.0)
    snap = tracker.snapshot(1_900_000_000.0)
    assert snap.jobs[("lidar-dem", "unknown")] == 1
    assert {status for _, status in snap.oldest_active} == {"running"}
    assert [job_id for _, job_id in snap.progress] == ["2"]
