"""Start the real simulator and exporter processes on loopback and read their output.

Shared by the integration tests (tests/integration/harness.py) and scripts/render_dashboards.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import Proc, free_port, wait_for

EXE = [sys.executable, "-m", "exporter"]


@contextmanager
def simulator(tmp: Path, *knobs: str) -> Iterator[str]:
    """Run `asyncjob-exporter simulate` and yield its base URL."""
    port = free_port()
    proc = Proc([*EXE, "simulate", "--listen", f"127.0.0.1:{port}", *knobs], tmp / "sim.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/_sim/truth", timeout=2).status_code == 200, 20,
                 f"simulator start\n{proc.output()}")
        yield url
    finally:
        proc.stop()


@contextmanager
def exporter(tmp: Path, config: str, *flags: str, env: dict[str, str] | None = None,
             name: str = "exporter") -> Iterator[tuple[str, Proc]]:
    """Run `asyncjob-exporter run` on a config text and yield (base URL, process)."""
    port = free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(config)
    proc = Proc([*EXE, "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{port}",
                 "--log.format", "json", *flags], tmp / f"{name}.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 20,
                 f"exporter start\n{proc.output()}")
        yield url, proc
    finally:
        proc.stop()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape /metrics and return {(sample name, sorted labels): value}."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def select(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Return the samples of one name whose labels include `labels`."""
    out = {}
    for (n, lbls), value in samples.items():
        if n == name and all(dict(lbls).get(k) == v for k, v in labels.items()):
            out[lbls] = value
    return out


def sim_post(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST to a simulator control endpoint."""
    resp = httpx.post(f"{url}/_sim/{path}", json=body or {}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def truth(url: str) -> Any:
    """Return the simulator's truth document."""
    return httpx.get(f"{url}/_sim/truth", timeout=10).json()
