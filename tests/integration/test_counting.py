"""Counts you can bet on: a real exporter against loopback APIs that lie about their lists."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.fakeapi import Ordo, VocdoniV2, serve
from tests.integration.harness import exporter, scrape, select, total, wait_for

ORG = "0x" + "a" * 40
LIAR = "0x" + "b" * 40
FAST = """
state:
  path: {state}
defaults:
  interval: 0.2s
  timeout: 2s
  jitter: 0
  full_resync_interval: 0.1s
  max_requests_per_second: 1000
"""


def _vocdoni(url: str, state: Path, orgs: str) -> str:
    return FAST.format(state=state) + f"""
sources:
  - name: voc
    kind: vocdoni
    base_url: {url}
    api: v2
    auth: {{token: "t"}}
    organizations:
{orgs}
"""


def _ordo(url: str, state: Path) -> str:
    return FAST.format(state=state) + f"""
sources:
  - name: ordo
    kind: ordo
    base_url: {url}
    auth: {{token: "t"}}
    organization: ordo
"""


def _polls(fake: VocdoniV2, address: str, n: int) -> None:
    """Wait until the fake served n more list requests for `address` (full re-lists)."""
    target = fake.hits[address] + n
    wait_for(lambda: fake.hits[address] >= target, 20, f"{n} polls of {address}")


def test_lying_lists_never_drop_or_recount_a_job(tmp_path: Path) -> None:
    fake = VocdoniV2()
    fake.add(ORG, 120)
    orgs = f'      - address: "{ORG}"'
    with serve(fake) as api, exporter(tmp_path, _vocdoni(api, tmp_path / "s.db", orgs)) as (url, _):
        wait_for(lambda: total(url, "asyncjob_tracked_jobs", org=ORG) == 120, 20, "first sync")
        for mode in ("repeat", "short", "empty"):
            fake.mode[ORG] = mode
            _polls(fake, ORG, 6)  # 2 pages a poll: three full re-lists that lie
            fake.mode[ORG] = "normal"
            _polls(fake, ORG, 6)
            assert total(url, "asyncjob_finished_total", org=ORG) == 0, mode  # not +1, not +120
            assert total(url, "asyncjob_tracked_jobs", org=ORG) == 120, mode
        fake.add(ORG, 1, status="failed")
        wait_for(lambda: total(url, "asyncjob_finished_total", org=ORG) == 1, 20, "live count")


def test_paging_metadata_that_contradicts_itself_fails_the_poll(tmp_path: Path) -> None:
    fake = VocdoniV2()
    fake.add(LIAR, 6)
    fake.mode[LIAR] = "lastpage"  # lastPage 1e9 with totalItems 6
    orgs = f'      - address: "{LIAR}"'
    with serve(fake) as api, exporter(tmp_path, _vocdoni(api, tmp_path / "s.db", orgs)) as (url, _):
        wait_for(lambda: total(url, "asyncjob_poll_errors_total", org=LIAR, reason="schema") >= 2,
                 20, "a schema error per poll, not pages forever")
        errors = total(url, "asyncjob_poll_errors_total", org=LIAR, reason="schema")
        assert fake.hits[LIAR] <= 2 * (errors + 2)
        assert total(url, "asyncjob_up", org=LIAR) == 0


def test_widened_job_types_by_reload_and_restart_keep_history(tmp_path: Path) -> None:
    fake = VocdoniV2()
    fake.add(ORG, 5, job_type="a", prefix="a")
    fake.add(ORG, 7, job_type="b", prefix="b")
    state = tmp_path / "s.db"
    only_a = f'      - address: "{ORG}"\n        job_types: [a]'
    both = f'      - address: "{ORG}"\n        job_types: [a, b]'
    with serve(fake) as api:
        with exporter(tmp_path, _vocdoni(api, state, only_a)) as (url, proc):
            wait_for(lambda: total(url, "asyncjob_tracked_jobs") == 5, 20, "a synced")
            (tmp_path / "exporter.yaml").write_text(_vocdoni(api, state, both))
            os.kill(proc.pid, signal.SIGHUP)
            wait_for(lambda: total(url, "asyncjob_tracked_jobs") == 12, 20, "b read by reload")
            _polls(fake, ORG, 4)
            assert total(url, "asyncjob_finished_total") == 0
            (tmp_path / "exporter.yaml").write_text(_vocdoni(api, state, only_a))
            os.kill(proc.pid, signal.SIGHUP)
            wait_for(lambda: total(url, "asyncjob_tracked_jobs") == 5, 20, "b removed")
        fake.add(ORG, 2, job_type="b", prefix="c")  # finished while b was not read
        with exporter(tmp_path, _vocdoni(api, state, both)) as (url, _):
            wait_for(lambda: total(url, "asyncjob_tracked_jobs") == 14, 20, "b re-added")
            _polls(fake, ORG, 4)
            assert total(url, "asyncjob_finished_total") == 0
            fake.add(ORG, 1, job_type="b", prefix="d")
            wait_for(lambda: total(url, "asyncjob_finished_total", job_type="b") == 1, 20,
                     "a new b job counts")


def _steps(*rows: tuple[str, str, int, float, float | None]) -> list[dict[str, object]]:
    return [{"step_id": sid, "step_type": sid.upper(), "status": st, "attempt": att,
             "started_at": start, "finished_at": end} for sid, st, att, start, end in rows]


def _wait(cond: Callable[[], bool], what: str) -> None:
    wait_for(cond, 20, what)


def test_ordo_between_polls_reset_and_vanished(tmp_path: Path) -> None:
    fake = Ordo()
    t0 = time.time() - 3600
    fake.job(1, "completed", t0, started=t0 + 1, finished=t0 + 5)  # history
    fake.job(2, "running", t0 + 10, started=t0 + 11)
    with serve(fake) as api, exporter(tmp_path, _ordo(api, tmp_path / "s.db")) as (url, _):
        _wait(lambda: total(url, "asyncjob_tracked_jobs") == 2, "first sync")
        # created and finished between two polls: two steps, the second retried once
        fake.job(3, "completed", t0 + 20, started=t0 + 30, finished=t0 + 60,
                 steps=_steps(("a", "success", 1, t0 + 30, t0 + 40),
                              ("b", "success", 2, t0 + 45, t0 + 60)))
        _wait(lambda: total(url, "asyncjob_finished_total") == 1, "job 3 counted")
        step = select(scrape(url), "asyncjob_step_finished_total", job_type="lidar")
        assert {dict(k)["step_type"] + "/" + dict(k)["step_status"]: v
                for k, v in step.items() if v} == {"A/success": 1, "B/success": 1, "B/failed": 1}
        assert total(url, "asyncjob_step_retries_total", step_type="B") == 1
        assert total(url, "asyncjob_queue_wait_seconds_count") == 2  # jobs 2 and 3
        # a job that finished without ever starting: counted, not timed
        fake.job(4, "failed", t0 + 70, finished=t0 + 80)
        _wait(lambda: total(url, "asyncjob_finished_total") == 2, "job 4 counted")
        assert total(url, "asyncjob_duration_seconds_count") == 1
        # the running job 2 leaves the list and its detail route: vanished
        with fake.lock:
            del fake.jobs[2]
        _wait(lambda: total(url, "asyncjob_jobs_vanished_total", job_type="lidar") == 1,
              "job 2 vanished")
        # database reset: ids restart at 1 with a new recipe
        fake.reset()
        with fake.lock:
            fake.recipes[1] = "ortho"
        born = time.time()
        fake.job(1, "running", born, started=born)
        _wait(lambda: total(url, "asyncjob_jobs", job_type="ortho", status="running") == 1,
              "new job 1 under its real recipe")
        fake.job(1, "completed", born, started=born, finished=born + 2)
        _wait(lambda: total(url, "asyncjob_finished_total", job_type="ortho") == 1,
              "new job 1 counted")
        assert total(url, "asyncjob_finished_total") == 3



def test_vocdoni_active_job_that_leaves_the_api_is_counted_vanished(tmp_path: Path) -> None:
    fake = VocdoniV2()
    fake.add(ORG, 3)
    orgs = f'      - address: "{ORG}"'
    with serve(fake) as api, exporter(tmp_path, _vocdoni(api, tmp_path / "s.db", orgs)) as (url, _):
        wait_for(lambda: total(url, "asyncjob_tracked_jobs") == 3, 20, "first sync")
        (job_id,) = fake.add(ORG, 1, status="pending", job_type="org_members", prefix="m")
        wait_for(lambda: total(url, "asyncjob_tracked_jobs") == 4, 20, "import seen")
        with fake.lock:
            fake.jobs[ORG] = [j for j in fake.jobs[ORG] if j["jobId"] != job_id]
        wait_for(lambda: total(url, "asyncjob_jobs_vanished_total", job_type="org_members") == 1,
                 20, "import vanished")
        _polls(fake, ORG, 4)
        assert total(url, "asyncjob_jobs_vanished_total") == 1  # resolved once
        assert total(url, "asyncjob_finished_total") == 0


def test_ordo_empty_answer_and_kill_restart_lose_and_recount_nothing(tmp_path: Path) -> None:
    fake = Ordo()
    t0 = time.time() - 3600
    for i in range(1, 121):
        fake.job(i, "completed", t0 + i, started=t0 + i, finished=t0 + i + 1)
    fake.job(121, "pending", t0 + 200)
    state = tmp_path / "s.db"
    with serve(fake) as api:
        with exporter(tmp_path, _ordo(api, state)) as (url, proc):
            _wait(lambda: total(url, "asyncjob_tracked_jobs") == 121, "first sync")
            fake.list_empty = True  # Ordo answers [] for a while
            time.sleep(1.0)
            fake.list_empty = False
            time.sleep(1.0)
            assert total(url, "asyncjob_finished_total") == 0  # +0, not +120
            assert total(url, "asyncjob_tracked_jobs") == 121
            proc.stop(signal.SIGKILL)
        # while the exporter is down: the pending job starts and a new job runs start to end
        fake.job(121, "running", t0 + 200, started=t0 + 260)
        fake.job(122, "failed", t0 + 300, started=t0 + 301, finished=t0 + 320,
                 steps=_steps(("a", "failed", 2, t0 + 310, t0 + 320)))
        with exporter(tmp_path, _ordo(api, state), name="again") as (url, _):
            _wait(lambda: total(url, "asyncjob_finished_total") == 1, "job 122 counted")
            assert total(url, "asyncjob_queue_wait_seconds_count") == 2  # 121 and 122
            assert total(url, "asyncjob_queue_wait_seconds_sum") == 60 + 1
            assert total(url, "asyncjob_step_finished_total", step_status="failed") == 2
            assert total(url, "asyncjob_step_duration_seconds_count") == 1
