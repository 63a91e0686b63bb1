"""Run the real Prometheus and Alertmanager on loopback, a webhook receiver; dashboard queries."""

from __future__ import annotations

import json
import math
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.harness import Proc, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "prometheus" / "alerts.yml"
AM_EXAMPLE = REPO / "prometheus" / "alertmanager.example.yml"
DASHBOARDS = REPO / "grafana" / "dashboards"
BINARIES = ("prometheus", "prometheus-alertmanager")


def require_binaries() -> dict[str, str]:
    """Return the paths of prometheus and prometheus-alertmanager or raise with the fix."""
    found = {name: shutil.which(name) for name in BINARIES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not found on PATH: run scripts/ensure-prometheus.sh as root "
            "(make test does; it installs the Debian packages prometheus and "
            "prometheus-alertmanager)"
        )
    return {name: str(path) for name, path in found.items()}


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook call of Alertmanager, with the monotonic time it arrived."""

    received: float
    payload: dict[str, Any]


class WebhookReceiver:
    """Collect Alertmanager webhook notifications in a background http.server thread."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.notifications.append(Notification(time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def payloads(self) -> list[dict[str, Any]]:
        """Return the body of every notification received so far, oldest first."""
        with self._lock:
            return [note.payload for note in self.notifications]

    def alerts(self, status: str | None = None,
               **labels: str) -> list[tuple[float, dict[str, Any]]]:
        """Return (arrival time, alert) of every notified alert matching status and labels."""
        with self._lock:
            notes = list(self.notifications)
        out = []
        for note in notes:
            for alert in note.payload.get("alerts", []):
                if status is not None and alert.get("status") != status:
                    continue
                if all(alert["labels"].get(k) == v for k, v in labels.items()):
                    out.append((note.received, alert))
        return out


def example_config(webhook_url: str, group_wait: str, group_interval: str) -> dict[str, Any]:
    """Return alertmanager.example.yml with every receiver sent to webhook_url and short timers.

    Grouping, routes and inhibit rules are kept as shipped: only where notifications go and how
    long Alertmanager waits before sending them change, so a test runs in seconds.
    """
    config: dict[str, Any] = yaml.safe_load(AM_EXAMPLE.read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook_url
            hook["send_resolved"] = True
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval)):
            if key in route:
                route[key] = value
    return config


def scaled_rules(tmp: Path, factor: int) -> Path:
    """Write alerts.yml with `for:`, age thresholds and asyncjob_up windows divided by factor.

    An end-to-end test cannot wait 5 minutes for AsyncJobExporterDown; everything else (the
    expressions, labels, annotations, the other windows) is the shipped file.
    """
    def seconds(text: str) -> str:
        value = sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u]
                    for n, u in re.findall(r"(\d+)([smh])", text))
        return f"{max(1, value // factor) if value else 0}s"

    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = seconds(rule["for"])
            if rule.get("record", "").endswith("_seconds"):
                rule["expr"] = re.sub(r"\d+", lambda m: str(int(m.group()) // factor),
                                      rule["expr"])
            rule["expr"] = re.sub(r"asyncjob_up\[(\w+)\]",
                                  lambda m: f"asyncjob_up[{seconds(m.group(1))}]", rule["expr"])
    path = tmp / "alerts-scaled.yml"
    path.write_text(yaml.safe_dump(doc, width=1000))
    return path


@contextmanager
def alertmanager(tmp: Path, webhook_url: str,
                 config: dict[str, Any] | None = None) -> Iterator[str]:
    """Run Alertmanager (no gossip, storage in tmp) with config; yield its URL.

    Without config, every alert is its own group and is sent to webhook_url at once.
    """
    binary = require_binaries()["prometheus-alertmanager"]
    config = config or {
        "route": {
            "receiver": "test",
            "group_by": ["..."],  # one group per alert: one notification each, no batching delay
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "test", "webhook_configs": [
            {"url": webhook_url, "send_resolved": True},
        ]}],
    }
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp / "am-data").mkdir(exist_ok=True)
    proc = Proc([binary, f"--config.file={path}", f"--storage.path={tmp / 'am-data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                tmp / "alertmanager.log")
    try:
        wait_for(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 20,
                 f"alertmanager start\n{proc.output()}")
        yield url
    finally:
        proc.stop()


@contextmanager
def prometheus(tmp: Path, targets: list[str], alertmanager_url: str | None = None,
               interval: str = "1s", rules: Path = RULES) -> Iterator[str]:
    """Run Prometheus scraping targets (host:port) with the rules loaded; yield its URL."""
    binary = require_binaries()["prometheus"]
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "asyncjob", "static_configs": [{"targets": targets}]}],
    }
    if alertmanager_url is not None:
        config["alerting"] = {"alertmanagers": [
            {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]},
        ]}
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # resend firing alerts every second (default 1m), so Alertmanager sees annotations update
    proc = Proc([binary, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'prom-data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s"],
                tmp / "prometheus.log")
    try:
        wait_for(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 30,
                 f"prometheus start\n{proc.output()}")
        groups = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert groups, f"prometheus loaded no rule group from {rules}\n{proc.output()}"
        yield url
    finally:
        proc.stop()


def query(url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Run an instant query and return its result vector (raise on a PromQL error)."""
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    body = httpx.get(f"{url}/api/v1/query", params=params, timeout=10).json()
    if body.get("status") != "success":
        raise AssertionError(f"query failed: {expr}\n{body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def query_range(url: str, expr: str, start: float, end: float,
                step: float) -> list[dict[str, Any]]:
    """Run a range query and return its matrix (raise on a PromQL error)."""
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    body = httpx.get(f"{url}/api/v1/query_range", params=params, timeout=20).json()
    if body.get("status") != "success":
        raise AssertionError(f"range query failed: {expr}\n{body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def has_value(result: list[dict[str, Any]]) -> bool:
    """Tell whether a query result holds at least one finite sample (NaN is a gap in Grafana)."""
    for series in result:
        points = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(math.isfinite(float(v)) for _, v in points):
            return True
    return False


# ---- dashboards -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One target of one dashboard panel, with its Grafana variables substituted."""

    dashboard: str
    panel: dict[str, Any]
    target: dict[str, Any]
    expr: str

    @property
    def instant(self) -> bool:
        """Tell whether Grafana runs this target as an instant query (tables)."""
        return bool(self.target.get("instant")) and not self.target.get("range")


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Load every dashboard JSON by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the non-row panels of a dashboard, including those nested in collapsed rows."""
    stack = list(reversed(dashboard["panels"]))
    while stack:
        panel = stack.pop()
        stack.extend(reversed(panel.get("panels", [])))
        if panel["type"] != "row":
            yield panel


def substitute(expr: str, dashboard: dict[str, Any], rate_interval: str, interval: str,
               range_: str) -> str:
    """Replace Grafana variables the way Grafana would with every variable at its default."""
    builtins = {"__rate_interval": rate_interval, "__interval": interval, "__range": range_}
    values: dict[str, str] = {}
    for var in dashboard["templating"]["list"]:
        current = var.get("current", {}).get("value")
        if var["type"] == "query" or current in (None, "$__all", ["$__all"]):
            values[var["name"]] = var.get("allValue") or ".*"
        else:
            values[var["name"]] = current if isinstance(current, str) else "|".join(current)
    values.update(builtins)

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"undefined variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def panel_queries(rate_interval: str = "1m", interval: str = "1s",
                  range_: str = "1h") -> list[PanelQuery]:
    """Return every target of every panel of every dashboard, ready for Prometheus."""
    out = []
    for name, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                expr = substitute(target["expr"], dashboard, rate_interval, interval, range_)
                out.append(PanelQuery(name, panel, target, expr))
    return out


def variable_selectors(dashboard: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Map each label_values() variable to (series selector with variables at .*, label)."""
    out = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"])
        assert match, f"variable {var['name']} is not a label_values() query"
        out[var["name"]] = (re.sub(r"\$\{?\w+\}?", ".*", match.group(1)), match.group(2))
    return out


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Extract the metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        if match.group(2) is None and match.group(1).lower() not in PROMQL_KEYWORDS:
            names.add(match.group(1))
    return names
