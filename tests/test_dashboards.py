"""Check the Grafana dashboards' structure and that every PromQL they and the rules use is valid."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.collector import FAMILIES
from scripts.promstack import metric_names

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "grafana" / "dashboards"
PROVISIONING = REPO / "grafana" / "provisioning"
RULE_FILES = sorted((REPO / "prometheus").glob("*.yml"))  # alerting and recording rules
RULE_TESTS = sorted((REPO / "tests" / "rules").glob("*.yml"))
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
# prometheus_client's standard process collector (the contract lists `process_*`).
PROCESS_METRICS = {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"}
# Sample names per family type, as prometheus_client writes them (_created: OpenMetrics).
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                             "_created")}
BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}
RANGE_VARS = {"__rate_interval", "__interval", "__range", "window"}
EXPECTED = {
    "asyncjob-overview.json": {
        "asyncjob_jobs", "asyncjob_finished_total", "asyncjob_duration_seconds_bucket",
        "asyncjob_oldest_active_age_seconds", "asyncjob_progress_ratio",
        "asyncjob_failed_job_info", "asyncjob_import_items_total",
        "asyncjob_active_job_start_timestamp_seconds",
    },
    "asyncjob-steps.json": {
        "asyncjob_steps", "asyncjob_step_duration_seconds_bucket", "asyncjob_step_retries_total",
        "asyncjob_step_stale_seconds",
    },
    "asyncjob-exporter-health.json": {
        "asyncjob_up", "asyncjob_poll_duration_seconds_bucket", "asyncjob_api_requests_total",
        "asyncjob_api_rate_limited_total", "asyncjob_series_dropped_total",
        "asyncjob_config_last_reload_success_timestamp_seconds", "asyncjob_poll_errors_total",
        "asyncjob_discovery_up", "asyncjob_discovery_errors_total",
        "asyncjob_discovery_last_success_timestamp_seconds", "asyncjob_state_persistent",
        "asyncjob_state_write_errors_total", *PROCESS_METRICS,
    },
}
# The health dashboard's metrics carry no job_type label, so it has no job_type variable.
JOB_TYPE_DASHBOARDS = {"asyncjob-overview.json", "asyncjob-steps.json"}


def _dashboards() -> dict[str, dict[str, Any]]:
    """Load every dashboard JSON by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Yield panels, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    """Collect every PromQL expression of a dashboard's panels."""
    return [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]


def _variable_selectors(dashboard: dict[str, Any]) -> list[str]:
    """Return the series selectors inside label_values() variable queries."""
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["definition"])
            assert match, f"variable {var['name']} is not a label_values() query"
            out.append(match.group(1))
    return out


def _rules() -> list[dict[str, Any]]:
    """Return every rule of every rule file under prometheus/ (alerts and recordings)."""
    rules = []
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and "groups" in doc:  # not alertmanager.example.yml
            rules += [r for g in doc["groups"] for r in g["rules"]]
    return rules


def _test_series() -> list[str]:
    """Return the input series selectors of the promtool rule tests (tests/rules/*.yml)."""
    return [series["series"] for path in RULE_TESTS
            for case in yaml.safe_load(path.read_text())["tests"]
            for series in case.get("input_series", [])]


def _contract_metrics() -> set[str]:
    """Return every sample name the collector's FAMILIES can expose."""
    names: set[str] = set()
    for fam in FAMILIES:
        suffixes = SUFFIXES.get(fam.kind, ("",))
        names.update(fam.name + suffix for suffix in suffixes)
    return names


def _substitute(expr: str) -> str:
    """Replace Grafana variables so the expression is plain PromQL."""
    expr = re.sub(r"\$\{?(" + "|".join(RANGE_VARS) + r")\}?(?!\w)", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def test_three_dashboards_with_unique_uids() -> None:
    dashboards = _dashboards()
    assert set(dashboards) == set(EXPECTED)
    uids = [d["uid"] for d in dashboards.values()]
    assert all(uids) and len(set(uids)) == len(uids)
    for dashboard in dashboards.values():
        assert dashboard["schemaVersion"] >= 39
        assert dashboard["title"] and "asyncjob" in dashboard["tags"]
        assert "id" not in dashboard or dashboard["id"] is None, "provisioned JSON must not pin id"


def test_panels_have_unique_ids_and_a_non_overlapping_grid() -> None:
    for name, dashboard in _dashboards().items():
        panels = list(_panels(dashboard["panels"]))
        ids = [p["id"] for p in panels]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            grid = panel["gridPos"]
            assert {"h", "w", "x", "y"} <= grid.keys(), f"{name}: {panel['title']}"
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, f"{name}: {panel['title']}"
            x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
            mine = {(i, j) for i in range(x, x + w) for j in range(y, y + h)}
            assert not cells & mine, f"{name}: panel {panel['title']} overlaps another"
            cells |= mine


def test_every_query_uses_the_datasource_variable() -> None:
    for name, dashboard in _dashboards().items():
        for panel in _panels(dashboard["panels"]):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == DS_REF, f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"] == DS_REF, f"{name}: {panel['title']}"
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"] == DS_REF, f"{name}: variable {var['name']}"


def test_templating_offers_datasource_source_org_job_type() -> None:
    for name, dashboard in _dashboards().items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        wanted = {"datasource", "source", "org"}
        if name in JOB_TYPE_DASHBOARDS:
            wanted.add("job_type")
        assert wanted <= variables.keys(), f"{name}: missing {wanted - variables.keys()}"
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        for var in variables.values():
            if var["type"] != "query":
                continue
            assert var["multi"] and var["includeAll"] and var["allValue"] == ".*", var["name"]
            assert var["definition"].startswith("label_values("), var["name"]


def test_variables_are_defined_and_matched_as_regex() -> None:
    for name, dashboard in _dashboards().items():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | BUILTIN_VARS
        for expr in _exprs(dashboard) + _variable_selectors(dashboard):
            used = set(re.findall(r"\$\{?(\w+)\}?", expr))
            assert used <= defined, f"{name}: undefined {used - defined} in {expr}"
            assert not re.search(r'[^=!~]="\$', expr), f"{name}: use =~ for variables: {expr}"


def test_dashboards_show_the_required_metrics() -> None:
    for name, dashboard in _dashboards().items():
        used = set().union(*(metric_names(e) for e in _exprs(dashboard)))
        assert EXPECTED[name] <= used, f"{name}: missing {EXPECTED[name] - used}"


def test_overview_tables_show_progress_gauges_and_failed_job_ids() -> None:
    panels = {p["title"]: p for p in _panels(_dashboards()["asyncjob-overview.json"]["panels"])}
    active = panels["Active jobs"]
    assert "asyncjob_progress_ratio" in active["targets"][0]["expr"]
    assert "job_id" in active["targets"][0]["expr"] and active["targets"][0]["format"] == "table"
    overrides = active["fieldConfig"]["overrides"]
    props = {p["id"]: p["value"] for o in overrides for p in o["properties"]}
    assert props["custom.cellOptions"]["type"] == "gauge" and props["max"] == 1
    failed = panels["Recently failed jobs"]["targets"][0]
    assert "asyncjob_failed_job_info" in failed["expr"] and "job_id" in failed["expr"]


def test_steps_dashboard_has_a_duration_heatmap() -> None:
    panels = list(_panels(_dashboards()["asyncjob-steps.json"]["panels"]))
    heatmaps = [p for p in panels if p["type"] == "heatmap"]
    assert heatmaps and all(t.get("format") == "heatmap" for p in heatmaps for t in p["targets"])
    assert "asyncjob_step_duration_seconds_bucket" in heatmaps[0]["targets"][0]["expr"]


def test_every_metric_used_exists_in_the_contract() -> None:
    rules = _rules()
    allowed = (_contract_metrics() | PROCESS_METRICS
               | {r["record"] for r in rules if "record" in r})
    exprs = [r["expr"] for r in rules] + _test_series()
    for dashboard in _dashboards().values():
        exprs += _exprs(dashboard) + _variable_selectors(dashboard)
    seen: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names <= allowed, f"unknown metric(s) {names - allowed} in {expr}"
        seen |= names
    assert len(seen) > 20  # the extraction works at all
    assert {"asyncjob_shard_info", "asyncjob_build_info"} <= seen  # rules read both


def test_contract_metrics_come_from_the_families() -> None:
    names = _contract_metrics()
    assert {"asyncjob_jobs", "asyncjob_finished_total", "asyncjob_duration_seconds_bucket",
            "asyncjob_poll_errors_created", "asyncjob_build_info"} <= names
    assert "asyncjob_finished" not in names and "asyncjob_jobs_total" not in names


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job_type, le) (rate(asyncjob_duration_seconds_bucket'
        '{org=~"$org"}[$window]))) / on (job) group_left () x:y:z or vector(0) and time() - a_b'
    )
    assert metric_names(expr) == {"asyncjob_duration_seconds_bucket", "x:y:z", "a_b"}


def test_every_panel_expression_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found on PATH: run scripts/ensure-prometheus.sh (as root)")
    exprs = []
    for dashboard in _dashboards().values():
        exprs += _exprs(dashboard) + _variable_selectors(dashboard)
    rules = [{"record": f"dashboard_expr_{i}", "expr": _substitute(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_substitution_leaves_no_variables() -> None:
    out = _substitute('rate(m{a=~"$org", b=~"${job_type}"}[$__rate_interval]) [$window]')
    assert out == 'rate(m{a=~".*", b=~".*"}[5m]) [5m]'


def test_provisioning_points_at_prometheus_and_the_dashboard_dir() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "asyncjob-prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert (source["uid"], source["type"], source["url"]) == (
        "prometheus", "prometheus", "http://prometheus:9090",
    )
    default = next(v for d in _dashboards().values() for v in d["templating"]["list"]
                   if v["name"] == "datasource")["current"]["value"]
    assert default == source["uid"]
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "asyncjob.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def _overview_panels() -> dict[str, dict[str, Any]]:
    """Map the overview's panel titles (tables win over stats of the same title) to panels."""
    panels = sorted(_panels(_dashboards()["asyncjob-overview.json"]["panels"]),
                    key=lambda p: p["type"] == "table")
    return {p["title"]: p for p in panels}


def test_overview_offers_an_instance_variable_used_by_every_raw_query() -> None:
    dashboard = _dashboards()["asyncjob-overview.json"]
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names.index("instance") == names.index("job_type") + 1, names
    for expr in _exprs(dashboard):
        for selector in re.findall(r"\basyncjob_\w+\{[^}]*\}", expr):
            assert 'instance=~"$instance"' in selector, selector


def test_active_jobs_and_finished_rates_are_separate_panels() -> None:
    panels = _overview_panels()
    active = panels["Active jobs by status"]["targets"][0]["expr"]
    assert "asyncjob_jobs" in active and 'status=~"pending|running|unknown"' in active
    finished = panels["Finished per minute by status"]["targets"][0]["expr"]
    assert "rate(asyncjob_finished_total" in finished
    for panel in panels.values():  # no panel plots the ever-growing listed finished jobs
        for target in panel.get("targets", []):
            expr = target["expr"]
            if "asyncjob_jobs{" in expr and panel["type"] == "timeseries":
                assert re.search(r'status=~"pending\|running', expr), panel["title"]


def test_duration_quantiles_never_mix_statuses() -> None:
    seen = 0
    for dashboard in _dashboards().values():
        for expr in _exprs(dashboard):
            for match in re.finditer(r"histogram_quantile\([^,]+,\s*sum by \(([^)]*)\)\s*\("
                                     r"rate\((asyncjob_(?:step_)?duration_seconds_bucket)", expr):
                status = "status" if match.group(2) == "asyncjob_duration_seconds_bucket" else (
                    "step_status")
                assert status in match.group(1).replace(" ", "").split(","), expr
                seen += 1
    assert seen >= 2


def test_recently_failed_jobs_show_when_they_failed() -> None:
    panel = _overview_panels()["Recently failed jobs"]
    expr = panel["targets"][0]["expr"]
    assert "timestamp(" in expr and "asyncjob_failed_job_info" in expr and "job_id" in expr
    units = {o["matcher"]["options"]: p["value"] for o in panel["fieldConfig"]["overrides"]
             for p in o["properties"] if p["id"] == "unit"}
    assert units == {"Failed at": "dateTimeAsIso"}
    assert panel["options"]["sortBy"] == [{"displayName": "Failed at", "desc": True}]


def test_stuck_jobs_table_names_the_oldest_active_jobs() -> None:
    panel = _overview_panels()["Stuck jobs"]
    (target,) = panel["targets"]
    assert target["format"] == "table" and target["instant"]
    assert "asyncjob_active_job_start_timestamp_seconds" in target["expr"]
    assert "time() -" in target["expr"]
    for label in ("job_id", "status", "job_type", "org", "source"):
        assert label in target["expr"], label
    assert panel["options"]["sortBy"] == [{"displayName": "Age", "desc": True}]


def test_health_dashboard_shows_discovery_state_and_process_resources() -> None:
    titles = {p["title"] for p in _panels(_dashboards()["asyncjob-exporter-health.json"]["panels"])}
    assert {"Discovery up per source", "State file persistent", "Resident memory", "CPU",
            "Open file descriptors"} <= titles
