"""Start the real simulator and exporter processes on loopback and read their output."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.harness import Proc, free_port, wait_for
from scripts.stack import EXE, exporter, scrape, select, sim_post, simulator, truth

__all__ = ["EXE", "MOUNTS", "STEADY_KNOBS", "Proc", "after_a_poll", "all_up", "config_for",
           "exporter", "fill", "finished", "free_port", "scrape", "select", "sim_post",
           "simulator", "tmpfs", "total", "truth", "truth_delta", "wait_for"]


T = TypeVar("T")

# Simulator mount -> the source name the shared config gives it.
MOUNTS = {"vocdoni": "vocdoni-v2", "vocdoni-v1": "vocdoni-v1", "ordo": "ordo"}


def config_for(url: str, state: Path, sim_truth: Any, *, interval: float = 1.0,
               token: str = "sim-token") -> str:
    """Return an exporter config covering every org of every simulator mount."""
    def orgs(mount: str) -> str:
        return "\n".join(f'      - address: "{a}"' for a in sorted(sim_truth[mount]))

    return f"""
state:
  path: {state}
defaults:
  interval: {interval}s
  timeout: 5s
  jitter: 0
sources:
  - name: vocdoni-v2
    kind: vocdoni
    base_url: {url}/vocdoni
    auth: {{token: "{token}"}}
    organizations:
{orgs("vocdoni")}
  - name: vocdoni-v1
    kind: vocdoni
    base_url: {url}/vocdoni-v1
    auth: {{token: "{token}"}}
    organizations:
{orgs("vocdoni-v1")}
  - name: ordo
    kind: ordo
    base_url: {url}/ordo
    auth: {{token: "{token}"}}
    organization: ordo
"""


# a steady simulated world for the state and restart tests (the `sim` fixture)
STEADY_KNOBS = ("--seed", "11", "--job-rate", "3", "--failure-ratio", "0.3",
                "--job-duration-s", "1", "--history", "10", "--vocdoni-orgs", "2",
                "--vocdoni-v1-orgs", "1", "--ordo-job-rate", "1.5", "--ordo-history", "5")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def total(url: str, name: str, **labels: str) -> float:
    """Scrape once and return the sum of one family's samples whose labels include `labels`."""
    return sum(select(scrape(url), name, **labels).values())


def finished(samples: Samples) -> dict[tuple[str, str, str, str], float]:
    """Return asyncjob_finished_total as {(source, org, job_type, status): value}."""
    out = {}
    for labels, value in select(samples, "asyncjob_finished_total").items():
        d = dict(labels)
        if value:
            out[(d["source"], d["org"], d["job_type"], d["status"])] = value
    return out


def truth_delta(first: dict[str, Any], now: dict[str, Any]) -> dict[tuple[str, ...], float]:
    """Return the jobs finished between two truths, keyed like finished()."""
    out: dict[tuple[str, ...], float] = {}
    for mount, source in MOUNTS.items():
        for addr, org in now[mount].items():
            before = first[mount].get(addr, {}).get("finished", {})
            for jt, by in org["finished"].items():
                for st, n in by.items():
                    delta = n - before.get(jt, {}).get(st, 0)
                    if delta:
                        out[("ordo" if mount == "ordo" else source,
                             "ordo" if mount == "ordo" else addr, jt, st)] = float(delta)
    return out


def all_up(url: str, value: float) -> bool:
    """Tell whether every org's asyncjob_up has the value."""
    ups = select(scrape(url), "asyncjob_up")
    return len(ups) == 4 and all(v == value for v in ups.values())


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """Mount a small tmpfs (a disk that can fill up or turn read-only) and yield it."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"this test mounts a tmpfs and needs root: {done.stderr}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> Path:
    """Fill the filesystem at `where` to the last byte; return the filler to free it."""
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for chunk in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError:
                continue
    return filler


def after_a_poll(polls: Callable[[], float], snapshot: Callable[[], T],
                 timeout: float = 10.0) -> tuple[float, T]:
    """Wait for /metrics to show one more poll, then take `snapshot` before the next begins.

    A poll shows in /metrics within a render spacing (0.25 s) of its end and the next one
    starts an interval (0.5 s in these tests) after it began, so windows cut here hold whole
    polls: a window cut at random may hold a poll's requests without its count, or the reverse.
    """
    first = polls()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = polls()
        if now != first:
            return now, snapshot()
        time.sleep(0.005)
    raise AssertionError(f"no poll completed in {timeout} s (poll count stuck at {first})")
