"""Generic JSON source: mapping, paging, incremental modes, ETags, auth, rate limits."""

from __future__ import annotations

import base64
import json
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from exporter.sources.base import (
    INVALID_ID,
    INVALID_ITEM,
    PollError,
)
from exporter.sources.json_config import JsonSourceModel
from tests.fakes_json import BASE, Handler, Known, ok, poll, source, spec

SIMPLE = {"jobs": {"path": "/jobs", "items": "items", "id": "id", "status": "state",
                   "type": "kind"},
          "status_map": {"run": "running", "ok": "completed"}}

# ---- GitHub preset ----------------------------------------------------------------------------

RUNS = [
    {"id": 3, "name": "CI", "status": "in_progress", "conclusion": None,
     "created_at": "2026-12-04T11:00:00Z", "run_started_at": "2026-12-04T11:00:05Z",
     "updated_at": "2026-12-04T11:01:00Z", "run_attempt": 1},
    {"id": 2, "name": "Deploy", "status": "completed", "conclusion": "cancelled",
     "created_at": "2026-12-04T10:00:00Z", "run_started_at": "2026-12-04T10:00:00Z",
     "updated_at": "2026-12-04T10:05:00Z", "run_attempt": 2},
    {"id": 1, "name": "CI", "status": "completed", "conclusion": "stale",
     "created_at": "2026-12-04T09:00:00Z", "run_started_at": None,
     "updated_at": "2026-12-04T09:05:00Z", "run_attempt": 1},
]
RUN_JOBS = [
    {"id": 30, "name": "build", "status": "completed", "conclusion": "success", "run_attempt": 1,
     "started_at": "2026-12-04T11:00:10Z", "completed_at": "2026-12-04T11:00:40Z"},
    {"id": 31, "name": "test", "status": "in_progress", "conclusion": None, "run_attempt": 1,
     "started_at": "2026-12-04T11:00:41Z", "completed_at": None},
    {"id": 32, "name": "gate", "status": "waiting", "conclusion": None, "run_attempt": 1,
     "started_at": None, "completed_at": None},
]


def github(requests: list[httpx.Request]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/repos/o/r/actions/runs":
            if request.headers.get("If-None-Match") == '"runs1"':
                return httpx.Response(304, headers={"X-RateLimit-Remaining": "4999"})
            return ok({"total_count": 3, "workflow_runs": RUNS}, ETag='"runs1"',
                      **{"X-RateLimit-Remaining": "4998"})
        if request.url.path == "/repos/o/r/actions/runs/3/attempts/1/jobs":
            return ok({"total_count": 3, "jobs": RUN_JOBS})
        if request.url.path == "/repos/o/r/actions/runs/1/attempts/1/jobs":
            return ok({"total_count": 0, "jobs": []})
        return httpx.Response(404, json={"message": "Not Found"})

    return handle


def test_github_preset_maps_runs_statuses_steps_and_progress() -> None:
    requests: list[httpx.Request] = []
    src = source(spec(preset="github-actions", auth={"token": "ghp"}), github(requests))
    result = poll(src)
    jobs = {j.job_id: j for j in result.jobs}
    assert {k: (j.job_type, j.status) for k, j in jobs.items()} == {  # (run id, attempt)
        "3#1": ("CI", "running"), "2#2": ("Deploy", "cancelled"), "1#1": ("CI", "unknown")}
    assert result.unknown_statuses == ("stale",)
    assert jobs["3#1"].started_at == 1796382005.0 and jobs["3#1"].finished_at is None
    assert jobs["2#2"].finished_at == 1796378700.0  # updated_at of a completed run
    steps = {s.step_id: (s.step_type, s.status, s.attempt) for s in jobs["3#1"].steps or ()}
    assert steps == {"30": ("build", "success", 1), "31": ("test", "running", 1),
                     "32": ("gate", "blocked", 1)}
    assert jobs["3#1"].progress == pytest.approx(1 / 3)  # share of terminal steps
    assert jobs["2#2"].steps is None  # finished history at first sync: no steps request
    first = requests[0]
    assert first.headers["Authorization"] == "Bearer ghp"
    assert first.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert first.url.params["exclude_pull_requests"] == "true"
    # steps of the running run and of the unknown one (re-checked on full polls only)
    assert [r.url.path for r in requests] == ["/repos/o/r/actions/runs",
                                             "/repos/o/r/actions/runs/3/attempts/1/jobs",
                                             "/repos/o/r/actions/runs/1/attempts/1/jobs"]
    assert src.stats.view().rate_limit_remaining == 4998


def test_github_etag_304_reuses_the_last_answer_and_counts_as_304() -> None:
    requests: list[httpx.Request] = []
    src = source(spec(preset="github-actions", auth={"token": "ghp"}), github(requests))
    poll(src)
    known = Known({"3#1": ("running", False), "2#2": ("cancelled", True),
                   "1#1": ("unknown", False)})
    again = poll(src, known, full=False)
    lists = [r for r in requests if r.url.path == "/repos/o/r/actions/runs"]
    assert "If-None-Match" not in lists[0].headers
    assert lists[1].headers["If-None-Match"] == '"runs1"'
    assert {j.job_id for j in again.jobs} >= {"3#1", "2#2"}
    assert src.stats.view().requests[("/repos/{org}/actions/runs", "304")] == 1
    assert src.stats.view().rate_limit_remaining == 4999


def test_newest_first_stops_at_a_known_job_and_rechecks_unlisted_active_ones() -> None:
    pages = {1: [{"id": 9, "s": "run"}], 2: [{"id": 8, "s": "ok"}], 3: [{"id": 7, "s": "ok"}]}
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/jobs/5":
            return httpx.Response(404, json={"message": "gone"})
        if request.url.path == "/jobs/4":
            return ok({"id": 4, "s": "ok"})
        page = int(request.url.params["page"])
        return ok(pages.get(page, []))

    model = spec(jobs={"path": "/jobs", "id": "id", "status": "s", "detail_path": "/jobs/{job_id}",
                       "paging": {"style": "page", "page_size": 1},
                       "incremental": {"mode": "newest_first"}},
                 status_map={"run": "running", "ok": "completed"})
    known = Known({"8": ("completed", True), "4": ("running", False), "5": ("running", False)})
    result = poll(source(model, handle), known, full=False)
    assert [u for u in seen if "/jobs?" in u] == [f"{BASE}/jobs?page=1&per_page=1",
                                                 f"{BASE}/jobs?page=2&per_page=1"]
    assert not result.complete
    assert result.gone == ("5",)
    assert {j.job_id: j.status for j in result.jobs} == {"9": "running", "8": "completed",
                                                         "4": "completed"}


# ---- paging -----------------------------------------------------------------------------------

def offset_api(items: list[int], total: int, limit_cap: int = 1000) -> tuple[Handler, list[str]]:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.query.decode())
        off = int(request.url.params["offset"])
        lim = min(int(request.url.params["limit"]), limit_cap)
        chunk = [{"id": i, "state": "ok"} for i in items[off:off + lim]]
        return ok({"items": chunk, "total_entries": total})

    return handle, calls


def offset_spec(page_size: int, max_pages: int = 10) -> JsonSourceModel:
    paging = {"style": "offset", "size_param": "limit", "page_size": page_size,
              "total": "total_entries", "max_pages": max_pages}
    return spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "paging": paging}})


def test_offset_paging_stops_at_the_api_total_even_when_the_server_caps_limit() -> None:
    handle, calls = offset_api(list(range(7)), 7, limit_cap=3)
    result = poll(source(offset_spec(100), handle))
    assert sorted(int(j.job_id) for j in result.jobs) == list(range(7))
    assert calls == ["offset=0&limit=100", "offset=3&limit=100", "offset=6&limit=100"]
    assert result.complete


def test_offset_paging_with_a_lying_total_is_incomplete() -> None:
    handle, _ = offset_api(list(range(5)), 3)  # says 3, sends 5 on the first page
    assert not poll(source(offset_spec(10), handle)).complete


def test_page_cap_marks_the_list_incomplete() -> None:
    handle, calls = offset_api(list(range(50)), 50)
    result = poll(source(offset_spec(5, max_pages=2), handle))
    assert len(calls) == 2 and len(result.jobs) == 10 and not result.complete


def test_page_style_stops_on_a_short_page() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params["page"])
        n = 2 if request.url.params["page"] == "1" else 1
        return ok({"items": [{"id": f"{calls[-1]}-{i}", "state": "ok"} for i in range(n)]})

    model = spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "paging": {
        "style": "page", "size_param": "per_page", "page_size": 2}}})
    assert len(poll(source(model, handle)).jobs) == 3 and calls == ["1", "2"]


def test_link_paging_follows_next_on_the_same_host_only() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("p") == "2":
            link = '<http://evil.test/jobs?p=3>; rel="next"'
            return ok({"items": [{"id": 2, "state": "ok"}]}, Link=link)
        return ok({"items": [{"id": 1, "state": "ok"}]}, Link=f'<{BASE}/jobs?p=2>; rel="next"')

    model = spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "paging": {"style": "link"}}})
    result = poll(source(model, handle))
    assert sorted(j.job_id for j in result.jobs) == ["1", "2"]


@pytest.mark.parametrize("param", ["after", None])
def test_cursor_paging_by_token_or_next_url(param: str | None) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        second = request.url.params.get("after") == "c2" or request.url.path == "/next"
        nxt = None if second else ("c2" if param else f"{BASE}/next")
        return ok({"items": [{"id": 2 if second else 1, "state": "ok"}], "next": nxt})

    paging: dict[str, Any] = {"style": "cursor", "cursor": "next"}
    if param:
        paging["cursor_param"] = param
    model = spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "paging": paging}})
    assert sorted(j.job_id for j in poll(source(model, handle)).jobs) == ["1", "2"]


# ---- incremental since ------------------------------------------------------------------------

def test_since_mode_sends_the_server_date_minus_overlap_and_is_not_complete() -> None:
    seen: list[httpx.QueryParams] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params)
        return ok({"items": [{"id": 1, "state": "run"}]})

    model = spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "incremental": {
        "mode": "since", "since_param": "updated_at_gte", "until_param": "updated_at_lte",
        "overlap": "1m"}}})
    now = [1796385600.0 - 3600]  # our clock runs an hour behind the server's Date
    src = source(model, handle, clock=lambda: now[0])
    assert poll(src).complete and "updated_at_gte" not in seen[0]
    now[0] += 30
    result = poll(src, Known({"1": ("running", False)}), full=False)
    assert seen[1]["updated_at_gte"] == "2026-12-04T11:59:00Z"  # server Date - overlap
    assert seen[1]["updated_at_lte"] == "2026-12-04T12:00:30Z"  # server clock now
    assert not result.complete  # a filtered list says nothing about jobs it left out
    poll(src, Known({"1": ("running", False)}), full=False)
    assert seen[2]["updated_at_gte"] == "2026-12-04T11:59:30Z"  # last upper bound - overlap



def test_a_late_list_answer_does_not_pull_the_next_window_back() -> None:
    """A list read 5 s after its Date was written must not make the next lists re-read 5 s."""
    seen: list[httpx.QueryParams] = []
    now = [1796385600.0]  # the server's clock and ours agree

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params)
        answer = ok({"items": []}, Date=formatdate(now[0], usegmt=True))
        if len(seen) == 3:
            now[0] += 5  # this answer arrives late
        return answer

    model = spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "incremental": {
        "mode": "since", "since_param": "updated_at_gte", "until_param": "updated_at_lte",
        "overlap": "1m"}}})
    src = source(model, handle, clock=lambda: now[0])
    poll(src)
    for _ in range(4):
        now[0] += 30
        poll(src, Known(), full=False)
    uppers = [p["updated_at_lte"] for p in seen[1:]]
    assert uppers == ["2026-12-04T12:00:30Z", "2026-12-04T12:01:00Z", "2026-12-04T12:01:35Z",
                      "2026-12-04T12:02:05Z"]  # our clock plus the best offset: 0, not -5
    assert [p["updated_at_gte"] for p in seen[2:]] == [
        "2026-12-04T11:59:30Z", "2026-12-04T12:00:00Z", "2026-12-04T12:00:35Z"]

# ---- mapping errors ---------------------------------------------------------------------------

def test_items_expression_matching_nothing_is_a_schema_poll_error() -> None:
    src = source(spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "items": "runs"}}),
                 lambda r: ok({"items": []}))
    with pytest.raises(PollError) as info:
        poll(src)
    assert info.value.reason == "schema" and "'runs' matched nothing" in str(info.value)


def test_bad_items_are_left_out_counted_and_make_the_list_incomplete() -> None:
    items = [{"id": {"x": 1}, "state": "ok"}, "junk", {"id": 3, "state": "nope", "kind": "a"},
             {"id": 4, "state": "ok", "kind": 7}]
    model = spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "type": "join('-', [kind])"}})
    result = poll(source(model, lambda r: ok({"items": items})))
    assert [j.job_id for j in result.jobs] == ["3"]  # join on a number fails item 4 only
    assert result.notes == {INVALID_ID: 1, INVALID_ITEM: 2}
    assert result.unknown_statuses == ("nope",) and not result.complete


def test_epoch_seconds_milliseconds_and_iso_times() -> None:
    item = {"id": 1, "state": "ok", "c": 1796385600, "s": 1796385601500,
            "f": "2026-12-04T13:00:02+01:00"}
    model = spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "created_at": "c", "started_at": "s",
                                      "finished_at": "f"}})
    job, = poll(source(model, lambda r: ok({"items": [item]}))).jobs
    assert (job.created_at, job.started_at, job.finished_at) == (
        1796385600.0, 1796385601.5, 1796385602.0)


# ---- auth and rate limits ---------------------------------------------------------------------

def capture(headers: list[httpx.Headers]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers)
        return ok({"items": []})

    return handle


def test_named_header_and_basic_auth() -> None:
    got: list[httpx.Headers] = []
    poll(source(spec(**SIMPLE, auth={"token": "glpat", "header": "PRIVATE-TOKEN", "scheme": ""}),
                capture(got)))
    poll(source(spec(**SIMPLE, auth={"username": "u", "password": "p"}), capture(got),
                password="p"))
    assert got[0]["PRIVATE-TOKEN"] == "glpat" and "Authorization" not in got[0]
    assert got[1]["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


def test_airflow_jwt_login_and_relogin_on_401() -> None:
    logins: list[Any] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            logins.append(json.loads(request.content))
            return httpx.Response(201, json={"access_token": f"jwt{len(logins)}"})
        if request.headers["Authorization"] == "Bearer jwt1" and len(logins) == 1 and logins:
            if getattr(handle, "expired", False):
                return httpx.Response(401, json={"detail": "expired"})
        return ok({"items": []})

    model = spec(**SIMPLE, auth={"username": "u", "password": "p", "login": "airflow-jwt"})
    src = source(model, handle, password="p")
    poll(src)
    handle.expired = True  # type: ignore[attr-defined]
    poll(src)
    assert logins == [{"username": "u", "password": "p"}] * 2


def test_spent_budget_pauses_every_request_until_reset() -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return ok({"items": []}, **{"RateLimit-Remaining": "0", "RateLimit-Reset": "3000"})

    src = source(spec(**SIMPLE), handle)
    poll(src)
    assert src.stats.view().rate_limit_remaining == 0
    with pytest.raises(PollError) as info:
        poll(src)
    assert info.value.reason == "rate_limited" and calls == [1]


def test_airflow_v2_by_one_key_with_jwt_and_offset_paging() -> None:
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode().split("?")[0])
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "jwt"})
        assert request.headers["Authorization"] == "Bearer jwt"
        if request.url.path.endswith("/taskInstances"):
            return ok({"task_instances": [{"task_id": "t", "map_index": -1, "state": None,
                                           "try_number": 0}], "total_entries": 1})
        run = {"dag_id": "etl", "dag_run_id": "m/1", "state": "running",
               "start_date": "2026-12-04T11:00:00+00:00", "end_date": None}
        return ok({"dag_runs": [run], "total_entries": 1})

    model = spec(preset="airflow", api="v2",
                 auth={"username": "u", "password": "p", "login": "airflow-jwt"})
    job, = poll(source(model, handle)).jobs
    assert paths == ["/auth/token", "/api/v2/dags/~/dagRuns",
                     "/api/v2/dags/etl/dagRuns/m%2F1/taskInstances"]
    assert (job.job_id, job.job_type, job.status) == ("etl/m/1", "etl", "running")
    assert job.steps is not None and job.steps[0].status == "pending" and job.progress == 0


def test_github_403_with_a_spent_budget_is_rate_limited_not_auth() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}
        if request.headers.get("Authorization") == "Bearer bad":
            return httpx.Response(403, json={"message": "Resource not accessible"})
        return httpx.Response(403, json={"message": "API rate limit exceeded"}, headers=spent)

    for token, reason in (("ghp", "rate_limited"), ("bad", "auth")):
        src = source(spec(preset="github-actions", auth={"token": token}), handle)
        with pytest.raises(PollError) as info:
            poll(src)
        assert info.value.reason == reason


def test_remembered_etag_answers_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import exporter.sources.json_source as js

    monkeypatch.setattr(js, "MAX_ETAG_BYTES", 3000)
    sent: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("If-None-Match"))
        page = request.url.params["page"]
        items = [{"id": f"{page}-{i}", "state": "ok", "pad": "x" * 100} for i in range(8)]
        return ok({"items": items}, ETag=f'"{page}"')

    model = spec(**{**SIMPLE, "jobs": {**SIMPLE["jobs"], "etag": True, "paging": {
        "style": "page", "page_size": 8, "max_pages": 4}}})
    src = source(model, handle)
    poll(src)
    assert src._etag_bytes <= 3000 and len(src._etags) == 2  # ~1.2 KB each: the oldest go
    assert [tag for tag, _, _ in src._etags.values()] == ['"3"', '"4"']
