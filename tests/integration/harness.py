"""Start the real simulator and exporter processes on loopback and read their output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import Proc, free_port, wait_for
from scripts.stack import EXE, exporter, scrape, select, sim_post, simulator, truth

__all__ = ["EXE", "MOUNTS", "Proc", "config_for", "exporter", "free_port", "scrape", "select",
           "sim_post", "simulator", "truth", "wait_for"]


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
