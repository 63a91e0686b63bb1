"""Ordo through the real simulator and exporter: steps, step durations and retries equal truth."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import exporter, scrape, select, sim_post, simulator, truth, wait_for

INTERVAL = 1.0
KNOBS = ("--seed", "11", "--vocdoni-orgs", "0", "--vocdoni-v1-orgs", "0",
         "--ordo-job-rate", "2", "--ordo-history", "8", "--job-duration-s", "0.6")


def _config(url: str, token: str = "${SIM_TOKEN}") -> str:
    return f"""
state: {{path: ":memory:"}}
defaults: {{interval: {INTERVAL}s, timeout: 5s, jitter: 0, max_requests_per_second: 50}}
sources:
  - name: ordo
    kind: ordo
    base_url: {url}/ordo
    auth: {{token: "{token}"}}
    organization: lidar
"""


@pytest.fixture(scope="module")
def ordo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ordo")
    with simulator(tmp, *KNOBS) as sim:
        sim_post(sim, "pause")
        first = truth(sim)["ordo"]["ordo"]
        with exporter(tmp, _config(sim), env={"SIM_TOKEN": "sim-token"}) as (url, _proc):
            wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 20,
                     "readyz")
            sim_post(sim, "resume")
            time.sleep(8)
            sim_post(sim, "pause")
            time.sleep(INTERVAL * 2.5)
            yield {"sim": sim, "url": url, "first": first, "now": truth(sim)["ordo"]["ordo"],
                   "samples": scrape(url), "tmp": tmp}


def _nested_delta(now: dict[str, Any], before: dict[str, Any]) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}

    def walk(node: Any, prev: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (prev or {}).get(k, {}) if isinstance(prev, dict) else {}, (*path, k))
        else:
            delta = int(node) - (int(prev) if isinstance(prev, int) else 0)
            if delta:
                out[path] = delta

    walk(now, before, ())
    return out


def _by(samples: dict[Any, float], name: str, *labels: str) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for lbls, value in select(samples, name, source="ordo", org="lidar").items():
        if value:
            d = dict(lbls)
            out[tuple(d[k] for k in labels)] = int(value)
    return out


def test_step_finishes_equal_truth(ordo: dict[str, Any]) -> None:
    expected = _nested_delta(ordo["now"]["steps_finished"], ordo["first"]["steps_finished"])
    got = _by(ordo["samples"], "asyncjob_step_finished_total", "job_type", "step_type",
              "step_status")
    assert got == expected
    assert sum(expected.values()) > 5, "the simulator finished too few steps to prove anything"


def test_step_duration_histogram_counts_equal_timed_finishes(ordo: dict[str, Any]) -> None:
    finished = _nested_delta(ordo["now"]["steps_finished"], ordo["first"]["steps_finished"])
    timed = {k: v for k, v in finished.items() if k[2] in ("success", "failed")}
    counts = _by(ordo["samples"], "asyncjob_step_duration_seconds_count", "job_type",
                 "step_type", "step_status")
    assert counts == timed


def test_retries_equal_truth(ordo: dict[str, Any]) -> None:
    expected = _nested_delta(ordo["now"]["step_retries"], ordo["first"]["step_retries"])
    got = _by(ordo["samples"], "asyncjob_step_retries_total", "job_type", "step_type")
    assert got == expected


def test_active_steps_and_jobs_equal_truth(ordo: dict[str, Any]) -> None:
    got = _by(ordo["samples"], "asyncjob_steps", "job_type", "step_type", "step_status")
    assert got == _nested_delta(ordo["now"]["steps_active"], {})
    jobs = _by(ordo["samples"], "asyncjob_jobs", "job_type", "status")
    assert jobs == _nested_delta(ordo["now"]["jobs"], {})
    finished = _by(ordo["samples"], "asyncjob_finished_total", "job_type", "status")
    assert finished == _nested_delta(ordo["now"]["finished"], ordo["first"]["finished"])
    assert sum(finished.values()) > 0


def test_bad_token_is_up_0_with_reason_auth(ordo: dict[str, Any]) -> None:
    tmp: Path = ordo["tmp"]
    with exporter(tmp, _config(ordo["sim"], token="wrong-token"), name="badtoken") as (url, proc):
        wait_for(lambda: select(scrape(url), "asyncjob_poll_errors_total", source="ordo",
                                reason="auth").get((("org", "lidar"), ("reason", "auth"),
                                                    ("source", "ordo")), 0) >= 1,
                 10, "an auth poll error")
        samples = scrape(url)
        assert select(samples, "asyncjob_up", source="ordo") == {
            (("org", "lidar"), ("source", "ordo")): 0.0}
        assert proc.proc.poll() is None
        assert "wrong-token" not in proc.output()
