"""Steady-state Ordo poll at 1k/10k/100k jobs of history, against the simulator."""

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

SIZES = (1_000, 10_000, 100_000)
INTERVAL = 2.0
CYCLES = 5
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


def measure(tmp: Path, n: int) -> dict[str, Any]:
    """Sync n jobs of history, then measure CYCLES steady polls: requests and exporter CPU."""
    with h.simulator(tmp, *KNOBS, "--ordo-history", str(n)) as (sim, _):
        with h.ours(tmp, config(sim, tmp / f"s-{n}.db"), f"ordo-{n}") as (url, proc):
            h.wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
                       600, "first sync")
            first_sync = time.monotonic() - proc.started
            done = len(_wait_events(proc, "poll", 2, 600))
            _wait_events(proc, "poll", done + 1, 60)
            h.sim_post(sim, "requests/reset")
            cpu0 = proc.cpu_seconds()
            polls = _wait_events(proc, "poll", done + 1 + CYCLES, 60 + 10 * CYCLES)
            cpu = proc.cpu_seconds() - cpu0
            requests = h.sim_requests(sim)
            return {"first_sync_s": round(first_sync, 2),
                    "requests_per_poll": requests / CYCLES,
                    "cpu_s_per_poll": round(cpu / CYCLES, 4),
                    "tracked_jobs": int(polls[-1]["jobs"]),
                    "rss_mb": round(proc.status_kb("VmHWM") / 1024, 1)}


def main() -> None:
    """Run every size and print the results as JSON."""
    sizes = [int(a) for a in sys.argv[1:]] or list(SIZES)
    with tempfile.TemporaryDirectory() as tmp:
        out = {f"ordo_steady_{n}": measure(Path(tmp), n) for n in sizes}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
