"""Steady-state Ordo poll at 1k/10k/100k jobs of history, against the simulator.

Part of every `python -m benchmarks.run` (quick and full); `python -m benchmarks.ordo_scale
[N ...]` runs it alone. The exporter reaches the simulator through a counting relay
(benchmarks/tap.py), so the bytes per poll are the exporter's own.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import harness as h
from benchmarks.scenarios import _wait_events
from benchmarks.tap import Tap

SIZES = (1_000, 10_000, 100_000)
# quick: the size the keys read only, so the quick run stays under 4 minutes
SIZES_BY_MODE: dict[str, tuple[int, ...]] = {"quick": (100_000,), "full": SIZES, "smoke": ()}
INTERVAL = 2.0
CYCLES = 5
CYCLES_BY_MODE = {"quick": 3}  # quick: fewer steady polls, so the quick run stays under 4 min
KNOBS = ("--seed", "1", "--vocdoni-orgs", "0", "--vocdoni-v1-orgs", "0", "--ordo-job-rate", "0.5",
         "--job-duration-s", "60", "--stuck-ratio", "0")


def config(sim: str, state: Path) -> str:
    """Return an exporter config polling the simulator's Ordo (full resync: hourly)."""
    return f"""
state: {{path: {state}}}
defaults: {{interval: {INTERVAL}s, jitter: 0, timeout: 60s, max_requests_per_second: 1000,
           full_resync_interval: 1h, max_response_bytes: 512MiB}}
sources:
  - name: bench
    kind: ordo
    base_url: {sim}/ordo
    auth: {{token: sim-token}}
    organization: lidar
"""


def measure(tmp: Path, n: int, cycles: int = CYCLES) -> dict[str, Any]:
    """Sync n jobs of history, then measure `cycles` steady polls: requests, bytes, CPU."""
    with h.simulator(tmp, *KNOBS, "--ordo-history", str(n)) as (sim, _):
        tap = Tap(int(httpx.URL(sim).port or 80)).start()
        try:
            with h.ours(tmp, config(tap.url, tmp / f"s-{n}.db"), f"ordo-{n}") as (url, proc):
                h.wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
                           600, "first sync")
                first_sync = time.monotonic() - proc.started
                first_bytes = tap.bytes_down
                done = len(_wait_events(proc, "poll_summary", 2, 600))
                _wait_events(proc, "poll_summary", done + 1, 60)  # start on a poll boundary
                h.sim_post(sim, "requests/reset")
                cpu0, (_, bytes0) = proc.cpu_seconds(), tap.counts()
                polls = _wait_events(proc, "poll_summary", done + 1 + cycles, 60 + 10 * cycles)
                cpu = proc.cpu_seconds() - cpu0
                requests, bytes_down = h.sim_requests(sim), tap.bytes_down - bytes0
                return {"first_sync_s": round(first_sync, 2), "polls": cycles,
                        "first_sync_bytes": first_bytes,
                        "requests_per_poll": requests / cycles,
                        "bytes_per_poll": round(bytes_down / cycles),
                        "cpu_s_per_poll": round(cpu / cycles, 4),
                        "tracked_jobs": int(polls[-1]["jobs"]),
                        "rss_mb": round(proc.status_kb("VmHWM") / 1024, 1)}
        finally:
            tap.stop()


def run(mode: str, tmp: Path) -> dict[str, Any]:
    """Measure the sizes of a benchmark mode; return the results.json keys (none in smoke)."""
    sizes = SIZES_BY_MODE.get(mode, ())
    if not sizes:
        return {}
    steady: dict[str, Any] = {}
    for n in sizes:
        print(f"[bench] ordo steady poll, {n} jobs (simulator) ...", file=sys.stderr, flush=True)
        steady[str(n)] = measure(tmp, n, CYCLES_BY_MODE.get(mode, CYCLES))
    top = steady[str(max(sizes))]
    return {"ordo_steady": steady,
            "ordo_requests_per_poll_100k": top["requests_per_poll"],
            "ordo_bytes_per_poll_100k": top["bytes_per_poll"],
            "ordo_cpu_s_per_poll_100k": top["cpu_s_per_poll"]}


def main() -> None:
    """Run every size (or those given) and print the results as JSON."""
    sizes = [int(a) for a in sys.argv[1:]] or list(SIZES)
    with tempfile.TemporaryDirectory() as tmp:
        out = {f"ordo_steady_{n}": measure(Path(tmp), n) for n in sizes}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
