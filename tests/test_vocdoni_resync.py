"""Amortized full resync: a cursor reads a budget of pages per poll, and jobs added or deleted
between its pages never make a job look missing (positive evidence only)."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from exporter.sources.base import ClientSettings
from exporter.sources.vocdoni import VocdoniSource
from exporter.sources.vocdoni_parse import Page
from exporter.sources.vocdoni_resync import ResyncPass, StreamKey, StreamView
from exporter.state.tracker import OrgTracker, TrackerSettings
from tests.fakes_vocdoni import TARGET, FakeVocdoni
from tests.integration.fakeapi import serve_handler

RATE = 300.0  # requests per second: budget 1% x 300/s x 1 s interval = 3 pages per poll
BUDGET = 3


@contextmanager
def loopback(fake: FakeVocdoni) -> Iterator[str]:
    """Serve the in-memory fake on 127.0.0.1 over real HTTP."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # one write per answer: no delayed-ACK stall between its pieces

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            request = httpx.Request("GET", "http://fake" + self.path, headers=dict(self.headers))
            with lock:
                response = asyncio.run(fake(request))
            self.send_response(response.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

    with serve_handler(Handler) as url:
        yield url


def source(url: str) -> VocdoniSource:
    settings = ClientSettings(base_url=url, max_requests_per_second=RATE, retries=0)
    return VocdoniSource("voc", settings, token="static-token", api="v2", page_limit=100,
                         resync_budget=0.01)


async def polls(src: VocdoniSource, fake: FakeVocdoni, tracker: OrgTracker, count: int, *,
                first: bool = True, always_due: bool = False) -> list[dict[str, Any]]:
    """Poll the way the org loop does: a first sync, then passes when due (at once here)."""
    if first:
        tracker.apply(await src.poll(TARGET, tracker, True), 1.0)
    out = []
    for i in range(count):
        started = src.plan_resync(TARGET, 1.0, due=always_due or i == 0)
        before = len(fake.log)
        result = await src.poll(TARGET, tracker, False)
        tracker.apply(result, 2.0 + i)
        out.append({"started": started, "requests": len(fake.log) - before,
                    "complete": result.complete, "listed": len(result.listed),
                    "progress": src.resync_progress(TARGET)})
    return out


def test_a_pass_reads_a_budget_of_pages_per_poll_while_jobs_arrive_between_pages() -> None:
    fake = FakeVocdoni()
    fake.add(1000)  # 10 pages
    fake.hook = lambda page: fake.add(2) if page > 1 else None  # new jobs between pages
    tracker = OrgTracker("voc", "main", TrackerSettings())
    async def run_all(src: VocdoniSource) -> list[dict[str, Any]]:
        seen = await polls(src, fake, tracker, 6)
        fake.hook = None
        await polls(src, fake, tracker, 1, first=False)  # reads what arrived in the last one
        await src.aclose()
        return seen

    with loopback(fake) as url:
        seen = asyncio.run(run_all(source(url)))
    assert seen[0]["started"] and not any(s["started"] for s in seen[1:])
    assert max(s["requests"] for s in seen) <= 2 + BUDGET  # page 1 (and 2) + the pass
    done = [i for i, s in enumerate(seen) if s["complete"]]
    assert done and seen[done[0]]["listed"] >= 1000  # 10 pages at 3 a poll: a few polls
    progress = [s["progress"] for s in seen[: done[0]]]
    assert progress == sorted(progress) and 0 < progress[-1] < 1
    assert seen[done[0]]["progress"] == 1.0
    assert {j["jobId"] for j in fake.jobs} <= set(tracker.jobs)  # nothing present was dropped


def test_jobs_deleted_between_pages_never_make_a_present_job_missing() -> None:
    fake = FakeVocdoni()
    fake.add(400)
    deleted: list[str] = []

    def churn(page: int) -> None:
        if page > 1:
            fake.add(3)
            deleted.append(fake.jobs.pop(len(fake.jobs) // 3)["jobId"])  # an older job goes

    tracker = OrgTracker("voc", "main", TrackerSettings())

    async def run_all(src: VocdoniSource) -> list[dict[str, Any]]:
        await polls(src, fake, tracker, 1)
        fake.hook = churn  # from now on every pass page moves jobs around
        seen = await polls(src, fake, tracker, 5, first=False, always_due=True)
        fake.hook = None
        seen += await polls(src, fake, tracker, 6, first=False, always_due=True)
        await src.aclose()
        return seen

    with loopback(fake) as url:
        seen = asyncio.run(run_all(source(url)))
    assert sum(s["listed"] > 0 for s in seen) >= 2  # passes completed, consistent
    present = {j["jobId"] for j in fake.jobs}
    assert deleted and present <= set(tracker.jobs)  # no job the API still has was dropped
    assert not set(deleted) & set(tracker.jobs)  # two complete lists lacked them: removed


def test_a_page_that_starts_below_the_cursor_breaks_the_pass() -> None:
    """A page that skips positions (jobs reordered, a lying total) proves nothing."""
    key: StreamKey = ("v2", "org", "")
    jobs = [{"jobId": f"{i:032x}", "type": "t", "status": "completed"} for i in range(100)]

    async def fetch(_: StreamKey, number: int) -> Page:
        return Page(jobs=tuple(jobs), total=150, last_page=2)  # page 1 of a shrunk list

    rpass = ResyncPass(budget=2)
    done = asyncio.run(rpass.step({key: StreamView(total=250, limit=100)}, fetch))
    assert not rpass.ok and done


def _jobs(ids: range) -> tuple[dict[str, Any], ...]:
    return tuple({"jobId": f"{i:032x}", "type": "t", "status": "completed"} for i in ids)


def _walk(pages: dict[int, Page], total: int) -> ResyncPass:
    """Walk a 2-page stream whose pages the test chose; return the pass."""
    key: StreamKey = ("v2", "org", "")

    async def fetch(_: StreamKey, number: int) -> Page:
        return pages[number]

    rpass = ResyncPass(budget=5)
    assert asyncio.run(rpass.step({key: StreamView(total=total, limit=3)}, fetch))
    return rpass


def test_a_consistent_walk_lists_every_job() -> None:
    rpass = _walk({1: Page(total=6, last_page=2, jobs=_jobs(range(6, 3, -1))),
                   2: Page(total=6, last_page=2, jobs=_jobs(range(3, 0, -1)))}, 6)
    assert rpass.ok and len(rpass.take_listed()) == 6


def test_a_job_repeated_in_place_of_another_voids_the_pass() -> None:
    """Page 2 shows page 1's last job again (totals unchanged): job 1 was never shown."""
    rpass = _walk({1: Page(total=6, last_page=2, jobs=_jobs(range(6, 3, -1))),
                   2: Page(total=6, last_page=2, jobs=_jobs(range(4, 1, -1)))}, 6)
    assert not rpass.ok


def test_a_short_last_page_or_an_empty_list_voids_the_pass() -> None:
    short = _walk({1: Page(total=6, last_page=2, jobs=_jobs(range(6, 3, -1))),
                   2: Page(total=6, last_page=2, jobs=_jobs(range(3, 1, -1)))}, 6)
    empty = _walk({}, 0)
    assert not short.ok and not empty.ok


def test_a_pass_remembers_a_million_ids_packed() -> None:
    """A pass keeps every id it saw until it ends: as strings in sets, ~180 bytes a 64-hex id
    (and a frozenset copy at the end); packed, under 100 bytes, with the same answers."""
    ids = (f"{i:064x}" for i in range(20_000))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rpass = ResyncPass(budget=5)
    rpass.note(ids)
    rpass.note(f"{i:064x}" for i in range(19_000, 21_000))  # seen again, and 1,000 new
    held = tracemalloc.get_traced_memory()[0] - before
    listed = rpass.take_listed()
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    assert len(listed) == 21_000 and f"{20_500:064x}" in listed and "other" not in listed
    assert held / 21_000 < 100 and peak / 21_000 < 110
    assert set(listed) == {f"{i:064x}" for i in range(21_000)}
