"""A big Ordo list is parsed while it arrives and never holds the event loop for long."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from exporter import pacing
from exporter.sources import ordo_parse
from exporter.sources.base import ClientSettings, OrgTarget, PollResult
from exporter.sources.ordo import OrdoSource
from exporter.state.tracker import OrgTracker, TrackerSettings
from tests.fakes import Known

T = TypeVar("T")
TARGET = OrgTarget(source="ordo", org="lidar", address="lidar")
N = 3000


def job(i: int) -> dict[str, Any]:
    """One GET /jobs item, finished (history at the first sync: no detail asked)."""
    return {"id": i, "recipe_id": 1, "status": "success", "created_at": "2026-02-26T12:00:00Z",
            "started_at": "2026-02-26T12:00:01Z", "finished_at": "2026-02-26T12:00:09Z",
            "error": None}


class StreamingOrdo:
    """Answers GET /jobs as a body in small pieces, noting how many jobs were parsed meanwhile."""

    def __init__(self) -> None:
        self.source: OrdoSource | None = None
        self.body = json.dumps([job(i) for i in range(N, 0, -1)]).encode()
        self.lists = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/recipes":
            return httpx.Response(200, json=[{"id": 1, "name": "dem"}])
        self.lists += 1
        return httpx.Response(200, content=self.pieces())

    async def pieces(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), 4096):
            yield self.body[start:start + 4096]


def make_source(fake: StreamingOrdo) -> OrdoSource:
    settings = ClientSettings(base_url="http://ordo.test", max_requests_per_second=1e4)
    return OrdoSource("ordo", settings, token="t", transport=httpx.MockTransport(fake.handle))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


@pytest.fixture
def every_check_pauses(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every look at the pacer a pause (sleep(0) in tests: no real waiting)."""
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(pacing, "PAUSE_SECONDS", 0.0)
    monkeypatch.setattr(pacing.gc, "collect", lambda generation=2: 0)  # thousands of pauses
    yield
    gc.unfreeze()  # leave the test process's collector as it was


async def ticking(work: Coroutine[Any, Any, T]) -> tuple[T, int]:
    """Run `work` beside a task that counts its turns on the event loop."""
    ticks = 0
    done = False

    async def tick() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(tick())
    try:
        result = await work
    finally:
        done = True
        await ticker
    return result, ticks


def test_a_streamed_list_gives_every_job_and_its_first_sync_is_history() -> None:
    fake = StreamingOrdo()
    result = run(make_source(fake).poll(TARGET, Known(), True))
    assert [j.job_id for j in result.jobs] == [str(i) for i in range(N, 0, -1)]
    assert result.complete and fake.lists == 1


def test_the_list_is_parsed_and_merged_in_slices_with_the_loop_free_between(
        every_check_pauses: None) -> None:
    """Other tasks (and, through real pauses, the scrape threads) run during a big first sync."""
    fake = StreamingOrdo()
    source = make_source(fake)
    result: PollResult
    result, ticks = run(ticking(source.poll(TARGET, Known(), True)))
    assert ticks >= 3 * N  # parse, sort out, observe: one turn per job each at least
    tracker = OrgTracker("ordo", "lidar", TrackerSettings())
    summary, ticks = run(ticking(tracker.apply_paced(result, 1000.0)))
    assert summary.new == N and len(tracker) == N
    assert ticks >= N // 64


def test_a_pause_is_a_real_sleep_not_sleep_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """sleep(0) keeps the GIL on the loop thread (scrape threads starve): pauses really sleep."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(pacing.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(pacing.time, "sleep", slept.append)
    pacer = pacing.Pacer()
    run(pacer.breathe())
    pacer.breathe_blocking()
    assert slept == [pacing.PAUSE_SECONDS] * 2 and pacing.PAUSE_SECONDS > 0


def test_a_pause_frees_young_garbage_cycles_before_freezing(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """What freeze() keeps from the collector for good must not be garbage already."""
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(pacing, "PAUSE_SECONDS", 0.0)

    class Node:
        other: Any = None

    gc.disable()  # no collection by chance: only the pause's own
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b  # a cycle: only the collector frees it
        pacing.Pacer().breathe_blocking()
        assert gone() is None
    finally:
        gc.enable()
        gc.unfreeze()


def test_parsing_time_does_not_count_against_the_request_timeout() -> None:
    """`timeout` bounds the API's time: a list that takes longer to parse than that still reads."""
    body = json.dumps([job(i) for i in range(200, 0, -1)]).encode()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/recipes":
            return httpx.Response(200, json=[{"id": 1, "name": "dem"}])

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 2048):
                yield body[start:start + 2048]

        return httpx.Response(200, content=pieces())

    settings = ClientSettings(base_url="http://ordo.test", max_requests_per_second=1e4,
                              timeout=0.2, retries=0)
    source = OrdoSource("ordo", settings, token="t", transport=httpx.MockTransport(handler))
    slow_parse = ordo_parse._listed

    def listed(raw: Any, notes: Any) -> Any:
        time.sleep(0.002)  # 200 jobs: 0.4 s of parsing, twice the timeout
        return slow_parse(raw, notes)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ordo_parse, "_listed", listed)
        result = run(source.poll(TARGET, Known(), True))
    assert len(result.jobs) == 200
