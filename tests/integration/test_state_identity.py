"""An org's state follows its address: a rename keeps it, a new address starts a first sync."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.harness import exporter, scrape, select, sim_post, truth, wait_for

INTERVAL = 0.5
CONFIG = """
state:
  path: {state}
defaults: {{interval: {interval}s, timeout: 5s, jitter: 0}}
sources:
  - name: vocdoni-v2
    kind: vocdoni
    base_url: {url}/vocdoni
    auth: {{token: "sim-token"}}
    organizations:
      - address: "{address}"
        name: {name}
"""



def _finished(url: str, name: str) -> dict[tuple[str, str], float]:
    """Return asyncjob_finished_total of one org as {(job_type, status): value}, zeros left out."""
    out = {}
    for labels, value in select(scrape(url), "asyncjob_finished_total", org=name).items():
        d = dict(labels)
        if value:
            out[(d["job_type"], d["status"])] = value
    return out


def _delta(before: Any, after: Any, address: str) -> dict[tuple[str, str], float]:
    """Return the simulator's finishes of one org between two truths."""
    old = before["vocdoni"][address]["finished"]
    out = {}
    for jt, by in after["vocdoni"][address]["finished"].items():
        for st, n in by.items():
            if n - old.get(jt, {}).get(st, 0):
                out[(jt, st)] = float(n - old.get(jt, {}).get(st, 0))
    return out


def _run_paused(sim: str, tmp: Path, cfg: str, name: str, run: str
                ) -> dict[tuple[str, str], float]:
    """Run the exporter while the simulator is paused; return the org's finishes it shows."""
    with exporter(tmp, cfg, name=run) as (url, _):
        wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 20, "ready")
        time.sleep(INTERVAL * 4)
        return _finished(url, name)


def _world_moves(sim: str, seconds: float) -> Any:
    """Let jobs finish for a while, pause, and return the truth."""
    sim_post(sim, "resume")
    time.sleep(seconds)
    sim_post(sim, "pause")
    return truth(sim)


def test_rename_keeps_state_and_a_new_address_is_a_first_sync(sim: str, tmp_path: Path) -> None:
    sim_post(sim, "pause")
    start = truth(sim)
    a, b = sorted(start["vocdoni"])[:2]
    state = tmp_path / "state.db"

    def config(address: str, name: str) -> str:
        return CONFIG.format(state=state, interval=INTERVAL, url=sim, address=address, name=name)

    assert _run_paused(sim, tmp_path, config(a, "alpha"), "alpha", "run1") == {}  # history
    mid = _world_moves(sim, 3)  # finishes while the exporter is down
    expected = _delta(start, mid, a)
    assert expected, "nothing finished"
    # renamed: the finishes made while down are counted once, not taken as history
    assert _run_paused(sim, tmp_path, config(a, "alpha-renamed"), "alpha-renamed",
                       "run2") == expected
    _world_moves(sim, 1)
    # same name, another address: that org's whole history is not counted
    assert _run_paused(sim, tmp_path, config(b, "alpha-renamed"), "alpha-renamed",
                       "run3") == {}
    sim_post(sim, "resume")
