"""OrdoSource against a fake Ordo shaped like the reference doc (routes, auth, batch rules)."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from structlog.testing import capture_logs

from exporter.sources.base import (
    ClientSettings,
    KnownJob,
    OrgTarget,
    PollError,
)
from exporter.sources.ordo import OrdoSource
from tests.fakes_ordo import (
    JOB_ERROR,
    TOKEN,
    FakeOrdo,
    Known,
    _no_sleep,
    by_id,
    iso,
    make_source,
    poll,
    run,
)


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
