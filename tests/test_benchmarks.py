"""Smoke run of the benchmark harness: real simulator, both exporters, tiny sizes."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as generate_text

from benchmarks import run as bench
from exporter.collector import JobsCollector
from exporter.render import MetricsCache, generate_openmetrics
from exporter.sources.base import TERMINAL_JOB_STATUSES, JobObservation, PollError, PollResult
from exporter.sources.parse import ParseNotes
from exporter.sources.vocdoni_parse import slim_item as _slim
from exporter.sources.vocdoni_parse import v1_job, v2_job
from exporter.state.hist import HistogramAccumulator
from exporter.state.labels import _clean_chars, clean_label
from exporter.state.snapshot import ExporterSnapshot
from exporter.state.tracker import OrgTracker, TrackerSettings

REQUIRED_KEYS = (
    "scrape_p99_ms_100k", "scrape_speedup_vs_naive_100k", "requests_per_cycle_10k",
    "requests_ratio_naive_over_ours_10k", "cycle_seconds_1000_orgs", "rss_mb_100k",
    "detection_latency_s", "poll_interval_s", "machine",
)


def test_smoke_run_writes_every_key(tmp_path: Path) -> None:
    """The harness measures both exporters end to end and writes results.json and RESULTS.md."""
    results = bench.run(bench.SMOKE, tmp_path)
    written = json.loads((tmp_path / "results.json").read_text())
    for key in REQUIRED_KEYS:
        assert key in written, key
        assert written[key] == results[key]
    assert isinstance(written["machine"], str) and written["machine"]
    scale = written["scales"]["300"]
    ours, naive = scale["ours"], scale["naive"]
    tracked = 300 + 5 * (1 + 2)
    assert ours["tracked_jobs"] >= tracked
    # Ours reads page 1 plus at most a re-check per pending job; the naive reads every job.
    assert 1 <= ours["requests_per_cycle"] <= 1 + 5
    assert naive["requests_per_cycle"] >= tracked + tracked // 100
    assert written["requests_ratio_naive_over_ours_10k"] > 20
    # Detection is bounded by one poll interval plus rendering, never several cycles.
    assert 0 < written["detection_latency_s"] < written["poll_interval_s"] + 1
    assert naive["detection_s"] and naive["detection_s"][0] > 0
    assert ours["scrape"]["scrapes"] >= 5 and naive["scrape"]["scrapes"] >= 5
    assert ours["scrape"]["p50_ms"] < naive["scrape"]["p50_ms"]
    assert 0 < ours["scrape"]["bytes_served_gzip"] < ours["scrape"]["bytes_plain"]
    assert 0 < written["rss_mb_100k"] < 500
    orgs = written["orgs"]["20"]
    assert orgs["ours"]["requests"] >= 20
    assert 0 < written["cycle_seconds_1000_orgs"] < orgs["naive"]["cycle_s"]
    assert set(written["targets"]) and all(isinstance(v, bool) for v in written["targets"].values())
    md = (tmp_path / "RESULTS.md").read_text()
    assert written["machine"] in md
    assert "| scrape p99 (ms) |" in md


def test_ascii_fast_path_equals_the_general_cleaning() -> None:
    """clean_label's ASCII shortcut gives exactly what the general path gives, for any input."""
    rng = random.Random(8)
    cases = ["", " ", "a", " a", "a ", "0x" + "ab" * 20, "x" * 128, "x" * 129, "a\tb", "\x7f",
             "ü", 'a"b\\c', "job id"]
    cases += ["".join(chr(rng.randint(0, 0x2100)) for _ in range(rng.randint(0, 140)))
              for _ in range(3000)]
    cases += ["".join(chr(rng.randint(0x1F, 0x80)) for _ in range(rng.randint(0, 140)))
              for _ in range(3000)]
    for value in cases:
        assert clean_label(value) == _clean_chars(value), repr(value)


def test_active_index_follows_every_status_change() -> None:
    """active_ids() (an index, not a scan) equals the scan after random polls and removals."""
    rng = random.Random(3)
    tracker = OrgTracker("s", "o", TrackerSettings())
    statuses = ("pending", "running", "completed", "failed", "partial", "unknown")
    for step in range(60):
        jobs = tuple(JobObservation(job_id=f"j{rng.randint(0, 80)}", job_type="t",
                                    status=rng.choice(statuses)) for _ in range(20))
        gone = tuple(f"j{rng.randint(0, 80)}" for _ in range(2))
        tracker.apply(PollResult(jobs=jobs, complete=step % 7 == 6, gone=gone), float(step))
        scan = {j for j, r in tracker.jobs.items() if r.status not in TERMINAL_JOB_STATUSES}
        assert tracker.active_ids() == scan
        snap = tracker.snapshot(float(step))
        assert {s for _, s in snap.oldest_active} <= {"pending", "running"}
        assert sum(n for (_, s), n in snap.jobs.items() if s in ("pending", "running")) == len(
            [j for j in scan if tracker.jobs[j].status in ("pending", "running")])


def test_render_collects_once_and_matches_separate_renders() -> None:
    """Both formats come from one collect and equal what the encoders give on the registry."""
    tracker = OrgTracker("s", "o", TrackerSettings())
    tracker.apply(PollResult(jobs=(), complete=True), 1.0)
    tracker.apply(PollResult(jobs=(
        JobObservation(job_id="a", job_type="t", status="failed", duration_s=2.0),
        JobObservation(job_id="b", job_type="t", status="running", progress=0.5),
    ), complete=False), 2.0)
    snap = ExporterSnapshot(orgs={("s", "o"): tracker.snapshot(2.0)})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(lambda: snap, clock=lambda: 3.0))
    cache = MetricsCache(registry)
    cache.render_now()
    assert cache.get(openmetrics=False, gzip=False) == generate_text(registry)
    assert cache.get(openmetrics=True, gzip=False) == generate_openmetrics(registry)
    assert gzip.decompress(cache.get(openmetrics=True, gzip=True)) == generate_openmetrics(
        registry)


def test_histogram_freeze_is_cached_until_the_next_observation() -> None:
    """freeze() returns the same object while nothing changed, a fresh one after observe()."""
    hist = HistogramAccumulator((1.0, 2.0))
    hist.observe(0.5)
    first = hist.freeze()
    assert hist.freeze() is first
    hist.observe(1.5, "job", 1.0)
    second = hist.freeze()
    assert second is not first and second.counts == (1, 2, 2) and first.counts == (1, 1, 1)


def test_slimmed_list_items_parse_like_the_originals() -> None:
    """The memory-saving copy of a Vocdoni list item normalizes (or fails) exactly the same."""
    items: list[dict[str, Any]] = [
        {"jobId": "a", "type": "relay_votes", "status": "failed",
         "result": {"votes": [{"x": 1}] * 3, "added": 2, "total": 3}, "errors": ["e"]},
        {"jobId": "b", "type": "org_members", "status": "completed",
         "result": {"added": 5, "total": 6}, "errors": ["bob@example.org: bad phone"]},
        {"jobId": "c", "type": "publish_process", "status": "pending", "result": None},
        {"jobId": "d", "type": "publish_process", "status": "weird", "result": []},
        {"jobId": "e", "type": "org_members", "status": "pending", "errors": "not a list"},
        {"jobId": "f", "type": "org_members", "completed": True, "added": -1, "total": 4,
         "createdAt": "2024-01-01T00:00:00Z", "completedAt": "2024-01-01T00:00:05.1234567Z"},
        {"jobId": "g", "type": "relay_vote", "completed": "yes"},
    ]

    def outcome(parse: Any, item: dict[str, Any]) -> Any:
        notes = ParseNotes()
        try:
            return parse(item, notes), dict(notes.counts), notes.unknown_statuses
        except PollError as exc:
            return "error", str(exc)

    for item in items:
        slim = _slim(item)
        assert "'votes'" not in str(slim) and "bob@" not in str(slim)
        for parse in (v2_job, v1_job):
            assert outcome(parse, slim) == outcome(parse, item), (item, parse)


def test_issue16_table_lists_every_target_and_keeps_other_scenarios_keys(tmp_path: Path) -> None:
    """RESULTS.md shows each issue 16 target; results.json keeps ordo/sync keys it did not set."""
    from benchmarks import issue16

    results = {"rss_mb_100k": 90.0, "issue16_targets": {"rss_mb_100k < 100": True},
               "bytes_per_job": {"10000": {"memory_bytes_per_job": 88.0,
                                           "file_bytes_per_job": 55.0}}}
    table = "\n".join(issue16.rows(results))
    for key, *_ in issue16.TARGETS:
        assert f"| `{key}` |" in table
    assert "| `rss_mb_100k` | < 100 | 139 | 90 | yes | - |" in table
    assert "| 10,000 | 262 B | 88 B | 125 B | 55 B |" in table
    old = tmp_path / "results.json"
    old.write_text(json.dumps({"ordo_steady": {"x": 1}, "rss_mb_100k": 500.0}))
    assert bench._kept(old, {"rss_mb_100k": 90.0}) == {"ordo_steady": {"x": 1}}
