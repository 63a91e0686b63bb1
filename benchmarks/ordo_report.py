"""RESULTS.md sections of the Ordo benchmarks: steady poll on the simulator, the real Ordo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Get = Callable[[dict[str, Any]], Any]


def fmt(value: Any, digits: int = 2) -> str:
    """Format a figure: thousands separators from 100 up, '-' when missing."""
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:.{digits}f}"
    return f"{value:,.0f}"


def ratio(theirs: Any, ours: Any) -> str:
    """Return theirs / ours as `12x` (higher = ours cheaper); n/a without a figure."""
    if theirs is None or ours is None or not ours:
        return "n/a"
    value = theirs / ours
    return f"{value:,.0f}x" if value >= 10 else f"{value:.2f}x"


def steady_section(results: dict[str, Any]) -> list[str]:
    """Render the simulator steady-poll table (benchmarks/ordo_scale.py)."""
    steady = results["ordo_steady"]
    polls = next((r.get("polls", 5) for r in steady.values()), 5)
    out = ["## Ordo steady-state poll vs history, simulator (`benchmarks/ordo_scale.py`)", "",
           "The simulator's Ordo with N finished jobs, 0.5 new jobs/s, poll interval 2 s, full "
           f"resync hourly; {polls} steady polls per size. Requests: the simulator's counter; "
           "bytes: "
           "the answers through a counting relay (benchmarks/tap.py); CPU from /proc.", "",
           "| history | requests / poll | bytes / poll | exporter CPU / poll | first sync "
           "| first sync bytes | tracked jobs | peak RSS (MiB) |",
           "|---|---|---|---|---|---|---|---|"]
    for n, r in steady.items():
        out.append(f"| {int(n):,} | {fmt(r['requests_per_poll'], 1)} | "
                   f"{fmt(r.get('bytes_per_poll'))} | {fmt(r['cpu_s_per_poll'] * 1000, 0)} ms | "
                   f"{fmt(r['first_sync_s'])} s | {fmt(r.get('first_sync_bytes'))} | "
                   f"{r['tracked_jobs']:,} | {fmt(r['rss_mb'], 1)} |")
    return out


REAL_ROWS: tuple[tuple[str, Get, int], ...] = (
    ("bytes per poll (answers on the wire)", lambda r: r["per_poll"]["bytes"], 0),
    ("Ordo (node) CPU per poll (s)", lambda r: r["per_poll"]["node_cpu_s"], 3),
    ("PostgreSQL time per poll (ms, pg_stat_statements)", lambda r: r["per_poll"]["pg_ms"], 1),
    ("PostgreSQL statements per poll", lambda r: r["per_poll"]["pg_statements"], 1),
    ("exporter CPU per poll (s)", lambda r: r["per_poll"]["exporter_cpu_s"], 3),
    ("scrape p50 (ms)", lambda r: r["scrape"]["p50_ms"], 2),
    ("scrape p99 (ms)", lambda r: r["scrape"]["p99_ms"], 2),
    ("exporter RSS, peak (MiB)", lambda r: r["rss_mb"], 1),
    ("other client's p50 (ms)", lambda r: r["other_client"].get("p50_ms"), 1),
    ("other client's p99 (ms)", lambda r: r["other_client"].get("p99_ms"), 1),
)


def _real_table(scales: dict[str, Any]) -> list[str]:
    names = list(scales)
    out = ["| per poll | " + " | ".join(f"{int(n):,} jobs: ours / query-exporter / ratio"
                                       for n in names) + " |",
           "|---|" + "---|" * len(names)]
    work = [f"{fmt(scales[n]['ours']['per_poll']['requests'], 1)} HTTP requests / "
            f"{scales[n]['query_exporter']['queries_per_poll']} SQL queries / -" for n in names]
    out.append("| upstream work | " + " | ".join(work) + " |")
    for label, get, digits in REAL_ROWS:
        cells = []
        for n in names:
            ours, qe = get(scales[n]["ours"]), get(scales[n]["query_exporter"])
            cells.append(f"{fmt(ours, digits)} / {fmt(qe, digits)} / {ratio(qe, ours)}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    none = [f"{fmt(scales[n]['none']['other_client'].get('p99_ms'), 1)} before, "
            f"{fmt(scales[n].get('none_after', {}).get('other_client', {}).get('p99_ms'), 1)} "
            "after" for n in names]
    out.append("| other client's p99 with no exporter (ms) | " + " | ".join(none) + " |")
    return out


def _cost_table(scales: dict[str, Any]) -> list[str]:
    out = ["| jobs | `GET /jobs`: bytes | latency p50 (ms) | node CPU (s) | PostgreSQL (ms) "
           "| detail batch (76 ids) p50 (ms), no index / index | its PostgreSQL time (ms) "
           "| of which `job_step_detailing` (ms) | other client p99, no index / index (ms) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for n, r in scales.items():
        lj, ix = r["list_jobs"], r["index"]
        a, b = ix["without"], ix["with"]
        out.append(
            f"| {int(n):,} | {fmt(lj['bytes'])} | {fmt(lj['p50_ms'], 1)} | "
            f"{fmt(lj['node_cpu_s'], 3)} | {fmt(lj['pg_ms'], 1)} | {fmt(a['p50_ms'], 1)} / "
            f"{fmt(b['p50_ms'], 1)} | {fmt(a['pg_ms'], 1)} / {fmt(b['pg_ms'], 1)} | "
            f"{fmt(a['detailing_ms'], 1)} / {fmt(b['detailing_ms'], 1)} | "
            f"{fmt(r['none']['other_client'].get('p99_ms'), 1)} / "
            f"{fmt(ix['other_client_with'].get('p99_ms'), 1)} |")
    return out


def real_section(results: dict[str, Any]) -> list[str]:
    """Render the real-Ordo comparison (benchmarks/ordo_bench.py)."""
    real = results["ordo_real"]
    s, scales = real["settings"], real["scales"]
    out = ["## Real Ordo: this exporter vs query-exporter (`benchmarks/ordo_bench.py`, issue 17)",
           "",
           "The real Ordo (../shared/upstream, node + PostgreSQL 15) with N jobs bulk-inserted "
           "in SQL (three recipes of 2-4 steps, ~50 active, one progress row per step) while "
           "workers create, start and finish one job a second. This exporter (defaults, "
           f"interval {s['interval']:g} s) and query-exporter {real['query_exporter_version']} "
           "(six queries on a read-only role, same interval: jobs by recipe and status, steps "
           "of active jobs, oldest pending age, job and step duration percentiles, silent "
           "running steps; benchmarks/qexp.py) ran one after the other against the same Ordo. "
           f"Per poll: {s['cost_polls']} whole polls with nothing else running; bytes through a "
           "counting relay (HTTP answers for ours, PostgreSQL's wire answers for "
           "query-exporter); PostgreSQL time from pg_stat_statements (execution + planning) of "
           "the role each side uses; CPU from /proc. Then another client asked "
           f"`GET /jobs/5000` ({s['probe_hz']:g}/s for {s['latency_s']:g} s) while the "
           f"exporter polled, and `/metrics` was scraped back to back for {s['scrape_s']:g} s. "
           "Ratios are query-exporter / ours (higher = ours cheaper).", ""]
    out += ["| target | met |", "|---|---|"]
    out += [f"| {t} | {'yes' if met else '**NO**'} |"
            for t, met in results.get("ordo_real_targets", {}).items()]
    out += ["", *_real_table(scales), "",
            "What a full list and a detail batch cost Ordo (the first sync and each "
            "`full_resync_interval` read `GET /jobs`; a steady poll sends one detail batch of "
            "the active jobs, the top id and 25 ids past it). Then `CREATE INDEX ON "
            "job_step_detailing (job_id)`:", "", *_cost_table(scales)]
    return out


def sections(results: dict[str, Any]) -> list[str]:
    """Return the Ordo sections present in results (none when neither scenario ran)."""
    out: list[str] = []
    if results.get("ordo_steady"):
        out += ["", *steady_section(results)]
    if results.get("ordo_real"):
        out += ["", *real_section(results)]
    return out
