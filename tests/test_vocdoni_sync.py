"""A Vocdoni first sync reads its pages concurrently, within the source's concurrency."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from typing import Any

import httpx

from exporter.sources.base import ClientSettings
from exporter.sources.vocdoni import VocdoniSource
from tests.fakes import FakeClock
from tests.fakes_vocdoni import T0, TARGET, FakeVocdoni, Known, run


class SlowPages:
    """Answers through the fake after a short real wait, counting requests in flight."""

    def __init__(self, fake: FakeVocdoni) -> None:
        self.fake = fake
        self.in_flight = 0
        self.most = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.002)
            return await self.fake(request)
        finally:
            self.in_flight -= 1


def source(handler: Any, concurrency: int) -> VocdoniSource:
    clock = FakeClock(T0)
    settings = ClientSettings(base_url="http://vocdoni.test", max_requests_per_second=1e6,
                              concurrency=concurrency)
    return VocdoniSource("voc", settings, transport=httpx.MockTransport(handler), clock=clock,
                         sleep=clock.sleep, monotonic=clock, token="static-token", page_limit=100)


def test_first_sync_pages_are_fetched_concurrently_within_the_concurrency() -> None:
    fake = FakeVocdoni()
    ids = fake.add(3000)
    slow = SlowPages(fake)
    result = run(source(slow, 4).poll(TARGET, Known(), True))
    assert result.complete and {o.job_id for o in result.jobs} == set(ids)
    assert slow.most == 4  # never more than the source allows, and not one at a time


def test_one_at_a_time_when_the_concurrency_is_one() -> None:
    fake = FakeVocdoni()
    fake.add(500)
    slow = SlowPages(fake)
    assert run(source(slow, 1).poll(TARGET, Known(), True)).complete
    assert slow.most == 1


class ArrivingJobs(SlowPages):
    """Answers pages in a random order (random waits) and adds a job after each page."""

    def __init__(self, fake: FakeVocdoni) -> None:
        super().__init__(fake)
        self.rng = random.Random(7)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        response = await self.fake(request)
        if request.url.path == "/jobs":
            self.fake.add(1)  # a vote arrives: every later page shifts by one
        return response


def test_pages_served_out_of_order_while_jobs_arrive_leave_no_job_unread() -> None:
    """A page computed before an earlier one shifts less: the positions between are read again."""
    fake = FakeVocdoni()
    before = set(fake.add(2000))
    result = run(source(ArrivingJobs(fake), 8).poll(TARGET, Known(), True))
    assert before <= {o.job_id for o in result.jobs}


def test_first_sync_holds_its_jobs_packed_and_few_raw_pages() -> None:
    """Issue 16: a first sync must not hold the whole list twice (raw items and observations).

    Each item carries a bulky result, like Vocdoni's bulk-vote jobs; pages come in 4 at a time.
    Kept as dicts until the last page (then normalized), 6,000 such jobs peaked ~2 KB each;
    normalized as each page arrives and packed: ~430 bytes, most of it the pages in flight.
    """
    fake = FakeVocdoni()
    votes = [{"processId": f"{i:064x}", "nullifier": f"{i + 1:064x}"} for i in range(8)]
    fake.add(6000, result={"votes": votes})
    src = source(fake, 4)
    tracemalloc.start()
    try:
        result = run(src.poll(TARGET, Known(), True))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.complete and len(result.jobs) == 6000
    assert peak / 6000 < 800, f"{peak / 6000:.0f} bytes a job at the peak"
