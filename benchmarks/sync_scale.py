"""Big first syncs and the amortized resync: scrapes during them, their wall time, their cost.

`python -m benchmarks.sync_scale [N]` prints the keys as JSON; run.py adds them to results.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks import harness as h
from benchmarks.ordo_scale import KNOBS as ORDO_KNOBS
from benchmarks.ordo_scale import config as ordo_config
from benchmarks.scenarios import SCALE_KNOBS, _events, _polled

PAGE_LATENCY_MS = 10.0


def scrapes_until(url: str, done: threading.Event) -> list[float]:
    """Scrape /metrics back to back like Prometheus until `done`; return latencies in ms."""
    latencies: list[float] = []
    with httpx.Client(headers=h.PROM_HEADERS, timeout=60) as client:
        while not done.is_set():
            started = time.perf_counter()
            client.get(f"{url}/metrics").read()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


@contextmanager
def scraping(url: str) -> Iterator[list[float]]:
    """Scrape back to back in a thread for the length of the block; fill the yielded list."""
    done = threading.Event()
    out: list[float] = []
    scraper = threading.Thread(target=lambda: out.extend(scrapes_until(url, done)))
    scraper.start()
    try:
        yield out
    finally:
        done.set()
        scraper.join(120)


def first_poll(proc: h.Proc, timeout: float) -> dict[str, Any]:
    """Wait for the first poll's summary, looking every 0.25 s without parsing the log.

    The scraper runs in this process: parsing the whole JSON log (one line per scrape at debug
    level) every 20 ms took this process's GIL from the scraper thread and added up to ~10 ms
    to the latencies it measured (p99 ~11 ms with or without the exporter's changes).
    """
    h.wait_for(lambda: _polled(proc, 1), timeout, "the first poll", interval=0.25)
    return _events(proc, "poll_summary")[0]


def _stats(latencies: list[float]) -> dict[str, float]:
    return {"scrapes": len(latencies), "p50_ms": round(h.median(latencies), 2),
            "p99_ms": round(h.percentile(latencies, 99), 2), "max_ms": round(max(latencies), 2)}


def ordo_first_sync(tmp: Path, n: int) -> dict[str, Any]:
    """Scrape while the exporter lists, parses, merges and saves n Ordo jobs of history."""
    with h.simulator(tmp, *ORDO_KNOBS, "--ordo-history", str(n)) as (sim, _):
        with h.ours(tmp, ordo_config(sim, tmp / f"sync-ordo-{n}.db"), f"sync-ordo-{n}") as (
                url, proc):
            with scraping(url) as latencies:
                first = first_poll(proc, 600)
            return {"jobs": int(first["jobs"]), "poll_s": float(first["duration"]),
                    "scrape": _stats(latencies), "rss_mb": round(proc.status_kb("VmHWM") / 1024, 1)}


RESYNC_SHARE = 0.005  # of 1000 requests/s at a 1 s interval: 5 pass pages per poll
RESYNC_BUDGET = int(RESYNC_SHARE * 1000 * 1.0)


def vocdoni_config(sim: str, org: str, state: Path, concurrency: int) -> str:
    """One org at 1000 requests/s (above what 8 pages of 10 ms can ask): latency sets the pace."""
    return f"""
state: {{path: {state}}}
defaults: {{interval: 1s, jitter: 0, timeout: 60s, concurrency: {concurrency},
           max_requests_per_second: 1000, full_resync_interval: 2s,
           resync_budget: {RESYNC_SHARE}}}
sources:
  - name: bench
    kind: vocdoni
    base_url: {sim}/vocdoni
    api: v2
    auth: {{token: sim-token}}
    organizations:
      - address: "{org}"
"""


def vocdoni_sync(tmp: Path, n: int, resync_seconds: float,
                 modes: tuple[tuple[str, int], ...] = (("sequential", 1), ("concurrent", 8)),
                 ) -> dict[str, Any]:
    """Time one org's first sync of n jobs at 10 ms a page, one page at a time and concurrently;
    then watch the trickled resync's requests per poll."""
    knobs = (*SCALE_KNOBS, "--vocdoni-orgs", "1", "--history", str(n),
             "--latency-ms", str(PAGE_LATENCY_MS))
    out: dict[str, Any] = {}
    with h.simulator(tmp, *knobs) as (sim, _):
        h.sim_post(sim, "pause")
        org = next(iter(h.sim_get(sim, "truth")["vocdoni"]))
        for name, concurrency in modes:
            cfg = vocdoni_config(sim, org, tmp / f"sync-voc-{name}-{n}.db", concurrency)
            with h.ours(tmp, cfg, f"sync-voc-{name}-{n}") as (url, proc):
                with scraping(url) as latencies:
                    first = first_poll(proc, 1800)
                # VmHWM now: the first sync's peak (pages, observations, merge, state write)
                out[name] = {"first_sync_s": round(float(first["duration"]), 2),
                             "jobs": int(first["jobs"]), "requests": int(first["requests"]),
                             "rss_mb": round(proc.status_kb("VmHWM") / 1024, 1),
                             "scrape": _stats(latencies)}
                if name == "concurrent":
                    out["resync"] = resync_polls(url, proc, resync_seconds)
    return out


def resync_polls(url: str, proc: h.Proc, seconds: float) -> dict[str, Any]:
    """Requests of each poll after the first sync, while the resync pass trickles."""
    time.sleep(seconds)
    polls = _events(proc, "poll_summary")[1:]
    text = httpx.get(f"{url}/metrics", timeout=30).text
    progress = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("asyncjob_resync_progress_ratio{")]
    passes = [e for e in proc.json_lines() if e.get("event") == "vocdoni_resync_pass_done"]
    return {"polls": len(polls), "budget_pages_per_poll": RESYNC_BUDGET,
            "max_requests_per_poll": max((int(p["requests"]) for p in polls), default=0),
            "progress_ratio": progress[0] if progress else None, "passes_done": len(passes)}


def run(tmp: Path, n: int, resync_seconds: float = 4.0) -> dict[str, Any]:
    """Run the scenarios at n jobs; return the headline keys."""
    ordo = ordo_first_sync(tmp, n)
    voc = vocdoni_sync(tmp, n, resync_seconds)
    suffix = "1m" if n >= 1_000_000 else f"{n // 1000}k"
    return {
        f"scrape_p99_ms_ordo_first_sync_{suffix}": ordo["scrape"]["p99_ms"],
        f"first_sync_seconds_{suffix}": voc["concurrent"]["first_sync_s"],
        f"scrape_p99_ms_vocdoni_first_sync_{suffix}": voc["concurrent"]["scrape"]["p99_ms"],
        f"first_sync_seconds_sequential_{suffix}": voc["sequential"]["first_sync_s"],
        f"rss_mb_first_sync_{suffix}": voc["concurrent"]["rss_mb"],
        f"resync_max_requests_per_poll_{suffix}": voc["resync"]["max_requests_per_poll"],
        "sync_scale": {"jobs": n, "ordo_first_sync": ordo, "vocdoni_first_sync": voc},
    }


BIG_JOBS = 1_000_000  # the full run's vote-scale first sync (issue 16 item 3, issue 17 item 2)


def run_big(tmp: Path, n: int = BIG_JOBS, resync_seconds: float = 6.0) -> dict[str, Any]:
    """Run the concurrent Vocdoni first sync alone at n jobs (full run); return its keys."""
    voc = vocdoni_sync(tmp, n, resync_seconds, modes=(("concurrent", 8),))
    got = voc["concurrent"]
    return {
        "rss_mb_first_sync_1m": got["rss_mb"],
        "scrape_p99_ms_vocdoni_first_sync_1m": got["scrape"]["p99_ms"],
        "first_sync_seconds_1m": got["first_sync_s"],
        "resync_max_requests_per_poll_1m": voc["resync"]["max_requests_per_poll"],
        "sync_scale_1m": {"jobs": n, "vocdoni_first_sync": voc},
    }


def targets_big(keys: dict[str, Any]) -> dict[str, bool]:
    """Return the verdicts of the 1M keys (none when the full run's scenario did not run)."""
    if "first_sync_seconds_1m" not in keys:
        return {}
    return {
        "rss_mb_first_sync_1m < 400": keys["rss_mb_first_sync_1m"] < 400,
        "scrape_p99_ms_vocdoni_first_sync_1m < 10":
            keys["scrape_p99_ms_vocdoni_first_sync_1m"] < 10,
        f"resync_max_requests_per_poll_1m <= 1 + budget ({RESYNC_BUDGET})":
            keys["resync_max_requests_per_poll_1m"] <= 1 + RESYNC_BUDGET,
    }


def targets(keys: dict[str, Any]) -> dict[str, bool]:
    """Return the verdicts of the 100k keys (none when the scenarios did not run)."""
    if "first_sync_seconds_100k" not in keys:
        return {}
    return {
        "scrape_p99_ms_ordo_first_sync_100k < 10": keys["scrape_p99_ms_ordo_first_sync_100k"] < 10,
        "scrape_p99_ms_vocdoni_first_sync_100k < 10":
            keys["scrape_p99_ms_vocdoni_first_sync_100k"] < 10,
        "first_sync_seconds_100k <= 10": keys["first_sync_seconds_100k"] <= 10,
        f"resync_max_requests_per_poll_100k <= 1 + budget ({RESYNC_BUDGET})":
            keys["resync_max_requests_per_poll_100k"] <= 1 + RESYNC_BUDGET,
    }


def main() -> None:
    """Run at the size given (default 100k; `big` = the full run's 1M Vocdoni first sync)."""
    arg = sys.argv[1] if len(sys.argv) > 1 else "100000"
    with tempfile.TemporaryDirectory() as tmp:
        keys = run_big(Path(tmp)) if arg == "big" else run(Path(tmp), int(arg))
        print(json.dumps(keys, indent=2))


if __name__ == "__main__":
    main()
