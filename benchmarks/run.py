"""Benchmark entry point: `python -m benchmarks.run --quick` (CI-sized) or `--full`.

Starts the real simulator, our exporter and the naive baseline as child processes on loopback,
measures both in the same run and writes results.json and RESULTS.md (ratios against the naive
exporter, targets met or missed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks import issue16, memcurve, ordo_bench, ordo_scale, report, sync_scale
from benchmarks.scenarios import Settings, run_orgs, run_scale

HERE = Path(__file__).resolve().parent

# quick: the scales the targets read (10k, 100k); the full run adds 1k and 1M
QUICK = Settings(mode="quick", scales=(10_000, 100_000))
FULL = Settings(
    mode="full", steady_cycles=10, scrape_seconds=15.0, max_scrapes=3000,
    naive_scrape_seconds=20.0, naive_min_scrapes=10, detection_reps=10,
    naive_detection_scales=(1_000, 10_000),
    naive_steady_cycle=True, naive_org_seconds=30.0,
    scales=(1_000, 10_000, 100_000, 1_000_000), org_counts=(100, 1_000, 10_000),
    memory_sizes=(10_000, 100_000, 1_000_000),
)
SYNC_JOBS = 100_000  # first syncs (Ordo, Vocdoni) and the trickled resync, quick and full
# A seconds-long run for the test suite: proves the harness works, not the targets.
SMOKE = replace(
    QUICK, mode="smoke", scales=(300,), org_counts=(20,), active_jobs=5, finished_between=2,
    steady_cycles=2, scrape_seconds=0.5, max_scrapes=50, naive_scrape_seconds=0.5,
    detection_reps=1, naive_detection_scales=(300,), naive_org_seconds=2.0, org_latency_ms=5.0,
    org_concurrency=10, memory_sizes=(1_000,), org_cycle_reps=2,
)


def machine() -> str:
    """Describe the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def summarize(settings: Settings, scales: dict[int, Any], orgs: dict[str, Any]) -> dict[str, Any]:
    """Compute the headline keys and target verdicts from the raw measurements."""
    top = 100_000 if 100_000 in scales else max(n for n in scales if scales[n]["naive"])
    mid = 10_000 if 10_000 in scales else sorted(scales)[len(scales) // 2]
    big_orgs = "1000" if "1000" in orgs else str(max(int(k) for k in orgs))
    ours_top, naive_top = scales[top]["ours"], scales[top]["naive"]
    detections = [d for r in scales.values() for d in r["ours"]["detection_s"]]
    keys: dict[str, Any] = {
        "scrape_p99_ms_100k": ours_top["scrape"]["p99_ms"],
        "scrape_p50_ms_100k": ours_top["scrape"]["p50_ms"],
        "scrape_speedup_vs_naive_100k": _ratio(naive_top["scrape"]["p99_ms"],
                                               ours_top["scrape"]["p99_ms"]),
        "scrape_speedup_p50_vs_naive_100k": _ratio(naive_top["scrape"]["p50_ms"],
                                                   ours_top["scrape"]["p50_ms"]),
        "requests_per_cycle_10k": scales[mid]["ours"]["requests_per_cycle"],
        "requests_ratio_naive_over_ours_10k": _ratio(scales[mid]["naive"]["requests_per_cycle"],
                                                     scales[mid]["ours"]["requests_per_cycle"]),
        "cycle_seconds_1000_orgs": orgs[big_orgs]["ours"]["cycle_s"],
        "rss_mb_100k": ours_top["rss_mb"],
        "detection_latency_s": sorted(detections)[len(detections) // 2],
        "detection_latency_max_s": max(detections),
        "poll_interval_s": settings.interval,
    }
    limit = settings.interval + 1.0
    keys["targets"] = {
        "scrape_p99_ms_100k < 10": keys["scrape_p99_ms_100k"] < 10,
        "scrape_speedup_vs_naive_100k >= 50": keys["scrape_speedup_vs_naive_100k"] >= 50,
        "requests_ratio_naive_over_ours_10k >= 20":
            keys["requests_ratio_naive_over_ours_10k"] >= 20,
        "cycle_seconds_1000_orgs <= 30": keys["cycle_seconds_1000_orgs"] <= 30,
        "rss_mb_100k < 150": keys["rss_mb_100k"] < 150,
        f"detection_latency_max_s < poll_interval_s + 1 ({limit:g})":
            keys["detection_latency_max_s"] < limit,
    }
    keys.update(_issue16_keys(scales, orgs))
    return keys


def _issue16_keys(scales: dict[int, Any], orgs: dict[str, Any]) -> dict[str, Any]:
    """Add the vote-scale keys (issue 16) the run measured: 1M jobs, 10,000 orgs."""
    keys: dict[str, Any] = {}
    targets: dict[str, bool] = {
        "rss_mb_100k < 100": 100_000 in scales and scales[100_000]["ours"]["rss_mb"] < 100,
        "cycle_seconds_1000_orgs <= 2.5": "1000" in orgs and orgs["1000"]["ours"]["cycle_s"] <= 2.5,
    }
    if 1_000_000 in scales:
        big = scales[1_000_000]["ours"]
        keys.update(rss_mb_1m=big["rss_mb"], scrape_p99_ms_1m=big["scrape"]["p99_ms"],
                    poll_cpu_s_1m=big["cpu_s_per_cycle"])
        targets.update({"rss_mb_1m < 400": big["rss_mb"] < 400,
                        "scrape_p99_ms_1m < 5": big["scrape"]["p99_ms"] < 5,
                        "poll_cpu_s_1m < 0.05": big["cpu_s_per_cycle"] < 0.05})
    if "10000" in orgs:
        many = orgs["10000"]["ours"]
        keys.update(cycle_seconds_10000_orgs=many["cycle_s"], rss_mb_10000_orgs=many["rss_mb"])
        targets.update({"cycle_seconds_10000_orgs <= 25": many["cycle_s"] <= 25,
                        "rss_mb_10000_orgs < 600": many["rss_mb"] < 600})
    keys["issue16_targets"] = targets
    return keys


def alert_latency() -> float | None:
    """Return the alert latency another test wrote, when present."""
    path = HERE / "alert_latency.json"
    try:
        value = json.loads(path.read_text()).get("alert_latency_s")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def run(settings: Settings, out_dir: Path, profile_notes: bool = True) -> dict[str, Any]:
    """Run every scenario, write results.json and RESULTS.md into out_dir, return the results."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asyncjob-bench-") as tmp_name:
        tmp = Path(tmp_name)
        scales: dict[int, Any] = {}
        took: dict[str, float] = {}
        for n in settings.scales:
            print(f"[bench] {n} tracked jobs ...", file=sys.stderr, flush=True)
            begin = time.monotonic()
            scales[n] = run_scale(tmp, n, settings)
            took[str(n)] = time.monotonic() - begin
        print(f"[bench] orgs {settings.org_counts} ...", file=sys.stderr, flush=True)
        begin = time.monotonic()
        orgs = run_orgs(tmp, settings)
        took["orgs"] = time.monotonic() - begin
        synced: dict[str, Any] = {}
        if settings.mode != "smoke":  # seconds-long smoke runs leave out the 100k syncs
            print("[bench] 100k first syncs and the trickled resync ...", file=sys.stderr,
                  flush=True)
            begin = time.monotonic()
            synced = sync_scale.run(tmp, SYNC_JOBS)
            took["sync"] = time.monotonic() - begin
        if settings.mode == "full":  # 1M first sync: scrapes, peak RSS, trickled resync
            print("[bench] 1M Vocdoni first sync ...", file=sys.stderr, flush=True)
            begin = time.monotonic()
            synced.update(sync_scale.run_big(tmp))
            took["sync_1m"] = time.monotonic() - begin
        ordo: dict[str, Any] = {}
        for name, scenario in (("ordo_steady", ordo_scale.run), ("ordo_real", ordo_bench.run)):
            begin = time.monotonic()  # the simulator's Ordo (quick, full); the real one (full)
            ordo.update(found := scenario(settings.mode, tmp))
            if found:
                took[name] = time.monotonic() - begin
    print(f"[bench] bytes per job {settings.memory_sizes} ...", file=sys.stderr, flush=True)
    begin = time.monotonic()
    memory = memcurve.curve(settings.memory_sizes)
    took["memory"] = time.monotonic() - begin
    results: dict[str, Any] = summarize(settings, scales, orgs)
    results["bytes_per_job"] = memory
    results["issue16_measured_separately"] = {  # not this run's: dated, with their conditions
        k: {"value": v, "how": how} for k, (v, how) in issue16.SEPARATE.items()}
    results.update(synced)
    results["targets"].update(sync_scale.targets(synced))
    results["issue16_targets"].update(sync_scale.targets_big(synced))
    results.update({
        "machine": machine(),
        "mode": settings.mode,
        "run_seconds": time.monotonic() - started,
        "scenario_seconds": took,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "alert_latency_s": alert_latency(),
        "settings": asdict(settings),
        "scales": {str(k): v for k, v in scales.items()},
        "orgs": orgs,
    })
    results.update(ordo)
    out_dir.mkdir(parents=True, exist_ok=True)
    results.update(_kept(out_dir / "results.json", results))
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out_dir / "RESULTS.md").write_text(report.markdown(results, notes=profile_notes))
    return results


# Keys other scenarios write into results.json (benchmarks.ordo_scale, the sync scenario): kept.
KEPT_PREFIXES = ("ordo_", "first_sync_", "resync_")


def _kept(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Return the other scenarios' keys of the previous results.json this run did not set."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(previous, dict):
        return {}
    return {k: v for k, v in previous.items()
            if k.startswith(KEPT_PREFIXES) and k not in results}


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print the headline keys."""
    parser = argparse.ArgumentParser(description="asyncjob-exporter benchmarks")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CI-sized run (default)")
    mode.add_argument("--full", action="store_true", help="more repetitions, steady naive cycle")
    mode.add_argument("--smoke", action="store_true", help="seconds-long harness check")
    parser.add_argument("--output-dir", type=Path, default=HERE,
                        help="where results.json and RESULTS.md go (default: benchmarks/)")
    args = parser.parse_args(argv)
    settings = FULL if args.full else SMOKE if args.smoke else QUICK
    results = run(settings, args.output_dir)
    for key, value in results.items():
        if not isinstance(value, dict | list):
            print(f"{key}: {value}")
    for target, met in {**results["targets"], **results["issue16_targets"]}.items():
        print(f"target {'MET ' if met else 'MISSED'} {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
