"""Knobs of the simulator; one field per `simulate` command-line flag (its help in metadata)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _knob(default: Any, help: str) -> Any:
    """Declare a knob with the help text `simulate --help` prints (units, meaning)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Everything that shapes a simulated world; the same seed and clock give the same world."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8801  # 0 picks a free port
    seed: int = _knob(0, "random seed: the same seed (and speed) gives the same world")
    vocdoni_orgs: int = _knob(3, "number of Vocdoni orgs on the new API (/vocdoni: GET /jobs)")
    vocdoni_v1_orgs: int = _knob(2, "number of Vocdoni orgs on the old API (/vocdoni-v1: "
                                    "/organizations/{address}/jobs)")
    job_rate: float = _knob(0.5, "new jobs per second (world time) per Vocdoni org")
    failure_ratio: float = _knob(0.2, "fraction 0..1 of jobs that end failed (Ordo: of jobs, "
                                      "spread over their steps)")
    stuck_ratio: float = _knob(0.05, "fraction 0..1 of new jobs that stay pending forever "
                                     "(Vocdoni and Ordo)")
    latency_ms: float = _knob(0.0, "delay added to every API answer, in milliseconds (wall)")
    history: int = _knob(20, "finished jobs each Vocdoni org already has at start")
    job_duration_s: float = _knob(5.0, "mean job run time, in seconds (world time)")
    ordo_job_rate: float = _knob(0.2, "new Ordo jobs per second (world time)")
    ordo_history: int = _knob(10, "finished Ordo jobs at start")
    token: str = _knob("sim-token", "static bearer token accepted by Ordo and by Vocdoni "
                                    "(as an integrator token)")
    email: str = _knob("ops@example.org", "Vocdoni login email (POST /auth/login)")
    password: str = _knob("sim-password", "Vocdoni login password")
    token_ttl_s: float = _knob(3600.0, "lifetime of a Vocdoni login JWT, in seconds (world)")
    speed: float = _knob(1.0, "world seconds per wall second (10 = ten times faster)")
    hostile_labels: bool = _knob(False, "emit job and step types that are hostile label "
                                        "values (long, unicode, quotes) to test cleaning")
