"""Knobs of the simulator; one field per `simulate` command-line flag."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Everything that shapes a simulated world; the same seed and clock give the same world."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8801  # 0 picks a free port
    seed: int = 0
    vocdoni_orgs: int = 3  # orgs of the new API generation (/vocdoni)
    vocdoni_v1_orgs: int = 2  # orgs of the old generation (/vocdoni-v1)
    job_rate: float = 0.5  # new jobs per second per Vocdoni org
    failure_ratio: float = 0.2
    stuck_ratio: float = 0.05  # jobs that stay pending forever
    latency_ms: float = 0.0  # added delay per API request
    history: int = 20  # finished jobs per Vocdoni org at start
    job_duration_s: float = 5.0  # mean run time
    ordo_job_rate: float = 0.2
    ordo_history: int = 10
    token: str = "sim-token"  # Ordo static bearer token
    email: str = "ops@example.org"  # Vocdoni login
    password: str = "sim-password"
    token_ttl_s: float = 3600.0  # Vocdoni JWT lifetime
    speed: float = 1.0  # world seconds per wall second
    hostile_labels: bool = False  # emit label-hostile job and step types
