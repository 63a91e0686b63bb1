"""Check prometheus/alerts.yml with promtool and the conventions alerts must keep."""

from __future__ import annotations

import itertools
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
    "AsyncJobAPIRateLimited", "AsyncJobShardMismatch",
}
# Labels each alert's annotations must name, so a page says which org / job it is about.
NAMED_LABELS = {
    "AsyncJobFailed": {"org", "job_type", "job_id", "source"},
    "AsyncJobFailureRatioHigh": {"org", "job_type", "source"},
    "AsyncJobStuckPending": {"org", "job_type", "source"},
    "AsyncJobStuckRunning": {"org", "job_type", "source"},
    "AsyncJobStepStale": {"org", "job_type", "step_type", "source"},
    "AsyncJobExporterDown": {"org", "source"},
    "AsyncJobAPIRateLimited": {"source"},
    "AsyncJobShardMismatch": {"job", "count"},
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
    assert "asyncjob_failed_job_info" in expr and "job_id" in expr


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
