"""Check prometheus/alerts.yml with promtool and the conventions alerts must keep."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "prometheus" / "alerts.yml"
RULE_TESTS = sorted((REPO / "tests" / "rules").glob("*.yml"))
DOCS = REPO / "docs" / "alerts.md"
THRESHOLD_GROUP = "asyncjob-thresholds"
THRESHOLD_PREFIX = "asyncjob:threshold:"

ALERTS = {
    "AsyncJobFailed", "AsyncJobFailureRatioHigh", "AsyncJobStuckPending", "AsyncJobStuckRunning",
    "AsyncJobStepStale", "AsyncJobExporterDown", "AsyncJobExporterAbsent",
    "AsyncJobAPIRateLimited", "AsyncJobShardMismatch", "AsyncJobDiscoveryFailing",
    "AsyncJobStateNotPersistent",
}
# Alerts on ages, which keep growing while polls fail: they must read fresh polls only.
AGE_ALERTS = {"AsyncJobStuckPending", "AsyncJobStuckRunning", "AsyncJobStepStale"}
# Labels each alert's annotations must name, so a page says which org / job it is about.
NAMED_LABELS = {
    "AsyncJobFailed": {"org", "job_type", "source"},
    "AsyncJobFailureRatioHigh": {"org", "job_type", "source"},
    "AsyncJobStuckPending": {"org", "job_type", "source"},
    "AsyncJobStuckRunning": {"org", "job_type", "source"},
    "AsyncJobStepStale": {"org", "job_type", "step_type", "source"},
    "AsyncJobExporterDown": {"org", "source"},
    "AsyncJobAPIRateLimited": {"source"},
    "AsyncJobShardMismatch": {"job", "count"},
    "AsyncJobDiscoveryFailing": {"source", "instance"},
    "AsyncJobStateNotPersistent": {"instance"},
}


def _promtool() -> str:
    """Find promtool or fail loudly: these checks must never be skipped silently."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found on PATH: run scripts/ensure-prometheus.sh (as root)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root so relative rule_files resolve."""
    return subprocess.run(
        [_promtool(), *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def _groups() -> list[dict[str, Any]]:
    """Load the rule groups of alerts.yml."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def _alerts() -> dict[str, dict[str, Any]]:
    """Map alert name to its rule."""
    return {r["alert"]: r for g in _groups() for r in g["rules"] if "alert" in r}


def _duration_seconds(text: str) -> float:
    """Parse a Prometheus duration such as 0s, 10s, 5m, 1h."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


def test_promtool_check_rules_passes() -> None:
    proc = _run("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool test files in tests/rules/"
    proc = _run("test", "rules", *(str(p.relative_to(REPO)) for p in RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout + proc.stderr


def test_all_required_alerts_exist() -> None:
    assert set(_alerts()) == ALERTS


def test_every_alert_has_firing_quiet_and_resolving_cases() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    resolved: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            timeline: dict[str, list[tuple[float, bool]]] = {}
            for check in case.get("alert_rule_test", []):
                firing = bool(check.get("exp_alerts"))
                name = check["alertname"]
                (fired if firing else quiet).add(name)
                at = _duration_seconds(check["eval_time"])
                timeline.setdefault(name, []).append((at, firing))
            for name, points in timeline.items():
                states = [firing for _, firing in sorted(points)]
                if any(a and not b for a, b in itertools.pairwise(states)):
                    resolved.add(name)
    assert ALERTS - fired == set(), "alerts never tested firing"
    assert ALERTS - quiet == set(), "alerts never tested quiet"
    # absent() by nature fires and resolves the other way round; it still needs both.
    assert ALERTS - resolved == set(), "alerts never tested resolving"


def test_alerts_carry_runbook_annotations_and_severity() -> None:
    for name, rule in _alerts().items():
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{name} lacks annotation {key}"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name


def test_alert_annotations_name_the_affected_labels() -> None:
    alerts = _alerts()
    for name, labels in NAMED_LABELS.items():
        text = alerts[name]["annotations"]["summary"] + alerts[name]["annotations"]["description"]
        for label in labels:
            assert f"$labels.{label}" in text, f"{name} annotations never name {label}"


def test_failed_alert_fires_fast_enough_for_a_1s_scrape() -> None:
    assert _duration_seconds(_alerts()["AsyncJobFailed"].get("for", "0s")) <= 10


def test_exporter_down_waits_5m() -> None:
    rule = _alerts()["AsyncJobExporterDown"]
    assert "asyncjob_up == 0" in rule["expr"]
    assert _duration_seconds(rule["for"]) == 300


def test_failed_alert_is_not_a_forever_alert_on_a_cumulative_counter() -> None:
    expr = _alerts()["AsyncJobFailed"]["expr"]
    # every use of the counter must be windowed, so the alert resolves by itself
    for match in re.finditer(r"asyncjob_finished_total[^\[]*", expr):
        assert expr[match.end()] == "[", expr
    assert "asyncjob_failed_job_info" in expr


def test_thresholds_live_only_in_the_threshold_group() -> None:
    for group in _groups():
        for rule in group["rules"]:
            record = rule.get("record", "")
            assert record.startswith(THRESHOLD_PREFIX) == (group["name"] == THRESHOLD_GROUP), record


def test_alert_expressions_hold_no_threshold_literals() -> None:
    for name, rule in _alerts().items():
        expr = re.sub(r"\[[^\]]*\]", "", rule["expr"])  # range windows
        expr = re.sub(r'"[^"]*"', "", expr)  # strings
        expr = re.sub(r"[A-Za-z_:][A-Za-z0-9_:]*", "", expr)  # names, with their digits
        numbers = {float(n) for n in re.findall(r"\d+(?:\.\d+)?", expr)}
        assert numbers <= {0.0, 1.0}, f"{name} hard-codes {numbers}: use {THRESHOLD_PREFIX}*"


def test_docs_list_every_threshold_with_its_value() -> None:
    docs = DOCS.read_text()
    group = next(g for g in _groups() if g["name"] == THRESHOLD_GROUP)
    for rule in group["rules"]:
        value = re.fullmatch(r"vector\(([\d.]+)\)", rule["expr"].strip())
        assert value, f"threshold {rule['record']} must be a constant vector(N)"
        job_type = rule.get("labels", {}).get("job_type")
        lines = [
            line for line in docs.splitlines()
            if f"`{rule['record']}`" in line and (job_type is None or job_type in line)
        ]
        assert any(value.group(1) in line for line in lines), (
            f"docs/alerts.md has no table row for {rule['record']} {job_type or ''} = "
            f"{value.group(1)}"
        )
    for name in ALERTS:
        assert f"### {name}" in docs, f"docs/alerts.md does not describe {name}"


def test_failed_alert_fires_once_per_job_type_not_per_job() -> None:
    expr = _alerts()["AsyncJobFailed"]["expr"]
    outer = re.findall(r"max by \(([^)]*)\)", expr)
    assert outer and all(set(g.replace(" ", "").split(",")) == {"source", "org", "job_type"}
                         for g in outer), outer


def _burst_case(tmp_path: Path, failures: int) -> Path:
    """Write a promtool test: `failures` jobs of one type fail within one scrape at 5m."""
    labels = 'instance="a:9877",job="asyncjob",source="vocdoni-prod",org="acme"'
    series = [{"series": f'asyncjob_failed_job_info{{{labels},job_type="org_members",'
                         f'job_id="j-{i:03d}"}}', "values": "_x5 1x20"} for i in range(failures)]
    series += [
        {"series": f'asyncjob_finished_total{{{labels},job_type="org_members",status="failed"}}',
         "values": f"0x5 {failures}x20"},
        {"series": f'asyncjob_up{{{labels}}}', "values": "1x25"},
    ]
    ids = [f"j-{i:03d}" for i in range(min(failures, 5))]
    alert = {
        "exp_labels": {"severity": "warning", "source": "vocdoni-prod", "org": "acme",
                       "job_type": "org_members"},
        "exp_annotations": {
            **_expected_links("AsyncJobFailed", "vocdoni-prod", "acme", "org_members"),
            "summary": f"{failures} org_members job(s) of org acme failed",
            "description": f"{failures} org_members job(s) of org acme (source vocdoni-prod) "
                           f"failed. Job ids (first five): {', '.join(ids)}",
            "job_ids": ",".join(ids),
            "runbook": " ".join(_alerts()["AsyncJobFailed"]["annotations"]["runbook"].split()),
        },
    }
    case = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "AsyncJobFailed", "exp_alerts": []},
            {"eval_time": "5m", "alertname": "AsyncJobFailed", "exp_alerts": [alert]},
            {"eval_time": "15m", "alertname": "AsyncJobFailed", "exp_alerts": [alert]},
        ],
    }]}
    path = tmp_path / "burst.yml"
    path.write_text(yaml.safe_dump(case, width=1000))
    return path


def _expected_links(alert: str, source: str, org: str, job_type: str) -> dict[str, str]:
    """Return the runbook_url and dashboard_url the generator gives an alert with these labels."""
    urls = _generator().links(alert, _generator().RUNBOOK_BASE_URL, _generator().GRAFANA_URL)
    values = {"source": source, "org": org, "job_type": job_type}
    urls["dashboard_url"] = re.sub(r"\{\{ \$labels\.(\w+) \| urlquery \}\}",
                                   lambda m: values[m.group(1)], urls["dashboard_url"])
    return urls


def test_a_burst_of_100_failures_is_one_alert_naming_five_ids(tmp_path: Path) -> None:
    # promtool evaluates the template's `query` against the test series, like Prometheus does
    proc = _run("test", "rules", str(_burst_case(tmp_path, 100)))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_age_alerts_read_only_orgs_polled_successfully_for_their_for() -> None:
    for name in AGE_ALERTS:
        rule = _alerts()[name]
        windows = re.findall(r"min_over_time\(asyncjob_up\[(\w+)\]\) == 1", rule["expr"])
        assert windows, f"{name} does not require asyncjob_up == 1"
        assert {_duration_seconds(w) for w in windows} == {_duration_seconds(rule["for"])}, name
        assert "and on (instance, source, org)" in rule["expr"], name


def test_outage_case_checks_that_nothing_but_exporter_down_fires() -> None:
    case = next(c for c in yaml.safe_load((REPO / "tests" / "rules" / "outage.yml").read_text())
                ["tests"] if "outage" in c["name"])
    at_60m = {c["alertname"]: bool(c["exp_alerts"]) for c in case["alert_rule_test"]
              if c["eval_time"] == "60m"}
    assert at_60m == {name: name == "AsyncJobExporterDown" for name in ALERTS}


def _generator() -> Any:
    """Import deploy/kubernetes/gen-prometheusrule.py (its name has dashes)."""
    import importlib.util

    path = REPO / "deploy" / "kubernetes" / "gen-prometheusrule.py"
    spec = importlib.util.spec_from_file_location("gen_prometheusrule", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc_anchors() -> set[str]:
    """Return the GitHub anchors of docs/alerts.md's headings."""
    out = set()
    for line in DOCS.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_alert_links_its_runbook_section_and_a_dashboard() -> None:
    gen = _generator()
    dashboards = {d["uid"]: d for d in (json.loads(p.read_text())
                                        for p in (REPO / "grafana" / "dashboards").glob("*.json"))}
    anchors = _doc_anchors()
    for name, rule in _alerts().items():
        notes = rule["annotations"]
        runbook, dashboard = notes.get("runbook_url", ""), notes.get("dashboard_url", "")
        assert runbook == f"{gen.RUNBOOK_BASE_URL}#{name.lower()}", name
        assert runbook.split("#")[1] in anchors, f"docs/alerts.md has no section for {name}"
        match = re.fullmatch(re.escape(gen.GRAFANA_URL) + r"/d/([\w-]+)/[\w-]+(?:\?(.*))?",
                             dashboard)
        assert match and match.group(1) in dashboards, f"{name}: bad dashboard_url {dashboard}"
        variables = {v["name"] for v in dashboards[match.group(1)]["templating"]["list"]}
        for var in re.findall(r"var-(\w+)=", match.group(2) or ""):
            assert var in variables, f"{name}: dashboard {match.group(1)} has no variable {var}"


def test_links_come_from_one_base_url_each(tmp_path: Path) -> None:
    gen = _generator()
    text = gen.with_links(RULES.read_text(), "https://runbooks.example.org/alerts", "https://g.x")
    rules = {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]
             if "alert" in r}
    assert set(rules) == ALERTS
    for name, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == (
            f"https://runbooks.example.org/alerts#{name.lower()}")
        assert rule["annotations"]["dashboard_url"].startswith("https://g.x/d/asyncjob-")
    # the committed files carry the default bases
    assert gen.with_links(RULES.read_text(), gen.RUNBOOK_BASE_URL, gen.GRAFANA_URL) == (
        RULES.read_text())


def test_docs_table_lists_every_alert_with_its_severity_and_for() -> None:
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] in ALERTS:
            rows[cells[0]] = cells
    assert set(rows) == ALERTS, ALERTS - set(rows)
    for name, rule in _alerts().items():
        assert rows[name][1] == f"{rule.get('for', '0s')}", name
        assert rule["labels"]["severity"] in rows[name], name


AM_EXAMPLE = REPO / "prometheus" / "alertmanager.example.yml"
JOB_ALERTS = {"AsyncJobFailed", "AsyncJobFailureRatioHigh", "AsyncJobStuckPending",
              "AsyncJobStuckRunning", "AsyncJobStepStale"}


def test_alertmanager_example_passes_amtool() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool not found on PATH: install the Debian package prometheus-alertmanager")
    proc = subprocess.run([amtool, "check-config", str(AM_EXAMPLE)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alertmanager_example_groups_per_org_and_inhibits_consequences() -> None:
    config = yaml.safe_load(AM_EXAMPLE.read_text())
    assert config["route"]["group_by"] == ["source", "org", "alertname"]
    inhibits = {}
    for rule in config["inhibit_rules"]:
        (source,) = rule["source_matchers"]
        (target,) = rule["target_matchers"]
        name = re.fullmatch(r'alertname="(\w+)"', source)
        names = re.fullmatch(r'alertname=~"([\w|]+)"', target)
        assert name and names, rule
        inhibits[name.group(1)] = (set(names.group(1).split("|")), rule["equal"])
    assert inhibits == {
        "AsyncJobExporterDown": (JOB_ALERTS, ["source", "org"]),
        "AsyncJobDiscoveryFailing": (JOB_ALERTS, ["source"]),
    }
    assert JOB_ALERTS <= ALERTS
