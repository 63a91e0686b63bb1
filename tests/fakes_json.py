"""Helpers shared by the `kind: json` source tests: a source on a handler, one poll."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from exporter.sources.base import (
    ClientSettings,
    KnownJob,
    OrgTarget,
    PollResult,
)
from exporter.sources.json_config import JsonSourceModel
from exporter.sources.json_source import JsonSource

BASE = "http://api.test"
Handler = Callable[[httpx.Request], httpx.Response]
DATE = "Fri, 04 Dec 2026 12:00:00 GMT"  # 1796385600


class Known:
    """KnownJobs over a dict: job_id -> (status, terminal)."""

    def __init__(self, jobs: dict[str, tuple[str, bool]] | None = None) -> None:
        self.jobs = jobs or {}

    def get(self, job_id: str) -> KnownJob | None:
        got = self.jobs.get(job_id)
        return None if got is None else KnownJob(job_id, "t", got[0], got[1])

    def active_ids(self) -> frozenset[str]:
        return frozenset(j for j, (_, terminal) in self.jobs.items() if not terminal)

    def __len__(self) -> int:
        return len(self.jobs)


def spec(**keys: Any) -> JsonSourceModel:
    """Validate a json source config, with one org."""
    data = {"name": "j", "kind": "json", "base_url": BASE,
            "organizations": [{"address": "o/r"}], **keys}
    return JsonSourceModel.model_validate(data)


def source(model: JsonSourceModel, handler: Handler, **kw: Any) -> JsonSource:
    async def no_sleep(_: float) -> None:
        return None

    settings = ClientSettings(base_url=BASE, retries=0, max_requests_per_second=1000)
    return JsonSource("j", settings, model, transport=httpx.MockTransport(handler),
                      sleep=no_sleep, **kw)


def poll(src: JsonSource, known: Known | None = None, full: bool = True) -> PollResult:
    async def run() -> PollResult:
        return await src.poll(OrgTarget("j", "o/r", "o/r"), known or Known(), full)

    return asyncio.run(run())


def ok(body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body, headers={"Date": DATE, **headers})
