"""A real exporter's steady-state Ordo poll costs the same with 200 or 20,000 jobs of history."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tests.integration.fakeapi import Ordo, serve
from tests.integration.harness import exporter, scrape, select, wait_for

CONFIG = """
state:
  path: {state}
defaults:
  interval: 0.2s
  timeout: 5s
  jitter: 0
  full_resync_interval: 1h
  max_requests_per_second: 1000
sources:
  - name: ordo
    kind: ordo
    base_url: {url}
    auth: {{token: "t"}}
    organization: ordo
"""


class Metered:
    """Wrap the fake Ordo and log each request's path and answer size."""

    def __init__(self, ordo: Ordo) -> None:
        self.ordo = ordo
        self.lock = threading.Lock()
        self.log: list[tuple[str, int]] = []

    def __call__(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        status, body = self.ordo(path, query)
        with self.lock:
            self.log.append((path, len(json.dumps(body))))
        return status, body


def _steady(tmp: Path, size: int) -> tuple[float, float, int]:
    """Sync `size` finished + 50 running jobs, add one; return requests and bytes per poll."""
    tmp.mkdir()
    ordo = Ordo()
    for job_id in range(1, size + 51):
        ordo.job(job_id, "running" if job_id > size else "success", 1000.0 + job_id,
                 started=1000.0 + job_id, finished=None if job_id > size else 2000.0 + job_id)
    meter = Metered(ordo)
    with serve(meter) as api, exporter(tmp, CONFIG.format(state=tmp / "s.db", url=api)) as (url, _):
        total = lambda name: sum(select(scrape(url), name, org="ordo").values())  # noqa: E731
        wait_for(lambda: total("asyncjob_tracked_jobs") == size + 50, 30, "first sync")
        ordo.job(size + 53, "success", 5000.0, started=5000.0, finished=5001.0)  # 2 ids burned
        wait_for(lambda: total("asyncjob_finished_total") == 1, 20, "the new job counted")
        with meter.lock:
            start = len(meter.log)
        wait_for(lambda: len(meter.log) >= start + 10, 20, "ten steady polls")
        with meter.lock:
            steady = meter.log[start:start + 10]
        lists = sum(1 for path, _ in meter.log if path == "/jobs")
    polls = sum(1 for path, _ in steady if path.count(",") >= 50)  # the batch with the actives
    return len(steady) / polls, sum(n for _, n in steady) / polls, lists


def test_steady_state_cost_does_not_grow_with_history(tmp_path: Path) -> None:
    small = _steady(tmp_path / "small", 200)
    big = _steady(tmp_path / "big", 20_000)
    assert small[2] == big[2] == 1  # the list only at first sync
    assert small[0] == big[0] == 1  # one batch request per steady poll
    assert abs(big[1] - small[1]) < 0.05 * small[1]  # same bytes: 50 active details
