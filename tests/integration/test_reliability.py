"""Exactly-once across a kill -9, and a clean SIGTERM, with the real simulator and exporter."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import httpx

from tests.integration.harness import (
    all_up,
    config_for,
    exporter,
    finished,
    scrape,
    sim_post,
    truth,
    truth_delta,
    wait_for,
)

INTERVAL = 0.5
Counts = dict[tuple[str, str, str, str], float]

def test_kill_9_and_restart_counts_every_finish_exactly_once(
    sim: str, tmp_path: Path
) -> None:
    sim_post(sim, "pause")
    first = truth(sim)
    state = tmp_path / "state.db"
    cfg = config_for(sim, state, first, interval=INTERVAL)
    with exporter(tmp_path, cfg, name="run1") as (url, proc):
        wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 20, "ready")
        sim_post(sim, "resume")
        time.sleep(3)  # jobs finish and get counted
        # Freeze what run 1 can commit (every poll fails from now on) while the world keeps
        # running, so its last scrape equals what its state file holds; then kill it mid-poll.
        sim_post(sim, "faults", {"mount": "*", "mode": "500"})
        try:
            wait_for(lambda: all_up(url, 0), 10, "every org failing")
            run1 = wait_for(lambda: _settled(url), 10, "run 1's counters settled")
            proc.stop(signal.SIGKILL)
        finally:
            sim_post(sim, "faults", {"mount": "*", "mode": "none"})
    assert proc.proc.returncode == -signal.SIGKILL
    assert sum(run1.values()) > 0, "run 1 counted nothing"
    time.sleep(2)  # jobs finish while the exporter is down
    with exporter(tmp_path, cfg, name="run2") as (url, proc):
        wait_for(lambda: all_up(url, 1), 20, "run 2 up")
        time.sleep(2)
        sim_post(sim, "pause")
        expected = truth_delta(first, truth(sim))
        # the last finishes reach /metrics within a few polls; a count past the truth never
        # matches, so waiting for equality cannot hide a double count
        wait_for(lambda: _total(run1, finished(scrape(url))) == expected, 20, "run 2 caught up")
        run2 = finished(scrape(url))
        assert '"state_restored"' in proc.output()
    assert _total(run1, run2) == expected
    sim_post(sim, "resume")


def _settled(url: str) -> Counts | None:
    """Return the finished counters once two scrapes a render spacing apart agree."""
    before = finished(scrape(url))
    time.sleep(0.6)
    after = finished(scrape(url))
    return after if after and after == before else None  # run 1 must have counted


def _total(run1: Counts, run2: Counts) -> Counts:
    """Add run 1's and run 2's counters key by key."""
    return {k: run1.get(k, 0.0) + run2.get(k, 0.0) for k in run1.keys() | run2.keys()}


def test_sigterm_exits_0_within_5s_with_a_usable_state_file(sim: str, tmp_path: Path) -> None:
    sim_post(sim, "resume")
    state = tmp_path / "state.db"
    cfg = config_for(sim, state, truth(sim), interval=INTERVAL)
    with exporter(tmp_path, cfg) as (url, proc):
        wait_for(lambda: all_up(url, 1), 20, "up")
        time.sleep(1)
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.proc.wait(10)
        elapsed = time.monotonic() - started
    assert code == 0 and elapsed < 5.0, (code, elapsed)
    assert "Traceback" not in proc.output()
    db = sqlite3.connect(state)
    try:
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert db.execute("SELECT (SELECT COUNT(*) FROM jobs)"
                          " + (SELECT COUNT(*) FROM finished)").fetchone()[0] > 0
        assert db.execute("SELECT COUNT(*) FROM orgs").fetchone()[0] == 4
    finally:
        db.close()
