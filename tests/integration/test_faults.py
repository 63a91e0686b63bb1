"""API faults, auth lifecycle, shrinking lists, hot reload and a soak, on one live exporter."""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import (
    exporter,
    free_port,
    scrape,
    select,
    sim_post,
    simulator,
    truth,
    wait_for,
)

INTERVAL = 0.5
TOKEN_TTL = 20
KNOBS = ("--seed", "5", "--job-rate", "2", "--failure-ratio", "0.3", "--job-duration-s", "1",
         "--history", "8", "--vocdoni-orgs", "2", "--vocdoni-v1-orgs", "1",
         "--ordo-job-rate", "1", "--ordo-history", "4", "--token-ttl-s", str(TOKEN_TTL))
# source -> simulator mount, for the sources whose first sync happened on the paused truth
CHECKED = {"v2": "vocdoni", "v2-login": "vocdoni", "v1-login": "vocdoni-v1", "ordo": "ordo"}
NGINX_404 = (b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>"
             b"404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


class _Html404(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(NGINX_404)))
        self.end_headers()
        self.wfile.write(NGINX_404)

    def log_message(self, format: str, *args: Any) -> None:
        return


def config_for(sim: str, html404: str, dead: str, extra: str = "", drop_html: bool = False) -> str:
    """Return the shared exporter's config."""
    html = "" if drop_html else f"""
  - name: html404
    kind: ordo
    base_url: {html404}
    auth: {{token: x}}
    organization: html404
"""
    return f"""
state:
  path: ":memory:"
defaults:
  interval: {INTERVAL}s
  timeout: 2s
  retries: 1
  jitter: 0
sources:
  - name: v2
    kind: vocdoni
    base_url: {sim}/vocdoni
    auth: {{token: sim-token}}
    organizations:
{{orgs}}
  - name: v2-login
    kind: vocdoni
    base_url: {sim}/vocdoni
    auth: {{email: ops@example.org, password_file: pw}}
    full_resync_interval: 2s
    organizations: auto
  - name: v1-login
    kind: vocdoni
    base_url: {sim}/vocdoni-v1
    auth: {{email: ops@example.org, password_file: pw}}
    organizations: auto
  - name: ordo
    kind: ordo
    base_url: {sim}/ordo
    auth: {{token: sim-token}}
    organization: ordo
  - name: dead
    kind: ordo
    base_url: {dead}
    auth: {{token: x}}
    organization: dead
{html}{extra}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Simulator, an HTML-404 server, and one exporter synced while the world was paused."""
    tmp = tmp_path_factory.mktemp("faults")
    (tmp / "pw").write_text("sim-password\n")
    html = ThreadingHTTPServer(("127.0.0.1", 0), _Html404)
    thread = threading.Thread(target=html.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    html_url = f"http://127.0.0.1:{html.server_address[1]}"
    dead_url = f"http://127.0.0.1:{free_port()}"
    try:
        with simulator(tmp, *KNOBS) as sim:
            sim_post(sim, "pause")
            first = truth(sim)
            orgs = "\n".join(f'      - address: "{a}"' for a in sorted(first["vocdoni"]))
            cfg = config_for(sim, html_url, dead_url).replace("{orgs}", orgs)
            with exporter(tmp, cfg, "--web.enable-lifecycle") as (url, proc):
                stack = {"sim": sim, "url": url, "proc": proc, "first": first, "tmp": tmp,
                         "html": html_url, "dead": dead_url, "orgs": orgs}
                wait_for(lambda: len(ups(stack, *CHECKED)) == 6
                         and all(v == 1 for v in ups(stack, *CHECKED).values()), 20,
                         "checked sources up")
                sim_post(sim, "resume")
                yield stack
    finally:
        html.shutdown()
        html.server_close()


def ups(stack: dict[str, Any], *sources: str) -> dict[tuple[str, str], float]:
    """Return asyncjob_up by (source, org) for the given sources."""
    out = {}
    for labels, value in select(scrape(stack["url"]), "asyncjob_up").items():
        d = dict(labels)
        if d["source"] in sources:
            out[(d["source"], d["org"])] = value
    return out


def errors(stack: dict[str, Any], source: str, reason: str) -> float:
    """Return the summed poll errors of one source for one reason."""
    return sum(select(scrape(stack["url"]), "asyncjob_poll_errors_total", source=source,
                      reason=reason).values())


def requests(stack: dict[str, Any], prefix: str) -> int:
    """Return how many simulator requests had a route starting with prefix."""
    by_route = httpx.get(f"{stack['sim']}/_sim/requests", timeout=5).json()["by_route"]
    return sum(n for route, n in by_route.items() if route.startswith(prefix))


def last_success(stack: dict[str, Any]) -> dict[tuple[str, str], float]:
    """Return the last successful poll time of every checked org."""
    out = {}
    for labels, value in select(scrape(stack["url"]),
                                "asyncjob_last_poll_success_timestamp_seconds").items():
        d = dict(labels)
        if d["source"] in CHECKED:
            out[(d["source"], d["org"])] = value
    return out


def settle(stack: dict[str, Any]) -> None:
    """Wait until every checked org finished a poll that started after the world paused."""
    paused = time.time()
    ends = wait_for(lambda: (lambda t: t if len(t) == 6 and min(t.values()) > paused else None)(
        last_success(stack)), 20, "a poll ending after the pause")
    wait_for(lambda: all(v > ends[k] for k, v in last_success(stack).items()), 20,
             "a poll starting after the pause")


def check_counters(stack: dict[str, Any]) -> None:
    """Pause the world, let the exporter settle, and compare every checked counter with truth."""
    sim_post(stack["sim"], "pause")
    try:
        settle(stack)
        samples = scrape(stack["url"])
        now, first = truth(stack["sim"]), stack["first"]
        for source, mount in CHECKED.items():
            for addr, org in now[mount].items():
                label = "ordo" if mount == "ordo" else addr
                got = {(dict(k)["job_type"], dict(k)["status"]): v
                       for k, v in select(samples, "asyncjob_finished_total", source=source,
                                          org=label).items() if v}
                before = first[mount].get(addr, {}).get("finished", {})
                want = {(jt, st): float(n - before.get(jt, {}).get(st, 0))
                        for jt, by in org["finished"].items() for st, n in by.items()
                        if n - before.get(jt, {}).get(st, 0)}
                assert got == want, (source, addr)
                jobs = {(dict(k)["job_type"], dict(k)["status"]): v
                        for k, v in select(samples, "asyncjob_jobs", source=source,
                                           org=label).items() if v}
                assert jobs == {(jt, st): float(n) for jt, by in org["jobs"].items()
                                for st, n in by.items() if n}, (source, addr)
    finally:
        sim_post(stack["sim"], "resume")
    assert stack["proc"].proc.poll() is None


FAULTS = [  # (mount, mode, source that must report it, reason, extra rule fields)
    ("vocdoni", "500", "v2", "http_5xx", {}),
    ("vocdoni", "timeout", "v2", "timeout", {"timeout_s": 3}),
    ("vocdoni", "html", "v2", "decode", {}),
    ("vocdoni", "truncated", "v2", "connect", {}),
    ("vocdoni", "401", "v2", "auth", {}),
]


@pytest.mark.parametrize(("mount", "mode", "source", "reason", "extra"), FAULTS,
                         ids=[f[1] for f in FAULTS])
def test_fault_is_counted_up_drops_and_recovers(
    stack: dict[str, Any], mount: str, mode: str, source: str, reason: str,
    extra: dict[str, Any],
) -> None:
    before = errors(stack, source, reason)
    sim_post(stack["sim"], "faults", {"mount": mount, "mode": mode, "ratio": 1.0, **extra})
    try:
        wait_for(lambda: errors(stack, source, reason) > before
                 and all(v == 0 for v in ups(stack, source).values()), 20, f"{reason} counted")
    finally:
        sim_post(stack["sim"], "faults", {"mount": mount, "mode": "none"})
    wait_for(lambda: all(v == 1 for v in ups(stack, source).values()), 20, "up again")
    check_counters(stack)


def test_429_retry_after_is_honoured(stack: dict[str, Any]) -> None:
    before = errors(stack, "ordo", "rate_limited")
    sim_post(stack["sim"], "faults", {"mount": "ordo", "mode": "429", "retry_after": 2})
    seen: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 6.5
        while time.monotonic() < deadline:
            seen.append((time.monotonic(), requests(stack, "GET /ordo/")))
            time.sleep(0.03)
        assert errors(stack, "ordo", "rate_limited") > before
        assert all(v == 0 for v in ups(stack, "ordo").values())
    finally:
        sim_post(stack["sim"], "faults", {"mount": "ordo", "mode": "none"})
    arrivals = [t for (t, n), (_, prev) in zip(seen[1:], seen, strict=False) if n > prev]
    assert len(arrivals) >= 2, arrivals
    # each 429 blocks the whole client for 2 s: requests come in bursts at least ~2 s apart
    bursts = [arrivals[0]] + [t for p, t in itertools.pairwise(arrivals)
                              if t - p > 0.5]
    gaps = [b - a for a, b in itertools.pairwise(bursts)]
    assert gaps and min(gaps) >= 1.8, gaps
    wait_for(lambda: all(v == 1 for v in ups(stack, "ordo").values()), 20, "ordo up again")
    check_counters(stack)


def test_connection_refused_and_html_404_are_counted(stack: dict[str, Any]) -> None:
    wait_for(lambda: errors(stack, "dead", "connect") >= 2
             and errors(stack, "html404", "http_4xx") >= 2, 20, "errors counted")
    assert ups(stack, "dead", "html404") == {("dead", "dead"): 0, ("html404", "html404"): 0}
    # one readiness rule: their first polls completed (and failed), so ready, listed as down
    ready = httpx.get(f"{stack['url']}/readyz", timeout=5)
    assert ready.status_code == 200
    assert {"dead/dead", "html404/html404"} <= set(ready.json()["down"])
    assert ready.json()["missing"] == []
    assert stack["proc"].proc.poll() is None


def test_401_then_good_login(stack: dict[str, Any]) -> None:
    logins = requests(stack, "POST /vocdoni-v1/auth/login")
    before = errors(stack, "v1-login", "auth")
    sim_post(stack["sim"], "faults", {"mount": "vocdoni-v1", "mode": "401", "count": 1})
    wait_for(lambda: requests(stack, "POST /vocdoni-v1/auth/login") > logins, 10, "relogin")
    assert not httpx.get(f"{stack['sim']}/_sim/faults", timeout=5).json()
    time.sleep(INTERVAL * 2)
    assert errors(stack, "v1-login", "auth") == before  # cured inside the same poll
    assert all(v == 1 for v in ups(stack, "v1-login").values())
    check_counters(stack)


def test_token_refresh_and_expiry(stack: dict[str, Any]) -> None:
    # a 20 s token is refreshed about 10 s before it expires, without a new login
    wait_for(lambda: requests(stack, "POST /vocdoni/auth/refresh") >= 1, TOKEN_TTL, "refresh")
    logins = requests(stack, "POST /vocdoni/auth/login")
    before = errors(stack, "v2-login", "auth")
    sim_post(stack["sim"], "advance", {"seconds": TOKEN_TTL + 1})  # every token expired now
    wait_for(lambda: requests(stack, "POST /vocdoni/auth/login") > logins, 10, "login again")
    # every org polls successfully again (a loaded machine may take more than a few intervals:
    # a slow login trips the 3-interval stall watchdog at a 0.5 s interval), with no auth error
    wait_for(lambda: all(v == 1 for v in ups(stack, "v2-login").values()), 15,
             "v2-login up again")
    assert errors(stack, "v2-login", "auth") == before
    out = stack["proc"].output()
    assert "sim-password" not in out and '"token"' not in out
    check_counters(stack)


def test_deleted_org_jobs_drop_gauges_and_keep_counters(stack: dict[str, Any]) -> None:
    sim, url = stack["sim"], stack["url"]
    org = sorted(stack["first"]["vocdoni"])[0]
    sim_post(sim, "pause")
    settle(stack)
    counted = select(scrape(url), "asyncjob_finished_total", source="v2", org=org)
    assert sim_post(sim, "delete_org", {"mount": "vocdoni", "org": org})["deleted"] > 0
    wait_for(lambda: not any(select(scrape(url), "asyncjob_jobs", source="v2", org=org).values())
             and not any(select(scrape(url), "asyncjob_jobs", source="v2-login",
                                org=org).values()), 15, "gauges dropped")
    assert select(scrape(url), "asyncjob_finished_total", source="v2", org=org) == counted
    sim_post(sim, "resume")
    assert all(v == 1 for v in ups(stack, "v2", "v2-login").values())
    check_counters(stack)


def test_reload_broken_keeps_serving_then_adds_fixes_and_removes(stack: dict[str, Any]) -> None:
    url, proc, tmp = stack["url"], stack["proc"], stack["tmp"]
    path = tmp / "exporter.yaml"
    good = path.read_text()
    path.write_text(good + "\n  - name: [broken\n")
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: select(scrape(url), "asyncjob_config_last_reload_successful")
             == {(): 0.0}, 10, "reload_success 0")
    assert httpx.get(f"{url}/metrics", timeout=5).status_code == 200
    assert all(v == 1 for v in ups(stack, "v2").values())  # the old config keeps running
    added = f"""
  - name: ordo-added
    kind: ordo
    base_url: {stack['sim']}/ordo
    auth: {{token: sim-token}}
    organization: added
"""
    fixed = config_for(stack["sim"], stack["html"], f"{stack['sim']}/ordo", added,
                       drop_html=True).replace("{orgs}", stack["orgs"])
    fixed = fixed.replace("auth: {token: x}", "auth: {token: sim-token}")  # the dead source
    path.write_text(fixed)
    v2_loops_before = errors(stack, "v2", "http_5xx")
    resp = httpx.post(f"{url}/-/reload", timeout=30)
    assert resp.status_code == 200, resp.text
    wait_for(lambda: ups(stack, "ordo-added") == {("ordo-added", "added"): 1}, 5, "added org")
    # first poll at once, within an interval: both times on the exporter's clock, so a loaded
    # test machine's scrape delays do not count
    samples = scrape(url)
    reloaded = select(samples, "asyncjob_config_last_reload_success_timestamp_seconds")[()]
    polled, = select(samples, "asyncjob_last_poll_success_timestamp_seconds",
                     source="ordo-added").values()
    assert 0 <= polled - reloaded < INTERVAL + 1.0, (reloaded, polled)
    wait_for(lambda: ups(stack, "dead") == {("dead", "dead"): 1}, 10, "fixed source up")
    samples = scrape(url)
    assert select(samples, "asyncjob_config_last_reload_successful") == {(): 1.0}
    assert not [k for k in samples if dict(k[1]).get("source") == "html404"]
    assert errors(stack, "v2", "http_5xx") == v2_loops_before  # kept its state and counters
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    check_counters(stack)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_soak_with_random_faults(stack: dict[str, Any]) -> None:
    sim, proc = stack["sim"], stack["proc"]
    modes = ["500", "502", "503", "429", "timeout", "bad_json", "html", "truncated", "401"]
    rng = random.Random(3)
    rss: list[int] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < 21:
            sim_post(sim, "faults", {"mount": "*", "mode": rng.choice(modes), "ratio": 0.1,
                                     "retry_after": 1, "timeout_s": 2.5})
            time.sleep(1.5)
            if time.monotonic() - started > 7:  # after warm-up
                rss.append(_rss_kb(proc.proc.pid))
    finally:
        sim_post(sim, "faults", {"mount": "*", "mode": "none"})
    assert proc.proc.poll() is None
    assert max(rss) <= rss[0] * 1.10, rss
    wait_for(lambda: all(v == 1 for v in ups(stack, *CHECKED).values()), 20, "all up")
    check_counters(stack)
    out = proc.output()
    assert "poll_crashed" not in out and "Traceback" not in out
    assert "poll_task_restarted" not in out
