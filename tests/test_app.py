"""Daemon wiring: the registry /metrics renders, readiness through the render cache."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import make_registry
from exporter.config import load_config
from exporter.render import MetricsCache
from exporter.scheduler import Scheduler

CONFIG = """
state: {path: ":memory:"}
sources:
  - name: v
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {token: t}
    organizations: [{address: "0x1111111111111111111111111111111111111111", name: acme}]
"""


@pytest.fixture
def cache(tmp_path: Path) -> MetricsCache:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    cache = MetricsCache(make_registry(Scheduler(load_config(path))))
    cache.render_now()
    return cache


def test_process_and_platform_families_are_served_through_the_render_cache(
    cache: MetricsCache,
) -> None:
    text = cache.get(openmetrics=False, gzip=False).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds",
            "process_start_time_seconds", "python_info"} <= names
    om = cache.get(openmetrics=True, gzip=False).decode()
    assert "process_resident_memory_bytes" in om and om.rstrip().endswith("# EOF")


def test_promtool_accepts_the_exposition(cache: MetricsCache) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found on PATH: run scripts/ensure-prometheus.sh (as root)")
    text = cache.get(openmetrics=False, gzip=False)
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
