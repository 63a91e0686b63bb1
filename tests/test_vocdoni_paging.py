"""Vocdoni paging is checked, not trusted: completeness needs the pages to add up to the total."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from exporter.sources.base import KnownJob, PollError
from tests.fakes_vocdoni import ORG, FakeVocdoni, Known, make_source, poll, run


class LyingVocdoni(FakeVocdoni):
    """The fake Vocdoni API, with one lie chosen by `mode` applied to every list page."""

    def __init__(self, api: str = "v2") -> None:
        super().__init__(api)
        self.mode = "normal"
        self.pages_served = 0

    def list_jobs(self, request: httpx.Request) -> httpx.Response:
        resp = super().list_jobs(request)
        if resp.status_code != 200:
            return resp
        self.pages_served += 1
        body: dict[str, Any] = json.loads(resp.text)
        page = int(request.url.params.get("page", 1))
        limit = int(request.url.params.get("limit", 10))
        rows = list(reversed(self.jobs))
        last = body["pagination"]["lastPage"]
        if self.mode == "repeat" and page == 2:
            body["jobs"] = [rows[limit - 1], *body["jobs"][:-1]]
        elif self.mode == "short" and page == last:
            body["jobs"] = body["jobs"][:-1]
        elif self.mode == "lastpage":
            body["pagination"]["lastPage"] = 1e9
        elif self.mode == "hole" and page == 2:
            body["jobs"] = []
        elif self.mode == "empty":
            body = {"pagination": {"totalItems": 0, "lastPage": 1}, "jobs": []}
        return httpx.Response(200, json=body)


def _source(fake: LyingVocdoni) -> Any:
    return make_source(fake, page_limit=100, api=fake.api)


@pytest.mark.parametrize("mode", ["repeat", "short"])
def test_full_relist_that_does_not_add_up_is_not_complete(mode: str) -> None:
    fake = LyingVocdoni()
    fake.add(250)
    src, known = _source(fake), Known()
    assert poll(src, known, True).complete
    fake.mode = mode
    result = poll(src, known, True)
    assert not result.complete
    assert len({o.job_id for o in result.jobs}) == 249


def test_empty_list_after_a_non_empty_one_is_not_complete() -> None:
    fake = LyingVocdoni()
    fake.add(5)
    src, known = _source(fake), Known()
    poll(src, known, True)
    fake.mode = "empty"  # the list says nothing while every job still answers
    assert not poll(src, known, True).complete
    assert len(known) == 5
    assert poll(src, Known(), True).complete  # nothing known: an empty org is just empty
    fake.jobs.clear()  # really empty: the newest known job's detail answers "not found"
    result = poll(src, known, True)
    assert result.complete and len(result.gone) == 1


def test_last_page_contradicting_total_fails_as_schema_at_once() -> None:
    fake = LyingVocdoni()
    fake.add(6)
    fake.mode = "lastpage"
    with pytest.raises(PollError) as err:
        run(_source(fake).poll(_target(), Known(), True))
    assert err.value.reason == "schema"
    assert fake.pages_served == 1


def test_paging_stops_at_the_first_empty_page() -> None:
    fake = LyingVocdoni()
    fake.add(350)
    fake.mode = "hole"
    result = poll(_source(fake), Known(), True)
    assert fake.pages_served == 2
    assert not result.complete


def test_v1_active_job_missing_from_a_full_list_is_resolved_by_its_detail() -> None:
    fake = LyingVocdoni("v1")
    fake.add(3)
    src = _source(fake)
    known = Known([KnownJob("gone-job", "org_members", "pending", False),
                   KnownJob("done-job", "publish_process", "pending", False)])
    fake.jobs.append({"jobId": "done-job", "type": "publish_process"})  # only GET /jobs/{id}
    real_list = fake.list_jobs

    def hide(request: httpx.Request) -> httpx.Response:
        saved = fake.jobs
        fake.jobs = [j for j in saved if j["jobId"] != "done-job"]
        try:
            return real_list(request)
        finally:
            fake.jobs = saved

    fake.list_jobs = hide  # type: ignore[method-assign]
    result = poll(src, known, True)
    assert result.gone == ("gone-job",)
    assert {o.job_id: o.status for o in result.jobs}["done-job"] == "completed"
    assert fake.log.count(("GET", "/jobs/gone-job")) == 1
    assert fake.log.count(("GET", "/jobs/done-job")) == 1


def _target() -> Any:
    from tests.fakes_vocdoni import TARGET
    assert TARGET.address == ORG
    return TARGET


def test_empty_list_is_checked_against_a_settled_job_not_a_cleared_import() -> None:
    fake = LyingVocdoni()
    fake.add(3)
    src, known = _source(fake), Known()
    poll(src, known, True)
    (imp,) = fake.add(1, type="org_members", status="completed")
    poll(src, known, True)
    fake.jobs = [j for j in fake.jobs if j["jobId"] != imp]  # Vocdoni clears finished imports
    fake.mode = "empty"
    result = poll(src, known, True)
    assert not result.complete
    assert len(known) == 4
