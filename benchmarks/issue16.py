"""RESULTS.md rows for issue 16 (vote scale): every target, before, after, and what led there."""

from __future__ import annotations

from typing import Any

# (key, target, before: RESULTS.md of 2026-11-24 or the issue's own figure, profile -> change)
TARGETS: tuple[tuple[str, str, str, str], ...] = (
    ("rss_mb_1m", "< 400", "~1,000 (extrapolated)",
     "tracemalloc: 258 B a job in the tracker (id str, JobRecord, 2 floats, dict slot); "
     "finished jobs now packed in arrays, ~90 B (curve below). The peak was the first sync: "
     "every page's items, then every observation, and two sets naming every job (notes 7, 9): "
     "pages are now normalized as they arrive into packed ObservedJobs (~80 B a job), merged "
     "one at a time, new packed rows written by row. 842 MB before (harness, 1M scale)."),
    ("scrape_p99_ms_1m", "< 5", "not measured",
     "scrapes copy cached bytes; the exposition does not grow with jobs (aggregates only)."),
    ("poll_cpu_s_1m", "< 0.05", "not measured",
     "steady poll walks the active index only (profile 1 below); packed jobs are found "
     "through an array hash table without a Python object each."),
    ("rss_mb_100k", "< 100", "139",
     "same changes as rss_mb_1m; VmHWM includes the first sync's transient (first sync alone: "
     "85 MB, 147 before; note 9)."),
    ("cycle_seconds_1000_orgs", "<= 2.5", "4.9-5.8",
     'cProfile of a bare httpx client (1,000 GETs, 50 ms latency, concurrency 50): '
     'httpcore 1.0.9 counts all connections, not idle ones, against '
     'max_keepalive_connections (default 20), so ~975 of 1,000 requests opened a TCP '
     'connection; raising the limit made one assignment pass give the same idle '
     'connection to several queued requests (8,269 retries per 1,000 requests: a busy '
     'loop). Now exporter/sources/connpool.py: a pool keeping `concurrency` connections, '
     'one queued request per connection (2.5 s). Then the 10,000-org changes below, '
     'which cost the same per org: 1.9-2.2 s (2026-12-05). Then histogram rows without '
     'exemplars encoded straight to lines too, as gauges and counters already were: '
     'median 2.48 -> 2.31 s, 4 interleaved runs each of a profiling script outside the '
     'harness (2026-12-05).'),
    ("cycle_seconds_10000_orgs", "<= 25", "not measured",
     'Profiles of every thread at 10,000 orgs (cProfile, then py-spy sampling the running '
     'daemon; the exporter was CPU-bound: 24 s of CPU in a 25 s cycle, and 23.8 s with no '
     'API latency at all). In order of gain: (1) renders wait 8 render durations instead '
     'of 4 (a render costs ~0.15 s at 10,000 orgs however few changed: ~2 s); (2) gauge '
     'and counter lines encoded straight from rows, shared by both formats, label values '
     'escaped once (encoding a changed org: 0.17-0.2 ms); (3) the young GC generation collected '
     'every 20,000 allocations, not 700 (3.0 s of collections a cycle, 0.8 s after); (4) '
     "one org's publish replaces its entry in a LayeredMap, O(sqrt n), instead of copying "
     'two 10,000-entry dicts (3.6 s under cProfile); (5) no cookie jar (httpx parsed every '
     'answer for cookies: ~5% of the event loop); (6) the watchdog checks 2,000 loops a '
     'second in turn, not 10,000 (~3%); (7) org keys of the state file read once at open, '
     'empty statements of a save skipped, the pool scans its connections only when a '
     'request queues. Left: httpx building and sending requests ~30% of the event loop, '
     'the SQLite save ~12% (batching 100 orgs a commit measured only 0.05 ms an org), '
     'JSON decoding ~6%.'),
    ("rss_mb_10000_orgs", "< 600", "not measured",
     'the exposition at 10,000 orgs is ~60-70 MB per format: each render joined its parts '
     'into one bytes object per format, plus gzip of both, while the previous render was '
     'still served (~240 MB at the peak: 595-627 MB VmHWM). Renders now keep the parts '
     '(the per-org lines the render cache holds anyway; both formats share the bytes of '
     'lines without exemplars) and scrapes write them in 256 KiB chunks; gzip is made only '
     'for variants scrapers ask for. 375-386 MB after.'),
    ("first_sync_seconds_100k", "<= 10 (and the sequential time)", "not measured",
     "see the sync scenario (benchmarks/sync_scale.py)."),
    ("resync_max_requests_per_poll_1m", "<= budget (10% of the rate)", "10,000 in one poll",
     "the trickled pass (sync scenario, benchmarks/sync_scale.py `run_big`, full run): page 1 "
     "plus a budget of 5 pass pages a poll."),
)
# Keys also measured one scenario at a time (2 CPUs shared with other jobs): (value, how).
SEPARATE: dict[str, tuple[float, str]] = {
    "rss_mb_1m": (322.8, "2026-12-05, `python -m benchmarks.sync_scale big`: VmHWM after the "
                         "1M Vocdoni first sync (83 s, 10 ms a page, concurrency 8, scrapes "
                         "back to back: p99 6.6 ms); before: 842 (harness 1M scale alone)"),
    "rss_mb_100k": (84.3, "2026-12-05: the 100k scale scenario, ours only (first sync, steady "
                          "cycles, scrapes, detection), median of 2 (85.1, 83.5); the code before "
                          "this change in the same session: 148.7, 147.2"),
    "resync_max_requests_per_poll_1m": (6.0, "2026-12-05, same run: 5 polls while the pass "
                                             "trickled, page 1 + 5 pass pages each"),
    "scrape_p99_ms_1m": (2.19, "harness, 1M scale alone: 300 scrapes, p50 0.62 ms"),
    "poll_cpu_s_1m": (0.023, "harness, 1M scale alone: 50 pending jobs, no new ones, "
                             "6 requests a poll"),
    "cycle_seconds_10000_orgs": (23.6,
        "2026-12-05, the orgs scenario with the full run's settings rerun alone after the "
        "simulator fix (it walked all 10,000 orgs under its lock on every request); 21.7 and "
        "22.4 at 10,000 orgs alone; 29.0, 30.2, 28.8 and 29.6 for 6535693 the same morning"),
    "rss_mb_10000_orgs": (389.0,
        "VmHWM, same rerun; 380 and 386 alone; 627, 604, 596 and 605 for 6535693"),
    "cycle_seconds_1000_orgs": (2.34,
        "same rerun (the previous full run's 2.52 had the simulator walking 10,000 orgs a "
        "request); 1.94 and 2.08 alone; 2.53 (median of 3) the day before, 3.40 before the "
        "connection pool"),
}
# Bytes per tracked job before packing (same memcurve world, code of main before issue 16).
BEFORE_CURVE: dict[str, tuple[float, float]] = {
    "10000": (262.0, 124.9), "100000": (257.9, 122.0), "1000000": (248.0, 121.5),
}


def _value(results: dict[str, Any], key: str) -> str:
    value = results.get(key)
    if value is None:
        return "full run only" if key.endswith(("_1m", "_10000_orgs")) else "-"
    shown = f"{value:,.3g}" if isinstance(value, float) else str(value)
    sequential = results.get("first_sync_seconds_sequential_100k")
    if key == "first_sync_seconds_100k" and sequential is not None:
        shown += f" (sequential: {sequential:,.3g})"
    return shown


def rows(results: dict[str, Any]) -> list[str]:
    """Return the issue 16 table and the bytes-per-job curve."""
    # Issue 16's own verdict first: `targets` has looser ones for the same keys (< 150, <= 30).
    verdicts = [*results.get("issue16_targets", {}).items(), *results.get("targets", {}).items()]
    out = ["| key | target | before | after (this run) | met | measured separately | "
           "profile and change |", "|---|---|---|---|---|---|---|"]
    for key, target, before, why in TARGETS:
        met = next((("yes" if ok else "**NO**") for name, ok in verdicts
                    if name.startswith(key + " ")), "-")
        sep = SEPARATE.get(key)
        alone = "-" if sep is None else f"{sep[0]:,.4g} ({sep[1]})"
        out.append(f"| `{key}` | {target} | {before} | {_value(results, key)} | {met} | "
                   f"{alone} | {why} |")
    out += ["", "Bytes per tracked job (one org, N finished `relay_vote` jobs with 64-hex ids + "
            "50 pending, after the first sync; `python -m benchmarks.memcurve N`):", "",
            "| jobs | memory before | memory after | state file before | state file after |",
            "|---|---|---|---|---|"]
    for size, got in results.get("bytes_per_job", {}).items():
        mem, disk = BEFORE_CURVE.get(size, (None, None))
        out.append(f"| {int(size):,} | {'-' if mem is None else f'{mem:.0f} B'} | "
                   f"{got['memory_bytes_per_job']:.0f} B | "
                   f"{'-' if disk is None else f'{disk:.0f} B'} | "
                   f"{got['file_bytes_per_job']:.0f} B |")
    return out
