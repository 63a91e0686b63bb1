#!/usr/bin/env python3
"""Render docs/images/<dashboard>.png from real query results: simulator -> exporter -> Prometheus.

Runs the simulator (failures, stuck jobs, Ordo steps, a 429 burst and a 500 outage), the exporter
and the real Prometheus with prometheus/alerts.yml for --duration seconds, then runs every panel's
query of every dashboard in grafana/dashboards/ (variables at their defaults, "All" = .*) and draws
each dashboard as a grid of panels laid out by gridPos and titled like Grafana. Needs the dev
dependency matplotlib and the prometheus binary (scripts/ensure-prometheus.sh).

    .venv/bin/python scripts/render_dashboards.py [--duration 150] [--out docs/images]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from benchmarks.harness import wait_for  # noqa: E402
from scripts.dashboard_draw import (  # noqa: E402
    BG,
    BORDER,
    DRAW,
    MUTED,
    NOW,
    PANEL_BG,
    STEP_S,
    TEXT,
)
from scripts.promstack import (  # noqa: E402
    load_dashboards,
    panels,
    prometheus,
    query,
    query_range,
    substitute,
)
from scripts.stack import exporter, sim_post, simulator, truth  # noqa: E402

SIM_KNOBS = ("--seed", "42", "--job-rate", "2", "--failure-ratio", "0.25", "--stuck-ratio", "0.1",
             "--job-duration-s", "4", "--history", "20", "--vocdoni-orgs", "2",
             "--vocdoni-v1-orgs", "1", "--ordo-job-rate", "1", "--ordo-history", "10",
             "--latency-ms", "5")
RATE_INTERVAL = "15s"  # Grafana's $__rate_interval for a few minutes at a 1 s scrape is 4 s: noisy
UNIT_W_IN, UNIT_H_IN = 0.95, 0.36  # one gridPos column / row, in inches (Grafana: ~79 x 30 px)


def config(url: str, state: Path, sim_truth: dict[str, Any]) -> str:
    """Return an exporter config covering every simulator org, polled every second."""
    def orgs(mount: str) -> str:
        return "\n".join(f'      - address: "{a}"' for a in sorted(sim_truth[mount]))

    return f"""
state:
  path: {state}
defaults:
  interval: 1s
  timeout: 5s
  jitter: 0
sources:
  - name: vocdoni-v2
    kind: vocdoni
    base_url: {url}/vocdoni
    api: auto
    auth:
      token: sim-token
    organizations:
{orgs("vocdoni")}
  - name: vocdoni-v1
    kind: vocdoni
    base_url: {url}/vocdoni-v1
    api: auto
    max_job_types_per_org: 3  # some dropped series to show
    max_requests_per_second: 50  # the old API needs a request per job: keep 1 s polls short
    auth:
      token: sim-token
    organizations:
{orgs("vocdoni-v1")}
  - name: ordo
    kind: ordo
    base_url: {url}/ordo
    auth:
      token: sim-token
    organization: ordo
  - name: discovered  # organizations: auto, for the discovery panels
    kind: vocdoni
    base_url: {url}/vocdoni-v1
    api: auto
    max_requests_per_second: 50
    auth: {{email: ops@example.org, password_file: pw}}
    organizations: auto
"""


def run_demo(duration: float, tmp: Path) -> dict[str, dict[str, Any]]:
    """Run the stack for `duration` seconds with scripted incidents; return every panel's data."""
    with simulator(tmp, *SIM_KNOBS) as sim:
        cfg = config(sim, tmp / "state.db", truth(sim))
        (tmp / "pw").write_text("sim-password\n")  # the simulator's login password
        with (
            exporter(tmp, cfg, "--shard", "0/1") as (url, _),
            prometheus(tmp, [url.removeprefix("http://")]) as prom,
        ):
            wait_for(lambda: query(prom, "asyncjob_api_rate_limited_total"), 30, "first scrape")
            start = time.time()
            events = [
                (0.15, lambda: sim_post(sim, "fail_job", {"mount": "ordo",
                                                          "job_type": "lidar-ept"})),
                (0.25, lambda: sim_post(sim, "faults", {"mount": "vocdoni", "mode": "429",
                                                        "count": 4, "retry_after": 2})),
                (0.45, lambda: sim_post(sim, "faults", {"mount": "vocdoni-v1", "mode": "500"})),
                (0.55, lambda: sim_post(sim, "faults", {"mount": "vocdoni-v1", "mode": "none"})),
                (0.65, lambda: sim_post(sim, "fail_job", {"mount": "ordo",
                                                          "job_type": "ortho-mosaic"})),
            ]
            for share, action in events:
                time.sleep(max(0.0, start + share * duration - time.time()))
                action()
            time.sleep(max(0.0, start + duration - time.time()))
            end = time.time()
            return collect(prom, start, end)


def collect(prom: str, start: float, end: float) -> dict[str, dict[str, Any]]:
    """Run every panel target of every dashboard over [start, end]."""
    out: dict[str, dict[str, Any]] = {}
    range_ = f"{int(end - start)}s"
    for name, dashboard in load_dashboards().items():
        results = {}
        for panel in panels(dashboard):
            per_target = []
            for target in panel.get("targets", []):
                expr = substitute(target["expr"], dashboard, RATE_INTERVAL, f"{STEP_S:g}s", range_)
                instant = target.get("instant") and not target.get("range")
                data = (query(prom, expr, at=end) if instant
                        else query_range(prom, expr, start, end, STEP_S))
                per_target.append((target, data))
            results[str(panel["id"])] = per_target
        out[name] = {"dashboard": dashboard, "results": results, "start": start, "end": end}
    return out


def render(name: str, bundle: dict[str, Any], out: Path) -> Path:
    """Draw one dashboard as a grid of panels placed by gridPos; return the PNG path."""
    dashboard = bundle["dashboard"]
    NOW[0] = bundle["end"]
    grid_h = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    header_in = 0.6
    fig_w, fig_h = 24 * UNIT_W_IN, grid_h * UNIT_H_IN + header_in
    fig: Figure = plt.figure(figsize=(fig_w, fig_h), facecolor=BG)
    start = datetime.fromtimestamp(bundle["start"]).strftime("%Y-%m-%d %H:%M:%S")
    end = datetime.fromtimestamp(bundle["end"]).strftime("%H:%M:%S")
    fig.text(0.006, 1 - 0.3 / fig_h, f"asyncjob  /  {dashboard['title']}", color=TEXT,
             fontsize=14, fontweight="bold", va="center")
    fig.text(0.994, 1 - 0.3 / fig_h, f"{start} to {end} · simulator demo · all variables = All",
             color=MUTED, fontsize=9, va="center", ha="right")

    def box(grid: dict[str, int]) -> tuple[float, float, float, float]:
        gap = 0.06
        left = (grid["x"] * UNIT_W_IN + gap) / fig_w
        width = (grid["w"] * UNIT_W_IN - 2 * gap) / fig_w
        top_in = header_in + grid["y"] * UNIT_H_IN + gap
        height = (grid["h"] * UNIT_H_IN - 2 * gap) / fig_h
        return left, 1 - top_in / fig_h - height, width, height

    for panel in dashboard["panels"]:
        left, bottom, width, height = box(panel["gridPos"])
        if panel["type"] == "row":
            fig.text(left, bottom + height / 2, "⌄ " + panel["title"], color=TEXT, fontsize=11,
                     fontweight="bold", va="center")
            continue
        fig.patches.append(FancyBboxPatch(
            (left, bottom), width, height, boxstyle="round,pad=0,rounding_size=0.002",
            transform=fig.transFigure, facecolor=PANEL_BG, edgecolor=BORDER, linewidth=0.8,
            zorder=-10))
        fig.text(left + 0.004, bottom + height - 0.16 / fig_h, panel["title"], color=TEXT,
                 fontsize=9, fontweight="bold", va="top")
        title_h = 0.34 / fig_h
        pad_x = 0.85 / fig_w if panel["type"] in ("timeseries", "heatmap") else 0.08 / fig_w
        inner_bottom = bottom + 0.1 / fig_h
        if panel["type"] == "timeseries":
            inner_bottom = bottom + min(height * 0.42, 1.0 / fig_h)
        if panel["type"] == "state-timeline":
            pad_x = 3.3 / fig_w
            inner_bottom = bottom + 0.3 / fig_h
        ax = fig.add_axes((left + pad_x, inner_bottom, width - pad_x - 0.1 / fig_w,
                           bottom + height - title_h - inner_bottom))
        DRAW[panel["type"]](ax, panel, bundle["results"][str(panel["id"])])
    path = out / f"{name.removesuffix('.json')}.png"
    fig.savefig(path, dpi=90, facecolor=BG)
    plt.close(fig)
    return path


def main() -> int:
    """Run the demo stack, query every panel and write one PNG per dashboard."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of demo traffic")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--data", type=Path, default=None,
                        help="JSON cache of the query results: read it when it exists (no run), "
                             "else write it after the run (to restyle without waiting)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is not None and args.data.exists():
        data = json.loads(args.data.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="render-dashboards-") as tmp:
            print(f"running simulator + exporter + prometheus for {args.duration:.0f} s ...")
            data = run_demo(args.duration, Path(tmp))
        if args.data is not None:
            args.data.write_text(json.dumps(data))
    for name, bundle in data.items():
        print(f"wrote {render(name, bundle, args.out).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
