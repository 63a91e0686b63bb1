"""Vocdoni's amortized full resync: a cursor walks an org's list a few pages per poll.

The list is newest first, so a position counted from the oldest end stays put when jobs
arrive. The cursor is such a position: each page it reads is placed by its own totalItems and
must reach up to the cursor (else positions were skipped), be full unless it is the last page,
end at position 0 if it is the last, and show no job twice or at another position than the
pass saw it (a deleted older job shifts the list down, and a lying list repeats a job in place
of another: the two cannot be told apart, so either voids the pass). A pass that gets to 0 this
way is one complete list: with the jobs the polls saw meanwhile (new jobs arrive at the top,
where every poll reads), it names every job that existed when it began and still exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from exporter.sources.vocdoni_parse import Page, job_identity
from exporter.state.packed import PackedIdSet

StreamKey = tuple[str, str, str]  # (api generation, org address, job type or "")
FetchPage = Callable[[StreamKey, int], Awaitable[Page]]


@dataclass(frozen=True, slots=True)
class StreamView:
    """What this poll's regular read learnt of a stream: its total and page size."""

    total: int
    limit: int


@dataclass
class ResyncPass:
    """One trickled pass over an org's streams."""

    budget: int  # pages per poll
    keys: list[StreamKey] | None = None  # the org's streams, fixed at the pass's first step
    stream: int = 0  # index of the stream being walked
    next_pos: int | None = None  # next position to read (from the oldest end); None: the top
    top: int = 0  # the walked stream's top position when its walk began
    # job ids the pass's own pages showed, and the polls' reads meanwhile: packed (a 1M-job
    # pass held ~180 MB of id strings until its end, then a frozenset copy)
    seen: PackedIdSet = field(default_factory=PackedIdSet)
    polled: PackedIdSet = field(default_factory=PackedIdSet)
    edge: dict[str, int] = field(default_factory=dict)  # last page read: job id -> position
    ok: bool = True  # no gap, short page, moved job or left-out item so far

    def note(self, ids: Iterable[str]) -> None:
        """Remember jobs a regular read saw while the pass runs (new jobs arrive there)."""
        self.polled.update(ids)

    def take_listed(self) -> AbstractSet[str]:
        """Merge the ids polled during the pass into the pass's own, and return them (at its end).

        A merge, not a copy: at a million ids a union would hold them twice. The pass's sets
        are handed over, so call it once, when the pass is complete.
        """
        if len(self.polled) > len(self.seen):
            self.seen, self.polled = self.polled, self.seen
        self.seen.update(self.polled)  # the smaller into the larger: no copy of a million ids
        self.polled = PackedIdSet()
        return self.seen

    def progress(self) -> float:
        """Return how far the pass has got, 0..1 (streams weigh equally)."""
        if not self.keys:
            return 0.0
        part = 0.0
        if self.next_pos is not None and self.top >= 0:
            part = min(1.0, (self.top - self.next_pos) / (self.top + 1))
        return min(1.0, (self.stream + part) / len(self.keys))

    async def step(self, views: dict[StreamKey, StreamView], fetch: FetchPage) -> bool:
        """Read up to `budget` pages; return True when the walk has reached its end."""
        if self.keys is None:
            self.keys = sorted(views)
        budget = self.budget
        while self.ok and self.stream < len(self.keys):
            view = views.get(self.keys[self.stream])
            if view is None:  # the org's streams changed (job types): start over later
                self.ok = False
                break
            if self.next_pos is None:
                if view.total <= 0:  # an empty list proves nothing (the polls confirm it)
                    self.ok = False
                    break
                self.next_pos = self.top = view.total - 1
            if self.next_pos < 0:
                self.stream, self.next_pos = self.stream + 1, None
                continue
            if budget <= 0:
                return False
            budget -= 1
            number = _page_of(view, self.next_pos)
            page = await fetch(self.keys[self.stream], number)
            self._read(view, page, number)
            views[self.keys[self.stream]] = StreamView(page.total, view.limit)  # jobs came
        return True

    def _read(self, view: StreamView, page: Page, number: int) -> None:
        """Check one page against the cursor and move the cursor past it."""
        assert self.next_pos is not None
        start = (number - 1) * view.limit
        shown = len(page.jobs) + page.dropped
        if page.dropped or not page.jobs or (number < page.last_page and shown < view.limit):
            self.ok = False  # an unreadable item, an empty or short page: a job may be unseen
            return
        highest = page.total - 1 - start
        lowest = highest - len(page.jobs) + 1
        if highest < self.next_pos or (number >= page.last_page and lowest > 0):
            self.ok = False  # positions skipped, or the list ends above its oldest job
            return
        edge = {job_identity(job)[0]: highest - i for i, job in enumerate(page.jobs)}
        if len(edge) < len(page.jobs) or any(
                job_id in self.seen and self.edge.get(job_id) != pos
                for job_id, pos in edge.items()):
            # a job shown twice, or again at another position: a deletion shifted the list or
            # it repeats a job in place of another; either way one may be unseen
            self.ok = False
            return
        self.seen.update(edge)
        self.edge = edge
        self.next_pos = min(self.next_pos, lowest - 1)


class Resyncs:
    """Every org's resync pass on one source, and how far each has got."""

    def __init__(self, pages_per_second: float) -> None:
        self._rate = pages_per_second  # resync_budget x max_requests_per_second
        self._passes: dict[str, ResyncPass] = {}
        self._progress: dict[str, float] = {}

    def plan(self, org: str, interval: float, due: bool) -> bool:
        """Set the org's page budget per poll; start a pass when due and none runs (True)."""
        budget = max(1, int(self._rate * interval))
        current = self._passes.get(org)
        if current is not None:
            current.budget = budget
            return False
        self._progress.setdefault(org, 1.0)  # the first sync was a complete list
        if not due:
            return False
        self._passes[org] = ResyncPass(budget)
        self._progress[org] = 0.0
        return True

    def progress(self, org: str) -> float | None:
        """Return how far the org's pass has got (1 between passes; None: never planned)."""
        current = self._passes.get(org)
        if current is not None:
            self._progress[org] = current.progress()
        return self._progress.get(org)

    async def step(self, org: str, polled: Iterable[str], views: dict[StreamKey, StreamView],
                   fetch: FetchPage) -> ResyncPass | None:
        """Walk the org's pass on after a poll read `polled`; return it once it has ended."""
        current = self._passes.get(org)
        if current is None:
            return None
        current.note(polled)
        if not await current.step(views, fetch):
            return None
        del self._passes[org]
        self._progress[org] = 1.0
        return current


def _page_of(view: StreamView, position: int) -> int:
    """Return the page holding `position` (from the oldest end) at the view's total."""
    return max(0, view.total - 1 - position) // max(1, view.limit) + 1
