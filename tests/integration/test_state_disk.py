"""A full disk mid-run: finishes hold until saved, and two runs add up to the truth exactly."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.integration.harness import (
    all_up,
    config_for,
    exporter,
    fill,
    finished,
    scrape,
    select,
    sim_post,
    tmpfs,
    truth,
    truth_delta,
    wait_for,
)

INTERVAL = 0.5



def _state(url: str) -> tuple[float | None, float | None]:
    samples = scrape(url)
    return (samples.get(("asyncjob_state_persistent", ())),
            samples.get(("asyncjob_state_write_errors_total", ())))


def test_full_disk_holds_finishes_then_publishes_and_never_double_counts(
    sim: str, tmp_path: Path
) -> None:
    # 3 MB: the WAL never reaches its 4 MB autocheckpoint, so every commit needs new space
    with tmpfs(tmp_path / "mnt", "3m") as mnt:
        sim_post(sim, "pause")
        first = truth(sim)
        cfg = config_for(sim, mnt / "state.db", first, interval=INTERVAL)
        with exporter(tmp_path, cfg, name="run1") as (url, proc):
            wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 20,
                     "ready")
            sim_post(sim, "resume")
            wait_for(lambda: sum(finished(scrape(url)).values()) > 0, 20, "first finishes")
            filler = fill(mnt)
            wait_for(lambda: _state(url)[0] == 0.0, 10, "state_persistent 0")
            time.sleep(0.6)  # the render cache catches up
            held = finished(scrape(url))
            tracked = sum(select(scrape(url), "asyncjob_tracked_jobs").values())
            time.sleep(3)  # jobs keep finishing; none may show while the disk is full
            persistent, errors = _state(url)
            assert persistent == 0.0 and errors is not None and errors > 1
            assert finished(scrape(url)) == held
            assert sum(select(scrape(url), "asyncjob_tracked_jobs").values()) > tracked
            filler.unlink()
            wait_for(lambda: _state(url)[0] == 1.0, 10, "state_persistent back to 1")
            time.sleep(0.6)
            published = finished(scrape(url))
            assert sum(published.values()) > sum(held.values()), "held finishes published"
            fill(mnt)  # full again, and stopped while full
            wait_for(lambda: _state(url)[0] == 0.0, 10, "state_persistent 0 again")
            time.sleep(3)
            run1 = finished(scrape(url))
            assert proc.stop(signal.SIGTERM) == 0
        assert "state_not_saved_at_shutdown" in proc.output()
        assert "Traceback" not in proc.output()
        (mnt / "filler").unlink()  # space freed; jobs finished meanwhile
        time.sleep(1)
        with exporter(tmp_path, cfg, name="run2") as (url, proc):
            wait_for(lambda: all_up(url, 1), 20, "run 2 up")
            time.sleep(2)
            sim_post(sim, "pause")
            time.sleep(INTERVAL * 4)
            run2 = finished(scrape(url))
            expected = truth_delta(first, truth(sim))
            assert _state(url) == (1.0, 0.0)
        sim_post(sim, "resume")
    total = {k: run1.get(k, 0.0) + run2.get(k, 0.0) for k in run1.keys() | run2.keys()}
    assert total == expected
