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

from benchmarks import ordo_bench, ordo_scale, report
from benchmarks.scenarios import Settings, run_orgs, run_scale

HERE = Path(__file__).resolve().parent

QUICK = Settings(mode="quick")
FULL = Settings(
    mode="full", steady_cycles=10, scrape_seconds=15.0, max_scrapes=3000,
    naive_scrape_seconds=20.0, naive_min_scrapes=10, detection_reps=10,
    naive_detection_scales=(1_000, 10_000),
    naive_steady_cycle=True, naive_org_seconds=30.0,
)
# A seconds-long run for the test suite: proves the harness works, not the targets.
SMOKE = replace(
    QUICK, mode="smoke", scales=(300,), org_counts=(20,), active_jobs=5, finished_between=2,
    steady_cycles=2, scrape_seconds=0.5, max_scrapes=50, naive_scrape_seconds=0.5,
    detection_reps=1, naive_detection_scales=(300,), naive_org_seconds=2.0, org_latency_ms=5.0,
    org_concurrency=10,
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
    top = max(scales)
    mid = 10_000 if 10_000 in scales else sorted(scales)[len(scales) // 2]
    big_orgs = str(max(int(k) for k in orgs))
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
        ordo: dict[str, Any] = {}
        for name, scenario in (("ordo_steady", ordo_scale.run), ("ordo_real", ordo_bench.run)):
            begin = time.monotonic()  # the simulator's Ordo (quick, full); the real one (full)
            ordo.update(found := scenario(settings.mode, tmp))
            if found:
                took[name] = time.monotonic() - begin
    results: dict[str, Any] = summarize(settings, scales, orgs)
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
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out_dir / "RESULTS.md").write_text(report.markdown(results, notes=profile_notes))
    return results


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
    for target, met in results["targets"].items():
        print(f"target {'MET ' if met else 'MISSED'} {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
