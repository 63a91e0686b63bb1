"""The real simulator and the real exporter process: metrics equal the simulator's truth."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.harness import (
    MOUNTS,
    config_for,
    exporter,
    scrape,
    select,
    sim_post,
    simulator,
    truth,
    wait_for,
)

INTERVAL = 1.0
KNOBS = ("--seed", "7", "--job-rate", "2", "--failure-ratio", "0.3", "--job-duration-s", "1.5",
         "--history", "15", "--vocdoni-orgs", "2", "--vocdoni-v1-orgs", "1",
         "--ordo-job-rate", "1", "--ordo-history", "5")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Paused simulator + exporter synced to it; yields urls and the truth at first sync."""
    tmp = tmp_path_factory.mktemp("e2e")
    with simulator(tmp, *KNOBS) as sim:
        sim_post(sim, "pause")
        first = truth(sim)
        cfg = config_for(sim, tmp / "state.db", first, interval=INTERVAL, token="${SIM_TOKEN}")
        with exporter(tmp, cfg, env={"SIM_TOKEN": "sim-token"}) as (url, proc):
            wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 30,
                     "readyz")
            yield {"sim": sim, "url": url, "proc": proc, "first": first}


def _org_label(mount: str, addr: str) -> str:
    return "ordo" if mount == "ordo" else addr


def _settle(stack: dict[str, Any]) -> dict[Any, float]:
    """Pause the world, wait two polls, return a scrape consistent with the truth."""
    sim_post(stack["sim"], "pause")
    time.sleep(INTERVAL * 2.5)
    return scrape(stack["url"])


def test_jobs_by_status_match_truth(stack: dict[str, Any]) -> None:
    sim_post(stack["sim"], "resume")
    time.sleep(4)
    samples = _settle(stack)
    now = truth(stack["sim"])
    for mount, source in MOUNTS.items():
        for addr, org_truth in now[mount].items():
            got = select(samples, "asyncjob_jobs", source=source, org=_org_label(mount, addr))
            expected = {(jt, st): n for jt, by in org_truth["jobs"].items() for st, n in by.items()}
            seen = {(dict(k)["job_type"], dict(k)["status"]): v for k, v in got.items() if v}
            assert seen == {k: float(v) for k, v in expected.items() if v}, (mount, addr)


def test_finished_counters_equal_jobs_finished_after_first_sync(stack: dict[str, Any]) -> None:
    sim_post(stack["sim"], "resume")
    time.sleep(4)
    samples = _settle(stack)
    now, first = truth(stack["sim"]), stack["first"]
    total = 0.0
    for mount, source in MOUNTS.items():
        for addr, org_truth in now[mount].items():
            before = first[mount].get(addr, {}).get("finished", {})
            got = select(samples, "asyncjob_finished_total", source=source,
                         org=_org_label(mount, addr))
            seen = {(dict(k)["job_type"], dict(k)["status"]): v for k, v in got.items() if v}
            expected = {}
            for jt, by in org_truth["finished"].items():
                for st, n in by.items():
                    delta = n - before.get(jt, {}).get(st, 0)
                    if delta:
                        expected[(jt, st)] = float(delta)
            assert seen == expected, (mount, addr)
            total += sum(expected.values())
    assert total > 0, "the simulator finished no job during the test"


def test_progress_series_only_for_active_jobs(stack: dict[str, Any]) -> None:
    samples = _settle(stack)
    now = truth(stack["sim"])
    active = {a for mount in MOUNTS for org in now[mount].values() for a in org["active_ids"]}
    ids = {dict(k)["job_id"] for k in select(samples, "asyncjob_progress_ratio")}
    assert ids <= {str(a) for a in active}


def test_up_drops_on_500_and_recovers(stack: dict[str, Any]) -> None:
    sim, url = stack["sim"], stack["url"]
    sim_post(sim, "resume")
    sim_post(sim, "faults", {"mount": "vocdoni", "mode": "500", "ratio": 1.0})
    try:
        wait_for(lambda: select(scrape(url), "asyncjob_up", source="vocdoni-v2")
                 and all(v == 0 for v in select(scrape(url), "asyncjob_up",
                                                 source="vocdoni-v2").values()),
                 20, "asyncjob_up 0 for vocdoni-v2")
        errors = select(scrape(url), "asyncjob_poll_errors_total", source="vocdoni-v2",
                        reason="http_5xx")
        assert errors and all(v >= 1 for v in errors.values())
        # the other sources keep polling
        assert all(v == 1 for v in select(scrape(url), "asyncjob_up", source="ordo").values())
    finally:
        sim_post(sim, "faults", {"mount": "vocdoni", "mode": "none"})
    wait_for(lambda: all(v == 1 for v in select(scrape(url), "asyncjob_up",
                                                 source="vocdoni-v2").values()),
             20, "asyncjob_up back to 1")
    assert stack["proc"].proc.poll() is None


def test_promtool_check_metrics_passes(stack: dict[str, Any]) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/ensure-prometheus.sh (make test does)"
    body = httpx.get(f"{stack['url']}/metrics", timeout=5).content
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_log_has_one_summary_line_per_poll(stack: dict[str, Any]) -> None:
    out = stack["proc"].output()
    polls = [line for line in out.splitlines() if '"event": "poll_summary"' in line]
    assert polls, out[-2000:]
    for field in ('"source"', '"org"', '"jobs"', '"new"', '"finished"', '"requests"',
                  '"duration"'):
        assert field in polls[-1]
    assert "sim-token" not in out
