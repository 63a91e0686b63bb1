"""Org-by-org rendering: the same bytes as a full render, unchanged orgs reused, ages fresh."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from exporter.collector import JobsCollector
from exporter.fragments import OrgFragments
from exporter.render import MetricsCache
from exporter.sources.base import JobObservation, PollResult, StepObservation
from exporter.state.hist import HistogramAccumulator
from exporter.state.snapshot import POLL_DURATION_BUCKETS, ExporterSnapshot, OrgHealth
from exporter.state.tracker import OrgTracker, TrackerSettings


def _org(name: str, now: float, *jobs: JobObservation) -> OrgTracker:
    tracker = OrgTracker("src", name, TrackerSettings())
    tracker.apply(PollResult(jobs=(), complete=True), now - 10)
    tracker.apply(PollResult(jobs=jobs, complete=False), now)
    return tracker


def _health(name: str, up: bool = True) -> OrgHealth:
    hist = HistogramAccumulator(POLL_DURATION_BUCKETS)
    hist.observe(0.07)
    return OrgHealth("src", name, up, 50.0, hist.freeze(), {"timeout": 2}, True, True)


def _world(now: float) -> ExporterSnapshot:
    step = StepObservation(step_id="s", step_type="scan", status="running",
                           last_progress_at=now - 30)
    a = _org("a", now, JobObservation("1", "relay_vote", "pending", progress=0.5),
             JobObservation("2", "relay_vote", "failed", created_at=now - 40,
                            finished_at=now - 5, started_at=now - 30))
    b = _org("b\"quoted\\", now, JobObservation("x", "lidar", "running", steps=(step,)))
    c = _org("c", now, JobObservation("y", "relay_vote", "completed"))
    orgs = {("src", t.org): t.snapshot(now) for t in (a, b, c)}
    health = {key: _health(key[1], up=key[1] != "c") for key in orgs}
    health[("src", "never")] = _health("never", up=False)  # polled, never succeeded
    return ExporterSnapshot(orgs=orgs, health=health)


def _both(snap: list[ExporterSnapshot], clock: list[float]) -> tuple[MetricsCache, MetricsCache,
                                                                       OrgFragments]:
    collector = JobsCollector(lambda: snap[0], clock=lambda: clock[0], version="t")
    plain = CollectorRegistry(auto_describe=False)
    plain.register(collector)
    fragments = OrgFragments(collector)
    return (MetricsCache(plain), MetricsCache(CollectorRegistry(), fragments=fragments.encode),
            fragments)


def _same(full: MetricsCache, split: MetricsCache) -> None:
    full.render_now()
    split.render_now()
    for om in (False, True):
        assert split.get(om, False) == full.get(om, False)


def test_org_by_org_render_equals_the_full_render_and_reuses_unchanged_orgs() -> None:
    now = [1000.0]
    snap = [_world(now[0])]
    full, split, fragments = _both(snap, now)
    _same(full, split)
    assert fragments.reused == 0
    now[0] += 7.0  # ages (oldest active, stale steps) move with the render time
    _same(full, split)
    assert fragments.reused == 4
    changed = _org("c", now[0], JobObservation("y", "relay_vote", "completed"),
                   JobObservation("z", "relay_vote", "pending"))
    orgs = dict(snap[0].orgs)
    orgs[("src", "c")] = changed.snapshot(now[0])
    snap[0] = ExporterSnapshot(orgs=orgs, health=snap[0].health)
    _same(full, split)
    assert fragments.reused == 4 + 3  # only org c re-encoded
    assert b'org="c"' in split.get(False, False)


def test_only_the_families_marked_aging_change_with_the_render_time() -> None:
    """A family that ages but is not marked would serve frozen ages from the org's cache."""
    from exporter.rows import AGING, SCOPES

    snap = _world(1000.0)
    collector = JobsCollector(lambda: snap, clock=lambda: 1000.0, version="t")
    per_org = [fam for fam in collector.families if fam.rows in SCOPES]
    moving = {fam.name for fam in per_org
              if list(fam.rows(snap, 1000.0)) != list(fam.rows(snap, 1500.0))}
    assert moving == {fam.name for fam in per_org if fam.rows in AGING}
    assert moving == {"asyncjob_oldest_active_age_seconds", "asyncjob_step_stale_seconds"}


def test_formats_share_one_bytes_object_per_org_family_without_exemplars() -> None:
    now = [1000.0]
    snap = [_world(now[0])]
    _, split, fragments = _both(snap, now)
    split.render_now()
    lines = fragments._lines[("src", "a")]
    shared = [n for n, (t, o) in enumerate(zip(lines.text, lines.om, strict=True)) if t is o]
    assert len(shared) >= len(lines.text) - 2  # only the histograms with exemplars differ
    assert any(t is not o for t, o in zip(lines.text, lines.om, strict=True))


def test_orgs_coming_and_going_move_the_columns_and_match_the_full_render() -> None:
    now = [1000.0]
    snap = [_world(now[0])]
    full, split, fragments = _both(snap, now)
    _same(full, split)
    added = _org("a0", now[0], JobObservation("n", "lidar", "pending"))
    orgs = {**snap[0].orgs, ("src", "a0"): added.snapshot(now[0])}
    del orgs[("src", "c")]
    health = {k: v for k, v in snap[0].health.items() if k != ("src", "c")}
    health[("src", "a0")] = _health("a0")
    snap[0] = ExporterSnapshot(orgs=orgs, health=health)
    now[0] += 3.0
    _same(full, split)
    assert b'org="a0"' in split.get(False, False) and b'org="c"' not in split.get(False, False)
    now[0] += 3.0  # nothing changed but the time: columns patched in place, ages fresh
    reused = fragments.reused
    _same(full, split)
    assert fragments.reused == reused + len(health)


def test_no_org_at_all_renders_the_headers_like_the_full_render() -> None:
    """A daemon renders before its first poll or discovery: no org yet."""
    now = [1000.0]
    snap = [ExporterSnapshot()]
    full, split, _ = _both(snap, now)
    _same(full, split)
    snap[0] = _world(now[0])
    _same(full, split)


def test_histograms_without_exemplars_skip_the_library_and_match_it() -> None:
    from exporter.exposition import Family, build_family
    from exporter.fragments import _encode, _Hist
    from exporter.state.hist import Exemplar, Histogram

    plain = Histogram(bounds=(0.5, 2.0), counts=(1, 3, 4), sum=6.25)
    marked = Histogram(bounds=(0.5, 2.0), counts=(1, 3, 4), sum=6.25,
                       exemplars={1: Exemplar("j1", 1.5, 900.0)})
    rows = {"plain": [(("s", "o\"q", "t"), plain)], "marked": [(("s", "o", "t"), marked)]}
    fam = Family("x_seconds", "histogram", "H.", ("source", "org", "job_type"),
                 lambda snap, now: rows["plain"])
    fast = _Hist(fam).encode(rows["plain"])
    metric = build_family(fam, ExporterSnapshot(), 0.0)
    assert metric is not None
    text, om = _encode([metric])
    assert fast is not None and text.endswith(fast) and fast in om
    assert fast.count(b"\n") == 5 and b'le="+Inf"' in fast
    assert _Hist(fam).encode(rows["marked"]) is None  # exemplars: the library's objects
