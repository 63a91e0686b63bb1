"""Org loop stall detection: per org, and a stalled poll is cancelled as a timeout."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace

from exporter.orgloop import STALL_INTERVALS, OrgLoop
from exporter.sources.base import (
    KnownJobs,
    OrgTarget,
    PollResult,
    RequestStats,
)
from tests.fakes import FakeClock, SourceFacts
from tests.fakes_orgloop import INTERVAL, HangingSource, hanging_loop, org_config


async def _until(predicate: Callable[[], bool]) -> None:
    """Let the event loop run until `predicate` holds; the fake clock does not move."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def test_a_sibling_orgs_answers_are_not_this_orgs_sign_of_life() -> None:
    """Two orgs on one source: only the org whose own requests get answers is alive."""
    async def scenario() -> None:
        clock, source = FakeClock(), HangingSource()
        quiet, busy = hanging_loop("quiet", source, clock), hanging_loop("busy", source, clock)
        quiet.start()
        busy.start()
        await _until(lambda: source.hooks.get("busy") is not None and "quiet" in source.hooks)
        for _ in range(STALL_INTERVALS + 1):
            clock.now += INTERVAL
            source.stats.record("/jobs", "200", 0.001)  # the source as a whole keeps answering
            hook = source.hooks["busy"]
            assert hook is not None
            hook()
        assert quiet.stalled(clock.now)
        assert not busy.stalled(clock.now)
        assert not quiet.health(clock.now).up
        await quiet.stop()
        await busy.stop()

    asyncio.run(scenario())


def test_watchdog_cancels_a_stalled_poll_as_a_timeout_and_the_loop_goes_on() -> None:
    """The watchdog cancels the hung request; the poll counts as a failed poll (timeout)."""
    async def scenario() -> None:
        clock, source = FakeClock(), HangingSource()
        loop = hanging_loop("org", source, clock)
        loop.start()
        await _until(lambda: len(source.polls) == 1)
        assert not loop.check(clock.now)  # not stalled yet: nothing happens
        for _ in range(20):
            await asyncio.sleep(0)
        assert source.cancelled == [] and not loop.errors
        clock.now += STALL_INTERVALS * INTERVAL + 1
        assert loop.check(clock.now)  # stalled: the poll is cancelled
        await _until(lambda: loop.errors["timeout"] == 1)
        assert source.cancelled == ["org"]
        assert not loop.up and not loop.stalled(clock.now)  # a completed (failed) poll
        assert loop._task is not None and not loop._task.done()  # the loop itself lives on
        await loop.stop()

    asyncio.run(scenario())


def test_stopping_the_loop_is_not_counted_as_a_stall() -> None:
    """Cancelling the loop itself (shutdown, reload) must not record a timeout."""
    async def scenario() -> None:
        clock, source = FakeClock(), HangingSource()
        loop = hanging_loop("org", source, clock)
        loop.start()
        await _until(lambda: len(source.polls) == 1)
        await loop.stop()
        assert not loop.errors and source.cancelled == ["org"]

    asyncio.run(scenario())


def test_waiting_out_a_retry_after_is_not_a_stall() -> None:
    """A Retry-After wait longer than the stall window is the API's answer, not a hung poll."""
    async def scenario() -> None:
        clock, source = FakeClock(), HangingSource()
        loop = hanging_loop("limited", source, clock)
        loop.start()
        await _until(lambda: source.hooks.get("limited") is not None)
        hook = source.hooks["limited"]
        assert hook is not None
        wait = (STALL_INTERVALS + 2) * INTERVAL  # the API asked the client to hold back
        hook(wait)
        clock.now += wait
        assert not loop.stalled(clock.now)
        clock.now += STALL_INTERVALS * INTERVAL + 1  # no answer after the wait: stalled
        assert loop.stalled(clock.now)
        await loop.stop()

    asyncio.run(scenario())


class InstantSource(SourceFacts):
    """Answers every poll at once with no jobs; moves the fake clock by the poll's cost."""

    def __init__(self, clock: FakeClock, cost: float) -> None:
        self.stats = RequestStats()
        self.clock = clock
        self.cost = cost

    async def poll(self, target: OrgTarget, known: KnownJobs, full: bool) -> PollResult:
        self.clock.now += self.cost
        return PollResult(jobs=(), complete=True)

    async def aclose(self) -> None:
        return None


def test_interval_jitter_and_durations_come_from_the_injected_time_and_rng() -> None:
    """The wait between polls is interval x rng jitter, taken through the injected sleep."""
    async def scenario() -> None:
        clock = FakeClock()
        naps: list[float] = []
        gate = asyncio.Event()

        async def sleep(seconds: float) -> None:
            naps.append(seconds)
            await gate.wait()

        org = replace(org_config("org"), jitter=0.2)
        loop = OrgLoop(OrgTarget("src", "org", "org"), org, InstantSource(clock, 0.75),
                       publish=lambda **_: None, clock=clock, monotonic=clock, sleep=sleep,
                       rng=random.Random(7))
        loop.start()
        await _until(lambda: len(naps) == 1)
        assert naps == [INTERVAL * random.Random(7).uniform(0.8, 1.2)]
        assert loop.poll_hist.freeze().sum == 0.75  # the poll's duration on the fake clock
        assert loop.last_success == clock.now
        await loop.stop()

    asyncio.run(scenario())
