"""Vocdoni list paging: what one poll read of a stream, checked against the API's own totals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Any

from exporter.pacing import Pacer
from exporter.sources.base import JobObservation, PollError, PollReason
from exporter.sources.http import gather_limited
from exporter.sources.observed import LEFT_OUT, ObservedJobs
from exporter.sources.vocdoni_parse import Page, job_identity

# Normalizes one list item the moment its page arrives: (observation, flags), or None when
# the item is unreadable (left out and counted by the parser's notes).
ItemParser = Callable[[dict[str, Any]], tuple[JobObservation, int] | None]


@dataclass(frozen=True)
class Stream:
    """Where one list stream stood after the last poll."""

    total: int
    anchor: str | None  # newest job id then
    limit: int  # items per page the server actually served
    # non-terminal job id -> position counted from the oldest end (stable as new jobs arrive)
    pos: Mapping[str, int]


@dataclass(frozen=True)
class Digest:
    """A list page with its items normalized as it arrived; the raw items are dropped.

    Pages of a concurrent read wait for the ones before them to be added in order: as raw
    JSON one page of bulk-vote items is ~1 MB of objects, digested it is its observations.
    """

    total: int
    last_page: int
    invalid: Mapping[str, int]
    dropped: int
    items: tuple[tuple[JobObservation, int], ...]  # (observation, flags), in page order


@dataclass
class Read:
    """What one poll read of one stream; its jobs go, normalized, into the poll's ObservedJobs."""

    total: int
    limit: int
    last_page: int
    observed: ObservedJobs  # shared by the poll's streams: each job once, packed
    parse: ItemParser
    stream: int = 0  # this stream's number in `observed`
    anchor: str | None = None
    count: int = 0  # jobs this stream showed, each once
    pages: set[int] = field(default_factory=set)
    full: bool = False  # every page was read
    shrank: bool = False  # totalItems went down while paging: a job may have been skipped
    uneven: bool = False  # a page was short, repeated an item, or totals moved while paging
    invalid: Counter[str] = field(default_factory=Counter)  # items left out or clamped
    dropped: int = 0  # items left out
    spans: list[tuple[int, int]] = field(default_factory=list)  # positions pages covered
    latest_total: int = 0  # totalItems of the page read last (jobs keep arriving)
    moved: bool = False  # totalItems changed between pages: positions may be left uncovered

    @property
    def exact(self) -> bool:
        """Return True when the pages add up to the API's own total, each job once."""
        return (self.full and not self.shrank and not self.uneven and not self.dropped
                and self.count == self.total)

    def has(self, job_id: str) -> bool:
        """Tell whether this stream's pages showed a job."""
        row = self.observed.row_of(job_id)
        return row >= 0 and self.observed.stream(row) == self.stream

    def position(self, job_id: str) -> int:
        """Return where this stream showed a job (has() must be True)."""
        return self.observed.position(self.observed.row_of(job_id))

    def digest(self, page: Page) -> Digest:
        """Normalize a page's items now (any order); add() then places them in page order."""
        items = []
        for job in page.jobs:
            parsed = self.parse(job)
            if parsed is None:  # unreadable: listed (positions, repeats), not observed
                parsed = JobObservation(*job_identity(job), status="unknown"), LEFT_OUT
            items.append(parsed)
        return Digest(page.total, page.last_page, page.invalid, page.dropped, tuple(items))

    def add(self, number: int, page: Page | Digest) -> None:
        """Record a page's jobs with positions from the oldest end; dedupe shifted items."""
        if isinstance(page, Page):
            page = self.digest(page)
        if page.last_page > max_pages(page.total, self.limit):
            raise PollError(PollReason.SCHEMA,
                            "vocdoni: pagination.lastPage contradicts totalItems")
        self.pages.add(number)
        self.invalid.update(page.invalid)
        self.dropped += page.dropped
        self.last_page = page.last_page
        if page.total < self.total:
            self.shrank = True
        shown = len(page.items) + page.dropped
        self.latest_total = page.total
        self.moved = self.moved or page.total != self.total
        if shown:
            high = page.total - 1 - (number - 1) * self.limit
            self.spans.append((high - shown + 1, high))
        if page.total != self.total or (number < page.last_page and shown < self.limit):
            self.uneven = True
        observed = self.observed
        for index, (obs, flags) in enumerate(page.items):
            if observed.row_of(obs.job_id) >= 0:
                # a repeat (unstable sort): some other job was not shown; or a job another
                # stream showed too: either way this list is not exact
                self.uneven = True
                continue
            pos = page.total - 1 - ((number - 1) * self.limit + index)
            observed.add(obs, self.stream, pos, flags)
            self.count += 1


PAGE_WINDOW = 4  # pages fetched per window of a full read, per unit of concurrency
GAP_ROUNDS = 3  # re-reads of positions a concurrent full read left uncovered


async def read_rest(read: Read, fetch: Callable[[int], Awaitable[Page]], workers: int) -> None:
    """Read every page not read yet, up to the first empty one, `workers` at a time.

    Pages are fetched a window at a time and added in page order, so positions, repeats and
    totals are checked exactly as one page after another would check them. The window starts
    at one page and doubles while pages come back full (an empty page, a hole, wastes few
    requests), up to PAGE_WINDOW pages per worker.
    """
    digested = _digesting(read, fetch)
    page, window = 2, 1
    pacer = Pacer()  # 1,000 pages of a first sync: pauses (and GC freezes) for the scrapes
    while True:
        last = min(read.last_page, max_pages(read.total, read.limit))
        numbers = list(islice((n for n in range(page, last + 1) if n not in read.pages), window))
        window = min(window * 2, workers * PAGE_WINDOW)
        if not numbers:
            break
        pages = await gather_limited([partial(digested, n) for n in numbers], workers)
        for number, got in zip(numbers, pages, strict=True):
            read.add(number, got)
            await pacer.breathe()
            if not got.items:
                read.uneven = read.uneven or number < read.last_page
                read.full = True
                return
        page = numbers[-1] + 1
    read.full = True
    await _fill_gaps(read, digested, workers)


def _digesting(read: Read, fetch: Callable[[int], Awaitable[Page]]
               ) -> Callable[[int], Awaitable[Digest]]:
    """Wrap a page fetch so each page is digested the moment it arrives (raw pages die young)."""

    async def fetched(number: int) -> Digest:
        return read.digest(await fetch(number))

    return fetched


async def _fill_gaps(read: Read, fetch: Callable[[int], Awaitable[Digest]], workers: int
                     ) -> None:
    """Read again the positions no page covered: jobs that arrived while pages were read
    concurrently shift later pages, so a page served early can leave a few unread."""
    for _ in range(GAP_ROUNDS):
        missing = gaps(read.spans, read.total - 1) if read.moved else []
        if not missing:
            return
        total, limit, last = read.latest_total, read.limit, read.last_page
        wanted: set[int] = set()
        for low, high in missing:  # pages of the API's own range, at most as many as read
            first = max(1, (total - 1 - high) // limit + 1)
            wanted.update(range(first, min(last, (total - 1 - low) // limit + 1) + 1))
            if len(wanted) > len(read.pages):
                return  # not a few shifted positions: a total that lies (not complete)
        numbers = sorted(wanted)
        if not numbers:
            return
        fetched = await gather_limited([partial(fetch, n) for n in numbers], workers)
        for number, got in zip(numbers, fetched, strict=True):
            read.add(number, got)


def max_pages(total: int, limit: int) -> int:
    """Return the most pages `total` items at `limit` per page can take, plus one of slack."""
    return max(1, -(-total // max(1, limit))) + 1


def gaps(spans: list[tuple[int, int]], top: int) -> list[tuple[int, int]]:
    """Return the positions in 0..top no span covers, as (low, high) ranges."""
    out: list[tuple[int, int]] = []
    nxt = 0  # lowest position not known to be covered
    for low, high in sorted(spans):
        if low > nxt:
            out.append((nxt, min(low - 1, top)))
        nxt = max(nxt, high + 1)
        if nxt > top:
            break
    if nxt <= top:
        out.append((nxt, top))
    return [(low, high) for low, high in out if low <= high]
