"""The shipped dashboards, unchanged, show json sources: every job_type / step_type panel has data.

The simulator's GitHub Actions, GitLab CI and Airflow faces feed three `kind: json` sources
(presets as `demo` configures them). Each panel query of grafana/dashboards/*.json that names
job_type or step_type is read with `$source` at one json source at a time (the other variables
at their defaults, as Grafana opens the dashboard): every series selector in it (a recording
rule stands for the metrics it is computed from) must match a series the exporter serves for
that source, and the counters under a histogram_quantile() or a `> 0` filter must grow between
two scrapes, or those panels would be NaN / empty. Real Prometheus is left out on purpose: it
hands static targets to its scrapers only after ~5 s, and these checks need no PromQL engine.
"""

from __future__ import annotations

import re
import time
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from scripts.promstack import RULES, PanelQuery, load_dashboards, metric_names, panels, substitute
from tests.integration.harness import exporter, scrape, simulator, wait_for

SOURCES = ("gh", "gl", "af")
DASHBOARDS = load_dashboards()
SIM = ("--seed", "21", "--ordo-job-rate", "10", "--job-duration-s", "0.3", "--failure-ratio",
       "0.5", "--stuck-ratio", "0.1", "--ordo-history", "8", "--job-rate", "0",
       "--vocdoni-orgs", "1", "--vocdoni-v1-orgs", "0", "--history", "0")
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
RATED = re.compile(r"\b(?:rate|increase|irate)\s*\(\s*([A-Za-z_:][\w:]*)")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Matchers = list[tuple[str, str, str]]


def config(sim: str, state: Path) -> str:
    """Return three preset json sources on the simulator's faces."""
    return f"""
state:
  path: {state}
defaults:
  interval: 0.3s
  jitter: 0
  max_requests_per_second: 100
sources:
  - name: gh
    kind: json
    preset: github-actions
    base_url: {sim}/github
    auth: {{token: sim-token}}
    organizations: [{{address: sim/ordo}}]
  - name: gl
    kind: json
    preset: gitlab-ci
    base_url: {sim}/gitlab
    auth: {{token: sim-token}}
    organizations: [{{address: sim/ordo}}]
  - name: af
    kind: json
    preset: airflow
    base_url: {sim}/airflow
    auth: {{username: admin, password: sim-token}}
    organizations: [{{address: sim}}]
"""


@cache
def typed_queries() -> list[PanelQuery]:
    """Return the panel targets that select or group by job_type or step_type, raw."""
    out = [PanelQuery(name, panel, target, target["expr"])
           for name, dashboard in DASHBOARDS.items() for panel in panels(dashboard)
           for target in panel.get("targets", [])
           if re.search(r"\b(job_type|step_type)\b", target["expr"])]
    assert len(out) >= 20, [q.panel["title"] for q in out]
    return out


@cache
def recorded() -> dict[str, set[str]]:
    """Map each recording rule of the shipped rules to the metrics its expression reads."""
    doc: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return {rule["record"]: metric_names(rule["expr"]) for group in doc["groups"]
            for rule in group["rules"] if "record" in rule}


def selectors(q: PanelQuery, source: str) -> list[tuple[str, Matchers, bool]]:
    """Return (metric, matchers, under a rate) of the target with `$source` at `source`."""
    dashboard = DASHBOARDS[q.dashboard]
    raw = re.sub(r"\$\{?source\}?", source, q.target["expr"])
    expr = substitute(raw, dashboard, "1m", "1s", "1h")
    rated = set(RATED.findall(expr))
    rules = recorded()
    out = []
    for metric, body in SELECTOR.findall(expr):
        matchers = MATCHER.findall(body)
        for base in sorted(rules.get(metric, {metric})):  # a rule's metrics carry its labels
            out.append((base, matchers, metric in rated or metric in rules))
    assert out, f"{q.panel['title']}: no selector in {expr}"
    return out


def matches(labels: dict[str, str], matchers: Matchers) -> bool:
    """Apply PromQL label matchers (a missing label is the empty string)."""
    for name, op, value in matchers:
        have = labels.get(name, "")
        hit = (re.fullmatch(value, have) is not None if op in ("=~", "!~")
               else have == value.replace('\\"', '"'))
        if hit != (op in ("=", "=~")):
            return False
    return True


def series(samples: Samples, metric: str, matchers: Matchers) -> dict[tuple[Any, ...], float]:
    """Return the samples of `metric` the matchers select."""
    return {lbls: v for (name, lbls), v in samples.items()
            if name == metric and matches(dict(lbls), matchers)}


def missing(first: Samples, last: Samples) -> list[tuple[str, str, str, str]]:
    """Return (dashboard, panel, source, why) for every panel that would show nothing."""
    out = []
    for q in typed_queries():
        grows = "histogram_quantile" in q.target["expr"] or q.target["expr"].rstrip().endswith(
            "> 0")
        for source in SOURCES:
            for metric, matchers, rated in selectors(q, source):
                now = series(last, metric, matchers)
                if not now:
                    out.append((q.dashboard, q.panel["title"], source, f"no {metric}"))
                elif grows and rated and not any(
                        v > series(first, metric, matchers).get(k, 0.0) for k, v in now.items()):
                    out.append((q.dashboard, q.panel["title"], source, f"{metric} flat"))
    return out


def test_every_job_and_step_type_panel_shows_each_json_source(tmp_path: Path) -> None:
    with (
        simulator(tmp_path, *SIM) as sim,
        exporter(tmp_path, config(sim, tmp_path / "state.db")) as (url, proc),
    ):
        wait_for(lambda: all(any(v for v in series(scrape(url), "asyncjob_poll_duration_seconds"
                                                   "_count", [("source", "=", s)]).values())
                             for s in SOURCES), 20, f"a first poll of each source\n"
                                                    f"{proc.output()}")
        first = scrape(url)
        started = time.monotonic()
        gaps: list[tuple[str, str, str, str]] = []

        def every_panel_has_data() -> bool:
            gaps[:] = missing(first, scrape(url))
            return not gaps

        try:
            wait_for(every_panel_has_data, 15, "data for every panel", interval=0.5)
        except TimeoutError:
            raise AssertionError(f"panels without data for json sources after "
                                 f"{time.monotonic() - started:.0f}s: {gaps}") from None
