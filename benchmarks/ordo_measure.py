"""Readings of the real-Ordo benchmark: PostgreSQL time per role, process CPU, another client.

PostgreSQL time comes from pg_stat_statements (execution + planning, per role: Ordo connects as
`postgres`, query-exporter as `qe_reader`, the harness and its workers as `bench`, so each side's
time is its own). When the extension cannot load, the CPU of PostgreSQL's backends from /proc is
the fallback (it misses backends that exit inside a window).
"""

from __future__ import annotations

import json
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import CLK_TCK, percentile
from benchmarks.ordo_real import TOKEN, Postgres
from benchmarks.ordo_seed import BENCH_ROLE

PG_OPTIONS = ("shared_preload_libraries=pg_stat_statements",
              "pg_stat_statements.track_planning=on")
Stats = dict[tuple[str, str], tuple[int, float]]  # (role, statement) -> (calls, ms)


def enable_statements(pg: Postgres) -> bool:
    """Create pg_stat_statements in Ordo's database; False when the server cannot load it."""
    try:
        pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        pg.psql("SELECT count(*) FROM pg_stat_statements")
    except Exception:  # fall back to /proc
        return False
    return True


def statements(pg: Postgres) -> Stats:
    """Read pg_stat_statements (as `bench`): calls and time per role and statement."""
    out = pg.psql(
        "SELECT coalesce(json_agg(json_build_array(r.rolname, s.query, s.calls, "
        "s.total_exec_time + s.total_plan_time)), '[]') FROM pg_stat_statements s "
        "JOIN pg_roles r ON r.oid = s.userid", role=BENCH_ROLE)
    stats: Stats = {}
    for role, query, calls, ms in json.loads(out):
        old = stats.get((role, query), (0, 0.0))
        stats[(role, query)] = (old[0] + int(calls), old[1] + float(ms))
    return stats


def by_role(before: Stats, after: Stats, role: str, needle: str = "") -> tuple[int, float]:
    """Return (calls, ms) a role spent between two readings, on statements containing needle."""
    calls, ms = 0, 0.0
    for (who, query), (n, t) in after.items():
        if who != role or needle not in query:
            continue
        n0, t0 = before.get((who, query), (0, 0.0))
        calls += n - n0
        ms += t - t0
    return calls, ms


def cpu_of(pid: int) -> float:
    """Return user + system CPU seconds of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def backends(pg: Postgres) -> dict[int, str]:
    """Return PostgreSQL's child processes and their titles (`postgres: ROLE DB ...`)."""
    try:
        master = int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    out: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == master:
                title = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                out[int(stat.parent.name)] = title.decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
    return out


def backend_cpu(pg: Postgres, role: str) -> dict[int, float]:
    """Return the CPU seconds of the live backends of one role (the /proc fallback)."""
    return {pid: cpu_of(pid) for pid, title in backends(pg).items()
            if title.startswith(f"postgres: {role} ")}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """Return CPU spent between two backend readings (backends born since start at 0)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


POLLS = re.compile(r"^asyncjob_poll_duration_seconds_count\{[^}]*\} ([0-9.e+]+)$", re.M)


def polls_done(metrics_text: str) -> int:
    """Sum asyncjob_poll_duration_seconds_count over every org (successful and failed polls)."""
    return int(sum(float(v) for v in POLLS.findall(metrics_text)))


def latency_stats(values_ms: list[float]) -> dict[str, Any]:
    """Return count, p50, p95, p99 and max of latencies in ms."""
    if not values_ms:
        return {"requests": 0}
    return {"requests": len(values_ms), "p50_ms": round(statistics.median(values_ms), 2),
            "p95_ms": round(percentile(values_ms, 95), 2),
            "p99_ms": round(percentile(values_ms, 99), 2), "max_ms": round(max(values_ms), 2)}


@dataclass
class OtherClient:
    """Another client of Ordo: GET /jobs/ID at a fixed rate, timing each answer."""

    base_url: str
    job_id: int
    hz: float = 10.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def run_for(self, seconds: float) -> dict[str, Any]:
        """Ask for the job at `hz` for `seconds` (blocking); return latency stats."""
        self.latencies_ms, self.errors = [], 0
        stop = threading.Event()
        thread = threading.Thread(target=self._loop, args=(stop,), daemon=True)
        thread.start()
        time.sleep(seconds)
        stop.set()
        thread.join(30)
        stats = latency_stats(self.latencies_ms)
        stats.update(path=f"/jobs/{self.job_id}", hz=self.hz, errors=self.errors)
        return stats

    def _loop(self, stop: threading.Event) -> None:
        # `?client=other` lands on the same route; it only tells this client apart in Ordo's log
        url = f"{self.base_url}/jobs/{self.job_id}?client=other"
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            due = time.monotonic()
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies_ms.append((time.perf_counter() - started) * 1000)
                else:
                    self.errors += 1
                due += 1.0 / self.hz
                stop.wait(max(0.0, due - time.monotonic()))
