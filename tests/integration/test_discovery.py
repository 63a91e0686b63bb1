"""`organizations: auto` against a simulator whose login API is down, then heals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.integration.harness import (
    EXE,
    exporter,
    scrape,
    select,
    sim_post,
    simulator,
    total,
    wait_for,
)


def _config(url: str, password_file: Path) -> str:
    return f"""
state: {{path: ":memory:"}}
defaults: {{interval: 1s, timeout: 2s, retries: 0, jitter: 0}}
sources:
  - name: auto
    kind: vocdoni
    base_url: {url}/vocdoni
    auth: {{email: ops@example.org, password_file: {password_file}}}
    organizations: auto
"""


def _errors(url: str) -> float:
    return total(url, "asyncjob_discovery_errors_total", source="auto")


def test_failing_discovery_is_visible_retried_soon_and_heals(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("sim-password\n")
    with simulator(tmp_path, "--vocdoni-orgs", "2", "--vocdoni-v1-orgs", "0") as sim:
        sim_post(sim, "faults", {"mount": "vocdoni", "mode": "503"})
        with exporter(tmp_path, _config(sim, pw)) as (url, _proc):
            # retried after 2 s then 4 s, not one discovery interval (300 s) later
            wait_for(lambda: _errors(url) >= 2, 15, "two failed discoveries counted")
            samples = scrape(url)
            assert select(samples, "asyncjob_discovery_up", source="auto") == {
                (("source", "auto"),): 0.0}
            assert select(samples, "asyncjob_discovery_errors_total", source="auto",
                          reason="http_5xx")
            assert not select(samples, "asyncjob_discovery_last_success_timestamp_seconds")
            ready = httpx.get(f"{url}/readyz", timeout=5)
            assert ready.status_code == 503 and ready.json()["discovering"] == ["auto"]
            sim_post(sim, "faults", {"mount": "vocdoni", "mode": "none"})
            wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 20,
                     "ready once discovery healed")
            samples = scrape(url)
            assert select(samples, "asyncjob_discovery_up", source="auto") == {
                (("source", "auto"),): 1.0}
            assert select(samples, "asyncjob_discovery_last_success_timestamp_seconds",
                          source="auto")
            assert len(select(samples, "asyncjob_up", source="auto")) == 2


def test_once_exits_1_when_discovery_fails(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong-password\n")
    with simulator(tmp_path, "--vocdoni-orgs", "1", "--vocdoni-v1-orgs", "0") as sim:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(_config(sim, pw))
        run = subprocess.run([*EXE, "once", "--config.file", str(cfg), "--log.format", "json"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 1, run.stderr[-2000:]
        assert 'asyncjob_discovery_up{source="auto"} 0.0' in run.stdout
        assert 'asyncjob_discovery_errors_total{reason="auth",source="auto"} 1.0' in run.stdout
        assert "Traceback" not in run.stderr
