"""The exporter against the real Ordo service: every job and step metric equals the SQL truth.

Workers are played with SQL on Ordo's own PostgreSQL (as n8n does); the truth is a query plus the
worker's log of ended step attempts (Ordo overwrites a step's row on retry).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from pprint import pformat
from typing import Any

import httpx
import pytest

from tests.integration.harness import Proc, exporter, scrape, select, wait_for
from tests.integration.ordo_upstream import TOKEN, OrdoService, Worker, wait_until
from tests.integration.real_ordo_truth import (
    COUNTERS,
    ORG,
    Baseline,
    Metrics,
    baseline,
    config,
    diff,
    metrics,
    truth,
)

ENV = {"REAL_ORDO_TOKEN": TOKEN}
STEPS = [("fetch", "FETCH"), ("process", "PROCESS"), ("publish", "PUBLISH")]
IDS = [s for s, _ in STEPS]


@pytest.fixture()
def worker(real_ordo: OrdoService) -> Worker:
    """Play Ordo's n8n workers for one test."""
    return Worker(real_ordo)


@contextmanager
def watching(tmp: Path, ordo: OrdoService, name: str = "exporter") -> Iterator[tuple[str, Proc]]:
    """Run the exporter on the real Ordo with a state file; yield once its first sync is done."""
    with exporter(tmp, config(ordo, tmp / "state.db"), env=ENV, name=name) as (url, proc):
        wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 20,
                 f"readyz\n{proc.output()}")
        yield url, proc


def agree(url: str, want: Any, timeout: float = 15.0) -> Metrics:
    """Wait until the exporter's metrics equal the truth `want()`; fail with the difference."""
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        last = diff(metrics(url), want())
        return not last

    try:
        wait_until(check, timeout, "the exporter to agree with PostgreSQL")
    except AssertionError:
        pass
    assert not last, "exporter vs SQL truth, {metric: {labels: (exporter, truth)}}:\n" \
        + pformat(last)
    return metrics(url)


def test_job_and_step_metrics_equal_sql_truth(real_ordo: OrdoService, worker: Worker,
                                              tmp_path: Path) -> None:
    rid = worker.recipe("survey", STEPS)
    old = worker.job(rid)
    worker.complete(old, IDS)  # history: finished before the exporter started
    with watching(tmp_path, real_ordo) as (url, _):
        base = baseline(real_ordo, worker)
        now = agree(url, lambda: truth(real_ordo, worker, base))
        assert now["asyncjob_jobs"][("survey", "completed")] >= 1
        assert ("survey", "completed") not in now.get("asyncjob_finished_total", {})
        pend, run, fail, part = (worker.job(rid) for _ in range(4))
        worker.start_job(part, 0.75)
        worker.run_step(part, "fetch", 1, 0.25)
        worker.start_job(run, 3.0)
        worker.run_step(run, "fetch", 1, 0.5)
        worker.detail(run, "fetch", 40)
        worker.start_job(fail, 1.25)
        worker.run_step(fail, "fetch", 1, 0.5)
        now = agree(url, lambda: truth(real_ordo, worker, base))
        assert now["asyncjob_progress_ratio"][("survey", str(run))] == pytest.approx(0.4 / 3,
                                                                                     abs=1e-3)
        worker.end_step(run, "fetch", "success", 2.0)
        worker.run_step(run, "process", 1, 3.0)
        worker.detail(run, "process", 10)
        worker.end_step(fail, "fetch", "failed", 1.5)
        agree(url, lambda: truth(real_ordo, worker, base))
        worker.run_step(run, "process", 2, 6.0)  # lease lost: re-claimed as attempt 2 (a retry)
        for step in IDS[1:]:
            worker.skip(fail, step)
        worker.finish_job(fail, "failed", 2.5)
        worker.end_step(part, "fetch", "success", 0.5)
        worker.run_step(part, "process", 1, 1.0)
        worker.end_step(part, "process", "failed", 0.25)
        worker.skip(part, "publish")
        worker.finish_job(part, "partial", 1.5)
        agree(url, lambda: truth(real_ordo, worker, base))
        worker.end_step(run, "process", "success", 4.0)
        worker.run_step(run, "publish", 1, 11.0)
        worker.end_step(run, "publish", "success", 1.0)
        worker.finish_job(run, "success", 13.0)
        worker.start_job(pend, 30.0)
        now = agree(url, lambda: truth(real_ordo, worker, base))
    assert now["asyncjob_finished_total"] == {("survey", "completed"): 1, ("survey", "failed"): 1,
                                              ("survey", "partial"): 1}
    assert now["asyncjob_duration_seconds_sum"][("survey", "completed")] == 13.0
    assert now["asyncjob_queue_wait_seconds_sum"][("survey",)] == 35.0
    assert now["asyncjob_step_finished_total"][("survey", "PUBLISH", "skipped")] == 2
    assert ("survey", "PUBLISH", "skipped") not in now["asyncjob_step_duration_seconds_count"]
    assert now["asyncjob_step_retries_total"] == {("survey", "PROCESS"): 1}


def test_ordo_restart_loses_and_repeats_nothing(real_ordo: OrdoService, worker: Worker,
                                                tmp_path: Path) -> None:
    rid = worker.recipe("restart", STEPS)
    a, b = worker.job(rid), worker.job(rid)
    with watching(tmp_path, real_ordo) as (url, _):
        base = baseline(real_ordo, worker)
        worker.start_job(a, 2.0)
        worker.run_step(a, "fetch", 1, 0.5)
        worker.detail(a, "fetch", 55)
        agree(url, lambda: truth(real_ordo, worker, base))
        real_ordo.stop()
        wait_for(lambda: select(scrape(url), "asyncjob_up", source="ordo", org=ORG).get(
            (("org", ORG), ("source", "ordo"))) == 0, 15, "asyncjob_up 0 while Ordo is down")
        worker.end_step(a, "fetch", "success", 2.0)  # the workers go on writing PostgreSQL
        for step in IDS[1:]:
            worker.run_step(a, step, 1, 3.0)
            worker.end_step(a, step, "success", 1.5)
        worker.finish_job(a, "success", 6.0)
        worker.start_job(b, 9.0)
        real_ordo.start()
        now = agree(url, lambda: truth(real_ordo, worker, base))
        assert now["asyncjob_finished_total"] == {("restart", "completed"): 1}
        assert sum(now["asyncjob_step_finished_total"].values()) == 3


@contextmanager
def _killed_and_restarted(tmp: Path, ordo: OrdoService, worker: Worker,
                          scenario: Any) -> Iterator[tuple[str, Baseline, Metrics]]:
    """Watch phase 1 of `scenario`, kill -9 the exporter, run phase 2, restart on the same state."""
    with watching(tmp, ordo, name="first") as (url, proc):
        base = baseline(ordo, worker)
        phases = scenario(url, base)
        next(phases)  # watched phase
        first = metrics(url)
        proc.stop(signal.SIGKILL)
    after_kill = baseline(ordo, worker, restart=True)
    next(phases, None)  # the exporter is down
    with watching(tmp, ordo, name="second") as (url, _):
        yield url, after_kill, first


def test_exporter_kill_9_then_restart_counts_every_finish_once(
        real_ordo: OrdoService, worker: Worker, tmp_path: Path) -> None:
    rid = worker.recipe("kill9", STEPS)
    a, b = worker.job(rid), worker.job(rid)

    def scenario(url: str, base: Baseline) -> Iterator[None]:
        for job, wait in ((a, 1.0), (b, 2.0)):
            worker.start_job(job, wait)
            worker.run_step(job, "fetch", 1, 0.5)
        worker.end_step(a, "fetch", "success", 1.0)
        worker.finish_job(a, "success", 2.0)
        agree(url, lambda: truth(real_ordo, worker, base))
        yield  # the exporter is dead now: b finishes while nobody watches
        worker.end_step(b, "fetch", "success", 1.0)
        for step in IDS[1:]:
            worker.run_step(b, step, 1, 2.0)
            worker.end_step(b, step, "failed" if step == "publish" else "success", 0.75)
        worker.finish_job(b, "failed", 4.0)
        yield

    with _killed_and_restarted(tmp_path, real_ordo, worker, scenario) as (url, base, first):
        now = agree(url, lambda: truth(real_ordo, worker, base))
    assert first["asyncjob_finished_total"] == {("kill9", "completed"): 1}
    assert now["asyncjob_finished_total"] == {("kill9", "failed"): 1}
    assert now["asyncjob_step_finished_total"] == {
        ("kill9", "FETCH", "success"): 1, ("kill9", "PROCESS", "success"): 1,
        ("kill9", "PUBLISH", "failed"): 1}


# --- Cases of issue 11 that fail on main (fixes on other branches) ---------------------------

def test_retried_step_counts_each_attempt_with_its_duration(
        real_ordo: OrdoService, worker: Worker, tmp_path: Path) -> None:
    rid = worker.recipe("retry", STEPS)
    job = worker.job(rid)
    with watching(tmp_path, real_ordo) as (url, _):
        base = baseline(real_ordo, worker)
        worker.start_job(job, 1.0)
        worker.run_step(job, "fetch", 1, 0.5)
        worker.end_step(job, "fetch", "failed", 1.25)
        agree(url, lambda: truth(real_ordo, worker, base))  # the failed attempt is seen
        worker.run_step(job, "fetch", 2, 3.0)
        worker.end_step(job, "fetch", "success", 2.5)
        now = agree(url, lambda: truth(real_ordo, worker, base))
    assert now["asyncjob_step_finished_total"] == {("retry", "FETCH", "failed"): 1,
                                                   ("retry", "FETCH", "success"): 1}
    assert now["asyncjob_step_duration_seconds_sum"] == {("retry", "FETCH", "failed"): 1.25,
                                                         ("retry", "FETCH", "success"): 2.5}


def test_job_created_and_finished_between_two_polls_counts_its_steps(
        real_ordo: OrdoService, worker: Worker, tmp_path: Path) -> None:
    rid = worker.recipe("between", STEPS[:2])
    with watching(tmp_path, real_ordo) as (url, proc):
        base = baseline(real_ordo, worker)
        proc.proc.send_signal(signal.SIGSTOP)  # no poll can run until SIGCONT
        try:
            job = worker.job(rid)
            worker.complete(job, IDS[:2], retried="process")
        finally:
            proc.proc.send_signal(signal.SIGCONT)
        now = agree(url, lambda: truth(real_ordo, worker, base))
    assert now["asyncjob_finished_total"] == {("between", "completed"): 1}
    assert now["asyncjob_step_retries_total"] == {("between", "PROCESS"): 1}


def test_exporter_kill_9_jobs_created_or_started_while_down_are_observed(
        real_ordo: OrdoService, worker: Worker, tmp_path: Path) -> None:
    rid = worker.recipe("down", STEPS)
    pending = worker.job(rid)

    def scenario(url: str, base: Baseline) -> Iterator[None]:
        agree(url, lambda: truth(real_ordo, worker, base))
        yield
        worker.start_job(pending, 7.0)  # its queue wait is still to be observed
        worker.complete(worker.job(rid), IDS, retried="fetch")  # never seen active

    with _killed_and_restarted(tmp_path, real_ordo, worker, scenario) as (url, base, _):
        now = agree(url, lambda: truth(real_ordo, worker, base))
    assert now["asyncjob_queue_wait_seconds_count"][("down",)] == 2
    assert sum(now["asyncjob_step_finished_total"].values()) == 4


def test_ordo_database_reset_ids_restart_at_1_are_new_jobs(
        real_ordo: OrdoService, worker: Worker, tmp_path: Path) -> None:
    rid = worker.recipe("before-reset", STEPS)
    for _ in range(3):
        worker.job(rid)
    with watching(tmp_path, real_ordo) as (url, _):
        base = baseline(real_ordo, worker)
        worker.complete(worker.job(rid), IDS)
        before = agree(url, lambda: truth(real_ordo, worker, base))
        real_ordo.reset_database()
        fresh = Worker(real_ordo)
        new = fresh.recipe("after-reset", STEPS[:2])
        assert new == 1
        first = fresh.job(new)
        assert first == 1
        fresh.complete(first, IDS[:2])
        fresh.job(new)

        def want() -> Metrics:
            now = truth(real_ordo, fresh, Baseline())
            for name in COUNTERS:  # counters keep what they counted before the reset
                for key, value in before.get(name, {}).items():
                    now.setdefault(name, {})[key] = now.get(name, {}).get(key, 0.0) + value
            return now

        now = agree(url, want)
    assert now["asyncjob_jobs"] == {("after-reset", "completed"): 1,
                                    ("after-reset", "pending"): 1}
    assert now["asyncjob_finished_total"] == {("before-reset", "completed"): 1,
                                              ("after-reset", "completed"): 1}
