"""Ordo source: reused ids after a reset, active jobs the list lacks, empty lists."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from exporter.sources.base import TERMINAL_JOB_STATUSES, ClientSettings, KnownJob, OrgTarget
from exporter.sources.ordo import OrdoSource
from tests.fakes import Known
from tests.integration.fakeapi import Ordo

TARGET = OrgTarget(source="ordo", org="lidar", address="lidar")


def _source(fake: Ordo, paths: list[str]) -> OrdoSource:
    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        status, body = fake(request.url.path, {})
        return httpx.Response(status, json=body)

    return OrdoSource("ordo", ClientSettings(base_url="http://ordo.test"), token="t",
                      transport=httpx.MockTransport(handle))


def _poll(src: OrdoSource, known: Known, full: bool = False) -> Any:
    return asyncio.run(src.poll(TARGET, known, full))


def _known(job_id: int, status: str, created: float, job_type: str = "lidar") -> KnownJob:
    return KnownJob(str(job_id), job_type, status, status in TERMINAL_JOB_STATUSES, created)


def test_reused_id_is_detailed_and_named_by_the_new_recipes() -> None:
    fake, paths = Ordo(), []  # type: ignore[var-annotated]
    fake.recipes = {1: "ortho"}
    fake.job(1, "completed", 5000.0, started=5001.0, finished=5002.0)
    src = _source(fake, paths)
    src._recipes = {1: "lidar"}  # what the old database called recipe 1
    result = _poll(src, Known([_known(1, "completed", 100.0)]))
    (obs,) = result.jobs
    assert obs.job_type == "ortho"
    assert obs.created_at == 5000.0
    assert "/recipes" in paths and "/jobs/1" in paths  # detailed: its steps count


def test_active_jobs_missing_from_the_list_are_detailed() -> None:
    fake, paths = Ordo(), []  # type: ignore[var-annotated]
    fake.job(1, "completed", 10.0, started=11.0, finished=12.0)
    fake.job(2, "completed", 20.0, started=21.0, finished=22.0)
    fake.hidden = {2}
    known = Known([_known(1, "completed", 10.0), _known(2, "running", 20.0),
                   _known(3, "pending", 30.0)])
    result = _poll(_source(fake, paths), known)
    assert "/jobs/2,3" in paths
    assert result.gone == ("3",)
    assert {o.job_id: (o.job_type, o.status) for o in result.jobs}["2"] == ("lidar", "completed")


def test_empty_list_after_a_non_empty_one_is_complete_only_if_a_detail_agrees() -> None:
    fake, paths = Ordo(), []  # type: ignore[var-annotated]
    src = _source(fake, paths)
    assert _poll(src, Known(), True).complete
    fake.job(1, "completed", 10.0, started=11.0, finished=12.0)
    fake.list_empty = True  # a flap: the list says nothing, job 1 still answers
    result = _poll(src, Known([_known(1, "completed", 10.0)]))
    assert not result.complete and result.gone == ()
    assert paths[-1] == "/jobs/1"
    fake.reset()  # really empty: the detail route agrees
    result = _poll(src, Known([_known(1, "completed", 10.0)]))
    assert result.complete and result.gone == ("1",)
