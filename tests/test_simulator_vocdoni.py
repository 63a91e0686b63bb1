"""The simulated Vocdoni API, both generations, driven in-process through SimApp.dispatch."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulator.clock import SimClock
from exporter.simulator.options import SimOptions
from exporter.simulator.server import SimApp
from exporter.simulator.vocdoni_world import VJob
from exporter.simulator.world import World

# ../shared beside the repository root, wherever it was cloned
SHARED = Path(__file__).resolve().parents[2] / "shared"
SWAGGER = SHARED / "reference" / "vocdoni-swagger-jobs.yaml"
T0 = 1_780_000_000.0
LOGIN = {"email": "ops@example.org", "password": "sim-password"}
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")


class FakeTime:
    """A wall clock that only moves when told."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def make_app(**knobs: Any) -> SimApp:
    opts = SimOptions(**{"seed": 1, "job_rate": 1.0, "history": 30, **knobs})
    return SimApp(World(opts, SimClock(source=FakeTime(), origin=T0)))


def call(app: SimApp, method: str, target: str, token: str | None = None,
         body: Any = None) -> tuple[int, str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    raw = json.dumps(body).encode() if body is not None else b""
    resp = app.dispatch(method, target, headers, raw)
    text = resp.body.decode()
    try:
        payload = json.loads(text)
    except ValueError:
        payload = text
    return resp.status, resp.content_type, payload


def login(app: SimApp, mount: str = "vocdoni") -> str:
    status, _, body = call(app, "POST", f"/{mount}/auth/login", body=LOGIN)
    assert status == 200
    return str(body["token"])


def orgs(app: SimApp, mount: str = "vocdoni") -> list[str]:
    return list(app.world.vocdoni_mount(mount).orgs)


@pytest.fixture()
def app() -> SimApp:
    return make_app()


# --- swagger shapes -------------------------------------------------------------------------

def _check(value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str) -> None:
    """Check a JSON value against a swagger 2 schema: types, enums, nested refs."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].split("/")[-1]]
    for part in schema.get("allOf", []):
        _check(value, part, defs, where)
    kind = schema.get("type")
    if value is None:  # Go nil slices and *int pagination edges marshal as null
        assert kind in ("array", None, "object") or where.endswith(("previousPage", "nextPage")), \
            where
        return
    types = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}
    if kind:
        assert isinstance(value, types[kind]), f"{where}: {value!r} is not {kind}"
    if "enum" in schema and not (where == "status.status" and value == ""):
        # v2.9.0 import jobs never set a status: "" is the documented exception to the enum
        assert value in schema["enum"], f"{where}: {value!r} not in enum"
    if kind == "array":
        for i, item in enumerate(value):
            _check(item, schema.get("items", {}), defs, f"{where}[{i}]")
    if kind == "object":
        props = schema.get("properties", {})
        assert set(value) <= set(props), f"{where}: unknown keys {set(value) - set(props)}"
        for key, item in value.items():
            _check(item, props[key], defs, f"{where}.{key}")


def test_new_generation_responses_match_swagger(app: SimApp) -> None:
    spec = yaml.safe_load(SWAGGER.read_text())["new"]["definitions"]
    token = login(app)
    app.world.clock.advance(30)
    for addr in orgs(app):
        _, _, body = call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}&limit=100", token)
        _check(body, spec["apicommon.JobsListResponse"], spec, "list")
        assert {"pagination", "jobs"} == set(body)
        for job in body["jobs"]:
            assert {"jobId", "type", "status"} <= set(job)
            _, _, one = call(app, "GET", f"/vocdoni/jobs/{job['jobId']}")
            _check(one, spec["apicommon.JobResponse"], spec, "job")
    _, _, err = call(app, "GET", "/vocdoni/jobs?orgAddress=zz", token)
    _check(err, spec["errors.Error"], spec, "error")


def test_old_generation_responses_match_swagger(app: SimApp) -> None:
    spec = yaml.safe_load(SWAGGER.read_text())["old"]["definitions"]
    token = login(app, "vocdoni-v1")
    app.world.clock.advance(30)
    addr = orgs(app, "vocdoni-v1")[0]
    _, _, body = call(app, "GET", f"/vocdoni-v1/organizations/{addr}/jobs?limit=100", token)
    _check(body, spec["apicommon.JobsResponse"], spec, "list")
    for job in body["jobs"]:
        assert set(job) == {"jobId", "type", "total", "added", "errors", "createdAt",
                            "completedAt", "completed"}
        assert GO_TIME.match(job["createdAt"]) and GO_TIME.match(job["completedAt"])
        _, _, one = call(app, "GET", f"/vocdoni-v1/jobs/{job['jobId']}")
        _check(one, spec["apicommon.JobStatusResponse"], spec, "status")
        if job["type"] == "org_members":
            _, _, mem = call(app, "GET",
                             f"/vocdoni-v1/organizations/{addr}/members/job/{job['jobId']}", token)
            _check(mem, spec["apicommon.AddMembersJobResponse"], spec, "members")
            assert set(mem) == {"added", "errors", "progress", "total"}


# --- pagination -----------------------------------------------------------------------------

def test_pagination_defaults_cap_and_edges(app: SimApp) -> None:
    token = login(app)
    addr = orgs(app)[0]
    base = f"/vocdoni/jobs?orgAddress={addr}"
    _, _, body = call(app, "GET", base, token)
    total = body["pagination"]["totalItems"]
    assert total >= 30 and len(body["jobs"]) == 10  # default limit 10
    assert body["pagination"] == {"totalItems": total, "previousPage": None, "currentPage": 1,
                                  "nextPage": 2, "lastPage": -(-total // 10)}
    _, _, capped = call(app, "GET", base + "&limit=1000", token)
    assert len(capped["jobs"]) == min(total, 100) and capped["pagination"]["lastPage"] == 1
    _, _, zero = call(app, "GET", base + "&limit=0", token)
    assert len(zero["jobs"]) == 10
    last = body["pagination"]["lastPage"]
    _, _, tail = call(app, "GET", base + f"&page={last}", token)
    assert tail["pagination"]["nextPage"] is None and tail["pagination"]["previousPage"] == last - 1
    assert len(tail["jobs"]) == total - (last - 1) * 10
    for bad in ("0", str(last + 1), "abc", "-1"):
        status, ctype, err = call(app, "GET", base + f"&page={bad}", token)
        assert (status, err["code"]) == (400, 40010), bad
        assert ctype.startswith("text/plain")  # Go's http.Error


def test_pages_are_newest_first_and_cover_every_job_once(app: SimApp) -> None:
    token = login(app, "vocdoni-v1")
    addr = orgs(app, "vocdoni-v1")[0]
    seen: list[dict[str, Any]] = []
    page = 1
    while page:
        _, _, body = call(app, "GET", f"/vocdoni-v1/organizations/{addr}/jobs?limit=7&page={page}",
                          token)
        seen += body["jobs"]
        page = body["pagination"]["nextPage"]
    stamps = [j["createdAt"] for j in seen]
    assert len({j["jobId"] for j in seen}) == len(seen) == body["pagination"]["totalItems"]
    world = app.world.vocdoni_v1.orgs[addr]
    assert [j["jobId"] for j in seen] == [j.jid for j in reversed(world.jobs)]
    assert stamps == sorted(stamps, reverse=True) or len(set(stamps)) < len(stamps)


def test_type_filter_and_validation(app: SimApp) -> None:
    token = login(app)
    addr = orgs(app)[0]
    _, _, body = call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}&type=relay_vote&limit=100",
                      token)
    assert body["jobs"] and all(j["type"] == "relay_vote" for j in body["jobs"])
    status, _, err = call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}&type=bogus", token)
    assert (status, err["code"]) == (400, 40010) and "bogus" in err["error"]
    v1 = login(app, "vocdoni-v1")
    addr1 = orgs(app, "vocdoni-v1")[0]
    status, _, _ = call(app, "GET", f"/vocdoni-v1/organizations/{addr1}/jobs?type=relay_vote", v1)
    assert status == 400  # v2.9.0 filters only the two import types
    status, _, ok = call(app, "GET", f"/vocdoni-v1/organizations/{addr1}/jobs?type=org_members",
                         v1)
    assert status == 200 and all(j["type"] == "org_members" for j in ok["jobs"])


# --- auth -----------------------------------------------------------------------------------

def test_auth_errors_login_refresh_and_expiry() -> None:
    app = make_app(token_ttl_s=100)
    addr = orgs(app)[0]
    status, _, err = call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}")
    assert (status, err) == (401, {"error": "authentication required", "code": 40001})
    status, _, err = call(app, "POST", "/vocdoni/auth/login", body={**LOGIN, "password": "no"})
    assert (status, err["code"]) == (401, 40102)
    status, _, body = call(app, "POST", "/vocdoni/auth/login", body=LOGIN)
    assert status == 200 and set(body) == {"token", "expirity"}
    assert GO_TIME.match(body["expirity"]) and body["token"].count(".") == 2
    token = body["token"]
    assert call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}", token)[0] == 200
    assert call(app, "GET", "/vocdoni/jobs?orgAddress=nothex", token)[2]["code"] == 40010
    unknown = "0x" + "ab" * 20
    status, _, err = call(app, "GET", f"/vocdoni/jobs?orgAddress={unknown}", token)
    assert (status, err["code"]) == (401, 40001) and "manager" in err["error"]
    _, _, addrs = call(app, "GET", "/vocdoni/auth/addresses", token)
    assert addrs == {"addresses": orgs(app)}
    app.world.clock.advance(60)
    status, _, fresh = call(app, "POST", "/vocdoni/auth/refresh", token)
    assert status == 200 and fresh["token"] != token
    app.world.clock.advance(50)  # the first token is expired now, the refreshed one is not
    assert call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}", token)[0] == 401
    assert call(app, "POST", "/vocdoni/auth/refresh", token)[0] == 401
    assert call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}", fresh["token"])[0] == 200
    assert call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}", "sim-token")[0] == 200
    assert call(app, "GET", "/vocdoni/ping")[2] == "."


def test_v1_tokens_never_expire_like_v290() -> None:
    app = make_app(token_ttl_s=10, job_rate=0.0, ordo_job_rate=0.0)
    token = login(app, "vocdoni-v1")
    app.world.clock.advance(100_000)
    addr = orgs(app, "vocdoni-v1")[0]
    assert call(app, "GET", f"/vocdoni-v1/organizations/{addr}/jobs", token)[0] == 200
    assert call(app, "GET", f"/vocdoni/jobs?orgAddress={orgs(app)[0]}", token)[0] == 401


# --- job content ----------------------------------------------------------------------------

def _jobs(app: SimApp, mount: str = "vocdoni") -> list[VJob]:
    return [j for org in app.world.vocdoni_mount(mount).orgs.values() for j in org.jobs]


def test_ids_statuses_and_omitempty(app: SimApp) -> None:
    app.world.clock.advance(20)
    token = login(app)
    for job in _jobs(app):
        assert len(job.jid) == (32 if job.jtype == "org_members" else 64)
        _, _, body = call(app, "GET", f"/vocdoni/jobs/{job.jid}", token)
        assert body["status"] in ("pending", "completed", "failed")
        if job.jtype == "org_members":
            assert body["status"] != "failed"  # imports are never failed
        for key, value in body.get("result", {}).items():
            assert value not in (0, "", None, []), (key, body)  # omitempty: zero is absent
        assert body.get("errors", ["x"]) != []  # omitted when empty


def test_import_errors_hidden_from_anonymous_callers_only(app: SimApp) -> None:
    app.world.clock.advance(5)
    failed = [j for j in _jobs(app) if j.jtype == "org_members" and j.n_err and
              j.status(app.world.clock.now()) == "completed"]
    assert failed, "seed 1 should have an import with errored rows"
    job = failed[0]
    token = login(app)
    _, _, public = call(app, "GET", f"/vocdoni/jobs/{job.jid}")
    _, _, private = call(app, "GET", f"/vocdoni/jobs/{job.jid}", token)
    assert "errors" not in public and len(private["errors"]) == job.n_err
    assert "@example.org" in private["errors"][0]  # looks like personal data, on purpose
    assert public["result"]["added"] == job.total - job.n_err


def test_relay_votes_fail_with_n_of_m(app: SimApp) -> None:
    world = app.world
    org = next(iter(world.vocdoni.orgs.values()))
    with world.lock:
        jobs = world.vocdoni.add_jobs(org, "relay_votes", 1, world.sync(), world._control_rng,
                                      fail=True)
    world.clock.advance(1)
    _, _, body = call(app, "GET", f"/vocdoni/jobs/{jobs[0].jid}")
    job = jobs[0]
    assert body["status"] == "failed"
    assert body["errors"] == [f"{job.n_err} of {job.total} votes failed"]
    votes = body["result"]["votes"]
    assert len(votes) == job.total and sum(v["status"] == "failed" for v in votes) == job.n_err


def test_single_job_errors() -> None:
    app = make_app()
    for mount in ("vocdoni", "vocdoni-v1"):
        status, _, err = call(app, "GET", f"/{mount}/jobs/{'0' * 64}")
        assert (status, err["code"]) == (404, 40026)
        status, _, err = call(app, "GET", f"/{mount}/jobs/not-hex")
        assert (status, err["code"]) == (400, 40010)


# --- old generation specifics ---------------------------------------------------------------

def test_v1_probe_gets_chi_plain_404(app: SimApp) -> None:
    token = login(app, "vocdoni-v1")
    status, ctype, body = call(app, "GET", f"/vocdoni-v1/jobs?orgAddress={orgs(app)[0]}", token)
    assert (status, ctype, body) == (404, "text/plain; charset=utf-8", "404 page not found\n")
    status, _, body = call(app, "GET", f"/vocdoni/jobs?orgAddress={orgs(app)[0]}")
    assert status == 401 and body["code"] == 40001  # new generation answers JSON


def test_v1_status_shapes(app: SimApp) -> None:
    app.world.clock.advance(30)
    now = app.world.clock.now()
    token = login(app, "vocdoni-v1")
    addr = orgs(app, "vocdoni-v1")[0]
    _, _, body = call(app, "GET", f"/vocdoni-v1/organizations/{addr}/jobs?limit=100", token)
    listed = {j["jobId"]: j for j in body["jobs"]}
    for job in app.world.vocdoni_v1.orgs[addr].jobs:
        item = listed[job.jid]
        done = job.status(now) != "pending"
        assert item["completed"] is done
        assert (item["completedAt"] == "0001-01-01T00:00:00Z") is (not done)
        _, _, one = call(app, "GET", f"/vocdoni-v1/jobs/{job.jid}")
        assert one["status"] == ("" if job.is_import else job.status(now))
        assert ("error" in one) is (one["status"] == "failed")
    assert any(j["completed"] and j["type"] != "org_members" for j in body["jobs"])


def test_v1_members_job_evicted_60s_after_progress_100() -> None:
    app = make_app(stuck_ratio=0.0)
    world = app.world
    org = next(iter(world.vocdoni_v1.orgs.values()))
    with world.lock:
        job = world.vocdoni_v1.add_jobs(org, "org_members", 1, world.sync(),
                                        world._control_rng)[0]
    token = login(app, "vocdoni-v1")
    path = f"/vocdoni-v1/organizations/{'0x' + '1' * 40}/members/job/{job.jid}"  # org unchecked
    assert call(app, "GET", path)[0] == 401
    _, _, early = call(app, "GET", path, token)
    assert early["progress"] < 100 and early["total"] == job.total
    assert job.finish is not None
    world.clock.advance(job.finish - world.clock.now() + 1)
    _, _, done = call(app, "GET", path, token)
    assert done["progress"] == 100 and isinstance(done["errors"], list)
    world.clock.advance(59)
    assert call(app, "GET", path, token)[2] == done  # still in memory
    world.clock.advance(2)
    _, _, row = call(app, "GET", path, token)
    assert row["progress"] == 100 and row["added"] == job.total - job.n_err
    assert row["errors"] is None or len(row["errors"]) == job.n_err
    assert job.seen100 is not None


def test_v1_stuck_import_reads_progress_100_from_the_row() -> None:
    app = make_app(stuck_ratio=1.0, job_rate=0.0, history=0)
    token = login(app, "vocdoni-v1")
    assert app.world.add_jobs("vocdoni-v1", None, "org_members", 2) and not _jobs(app)
    app.world.clock.advance(5)
    stuck = [j for j in _jobs(app, "vocdoni-v1") if j.jtype == "org_members"]
    assert stuck and all(j.finish is None for j in stuck)
    stuck[0].live = False  # as after a restart: no in-memory entry
    path = f"/vocdoni-v1/organizations/x/members/job/{stuck[0].jid}"
    assert call(app, "GET", path, token)[2]["progress"] == 100


# --- world behaviour ------------------------------------------------------------------------

def test_same_seed_and_clock_give_the_same_world() -> None:
    a, b = make_app(seed=5), make_app(seed=5)
    for app in (a, b):
        app.world.clock.advance(40)
    assert a.world.truth() == b.world.truth()
    addr = orgs(a)[0]
    pages = [call(x, "GET", f"/vocdoni/jobs?orgAddress={addr}&limit=100", "sim-token")[2]
             for x in (a, b)]
    assert pages[0] == pages[1]
    assert make_app(seed=6).world.truth() != a.world.truth()


def test_truth_matches_the_list_when_paused(app: SimApp) -> None:
    app.world.clock.advance(25)
    truth = app.world.truth()["vocdoni"]
    for addr, org_truth in truth.items():
        _, _, body = call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}&limit=100", "sim-token")
        counts: dict[str, dict[str, int]] = {}
        for job in body["jobs"]:
            per = counts.setdefault(job["type"], {})
            per[job["status"]] = per.get(job["status"], 0) + 1
        assert counts == org_truth["jobs"]
        assert org_truth["total"] == body["pagination"]["totalItems"]
        pending = {j["jobId"] for j in body["jobs"] if j["status"] == "pending"}
        assert pending == set(org_truth["active_ids"])


def test_history_is_finished_and_counted(app: SimApp) -> None:
    truth = make_app(job_rate=0.0).world.truth()["vocdoni"]
    for org_truth in truth.values():
        assert org_truth["total"] == 30 and not org_truth["active_ids"]
        assert sum(n for by in org_truth["finished"].values() for n in by.values()) == 30


def test_hostile_labels_reach_the_api() -> None:
    app = make_app(hostile_labels=True, job_rate=20.0)
    app.world.clock.advance(10)
    types = {j.jtype for j in _jobs(app)}
    assert any("\n" in t for t in types) and any(len(t) == 300 for t in types)
    addr = orgs(app)[0]
    status, _, _ = call(app, "GET", f"/vocdoni/jobs?orgAddress={addr}&type=new%0Aline", "sim-token")
    assert status == 200


def test_arrivals_come_from_a_heap_with_every_due_job_created_and_none_early() -> None:
    """advance() costs the arrivals due, not a walk of every org under the lock."""
    world = make_app(vocdoni_orgs=40, job_rate=0.5).world.vocdoni
    before = {a: len(org.active) for a, org in world.orgs.items()}
    world.advance(T0 + 30.0)
    assert all(org.next_at > T0 + 30.0 for org in world.orgs.values())  # none left due
    assert sorted(a for _, a in world._arrivals) == sorted(world.orgs)  # each org queued once
    assert all(when == world.orgs[a].next_at for when, a in world._arrivals)
    grew = sum(len(org.active) > before[a] for a, org in world.orgs.items())
    assert grew > 30  # ~15 arrivals an org in 30 s at 0.5/s, most of them still running
    quiet = make_app(vocdoni_orgs=40, job_rate=0.0).world.vocdoni
    assert quiet._arrivals == []  # no arrivals ever: nothing to look at per request
