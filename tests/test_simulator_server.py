"""The simulator over real HTTP on 127.0.0.1: control plane, faults, pause/advance, counting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from exporter.simulator import SimOptions, SimulatorHandle, start_simulator

OPTS = SimOptions(listen_port=0, seed=9, job_rate=2.0, history=15, vocdoni_orgs=2,
                  vocdoni_v1_orgs=1, ordo_history=5, job_duration_s=1.0)
ORDO = {"Authorization": "Bearer sim-token"}
VOC = {"Authorization": "Bearer sim-token"}


@pytest.fixture()
def sim() -> Iterator[SimulatorHandle]:
    handle = start_simulator(OPTS)
    yield handle
    handle.stop()


@pytest.fixture()
def client(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5) as c:
        yield c


def fault(client: httpx.Client, **body: object) -> None:
    assert client.post("/_sim/faults", json=body).status_code == 200


def test_handle_url_port_and_stop_release_the_port() -> None:
    handle = start_simulator(OPTS)
    assert handle.url == f"http://127.0.0.1:{handle.port}" and handle.port > 0
    assert httpx.get(f"{handle.url}/ordo/health", timeout=5).json() == {"status": "ok"}
    handle.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{handle.url}/ordo/health", timeout=2)


def test_truth_matches_paged_lists_while_paused(client: httpx.Client) -> None:
    client.post("/_sim/pause")
    time.sleep(0.05)
    truth = client.get("/_sim/truth").json()
    assert set(truth) == {"vocdoni", "vocdoni-v1", "ordo"}
    for addr, org in truth["vocdoni"].items():
        counts: dict[str, dict[str, int]] = {}
        page: int | None = 1
        while page:
            body = client.get("/vocdoni/jobs", headers=VOC,
                              params={"orgAddress": addr, "limit": 100, "page": page}).json()
            for job in body["jobs"]:
                per = counts.setdefault(job["type"], {})
                per[job["status"]] = per.get(job["status"], 0) + 1
            page = body["pagination"]["nextPage"]
        assert counts == org["jobs"]
    assert client.get("/_sim/truth").json() == truth  # frozen


def test_advance_moves_a_paused_world(client: httpx.Client) -> None:
    start = client.post("/_sim/pause").json()
    assert start["paused"] is True
    moved = client.post("/_sim/advance", json={"seconds": 30}).json()
    assert moved["now"] == pytest.approx(start["now"] + 30)
    truth = client.get("/_sim/truth").json()
    finished = sum(n for org in truth["vocdoni"].values()
                   for by in org["finished"].values() for n in by.values())
    assert finished > 2 * 15  # history plus about 30 s of arrivals at 2/s
    resumed = client.post("/_sim/resume").json()
    assert resumed["paused"] is False and resumed["now"] >= moved["now"]


def test_request_counting_by_route_template_and_reset(client: httpx.Client) -> None:
    client.post("/_sim/requests/reset")
    ids = [j["id"] for j in client.get("/ordo/jobs", headers=ORDO).json()]
    client.get(f"/ordo/jobs/{ids[0]}", headers=ORDO)
    client.get(f"/ordo/jobs/{ids[0]},{ids[1]}", headers=ORDO)
    client.get("/vocdoni/jobs/abcdef")
    client.get("/_sim/truth")  # control calls are not counted
    counts = client.get("/_sim/requests").json()
    assert counts == {"total": 4, "by_route": {
        "GET /ordo/jobs": 1, "GET /ordo/jobs/{id}": 1, "GET /ordo/jobs/{ids}": 1,
        "GET /vocdoni/jobs/{jobId}": 1}}
    client.post("/_sim/requests/reset")
    assert client.get("/_sim/requests").json() == {"total": 0, "by_route": {}}


@pytest.mark.parametrize(("mode", "status"), [("500", 500), ("502", 502), ("503", 503),
                                              ("401", 401)])
def test_status_faults_with_count(client: httpx.Client, mode: str, status: int) -> None:
    fault(client, mount="ordo", mode=mode, count=2)
    assert [client.get("/ordo/health").status_code for _ in range(3)] == [status, status, 200]
    assert client.get("/vocdoni/ping").status_code == 200  # other mounts unaffected


def test_429_carries_retry_after(client: httpx.Client) -> None:
    fault(client, mount="*", mode="429", retry_after=3, count=1)
    resp = client.get("/vocdoni/ping")
    assert (resp.status_code, resp.headers["retry-after"]) == (429, "3")
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    fault(client, mount="vocdoni", mode="429", retry_after=date, count=1)
    assert client.get("/vocdoni/ping").headers["retry-after"] == date
    assert client.get("/vocdoni/ping").status_code == 200


def test_body_faults(client: httpx.Client) -> None:
    fault(client, mount="ordo", mode="bad_json")
    resp = client.get("/ordo/jobs", headers=ORDO)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    fault(client, mount="ordo", mode="html")
    assert client.get("/ordo/jobs", headers=ORDO).headers["content-type"].startswith("text/html")
    fault(client, mount="ordo", mode="truncated")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/ordo/jobs", headers=ORDO)
    fault(client, mount="ordo", mode="none")
    assert client.get("/ordo/jobs", headers=ORDO).status_code == 200
    assert client.post("/_sim/faults", json={"mode": "explode"}).status_code == 400


def test_timeout_fault_and_ratio(client: httpx.Client) -> None:
    fault(client, mount="vocdoni-v1", mode="timeout", timeout_s=5)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/vocdoni-v1/ping", timeout=0.3)
    fault(client, mount="vocdoni-v1", mode="500", ratio=0.5)
    codes = [client.get("/vocdoni-v1/ping").status_code for _ in range(60)]
    assert 10 < codes.count(500) < 50


def test_fail_job_jobs_and_delete_org(client: httpx.Client) -> None:
    addr = next(iter(client.get("/_sim/truth").json()["vocdoni"]))
    job_id = client.post("/_sim/fail_job", json={"mount": "vocdoni", "org": addr,
                                                 "job_type": "publish_process"}).json()["job_id"]
    client.post("/_sim/pause")
    client.post("/_sim/advance", json={"seconds": 1})
    assert client.get(f"/vocdoni/jobs/{job_id}").json()["status"] == "failed"
    made = client.post("/_sim/jobs", json={"mount": "vocdoni", "org": addr,
                                           "job_type": "org_members", "count": 3}).json()
    assert len(made["job_ids"]) == 3 and all(len(i) == 32 for i in made["job_ids"])
    gone = client.post("/_sim/delete_org", json={"mount": "vocdoni", "org": addr}).json()
    assert gone["deleted"] > 3
    body = client.get("/vocdoni/jobs", headers=VOC, params={"orgAddress": addr}).json()
    assert body["pagination"]["totalItems"] == 0 and body["jobs"] == []
    assert client.get(f"/vocdoni/jobs/{job_id}").status_code == 404
    bad = client.post("/_sim/jobs", json={"mount": "vocdoni", "job_type": "nope"})
    assert bad.status_code == 400


def test_latency_is_added_to_api_routes_only() -> None:
    handle = start_simulator(SimOptions(listen_port=0, latency_ms=150))
    try:
        t0 = time.monotonic()
        httpx.get(f"{handle.url}/_sim/truth", timeout=5)
        control = time.monotonic() - t0
        t0 = time.monotonic()
        httpx.get(f"{handle.url}/ordo/health", timeout=5)
        assert time.monotonic() - t0 >= 0.15 > control
    finally:
        handle.stop()


def test_big_history_pages_stay_fast() -> None:
    handle = start_simulator(SimOptions(listen_port=0, history=100_000, vocdoni_orgs=1,
                                        vocdoni_v1_orgs=0, ordo_history=0))
    try:
        addr = next(iter(handle.world.vocdoni.orgs))
        with httpx.Client(base_url=handle.url, timeout=5) as c:
            c.get("/vocdoni/ping")
            t0 = time.monotonic()
            for page in (1, 500, 1000):
                body = c.get("/vocdoni/jobs", headers=VOC,
                             params={"orgAddress": addr, "limit": 100, "page": page}).json()
                assert len(body["jobs"]) == 100
            assert (time.monotonic() - t0) / 3 < 0.1
    finally:
        handle.stop()


def test_run_simulator_serves_until_sigterm(tmp_path: object) -> None:
    code = ("import sys; from exporter.simulator import SimOptions, run_simulator; "
            "sys.exit(run_simulator(SimOptions(listen_port=int(sys.argv[1]), history=2)))")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)], env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/ordo/health", timeout=1).status_code \
                    == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
