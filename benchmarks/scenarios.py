"""Benchmark scenarios: one org at N tracked jobs, and many orgs behind a slow API."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from benchmarks import harness as h


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes and repetitions of one benchmark run."""

    mode: str
    scales: tuple[int, ...] = (1_000, 10_000, 100_000)
    org_counts: tuple[int, ...] = (100, 1_000)
    interval: float = 1.0  # poll interval of both exporters
    active_jobs: int = 50
    finished_between: int = 10  # finished jobs created between two active ones
    steady_cycles: int = 3
    scrape_seconds: float = 1.5
    max_scrapes: int = 300
    naive_scrape_seconds: float = 2.0
    naive_min_scrapes: int = 3  # at 100k one naive scrape takes seconds
    detection_reps: int = 3
    naive_detection_scales: tuple[int, ...] = (1_000,)
    naive_steady_cycle: bool = False  # False: measure the naive's first cycle (same work)
    naive_org_seconds: float = 2.0  # then extrapolate the many-org cycle
    org_history: int = 20
    org_latency_ms: float = 50.0
    org_concurrency: int = 50
    org_cycle_reps: int = 3  # first cycles per org count (fresh state each): the median is quoted
    concurrency: int = 8
    naive_max_scale: int = 100_000  # above it ours only: a naive cycle at 1M takes ~15 min
    memory_sizes: tuple[int, ...] = (10_000, 100_000)  # bytes per tracked job (memcurve)


SCALE_KNOBS = ("--seed", "1", "--vocdoni-v1-orgs", "0", "--job-rate", "0", "--ordo-job-rate", "0",
               "--ordo-history", "0", "--job-duration-s", "1000000", "--stuck-ratio", "0")


def config(sim: str, orgs: list[str], state: Path, *, interval: float, concurrency: int) -> str:
    """Return our exporter's config: rate limit lifted so the API, not the bucket, is measured."""
    addresses = "\n".join(f'      - address: "{a}"' for a in orgs)
    return f"""
state:
  path: {state}
defaults:
  interval: {interval}s
  jitter: 0
  timeout: 30s
  concurrency: {concurrency}
  max_requests_per_second: 1000
sources:
  - name: bench
    kind: vocdoni
    base_url: {sim}/vocdoni
    api: v2
    auth:
      token: sim-token
    organizations:
{addresses}
"""


def seed_active(sim: str, org: str, active: int, between: int) -> None:
    """Create `active` pending jobs, each followed by `between` failed ones (spread over pages)."""
    with httpx.Client(timeout=30) as client:
        for _ in range(active):
            client.post(f"{sim}/_sim/jobs", json={"org": org, "count": 1,
                                                  "job_type": "publish_process"}
                        ).raise_for_status()
            for _ in range(between):
                client.post(f"{sim}/_sim/fail_job", json={"org": org}).raise_for_status()
            client.post(f"{sim}/_sim/advance", json={"seconds": 1}).raise_for_status()


def _events(proc: h.Proc, event: str) -> list[dict[str, Any]]:
    return [e for e in proc.json_lines() if e.get("event") == event]


def _count_events(proc: h.Proc, event: str) -> int:
    """Count an event's log lines without parsing them."""
    return proc.output().count(f'"event": "{event}"')


def _polled(proc: h.Proc, count: int) -> bool:
    """Tell whether `count` polls have ended."""
    return _count_events(proc, "poll_summary") >= count


def _wait_events(proc: h.Proc, event: str, count: int, timeout: float) -> list[dict[str, Any]]:
    return list(h.wait_for(lambda: (lambda e: e if len(e) >= count else None)(
        _events(proc, event)), timeout, f"{count} '{event}' lines", interval=0.02))


def _ours_shows(text: str, job_id: str) -> bool:
    """Tell whether asyncjob_failed_job_info names the job."""
    return f'job_id="{job_id}"' in text


def _naive_shows(text: str, job_id: str) -> bool:
    """Tell whether the naive per-job gauge says failed (2)."""
    needle = f'job_id="{job_id}"'
    return any(needle in line and line.endswith(" 2.0") for line in text.splitlines())


def detect(sim: str, org: str, url: str, shows: Callable[[str, str], bool], reps: int,
           interval: float, timeout: float) -> list[float]:
    """Fail a job in the API, time until /metrics shows it; random phase against the polls."""
    out = []
    rng = random.Random(4)
    with httpx.Client(timeout=60) as client:
        for _ in range(reps):
            time.sleep(rng.uniform(0, interval))
            job_id = h.sim_post(sim, "fail_job", {"org": org})["job_id"]
            h.sim_post(sim, "advance", {"seconds": 1})  # the job is failed in the API from now
            started = time.monotonic()

            def visible(job: str = job_id) -> bool:
                return shows(client.get(f"{url}/metrics").text, job)

            h.wait_for(visible, timeout, "failed job in /metrics", interval=0.01)
            out.append(time.monotonic() - started)
    return out


def measure_ours(tmp: Path, sim: str, org: str, n: int, s: Settings) -> dict[str, Any]:
    """Run our exporter on one org: first sync, steady cycles, scrapes, detection, RSS."""
    cfg = config(sim, [org], tmp / f"state-{n}.db", interval=s.interval,
                 concurrency=s.concurrency)
    with h.ours(tmp, cfg, f"ours-{n}") as (url, proc):
        h.wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
                   600, "first sync")
        first_sync = time.monotonic() - proc.started
        done = len(_wait_events(proc, "poll_summary", 2, 60))
        _wait_events(proc, "poll_summary", done + 1, 60)  # a poll just ended: start on a boundary
        h.sim_post(sim, "requests/reset")
        cpu0 = proc.cpu_seconds()
        polls = _wait_events(proc, "poll_summary", done + 1 + s.steady_cycles,
                             60 + 10 * s.steady_cycles)
        cpu = proc.cpu_seconds() - cpu0
        requests = h.sim_requests(sim)
        window = polls[done + 1: done + 1 + s.steady_cycles]
        scrape = h.scrape_series(url, seconds=s.scrape_seconds, max_scrapes=s.max_scrapes)
        latencies = detect(sim, org, url, _ours_shows, s.detection_reps, s.interval,
                           s.interval * 5 + 30)
        return {
            "first_sync_s": first_sync,
            "requests_per_cycle": requests / s.steady_cycles,
            "cpu_s_per_cycle": cpu / s.steady_cycles,
            "wall_s_per_cycle": h.median([float(p["duration"]) for p in window]),
            "scrape": scrape,
            "detection_s": latencies,
            "rss_mb": proc.status_kb("VmHWM") / 1024,
            "rss_now_mb": proc.status_kb("VmRSS") / 1024,
            "tracked_jobs": int(polls[-1]["jobs"]),
        }


def measure_naive(tmp: Path, sim: str, org: str, n: int, s: Settings) -> dict[str, Any]:
    """Run the naive exporter on the same org: one cycle's cost, scrapes while it polls, RSS."""
    h.sim_post(sim, "requests/reset")
    with h.naive(tmp, f"{sim}/vocdoni", [org], s.interval, f"naive-{n}") as (url, proc):
        measured = 2 if s.naive_steady_cycle else 1
        if measured == 2:
            _wait_events(proc, "cycle", 1, 3600)
            h.sim_post(sim, "requests/reset")
        cycle = _wait_events(proc, "cycle", measured, 3600)[measured - 1]
        requests = h.sim_requests(sim)
        time.sleep(s.interval + 0.2)  # the next cycle is under way: scrape while it polls
        scrape = h.scrape_series(url, seconds=s.naive_scrape_seconds, max_scrapes=s.max_scrapes,
                                 min_scrapes=s.naive_min_scrapes)
        latencies: list[float] = []
        if n in s.naive_detection_scales:
            latencies = detect(sim, org, url, _naive_shows, 1, s.interval,
                               float(cycle["wall"]) * 3 + s.interval + 30)
        return {
            "cycle_measured": measured,
            "requests_per_cycle": requests if measured == 2 else int(cycle["requests"]),
            "requests_per_cycle_sim": requests,
            "cpu_s_per_cycle": float(cycle["cpu"]),
            "wall_s_per_cycle": float(cycle["wall"]),
            "scrape": scrape,
            "detection_s": latencies,
            "rss_mb": proc.status_kb("VmHWM") / 1024,
        }


def run_scale(tmp: Path, n: int, s: Settings) -> dict[str, Any]:
    """One simulator with one org of n finished jobs + active ones; ours, then naive."""
    with h.simulator(tmp, *SCALE_KNOBS, "--vocdoni-orgs", "1", "--history", str(n)) as (sim, _):
        h.sim_post(sim, "pause")
        org = next(iter(h.sim_get(sim, "truth")["vocdoni"]))
        seed_active(sim, org, s.active_jobs, s.finished_between)
        result = {"tracked_jobs_api": n + s.active_jobs * (1 + s.finished_between),
                  "ours": measure_ours(tmp, sim, org, n, s)}
        result["naive"] = measure_naive(tmp, sim, org, n, s) if n <= s.naive_max_scale else None
        return result


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def first_cycle(proc: h.Proc, orgs: int) -> float:
    """Return first poll start to last first-poll end over all orgs, from the poll log lines."""
    firsts: dict[str, dict[str, Any]] = {}
    for e in _events(proc, "poll_summary"):
        firsts.setdefault(e["org"], e)
    if len(firsts) < orgs:
        raise RuntimeError(f"only {len(firsts)} of {orgs} orgs polled")
    ends = [_ts(e["timestamp"]) for e in firsts.values()]
    starts = [_ts(e["timestamp"]) - float(e["duration"]) for e in firsts.values()]
    return max(ends) - min(starts)


def run_orgs(tmp: Path, s: Settings) -> dict[str, Any]:
    """Many orgs behind an API that takes latency_ms per request: first cycles, both exporters."""
    biggest = max(s.org_counts)
    knobs = (*SCALE_KNOBS, "--vocdoni-orgs", str(biggest), "--history", str(s.org_history),
             "--latency-ms", str(s.org_latency_ms))
    out: dict[str, Any] = {}
    with h.simulator(tmp, *knobs) as (sim, _):
        h.sim_post(sim, "pause")
        orgs = sorted(h.sim_get(sim, "truth")["vocdoni"])
        for count in s.org_counts:
            chosen = orgs[:count]
            reps = [_org_cycle(tmp, sim, chosen, s, rep) for rep in range(s.org_cycle_reps)]
            out[str(count)] = {"ours": median_run(reps),
                               "naive": naive_orgs(tmp, sim, chosen, s)}
    return out


def median_run(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the run of median cycle, with every cycle and the worst peak RSS of all runs."""
    ours = dict(sorted(reps, key=lambda r: float(r["cycle_s"]))[len(reps) // 2])
    ours.update(cycles_s=[r["cycle_s"] for r in reps], rss_mb=max(r["rss_mb"] for r in reps))
    return ours


def _org_cycle(tmp: Path, sim: str, orgs: list[str], s: Settings, rep: int) -> dict[str, Any]:
    """Run our exporter on a fresh state file until every org has been polled once."""
    name = f"orgs-{len(orgs)}-{rep}"
    cfg = config(sim, orgs, tmp / f"state-{name}.db", interval=600,
                 concurrency=s.org_concurrency)
    h.sim_post(sim, "requests/reset")
    with h.ours(tmp, cfg, f"ours-{name}") as (_, proc):
        # Count raw lines, slowly: parsing a growing JSON log every 20 ms took a good
        # share of the 2 CPUs the exporter under test needs.
        h.wait_for(partial(_polled, proc, len(orgs)), 900, f"{len(orgs)} polls", interval=0.25)
        spawn_to_polled = time.monotonic() - proc.started
        return {"cycle_s": first_cycle(proc, len(orgs)), "spawn_to_polled_s": spawn_to_polled,
                "requests": h.sim_requests(sim), "rss_mb": proc.status_kb("VmHWM") / 1024}


def naive_orgs(tmp: Path, sim: str, orgs: list[str], s: Settings) -> dict[str, Any]:
    """Run the naive exporter over many orgs for a while; extrapolate its cycle from its pace."""
    started = time.time()
    with h.naive(tmp, f"{sim}/vocdoni", orgs, 600, f"naive-orgs-{len(orgs)}") as (_, proc):
        deadline = time.monotonic() + s.naive_org_seconds
        while time.monotonic() < deadline and not _events(proc, "cycle"):
            time.sleep(0.1)
        cycles = _events(proc, "cycle")
        if cycles:
            return {"cycle_s": float(cycles[0]["wall"]), "extrapolated": False}
        done = _events(proc, "org")
        if len(done) < 2:
            raise RuntimeError("naive exporter polled fewer than 2 orgs")
        pace = (done[-1]["t"] - done[0]["t"]) / (len(done) - 1)  # seconds per org
        first = done[0]["t"] - started
        return {"cycle_s": pace * len(orgs), "extrapolated": True, "orgs_done": len(done),
                "first_org_s": first}
