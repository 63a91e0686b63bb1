"""Vocdoni job world: per-org job plans that evolve as a pure function of the world clock."""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter

from exporter.simulator.options import SimOptions
from exporter.simulator.util import HOSTILE_LABELS, hex_id, norm_address

IMPORT_TYPES: frozenset[str] = frozenset({"org_members", "census_participants"})
# Weighted mix of what each generation creates; census_participants is legacy (v1 history only).
NEW_TYPES: tuple[tuple[str, float], ...] = (
    ("relay_vote", 0.35), ("org_members", 0.15), ("publish_process", 0.1),
    ("set_process_status", 0.1), ("publish_voting_process", 0.1),
    ("set_process_census", 0.1), ("relay_votes", 0.1),
)
OLD_TYPES: tuple[tuple[str, float], ...] = (
    ("relay_vote", 0.4), ("org_members", 0.3), ("publish_process", 0.15),
    ("set_process_status", 0.15),
)
NEW_VALID: tuple[str, ...] = (
    "org_members", "census_participants", "publish_process", "set_process_status",
    "set_process_census", "relay_vote", "relay_votes", "publish_voting_process",
)
OLD_VALID: tuple[str, ...] = (
    "org_members", "census_participants", "publish_process", "set_process_status", "relay_vote",
)
REPORT_TICK_S = 10.0  # import progress is saved every 10 s (UpdateJobProgress)


class VJob:
    """One Vocdoni job's plan; its visible state is derived from the clock."""

    __slots__ = (
        "created", "deleted", "failed", "finish", "freeze", "jid", "jtype", "live", "n_err",
        "null_errors", "org", "seen100", "seq", "total",
    )

    def __init__(self, jid: str, jtype: str, org: str, created: float, seq: int) -> None:
        self.jid = jid
        self.jtype = jtype
        self.org = org
        self.created = created
        self.seq = seq
        self.finish: float | None = None  # None = stuck pending forever
        self.failed = False  # tx: ends failed; import: completes with errored rows
        self.total = 0  # import rows or relay_votes batch size
        self.n_err = 0  # errored rows or failed votes
        self.freeze = 1.0  # fraction where a stuck job stops progressing
        self.live = False  # created after start: v1 keeps import progress in memory
        self.null_errors = False  # v1 list shows errors as null instead of []
        self.seen100: float | None = None  # v1: when a poll first saw progress 100
        self.deleted = False

    @property
    def is_import(self) -> bool:
        """Tell whether this is a member import (never failed, status derived)."""
        return self.jtype in IMPORT_TYPES

    def status(self, now: float) -> str:
        """Return pending / completed / failed as Vocdoni's new API derives it."""
        if self.finish is None or now < self.finish:
            return "pending"
        if self.failed and not self.is_import:
            return "failed"
        return "completed"

    def fraction(self, now: float) -> float:
        """Return processed share 0..1; imports only move on 10 s reporter ticks."""
        if self.finish is not None and now >= self.finish:
            return 1.0
        span = (self.finish if self.finish is not None else self.created + 60.0) - self.created
        elapsed = max(0.0, now - self.created)
        if self.is_import:
            elapsed = (elapsed // REPORT_TICK_S) * REPORT_TICK_S
        return min(self.freeze, elapsed / span if span > 0 else 1.0, 0.99)

    def added(self, now: float) -> int:
        """Return rows inserted (imports) or envelopes finished (relay_votes) so far."""
        final = self.total - self.n_err if self.is_import else self.total
        if self.finish is not None and now >= self.finish:
            return final
        return int(final * self.fraction(now))


class VOrg:
    """An organization: its jobs sorted by createdAt and its arrival stream."""

    def __init__(self, address: str, rng: random.Random, next_at: float) -> None:
        self.address = address
        self.rng = rng
        self.next_at = next_at
        self.jobs: list[VJob] = []  # ascending createdAt: pages slice from the end
        self.by_type: dict[str, list[VJob]] = {}
        self.active: dict[str, VJob] = {}
        self.counts: Counter[tuple[str, str]] = Counter()  # (type, status) of listed jobs
        self.finished: Counter[tuple[str, str]] = Counter()
        self.import_items: Counter[str] = Counter()


class VocdoniWorld:
    """All orgs of one API generation ("new" = GET /jobs, "old" = v2.9.0)."""

    def __init__(self, opts: SimOptions, generation: str, start: float) -> None:
        self.opts = opts
        self.generation = generation
        self.mount = "vocdoni" if generation == "new" else "vocdoni-v1"
        mix = list(NEW_TYPES if generation == "new" else OLD_TYPES)
        valid = list(NEW_VALID if generation == "new" else OLD_VALID)
        if opts.hostile_labels:
            mix += [(label, 0.05) for label in HOSTILE_LABELS]
            valid += HOSTILE_LABELS
        self.mix_types = [t for t, _ in mix]
        self.mix_weights = [w for _, w in mix]
        self.valid_types: tuple[str, ...] = tuple(valid)
        self.jobs: dict[str, VJob] = {}
        self.orgs: dict[str, VOrg] = {}
        self._heap: list[tuple[float, int, VJob]] = []
        # (next arrival, address) of every org that gets new jobs: advance() costs the arrivals
        # due, not a walk of every org (10,000 orgs: the walk under the lock per request
        # made the simulator, not the exporter under test, the bottleneck)
        self._arrivals: list[tuple[float, str]] = []
        self._seq = 0
        count = opts.vocdoni_orgs if generation == "new" else opts.vocdoni_v1_orgs
        for index in range(count):
            self._add_org(index, start)

    def _add_org(self, index: int, start: float) -> None:
        rng = random.Random(f"{self.opts.seed}:{self.mount}:{index}")
        address = "0x" + hex_id(rng, 20)
        org = VOrg(address, rng, start + self._gap(rng))
        self.orgs[address] = org
        self._make_history(org, start)
        if math.isfinite(org.next_at):
            heapq.heappush(self._arrivals, (org.next_at, address))

    def _gap(self, rng: random.Random) -> float:
        rate = self.opts.job_rate
        return rng.expovariate(rate) if rate > 0 else float("inf")

    def _make_history(self, org: VOrg, start: float) -> None:
        rate = self.opts.job_rate if self.opts.job_rate > 0 else 0.5
        created = start - 1.0
        stamps = []
        for _ in range(self.opts.history):
            created -= org.rng.expovariate(rate)
            stamps.append(created)
        old_mix = self.generation == "old"
        for created in reversed(stamps):
            jtype = self._pick_type(org.rng)
            if old_mix and org.rng.random() < 0.05:
                jtype = "census_participants"
            job = self._plan(org, jtype, created, org.rng, allow_stuck=False)
            if job.finish is not None and job.finish > start - 0.5:
                job.finish = max(created + 0.001, start - 0.5)
            self._insert(org, job)

    def _pick_type(self, rng: random.Random) -> str:
        return rng.choices(self.mix_types, self.mix_weights)[0]

    def _plan(
        self, org: VOrg, jtype: str, created: float, rng: random.Random, allow_stuck: bool = True,
    ) -> VJob:
        """Draw a job's whole future now, so its state is a function of time only."""
        is_import = jtype in IMPORT_TYPES
        jid = hex_id(rng, 16 if is_import else 32)
        self._seq += 1
        job = VJob(jid, jtype, org.address, created, self._seq)
        mean = max(self.opts.job_duration_s, 0.01)
        duration = max(0.2, rng.expovariate(1.0 / mean))
        roll_fail, roll_stuck = rng.random(), rng.random()
        job.null_errors = rng.random() < 0.5
        job.failed = roll_fail < self.opts.failure_ratio
        if is_import:
            job.total = rng.randint(5, 2000)
            job.n_err = rng.randint(1, min(job.total, 25)) if job.failed else 0
            duration *= 3  # imports insert in batches of 200: slower than a tx
        elif jtype == "relay_votes":
            job.total = rng.randint(2, 100)
            job.n_err = rng.randint(1, job.total) if job.failed else 0
        job.freeze = rng.uniform(0.1, 0.9)
        if not (allow_stuck and roll_stuck < self.opts.stuck_ratio):
            job.finish = created + duration
            job.freeze = 1.0
        return job

    def _insert(self, org: VOrg, job: VJob) -> None:
        org.jobs.append(job)
        org.by_type.setdefault(job.jtype, []).append(job)
        org.active[job.jid] = job
        org.counts[(job.jtype, "pending")] += 1
        self.jobs[job.jid] = job
        if job.finish is not None:
            heapq.heappush(self._heap, (job.finish, job.seq, job))

    def advance(self, now: float) -> None:
        """Create arrivals and settle finishes up to `now`; cost is the work that happened."""
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= now:
            _, address = heapq.heappop(arrivals)
            org = self.orgs[address]
            while org.next_at <= now:
                job = self._plan(org, self._pick_type(org.rng), org.next_at, org.rng)
                job.live = True
                self._insert(org, job)
                org.next_at += self._gap(org.rng)
            if math.isfinite(org.next_at):
                heapq.heappush(arrivals, (org.next_at, address))
        while self._heap and self._heap[0][0] <= now:
            _, _, job = heapq.heappop(self._heap)
            if not job.deleted:
                self._settle(job, now)

    def _settle(self, job: VJob, now: float) -> None:
        org = self.orgs[job.org]
        status = job.status(now)
        org.active.pop(job.jid, None)
        org.counts[(job.jtype, "pending")] -= 1
        org.counts[(job.jtype, status)] += 1
        org.finished[(job.jtype, status)] += 1
        if job.jtype == "org_members":
            org.import_items["added"] += job.total - job.n_err
            org.import_items["errored"] += job.n_err

    def find_org(self, address: str | None) -> VOrg | None:
        """Return the org (first one when `address` is None)."""
        if address is None:
            return next(iter(self.orgs.values()), None)
        return self.orgs.get(norm_address(address) or "")

    def page(self, org: VOrg, jtype: str | None, page: int, limit: int) -> list[VJob]:
        """Return one page, newest first, in O(limit)."""
        jobs = org.jobs if jtype is None else org.by_type.get(jtype, [])
        hi = len(jobs) - (page - 1) * limit
        lo = max(0, hi - limit)
        return jobs[lo:hi][::-1] if hi > 0 else []

    def count(self, org: VOrg, jtype: str | None) -> int:
        """Return how many jobs the list would page over."""
        return len(org.jobs if jtype is None else org.by_type.get(jtype, []))

    def add_jobs(
        self, org: VOrg, jtype: str, count: int, now: float, rng: random.Random, fail: bool = False,
    ) -> list[VJob]:
        """Create jobs at `now` (control endpoint); `fail` makes them fail within 0.5 s."""
        made = []
        for _ in range(count):
            job = self._plan(org, jtype, now, rng, allow_stuck=not fail)
            job.live = True
            if fail:
                job.failed = True
                job.finish = now + rng.uniform(0.2, 0.5)
                job.freeze = 1.0
                if job.total:
                    job.n_err = max(job.n_err, 1)
            self._insert(org, job)
            made.append(job)
        return made

    def delete_org_jobs(self, org: VOrg) -> int:
        """Drop every job of the org, as DeleteJobsByOrg does; counters of finishes stay."""
        for job in org.jobs:
            job.deleted = True
            self.jobs.pop(job.jid, None)
        gone = len(org.jobs)
        org.jobs, org.by_type, org.active = [], {}, {}
        org.counts = Counter()
        return gone

    def truth(self) -> dict[str, object]:
        """Return ground truth per org for tests and benchmarks."""
        return {addr: _org_truth(org) for addr, org in self.orgs.items()}


def _nest(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (jtype, status), n in sorted(counts.items()):
        if n:
            out.setdefault(jtype, {})[status] = n
    return out


def _org_truth(org: VOrg) -> dict[str, object]:
    return {
        "jobs": _nest(org.counts),
        "finished": _nest(org.finished),
        "total": len(org.jobs),
        "active_ids": list(org.active),
        "import_items": {
            "added": org.import_items["added"], "errored": org.import_items["errored"],
        },
    }
