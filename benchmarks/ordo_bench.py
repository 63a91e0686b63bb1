"""Issue 17's scenario on the real Ordo: this exporter and query-exporter, one after the other.

Per scale (1k, 10k, 100k jobs bulk-inserted in SQL, about 50 active, workers moving jobs along
every second): another client's `GET /jobs/5000` latency with no exporter and the cost of one
`GET /jobs`; then this exporter (through the counting relay, benchmarks/tap.py), then
query-exporter (benchmarks/qexp.py), each measured over whole polls: requests, bytes, Ordo (node)
CPU, PostgreSQL time, exporter CPU; then the other client's latency while it polls, scrape
latency and RSS; last, a detail batch with and without an index on job_step_detailing(job_id).
Part of `python -m benchmarks.run --full`; `python -m benchmarks.ordo_bench [N ...]` runs it
alone (`--write` merges the keys into results.json and renders RESULTS.md again).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks import harness as h
from benchmarks import ordo_measure as m
from benchmarks import qexp
from benchmarks.ordo_real import SCHEMA, TOKEN, OrdoService, real_ordo_service
from benchmarks.ordo_seed import BENCH_ROLE, READER_ROLE, Workload, seed
from benchmarks.scenarios import _events
from benchmarks.tap import Tap

HERE = Path(__file__).resolve().parent
ORDO_ROLE = "postgres"  # the role Ordo connects as


@dataclass(frozen=True)
class RealSettings:
    """Sizes and windows of the real-Ordo scenario."""

    scales: tuple[int, ...] = (1_000, 10_000, 100_000)
    interval: float = 5.0  # poll interval of both exporters
    cost_polls: int = 6  # polls per cost window (no scrapes, no other client)
    latency_s: float = 45.0  # the other client's window (450 requests)
    probe_hz: float = 10.0
    scrape_s: float = 10.0
    max_scrapes: int = 3000
    batch_calls: int = 20  # detail batches timed before and after the index


SETTINGS_BY_MODE: dict[str, RealSettings] = {"full": RealSettings()}


@dataclass
class Ctx:
    """What every phase of one scale needs."""

    ordo: OrdoService
    s: RealSettings
    tmp: Path
    n: int
    statements: bool  # pg_stat_statements loaded

    @property
    def node(self) -> int:
        """Return Ordo's node process id."""
        assert self.ordo.proc is not None
        return self.ordo.proc.pid

    @property
    def probe_id(self) -> int:
        """Return the job the other client reads: 5000, or the middle of a smaller history."""
        return min(5000, self.n // 2)

    def other(self, seconds: float) -> dict[str, Any]:
        """Run the other client for `seconds`; return its latency stats."""
        return m.OtherClient(self.ordo.url, self.probe_id, self.s.probe_hz).run_for(seconds)

    def pg(self) -> m.Stats:
        """Read pg_stat_statements, or nothing when it is not loaded."""
        return m.statements(self.ordo.pg) if self.statements else {}


def our_config(url: str, state: Path, interval: float) -> str:
    """Return this exporter's config as an Ordo operator would write it (defaults otherwise)."""
    return f"""
state: {{path: "{state}"}}
defaults: {{interval: {interval:g}s, jitter: 0, timeout: 60s}}
sources:
  - name: ordo
    kind: ordo
    base_url: {url}
    auth: {{token: "{TOKEN}"}}
    organization: ordo
"""


def align(count: Callable[[], float], interval: float) -> None:
    """Wait for a poll to happen, then half an interval: windows hold whole polls only."""
    start = count()
    h.wait_for(lambda: count() > start, interval * 3 + 30, "a poll", interval=0.1)
    time.sleep(interval / 2)


def cost_window(ctx: Ctx, pid: int, role: str, count: Callable[[], float], tap: Tap,
                http: bool = True) -> dict[str, Any]:
    """Measure cost_polls whole polls: per poll requests, bytes, CPU of each side, PG time."""
    align(count, ctx.s.interval)
    c0, st0 = count(), ctx.pg()
    cpu0, node0 = m.cpu_of(pid), m.cpu_of(ctx.node)
    bk0 = m.backend_cpu(ctx.ordo.pg, role)
    tap0 = tap.counts()
    time.sleep(ctx.s.cost_polls * ctx.s.interval)
    tap1 = tap.counts()
    cpu1, node1 = m.cpu_of(pid), m.cpu_of(ctx.node)
    bk1 = m.backend_cpu(ctx.ordo.pg, role)
    st1, c1 = ctx.pg(), count()
    polls = max(c1 - c0, 1e-9)
    calls, ms = m.by_role(st0, st1, role)
    d_calls, d_ms = m.by_role(st0, st1, role, "job_step_detailing")
    return {
        "polls": round(c1 - c0, 2),
        "requests": round((tap1[0] - tap0[0]) / polls, 2) if http else None,
        "bytes": round((tap1[1] - tap0[1]) / polls),  # HTTP answers, or PostgreSQL's
        "node_cpu_s": round((node1 - node0) / polls, 4),
        "pg_ms": round(ms / polls, 2) if ctx.statements else None,
        "pg_statements": round(calls / polls, 1) if ctx.statements else None,
        "pg_backend_cpu_s": round(m.cpu_delta(bk0, bk1) / polls, 4),
        "detailing_ms_per_call": round(d_ms / d_calls, 2) if d_calls else None,
        "exporter_cpu_s": round((cpu1 - cpu0) / polls, 4),
    }


def tail_figures(ctx: Ctx, url: str, proc: h.Proc, tap: Tap) -> dict[str, Any]:
    """The other client's latency while the exporter polls, then scrapes, then RSS."""
    before = tap.counts()
    other = ctx.other(ctx.s.latency_s)
    other["exporter_requests_meanwhile"], other["exporter_bytes_meanwhile"] = (
        a - b for a, b in zip(tap.counts(), before, strict=True))
    scrape = h.scrape_series(url, seconds=ctx.s.scrape_s, max_scrapes=ctx.s.max_scrapes)
    return {"other_client": other, "scrape": scrape,
            "rss_mb": round(proc.status_kb("VmHWM") / 1024, 1),
            "rss_now_mb": round(proc.status_kb("VmRSS") / 1024, 1)}


def measure_ours(ctx: Ctx) -> dict[str, Any]:
    """Run this exporter through the relay: first sync, a cost window, the tail figures."""
    tap = Tap(ctx.ordo.port).start()
    try:
        cfg = our_config(tap.url, ctx.tmp / f"ours-{ctx.n}.db", ctx.s.interval)
        node0, st0 = m.cpu_of(ctx.node), ctx.pg()
        with h.ours(ctx.tmp, cfg, f"ours-{ctx.n}") as (url, proc):
            h.wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
                       600, "first sync")
            first = {"seconds": round(time.monotonic() - proc.started, 2),
                     "requests": tap.requests, "bytes": tap.bytes_down,
                     "exporter_cpu_s": round(proc.cpu_seconds(), 3),
                     "node_cpu_s": round(m.cpu_of(ctx.node) - node0, 3),
                     "pg_ms": round(m.by_role(st0, ctx.pg(), ORDO_ROLE)[1], 1)}

            def polls() -> float:
                return m.polls_done(httpx.get(f"{url}/metrics", timeout=30).text)

            out: dict[str, Any] = {
                "first_sync": first, "per_poll": cost_window(ctx, proc.pid, ORDO_ROLE, polls, tap)}
            out.update(tail_figures(ctx, url, proc, tap))
            summaries = _events(proc, "poll_summary")
            out["tracked_jobs"] = int(summaries[-1]["jobs"]) if summaries else None
            out["full_polls"] = sum(1 for e in summaries if e.get("full"))
            return out
    finally:
        tap.stop()


def measure_qe(ctx: Ctx) -> dict[str, Any]:
    """Run query-exporter on the read-only role: a cost window, the tail figures."""
    started = time.monotonic()
    tap = Tap(ctx.ordo.pg.port).start()  # PostgreSQL's answers to query-exporter, counted
    try:
        with qexp.running(ctx.tmp, tap.port, READER_ROLE, ctx.s.interval) as (url, proc):
            first = {"seconds": round(time.monotonic() - started, 2)}

            def polls() -> float:
                text = httpx.get(f"{url}/metrics", timeout=30).text
                return qexp.successful_queries(text) / len(qexp.QUERIES)

            out: dict[str, Any] = {"first_sync": first, "queries_per_poll": len(qexp.QUERIES),
                   "per_poll": cost_window(ctx, proc.pid, READER_ROLE, polls, tap, http=False)}
            out.update(tail_figures(ctx, url, proc, tap))
            return out
    finally:
        tap.stop()


def timed_calls(ctx: Ctx, path: str, times: int) -> dict[str, Any]:
    """GET a route `times` times in a row: latency, bytes, node CPU and PG time per call."""
    st0, node0 = ctx.pg(), m.cpu_of(ctx.node)
    latencies, size = [], 0
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
        for _ in range(times):
            started = time.perf_counter()
            resp = client.get(f"{ctx.ordo.url}{path}")
            latencies.append((time.perf_counter() - started) * 1000)
            resp.raise_for_status()
            size = len(resp.content)
    st1 = ctx.pg()
    _, ms = m.by_role(st0, st1, ORDO_ROLE)
    d_calls, d_ms = m.by_role(st0, st1, ORDO_ROLE, "job_step_detailing")
    return {"calls": times, "bytes": size, "p50_ms": round(statistics.median(latencies), 1),
            "node_cpu_s": round((m.cpu_of(ctx.node) - node0) / times, 4),
            "pg_ms": round(ms / times, 2) if ctx.statements else None,
            "detailing_ms": round(d_ms / d_calls, 2) if d_calls else None}


def exporter_batch(ctx: Ctx) -> str:
    """Return the batch path a steady poll of this exporter sends: active, top id, 25 past it."""
    rows = ctx.ordo.pg.rows(
        f"SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids, (SELECT max(id) FROM "
        f"{SCHEMA}.job) AS top FROM {SCHEMA}.job WHERE status IN ('pending', 'running')")
    ids = [*rows[0]["ids"], *range(rows[0]["top"], rows[0]["top"] + 26)][:100]
    return "/jobs/" + ",".join(str(i) for i in ids)


def measure_index(ctx: Ctx) -> dict[str, Any]:
    """Time the exporter's detail batch and the other client without, then with, the index."""
    path = exporter_batch(ctx)
    before = timed_calls(ctx, path, ctx.s.batch_calls)
    begun = time.monotonic()
    ctx.ordo.pg.psql(f"CREATE INDEX job_step_detailing_job_id_idx ON "
                     f"{SCHEMA}.job_step_detailing (job_id); ANALYZE {SCHEMA}.job_step_detailing",
                     role=BENCH_ROLE, timeout=600)
    build = time.monotonic() - begun
    after = timed_calls(ctx, path, ctx.s.batch_calls)
    return {"batch_ids": path.count(",") + 1, "without": before, "with": after,
            "index_build_s": round(build, 2), "other_client_with": ctx.other(ctx.s.latency_s / 2)}


def run_scale(ctx: Ctx) -> dict[str, Any]:
    """Seed n jobs, then measure: no exporter, this exporter, query-exporter, the index."""
    begun = time.monotonic()
    info = seed(ctx.ordo.pg, ctx.n)
    out: dict[str, Any] = {"seed": {**info, "seconds": round(time.monotonic() - begun, 1)}}
    with Workload(ctx.ordo.pg, info["recipes"], info["stuck"]) as work:
        node0 = m.cpu_of(ctx.node)
        out["none"] = {"other_client": ctx.other(ctx.s.latency_s),
                       "node_cpu_s": round(m.cpu_of(ctx.node) - node0, 3)}
        out["list_jobs"] = timed_calls(ctx, "/jobs", 3)
        out["ours"] = measure_ours(ctx)
        out["query_exporter"] = measure_qe(ctx)
        out["none_after"] = {"other_client": ctx.other(ctx.s.latency_s)}  # the machine's noise
        out["index"] = measure_index(ctx)
    out["workload"] = {"ticks": work.ticks, "errors": work.errors[:3]}
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summarize(s: RealSettings, scales: dict[str, Any]) -> dict[str, Any]:
    """Return the results.json keys: raw figures, headline keys at the top scale, targets."""
    top = str(max(int(k) for k in scales))
    r = scales[top]
    ours, qe = r["ours"]["per_poll"], r["query_exporter"]["per_poll"]
    nones = [r[k]["other_client"].get("p99_ms") for k in ("none", "none_after")]
    none_p99 = statistics.mean(nones) if None not in nones else None  # before and after both
    ours_p99 = r["ours"]["other_client"].get("p99_ms")
    keys: dict[str, Any] = {
        "ordo_real": {"settings": asdict(s), "scales": scales, "top": int(top),
                      "query_exporter_version": qexp.VERSION},
        "ordo_real_bytes_per_poll": ours["bytes"],
        "ordo_real_requests_per_poll": ours["requests"],
        "ordo_real_exporter_cpu_s_per_poll": ours["exporter_cpu_s"],
        "ordo_real_other_p99_ratio_vs_none": _ratio(ours_p99, none_p99),
        "ordo_real_pg_ms_ratio_qe_over_ours": _ratio(qe["pg_ms"], ours["pg_ms"]),
        "ordo_real_detailing_ms_per_batch": r["index"]["without"]["detailing_ms"],
        "ordo_real_detailing_ms_per_batch_indexed": r["index"]["with"]["detailing_ms"],
    }
    label = f"{int(top) // 1000}k jobs"
    keys["ordo_real_targets"] = {
        f"bytes per poll < 200 KB ({label})": (ours["bytes"] or 0) < 200_000,
        f"requests per poll <= 3 ({label})": (ours["requests"] or 0) <= 3,
        f"exporter CPU per poll < 0.05 s ({label})": ours["exporter_cpu_s"] < 0.05,
        f"other client's p99 within 20% of no exporter ({label})":
            none_p99 is not None and ours_p99 is not None and ours_p99 <= 1.2 * none_p99,
    }
    return keys


def run(mode: str, tmp: Path, sizes: tuple[int, ...] = ()) -> dict[str, Any]:
    """Run the scenario of a benchmark mode (full only); return its results.json keys."""
    s = SETTINGS_BY_MODE.get(mode)
    if s is None:
        return {}
    scales: dict[str, Any] = {}
    with real_ordo_service(m.PG_OPTIONS) as ordo:
        statements = m.enable_statements(ordo.pg)
        for i, n in enumerate(sizes or s.scales):
            print(f"[bench] real Ordo, {n} jobs ...", file=sys.stderr, flush=True)
            if i:
                ordo.reset_database()  # every id restarts at 1
            scales[str(n)] = run_scale(Ctx(ordo, s, tmp, n, statements))
    return summarize(s, scales)


def main(argv: list[str] | None = None) -> int:
    """Run the scenario alone; print its keys, or merge them into results.json (--write)."""
    parser = argparse.ArgumentParser(description="real-Ordo benchmark (issue 17)")
    parser.add_argument("sizes", nargs="*", type=int, help="job counts (default 1k 10k 100k)")
    parser.add_argument("--write", action="store_true",
                        help="merge into benchmarks/results.json and render RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="asyncjob-ordo-bench-") as tmp:
        keys = run("full", Path(tmp), tuple(args.sizes))
    if args.write:
        from benchmarks import report

        path = HERE / "results.json"
        results = {**json.loads(path.read_text()), **keys}
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        (HERE / "RESULTS.md").write_text(report.markdown(results))
    print(json.dumps(keys, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
