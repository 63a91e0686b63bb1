"""Bytes per tracked job, in memory and in the state file: `python -m benchmarks.memcurve N...`.

Each size runs in a child process so one size's freed memory does not blur the next. The
world is a big election: N finished `relay_vote` jobs (64-hex ids, as Vocdoni's) read at the
first sync, plus 50 pending ones. Memory is what tracemalloc sees the tracker and its store
hold after the sync (observations freed), over N; the file is the SQLite file size over N.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.harness import PY, ROOT
from exporter.sources.base import JobObservation, PollResult
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker, TrackerSettings

ACTIVE = 50


def _world(n: int) -> PollResult:
    jobs = [JobObservation(job_id=f"{i:064x}", job_type="relay_vote", status="completed")
            for i in range(n)]
    jobs += [JobObservation(job_id=f"{n + i:064x}", job_type="publish_process",
                            status="pending") for i in range(ACTIVE)]
    return PollResult(jobs=tuple(jobs), complete=True)


def measure(n: int) -> dict[str, Any]:
    """Sync n finished jobs into a tracker and a state file; return bytes per job."""
    with tempfile.TemporaryDirectory(prefix="asyncjob-mem-") as tmp:
        path = Path(tmp) / "state.db"
        store = StateStore(str(path))
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tracker = OrgTracker("bench", "0xorg", TrackerSettings())
        world = _world(n)
        started = time.perf_counter()
        tracker.apply(world, 1.0)
        apply_s = time.perf_counter() - started
        store.save(tracker, "0xorg")
        del world
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        file_bytes = path.stat().st_size
        store.close()
    return {"jobs": n, "memory_bytes_per_job": held / n, "file_bytes_per_job": file_bytes / n,
            "first_sync_apply_s": apply_s, "tracked_jobs": len(tracker)}


def curve(sizes: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Measure every size in its own child process."""
    out = {}
    for n in sizes:
        child = subprocess.run([PY, "-m", "benchmarks.memcurve", str(n)], cwd=ROOT, check=True,
                               capture_output=True, text=True, timeout=3600)
        out[str(n)] = json.loads(child.stdout)
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(measure(int(arg))))
