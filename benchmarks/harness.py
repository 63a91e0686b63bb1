"""Processes and probes of the benchmark: simulator, exporters, /proc readings, scrapes."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent  # children import `exporter` and `benchmarks`
# What Prometheus 2.x sends by default: OpenMetrics preferred, gzip accepted.
PROM_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """Return a free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    """Poll predicate until truthy; raise after timeout so a broken run never hangs."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} ({last!r})")


class Proc:
    """A child process with output in a file and /proc readings."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.proc.pid

    def output(self) -> str:
        """Return what the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """Return the JSON objects among the printed lines."""
        out = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def cpu_seconds(self) -> float:
        """Return user + system CPU time used so far (all threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kb(self, key: str) -> int:
        """Return a /proc/PID/status field in kB (VmHWM = peak RSS, VmRSS = now)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` (SIGTERM), then SIGKILL after timeout; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


@contextmanager
def simulator(tmp: Path, *knobs: str) -> Iterator[tuple[str, Proc]]:
    """Run the real simulator; yield (base URL, process)."""
    port = free_port()
    proc = Proc([PY, "-m", "exporter", "simulate", "--listen", f"127.0.0.1:{port}", *knobs],
                tmp / f"sim-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/_sim/clock", timeout=2).status_code == 200, 120,
                 "simulator start")
        yield url, proc
    finally:
        proc.stop()


@contextmanager
def ours(tmp: Path, config: str, name: str) -> Iterator[tuple[str, Proc]]:
    """Run the real asyncjob-exporter daemon on a config; yield (base URL, process)."""
    port = free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(config)
    proc = Proc([PY, "-m", "exporter", "--config.file", str(cfg), "--web.listen-address",
                 f"127.0.0.1:{port}", "--log.format", "json", "--log.level", "debug"],
                tmp / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 30,
                 "exporter start")
        yield url, proc
    finally:
        proc.stop()


@contextmanager
def naive(tmp: Path, base_url: str, orgs: list[str], interval: float,
          name: str) -> Iterator[tuple[str, Proc]]:
    """Run the naive baseline exporter; yield (base URL, process)."""
    port = free_port()
    listed = tmp / f"{name}.orgs"  # a file: 10,000 addresses overflow one argument
    listed.write_text("\n".join(orgs))
    proc = Proc([PY, "-m", "benchmarks.naive", "--base-url", base_url, "--orgs", f"@{listed}",
                 "--interval", str(interval), "--port", str(port)], tmp / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/metrics", timeout=5).status_code == 200, 30,
                 "naive start")
        yield url, proc
    finally:
        proc.stop()


def sim_post(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST to a simulator control endpoint and return its JSON."""
    resp = httpx.post(f"{url}/_sim/{path}", json=body or {}, timeout=30)
    resp.raise_for_status()
    return resp.json()


def sim_get(url: str, path: str) -> Any:
    """GET a simulator control endpoint."""
    resp = httpx.get(f"{url}/_sim/{path}", timeout=60)
    resp.raise_for_status()
    return resp.json()


def sim_requests(url: str) -> int:
    """Return the simulator's own count of API requests served (control calls excluded)."""
    return int(sim_get(url, "requests")["total"])


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0..100), linear interpolation; NaN-free for 1 value."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[max(0, min(98, round(q) - 1))]


def scrape_series(url: str, *, seconds: float, max_scrapes: int,
                  min_scrapes: int = 5) -> dict[str, Any]:
    """Scrape /metrics back to back like Prometheus would; return latency stats in ms."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(headers=PROM_HEADERS, timeout=60) as client:
        while len(latencies) < max_scrapes and (
                time.monotonic() < deadline or len(latencies) < min_scrapes):
            started = time.perf_counter()
            resp = client.get(f"{url}/metrics")
            resp.read()
            latencies.append((time.perf_counter() - started) * 1000)
            resp.raise_for_status()
    plain = httpx.get(f"{url}/metrics", timeout=60, headers={"Accept-Encoding": "identity"})
    gz = httpx.get(f"{url}/metrics", timeout=60, headers=PROM_HEADERS)
    return {
        "scrapes": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "bytes_plain": len(plain.content),
        "bytes_served_gzip": int(gz.headers.get("content-length") or len(gz.content)),
    }


def median(values: list[float]) -> float:
    """Return the median (the figure quoted everywhere)."""
    return float(statistics.median(values))
