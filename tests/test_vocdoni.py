"""Tests of the Vocdoni source against a fake API shaped like the reference doc."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import structlog

from exporter.sources.base import (
    ClientSettings,
    KnownJob,
    OrgTarget,
    PollError,
)
from exporter.sources.vocdoni import VocdoniSource
from tests.fakes import FakeClock
from tests.fakes_vocdoni import (
    ORG,
    PII,
    T0,
    TARGET,
    FakeVocdoni,
    Known,
    by_id,
    err,
    login_source,
    make_source,
    poll,
    run,
)

# --- probing -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("api", "answer", "expected"),
    [
        ("v2", None, "v2"),
        ("v1", None, "v1"),
        ("v2", err(401, 40001, "authentication required"), "v2"),
        ("v2", err(400, 40010, "invalid URL parameter"), "v2"),
    ],
)
def test_probe_detects_generation(api: str, answer: httpx.Response | None, expected: str) -> None:
    fake = FakeVocdoni(api)
    fake.add(2)

    async def handler(request: httpx.Request) -> httpx.Response:
        if answer is not None and request.url.params.get("limit") == "1":
            fake.log.append(("GET", "probe"))
            return answer
        return await fake(request)

    src = VocdoniSource("voc", ClientSettings(base_url="http://vocdoni.test"), token="static-token",
                        transport=httpx.MockTransport(handler))
    with structlog.testing.capture_logs() as logs:
        run(src.poll(TARGET, Known(), True))
        run(src.poll(TARGET, Known(), True))
    assert src.detected_api == expected
    detected = [e for e in logs if e["event"] == "api_detected"]
    assert len(detected) == 1 and detected[0]["api"] == expected


def test_probe_rejects_html_200() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login portal</html>")

    src = VocdoniSource("voc", ClientSettings(base_url="http://x"), token="t",
                        transport=httpx.MockTransport(handler))
    with pytest.raises(PollError) as info:
        run(src.poll(TARGET, Known(), True))
    assert info.value.reason == "decode"


def test_reprobe_when_v2_route_disappears() -> None:
    fake = FakeVocdoni("v2")
    fake.add(3)
    src = make_source(fake)
    known = Known()
    poll(src, known, True)
    assert src.detected_api == "v2"
    fake.api = "v1"
    fake.jobs = []
    fake.add(2)
    result = poll(src, known, True)
    assert src.detected_api == "v1"
    assert len(result.jobs) == 2


NGINX_404 = httpx.Response(404, text="<html><center><h1>404 Not Found</h1></center></html>",
                           headers={"Content-Type": "text/html"})


def flaky_proxy(fake: FakeVocdoni, html_404s: list[bool]) -> Any:
    """Answer an HTML 404 for list routes while html_404s[0] is True (a proxy hiccup)."""
    async def handler(request: httpx.Request) -> httpx.Response:
        if html_404s[0] and request.url.path.endswith("/jobs"):
            fake.log.append(("GET", "html404"))
            return NGINX_404
        return await fake(request)
    return handler


def test_transient_html_404_on_the_probe_does_not_pin_v1() -> None:
    """A proxy page on every list route is no evidence: the poll fails and detection retries."""
    fake = FakeVocdoni("v2")
    fake.add(2)
    html = [True]
    src = make_source(fake)
    src._client._client._transport = httpx.MockTransport(flaky_proxy(fake, html))
    with pytest.raises(PollError) as info:
        run(src.poll(TARGET, Known(), True))
    assert info.value.reason == "http_4xx" and src.detected_api is None
    html[0] = False
    result = poll(src, Known(), True)
    assert src.detected_api == "v2" and len(result.jobs) == 2


def test_transient_html_404_on_the_v2_list_route_redetects_v2() -> None:
    """Once v2 was chosen, a proxy 404 on GET /jobs re-detects; v2 still answers JSON: v2."""
    fake = FakeVocdoni("v2")
    fake.add(2)
    src = make_source(fake)
    known = Known()
    poll(src, known, True)
    html = [True]
    src._client._client._transport = httpx.MockTransport(flaky_proxy(fake, html))
    with pytest.raises(PollError):
        run(src.poll(TARGET, known, True))
    assert src.detected_api != "v1"
    html[0] = False
    result = poll(src, known, True)
    assert src.detected_api == "v2" and len(result.jobs) == 2


def test_v1_list_route_html_404_redetects_and_finds_v2() -> None:
    """A source pinned to v1 (upgrade since) detects again on a non-JSON 404 of the v1 route."""
    fake = FakeVocdoni("v1")
    fake.add(1)
    src = make_source(fake)
    known = Known()
    poll(src, known, True)
    assert src.detected_api == "v1"
    fake.api = "v2"
    fake.jobs = []
    fake.add(3)
    result = poll(src, Known(), True)
    assert src.detected_api == "v2" and len(result.jobs) == 3


def test_unknown_status_job_is_not_rechecked_every_poll() -> None:
    """A known job in an unmapped status is re-checked on full polls only."""
    fake = FakeVocdoni()
    fake.add(300)
    src, known = synced(fake)
    odd = fake.jobs[0]["jobId"]  # oldest: on the last page, never read incrementally
    fake.jobs[0]["status"] = "archived"
    known.jobs[odd] = KnownJob(odd, "publish_process", "unknown", False)
    before = fake.count("/jobs/")
    for _ in range(3):
        run(src.poll(TARGET, known, False))
    assert fake.count("/jobs/") == before  # no GET /jobs/{id} for it
    result = run(src.poll(TARGET, known, True))
    assert by_id(result)[odd].status == "unknown" and "archived" in result.unknown_statuses


def test_status_map_maps_vocdoni_statuses() -> None:
    """status_map applies before the built-in statuses (lowercased keys)."""
    fake = FakeVocdoni()
    fake.add(1, status="Cancelled")
    result = poll(make_source(fake, status_map={"cancelled": "cancelled"}), Known(), True)
    assert result.jobs[0].status == "cancelled" and not result.unknown_statuses


def test_fixed_api_does_not_probe() -> None:
    fake = FakeVocdoni("v1")
    fake.add(1)
    src = make_source(fake, api="v1")
    poll(src, Known(), True)
    assert fake.count("/jobs") == 1  # only GET /jobs/{id} for the status, no probe
    assert fake.count(f"/organizations/{ORG}/jobs") == 1


# --- v2 listing ------------------------------------------------------------------------------

def test_v2_full_list_reads_every_page_and_normalizes() -> None:
    fake = FakeVocdoni()
    fake.add(248)
    pending = fake.add(1, type="org_members", status="pending",
                       result={"added": 400, "progress": 40, "total": 1000})[0]
    failed = fake.add(1, status="failed", errors=[PII])[0]
    src = make_source(fake)
    result = poll(src, Known(), True)
    assert result.complete
    assert len(result.jobs) == 250
    assert fake.count("/jobs") == 1 + 3  # probe + 3 pages
    jobs = by_id(result)
    assert jobs[pending].status == "pending"
    assert jobs[pending].progress == pytest.approx(0.4)
    assert jobs[pending].items_added == 400 and jobs[pending].items_errored == 0
    assert jobs[failed].status == "failed"
    assert jobs[failed].created_at is None
    requests = src.stats.view().requests
    assert requests[("/jobs", "200")] == 4
    assert all(endpoint in ("/jobs",) for endpoint, _ in requests)


def test_v2_dedupes_jobs_shifted_by_new_arrivals_while_paging() -> None:
    fake = FakeVocdoni()
    old = set(fake.add(250))
    fake.hook = lambda page: fake.add(7) if page == 1 else None
    src = make_source(fake)
    result = poll(src, Known(), True)
    ids = [o.job_id for o in result.jobs]
    assert len(ids) == len(set(ids))
    assert old <= set(ids)  # nothing skipped
    # Repeated items mean the list moved while paging: not proof that no job was skipped, so
    # the list is not complete and no missing job may be dropped on its word.
    assert not result.complete


def test_v2_omitempty_counts_mean_zero() -> None:
    fake = FakeVocdoni()
    bare = fake.add(1, type="org_members", status="pending")[0]
    half = fake.add(1, type="org_members", status="pending", result={"total": 10})[0]
    some = fake.add(1, type="org_members", status="completed",
                    result={"added": 4, "total": 10, "progress": 40}, errors=[PII, PII])[0]
    votes = fake.add(1, type="relay_votes", status="pending", result={"added": 3, "total": 4})[0]
    result = poll(make_source(fake), Known(), True)
    jobs = by_id(result)
    assert jobs[bare].progress is None and jobs[bare].items_added == 0
    assert jobs[bare].items_errored == 0
    assert jobs[half].progress == 0.0 and jobs[half].items_added == 0
    assert jobs[some].items_added == 4 and jobs[some].items_errored == 2
    assert jobs[votes].progress == pytest.approx(0.75) and jobs[votes].items_added is None
    assert result.notes == {}


def test_unknown_status_is_reported() -> None:
    fake = FakeVocdoni()
    weird = fake.add(1, status="cancelled")[0]
    result = poll(make_source(fake), Known(), True)
    assert by_id(result)[weird].status == "unknown"
    assert result.unknown_statuses == ("cancelled",)


def test_invalid_numbers_are_dropped_and_counted() -> None:
    fake = FakeVocdoni()
    neg = fake.add(1, type="org_members", status="pending", result={"added": -5, "total": 10})[0]
    huge = fake.add(1, type="org_members", status="pending", result={"added": 1, "total": 2**40})[0]
    result = poll(make_source(fake), Known(), True)
    jobs = by_id(result)
    assert jobs[neg].progress is None and jobs[neg].items_added is None
    assert jobs[huge].progress is None
    assert result.notes == {"bad_number": 2}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda body: body["jobs"][0].pop("jobId"), "jobId"),
        (lambda body: body["jobs"][0].update(type=7), "type"),
        (lambda body: body["jobs"][0].update(status=None), "status"),
        (lambda body: body["jobs"][0].update(errors=PII), "errors"),
        (lambda body: body["jobs"][0].update(result={"added": PII}), "added"),
        (lambda body: body.pop("pagination"), "pagination"),
        (lambda body: body["pagination"].update(totalItems="many"), "totalItems"),
        (lambda body: body.update(jobs={"a": 1}), "jobs"),
    ],
)
def test_schema_errors_name_the_field_not_the_value(mutate: Any, field: str) -> None:
    fake = FakeVocdoni()
    fake.add(1, type="org_members", errors=[])

    async def handler(request: httpx.Request) -> httpx.Response:
        resp = await fake(request)
        if request.url.path == "/jobs" and request.url.params.get("page"):
            body = json.loads(resp.text)
            mutate(body)
            return httpx.Response(200, json=body)
        return resp

    src = make_source(fake)
    src._client._client._transport = httpx.MockTransport(handler)
    with pytest.raises(PollError) as info:
        run(src.poll(TARGET, Known(), True))
    assert info.value.reason == "schema"
    assert field in str(info.value)
    assert "alice" not in str(info.value)


def test_error_strings_never_leave_the_source() -> None:
    fake = FakeVocdoni()
    fake.add(3, type="org_members", status="completed", errors=[PII],
             result={"added": 1, "total": 2})
    fake.add(1, status="failed", errors=[PII])
    with structlog.testing.capture_logs() as logs:
        result = poll(make_source(fake), Known(), True)
    assert "alice" not in repr(result)
    assert "alice" not in repr(logs)


def test_job_types_use_one_stream_per_type() -> None:
    fake = FakeVocdoni()
    fake.add(5, type="relay_vote")
    imports = set(fake.add(2, type="org_members"))
    fake.add(3, type="publish_process")
    target = OrgTarget("voc", "main", ORG, job_types=("org_members", "publish_process"))
    result = poll(make_source(fake), Known(), True, target)
    assert {o.job_type for o in result.jobs} == {"org_members", "publish_process"}
    assert imports <= set(by_id(result))
    assert len(result.jobs) == 5
    assert fake.count("/jobs") == 3  # probe + one list per type


# --- v2 incremental --------------------------------------------------------------------------

def synced(fake: FakeVocdoni, **kw: Any) -> tuple[VocdoniSource, Known]:
    src = make_source(fake, **kw)
    known = Known()
    first = poll(src, known, True)
    assert first.complete
    return src, known


def test_incremental_steady_state_costs_one_request() -> None:
    fake = FakeVocdoni()
    fake.add(10_000)
    src, known = synced(fake)
    fresh = set(fake.add(3, status="pending"))
    before = src.stats.total()
    result = poll(src, known, False)
    assert src.stats.total() - before == 1
    assert not result.complete
    assert fresh <= set(by_id(result))
    # and again with nothing new
    before = src.stats.total()
    poll(src, known, False)
    assert src.stats.total() - before == 1


def test_incremental_reads_until_new_jobs_are_covered() -> None:
    fake = FakeVocdoni()
    fake.add(500)
    src, known = synced(fake)
    fresh = set(fake.add(250))
    before = src.stats.total()
    result = poll(src, known, False)
    assert src.stats.total() - before == 3  # 250 new: the old newest job sits on page 3
    assert fresh <= set(by_id(result))


def stuck_fixture(spread: list[int]) -> tuple[FakeVocdoni, list[str]]:
    """10,000 jobs with pending ones at the given indices counted from the oldest."""
    fake = FakeVocdoni()
    fake.add(10_000)
    stuck = []
    for index in spread:
        fake.jobs[index]["status"] = "pending"
        stuck.append(fake.jobs[index]["jobId"])
    return fake, stuck


@pytest.mark.parametrize(
    ("spread", "extra", "page_reads"),
    [
        ([100, 2000, 4000, 6000, 8000], 5, 0),  # five pages: one GET /jobs/{id} each
        ([10, 20, 30, 40, 50], 1, 1),  # one deep page: read it
        ([10, 20, 30, 5000, 6000], 3, 1),  # one page of three plus two lone jobs
    ],
)
def test_incremental_rechecks_stuck_jobs_cheaply(
    spread: list[int], extra: int, page_reads: int
) -> None:
    fake, stuck = stuck_fixture(spread)
    src, known = synced(fake)
    assert known.active_ids() == set(stuck)
    fake.add(3)
    fake.find(stuck[0])["status"] = "failed"  # type: ignore[index]
    pages_before = fake.count("/jobs") - fake.count("/jobs/")
    before = src.stats.total()
    result = poll(src, known, False)
    assert src.stats.total() - before == 1 + extra
    assert fake.count("/jobs") - fake.count("/jobs/") - pages_before == 1 + page_reads
    jobs = by_id(result)
    assert set(stuck) <= set(jobs)
    assert jobs[stuck[0]].status == "failed"
    assert known.active_ids() == set(stuck[1:])


def test_incremental_marks_deleted_jobs_gone() -> None:
    fake, stuck = stuck_fixture([100, 5000])
    src, known = synced(fake)
    fake.add(2)
    lone = fake.find(stuck[1])
    lone["jobId"] = "f" * 32  # type: ignore[index]  # the old id now answers 404/40026
    result = poll(src, known, False)
    assert result.gone == (stuck[1],)
    assert stuck[1] not in known.jobs


def test_shrunk_total_falls_back_to_full_list() -> None:
    fake = FakeVocdoni()
    fake.add(300)
    src, known = synced(fake)
    del fake.jobs[10:20]
    before = src.stats.total()
    result = poll(src, known, False)
    assert result.complete
    assert src.stats.total() - before == 3
    assert len(known) == 290


def test_moved_anchor_falls_back_to_full_list() -> None:
    fake = FakeVocdoni()
    fake.add(300)
    src, known = synced(fake)
    del fake.jobs[10:13]  # deletions hidden by as many new jobs
    fake.add(3)
    result = poll(src, known, False)
    assert result.complete
    assert len(known) == 300


def test_active_job_without_position_is_checked_by_id() -> None:
    fake = FakeVocdoni()
    fake.add(500)
    src, known = synced(fake)
    # the tracker knows an active job the source never listed (state restored after a restart)
    orphan = fake.jobs[0]["jobId"]
    known.jobs[orphan] = KnownJob(orphan, "publish_process", "pending", False)
    src2 = make_source(fake)
    src2._streams = dict(src._streams)
    src2.detected_api = "v2"
    before = fake.count("/jobs/")
    result = run(src2.poll(TARGET, known, False))
    assert fake.count("/jobs/") - before == 1
    assert src2.stats.total() == 2  # page 1 and the orphan
    assert by_id(result)[orphan].status == "completed"


# --- v1 (v2.9.0) ---------------------------------------------------------------------------

def v1_fixture() -> tuple[FakeVocdoni, dict[str, str]]:
    fake = FakeVocdoni("v1")
    ids = {
        "import_done": fake.add(1, type="org_members", total=1000, added=1000, errors=[PII])[0],
        "tx_failed": fake.add(1, type="publish_process", errors=None)[0],
        "tx_pending": fake.add(1, type="relay_vote", completed=False,
                               completedAt="0001-01-01T00:00:00Z")[0],
        "import_running": fake.add(1, type="org_members", total=0, added=0, completed=False,
                                   completedAt="0001-01-01T00:00:00Z")[0],
        "import_evicted": fake.add(1, type="org_members", total=0, added=0, completed=False,
                                   completedAt="0001-01-01T00:00:00Z")[0],
    }
    fake.v1_status[ids["tx_failed"]] = "failed"
    fake.members[ids["import_running"]] = {"added": 150, "errors": [PII], "progress": 75,
                                           "total": 200}
    return fake, ids


def test_v1_list_statuses_progress_and_timestamps() -> None:
    fake, ids = v1_fixture()
    src = make_source(fake)
    with structlog.testing.capture_logs() as logs:
        result = poll(src, Known(), True)
    assert src.detected_api == "v1"
    assert result.complete
    jobs = by_id(result)
    done = jobs[ids["import_done"]]
    assert done.status == "completed"
    assert done.items_added == 1000 and done.items_errored == 1
    assert done.created_at == pytest.approx(1782900000.123)
    assert done.finished_at == pytest.approx(1782900012.456)
    assert done.duration_s == pytest.approx(12.333)
    assert jobs[ids["tx_failed"]].status == "failed"
    assert jobs[ids["tx_pending"]].status == "pending"
    assert jobs[ids["tx_pending"]].finished_at is None
    running = jobs[ids["import_running"]]
    assert running.status == "pending" and running.progress == pytest.approx(0.75)
    assert running.items_added == 150 and running.items_errored == 1
    evicted = jobs[ids["import_evicted"]]
    assert evicted.status == "pending" and evicted.progress is None
    # one status lookup (the finished tx job), members/job for the two running imports
    assert fake.count("/jobs/") == 1
    assert fake.count(f"/organizations/{ORG}/members/job/") == 2
    assert "alice" not in repr(result) and "alice" not in repr(logs)
    assert ("/organizations/{address}/members/job/{id}", "404") in src.stats.requests


def test_v1_status_resolved_once() -> None:
    fake, _ = v1_fixture()
    src = make_source(fake)
    known = Known()
    poll(src, known, True)
    poll(src, known, True)
    poll(src, Known(), True)  # even when the tracker forgot it
    assert fake.count("/jobs/") == 1
    # a fresh source trusts what the tracker already knows as terminal
    other = make_source(fake, api="v1")
    poll(other, known, True)
    assert fake.count("/jobs/") == 1


def test_v1_tx_job_finishing_is_resolved() -> None:
    fake, ids = v1_fixture()
    src = make_source(fake)
    known = Known()
    poll(src, known, True)
    job = fake.find(ids["tx_pending"])
    assert job is not None
    job.update(completed=True, createdAt="2026-07-01T10:05:00Z",
               completedAt="2026-07-01T10:05:03Z")
    fake.v1_status[ids["tx_pending"]] = "completed"
    result = poll(src, known, False)
    obs = by_id(result)[ids["tx_pending"]]
    assert obs.status == "completed"
    assert obs.duration_s == pytest.approx(3.0)


def test_v1_incremental_rechecks_deep_pending_by_page() -> None:
    fake = FakeVocdoni("v1")
    stuck = fake.add(1, type="org_members", total=0, added=0, completed=False,
                     completedAt="0001-01-01T00:00:00Z")[0]
    fake.add(1000)
    fake.members[stuck] = {"added": 1, "errors": None, "progress": 50, "total": 2}
    src, known = synced(fake)
    fake.add(3)
    pages_before = fake.count(f"/organizations/{ORG}/jobs")
    result = poll(src, known, False)
    assert fake.count(f"/organizations/{ORG}/jobs") - pages_before == 2  # page 1 + page 11
    assert by_id(result)[stuck].progress == pytest.approx(0.5)
    assert fake.count("/jobs/") == 1000 + 3  # each finished tx job resolved once, ever


def test_v1_type_filter() -> None:
    fake, ids = v1_fixture()
    imports = OrgTarget("voc", "main", ORG, job_types=("org_members",))
    src = make_source(fake)
    result = poll(src, Known(), True, imports)
    assert {o.job_type for o in result.jobs} == {"org_members"}
    lists = [p for m, p in fake.log if p.endswith("/jobs")]
    assert lists == ["/jobs", f"/organizations/{ORG}/jobs", f"/organizations/{ORG}/jobs"]
    ids_by_type = {j["jobId"]: j["type"] for j in fake.jobs}
    imports = sorted(j for j, t in ids_by_type.items() if t == "org_members")
    assert sorted(o.job_id for o in result.jobs) == imports and len(imports) == 3
    tx = OrgTarget("voc", "main", ORG, job_types=("relay_vote",))
    result = poll(make_source(fake), Known(), True, tx)
    assert [o.job_id for o in result.jobs] == [ids["tx_pending"]]


@pytest.mark.parametrize("created", ["yesterday", "2026-07-01T10:00:00", 7])
def test_v1_bad_or_zoneless_timestamp_fails_only_that_field(created: Any) -> None:
    """A createdAt without a time zone (or not a time) is counted and left out; poll succeeds."""
    fake = FakeVocdoni("v1")
    bad = fake.add(1, createdAt=created)[0]
    good = fake.add(1)[0]
    result = run(make_source(fake).poll(TARGET, Known(), True))
    jobs = by_id(result)
    assert jobs[bad].created_at is None and jobs[bad].status == "completed"
    assert jobs[good].created_at is not None
    assert result.notes == {"bad_timestamp": 1}


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ({"result": {"added": 1.5, "total": 10}}, "bad_number"),
        ({"result": {"added": float("nan"), "total": 10}}, "bad_number"),
        ({"result": {"added": 1e400, "total": 10}}, "bad_number"),
        ({"jobId": "f" * 70_000}, "bad_id"),
        ({"status": 7}, "bad_item"),
        ({"result": "<nested too deep>"}, "bad_item"),
    ],
)
def test_v2_one_bad_item_fails_only_that_item(bad: dict[str, Any], what: str) -> None:
    """A bad count is dropped (the job stays); a bad identity or shape drops the item only."""
    fake = FakeVocdoni()
    fake.add(3)
    fake.jobs[1].update(bad)
    result = poll(make_source(fake), Known(), True)
    assert result.notes == {what: 1}
    kept = 3 if what == "bad_number" else 2
    assert len(result.jobs) == kept
    assert result.complete == (kept == 3)


def test_v2_absurd_total_items_is_clamped_and_counted() -> None:
    """totalItems: 1e400 (inf after JSON) is clamped, counted, and the poll succeeds."""
    fake = FakeVocdoni()
    fake.add(2)

    async def handler(request: httpx.Request) -> httpx.Response:
        resp = await fake(request)
        if request.url.path == "/jobs" and request.url.params.get("page"):
            text = resp.text.replace('"totalItems": 2', '"totalItems": 1e400')
            return httpx.Response(200, text=text)
        return resp

    src = VocdoniSource("voc", ClientSettings(base_url="http://vocdoni.test"), token="static-token",
                        transport=httpx.MockTransport(handler))
    result = run(src.poll(TARGET, Known(), True))
    assert len(result.jobs) == 2 and result.notes == {"bad_number": 1}


def test_v2_100k_deep_nesting_in_one_item_fails_only_that_item() -> None:
    """A RecursionError-sized nesting inside one job drops that job, not the poll."""
    fake = FakeVocdoni()
    ids = fake.add(2)
    deep = "[" * 100_000 + "]" * 100_000

    async def handler(request: httpx.Request) -> httpx.Response:
        resp = await fake(request)
        if request.url.path == "/jobs" and request.url.params.get("page"):
            body = json.loads(resp.text)
            body["jobs"][0]["result"] = "DEEP"
            return httpx.Response(200, text=json.dumps(body).replace('"DEEP"', deep))
        return resp

    src = VocdoniSource("voc", ClientSettings(base_url="http://vocdoni.test"), token="static-token",
                        transport=httpx.MockTransport(handler))
    result = run(src.poll(TARGET, Known(), True))
    assert [o.job_id for o in result.jobs] == [ids[0]]
    assert result.notes == {"bad_item": 1}


# --- discovery ---------------------------------------------------------------------------

def test_discover_orgs() -> None:
    fake = FakeVocdoni()
    fake.tokens = set()
    src = login_source(fake)
    assert run(src.discover_orgs()) == [ORG, "0x" + "2" * 40]


def test_rate_limited_list_is_retried_after_retry_after() -> None:
    fake = FakeVocdoni()
    fake.add(1)
    clock = FakeClock(T0)
    answered: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "1" and not answered:
            answered.append(clock.now)
            return httpx.Response(429, text="Server capacity exceeded.",
                                  headers={"Retry-After": "2"})
        if request.url.params.get("page") == "1":
            answered.append(clock.now)
        return await fake(request)

    src = make_source(fake, clock)
    src._client._client._transport = httpx.MockTransport(handler)
    result = poll(src, Known(), True)
    assert len(result.jobs) == 1
    assert answered[1] - answered[0] >= 2
    assert src.stats.view().rate_limited == 1


def test_v1_job_without_position_forces_full_list() -> None:
    fake = FakeVocdoni("v1")
    fake.add(500)
    src, known = synced(fake)
    orphan = fake.jobs[0]["jobId"]
    known.jobs[orphan] = KnownJob(orphan, "publish_process", "pending", False)
    fake.add(1)
    before = fake.count(f"/organizations/{ORG}/jobs")
    result = poll(src, known, False)
    assert result.complete
    assert fake.count(f"/organizations/{ORG}/jobs") - before == 1 + 6  # page 1, then all pages
    assert by_id(result)[orphan].status == "completed"
