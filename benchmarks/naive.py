"""The naive baseline: the Vocdoni exporter a user would write in an afternoon.

Design (deliberately ordinary, not a strawman):
- prometheus_client global Gauges on the default registry (process/GC collectors included) and
  `start_http_server`, so every scrape renders the whole registry on the scraping thread.
- One poll thread, a plain loop: for each org, read every page of `GET /jobs?orgAddress=`, then
  `GET /jobs/{id}` for every job (the detail is the documented way to read a job's status and
  result), set one gauge per job and the per-(type, status) counts, sleep `interval`, repeat.
- One keep-alive httpx client; the job details are fetched by a small thread pool (the first
  thing anyone adds once an org has thousands of jobs). No incremental state, no caching.
Per-job series (`vocdoni_job_status{job_id=...}`) are what people expose when they already fetch
every job: it answers "which job failed", the question the exporter exists for.

The only additions for the benchmark are the JSON lines it prints (one per org and per cycle:
wall time, CPU time and requests), which the harness reads instead of guessing.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import Gauge, start_http_server

STATUS_CODE = {"pending": 0, "completed": 1, "failed": 2}

JOBS = Gauge("vocdoni_jobs", "Jobs by type and status.", ["org", "job_type", "status"])
JOB_STATUS = Gauge("vocdoni_job_status", "Job status: 0 pending, 1 completed, 2 failed.",
                   ["org", "job_type", "job_id"])
UP = Gauge("vocdoni_up", "1 if the last poll of the org worked.", ["org"])
POLL_SECONDS = Gauge("vocdoni_poll_duration_seconds", "How long the last full poll took.")


def _emit(**fields: Any) -> None:
    """Print one JSON line for the benchmark harness."""
    print(json.dumps(fields), flush=True)


class Poller:
    """Poll every org, every page, every job detail; set the gauges."""

    def __init__(self, base_url: str, token: str, orgs: list[str], workers: int) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30,
                                   headers={"Authorization": f"Bearer {token}"})
        self.orgs = orgs
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.requests = 0
        self._lock = threading.Lock()

    def get(self, path: str, **params: Any) -> Any:
        """GET JSON, raising on HTTP errors."""
        with self._lock:
            self.requests += 1
        resp = self.client.get(path, params=params or None)
        resp.raise_for_status()
        return resp.json()

    def poll_org(self, org: str) -> None:
        """List every page, fetch every job's detail, update the org's gauges."""
        jobs: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.get("/jobs", orgAddress=org, page=page, limit=100)
            jobs += body["jobs"]
            if page >= body["pagination"]["lastPage"]:
                break
            page += 1
        counts: Counter[tuple[str, str]] = Counter()
        details = self.pool.map(lambda item: self.get(f"/jobs/{item['jobId']}"), jobs)
        for job in details:
            counts[(job["type"], job["status"])] += 1
            JOB_STATUS.labels(org, job["type"], job["jobId"]).set(
                STATUS_CODE.get(job["status"], -1))
        for (job_type, status), n in counts.items():
            JOBS.labels(org, job_type, status).set(n)

    def cycle(self, number: int) -> None:
        """Poll all orgs once and report the cycle."""
        wall, cpu, requests = time.perf_counter(), time.process_time(), self.requests
        for index, org in enumerate(self.orgs):
            try:
                self.poll_org(org)
                UP.labels(org).set(1)
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                UP.labels(org).set(0)
                print(f"poll of {org} failed: {exc!r}", file=sys.stderr, flush=True)
            _emit(event="org", cycle=number, done=index + 1, t=time.time())
        took = time.perf_counter() - wall
        POLL_SECONDS.set(took)
        _emit(event="cycle", cycle=number, wall=took, cpu=time.process_time() - cpu,
              requests=self.requests - requests, t=time.time())



def _orgs(value: str) -> list[str]:
    """Read the org list from the argument, or from the file an @-argument names."""
    if value.startswith("@"):
        return Path(value[1:]).read_text().split()
    return value.split(",")


def main(argv: list[str] | None = None) -> int:
    """Serve /metrics and poll forever."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", default="sim-token")
    parser.add_argument("--orgs", required=True,
                        help="comma-separated org addresses, or @FILE with one per line (10,000 "
                             "orgs do not fit in one command-line argument)")
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=4, help="threads fetching job details")
    args = parser.parse_args(argv)
    start_http_server(args.port, addr="127.0.0.1")
    poller = Poller(args.base_url, args.token, _orgs(args.orgs), args.workers)
    number = 0
    while True:
        number += 1
        poller.cycle(number)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
