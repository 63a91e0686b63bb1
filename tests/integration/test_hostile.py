"""A hostile API against the real exporter process: it must stay bounded, visible and heal."""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.harness import Proc, exporter, scrape, select, wait_for

INTERVAL = 1.0
TIMEOUT = 2.0
RSS_LIMIT_KB = 300 * 1024
ORG_A = "0x" + "a" * 40
ORG_B = "0x" + "b" * 40
ORDO_JOBS = [{"id": i, "recipe_id": 1, "status": "completed", "created_at": "2026-02-26T12:00:00Z",
              "started_at": "2026-02-26T12:00:01Z", "finished_at": "2026-02-26T12:00:09Z",
              "error": None} for i in (1, 2)]
NGINX_404 = b"<html><head><title>404 Not Found</title></head><body>nginx</body></html>"


def gzip_bomb(gib: int = 2) -> bytes:
    """Return one gzip member of `gib` GiB of zeros (~2 MB): full flushes make blocks repeat."""
    chunk = b"\0" * (1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    assert comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH) == again
    count = gib * 1024
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    body = first + again * (count - 1) + comp.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + body + struct.pack("<II", crc, (count << 20) & 0xFFFFFFFF)


class World:
    """What the fake API does right now, per fault; switched by the tests."""

    def __init__(self) -> None:
        self.modes: dict[str, str] = {}
        self.bomb = b""

    def mode(self, name: str) -> str:
        return self.modes.get(name, "ok")


class Hostile(BaseHTTPRequestHandler):
    """Ordo- and Vocdoni-shaped routes under /<fault>/..., misbehaving as World says."""

    world: World
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        fault, _, route = url.path.lstrip("/").partition("/")
        route = "/" + route
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            self.answer(fault, self.world.mode(fault), route, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def answer(self, fault: str, mode: str, route: str, query: dict[str, str]) -> None:
        if fault == "stall" and query.get("orgAddress") == ORG_A and mode == "hang":
            self.hang(fault)
            return
        jobs_route = route.startswith("/jobs")  # the list and Ordo's batch route alike
        if mode == "drip" and jobs_route:
            self.drip(fault)
        elif mode == "bomb" and jobs_route:
            self.send(200, self.world.bomb, {"Content-Encoding": "gzip"})
        elif mode == "endless" and jobs_route:
            self.endless(fault)
        elif mode.startswith("429") and jobs_route:
            self.send(429, b"slow down", {"Retry-After": mode.split(":", 1)[1]})
        elif mode == "html404" and route.endswith("/jobs"):
            self.send(404, NGINX_404, {"Content-Type": "text/html"})
        elif fault in ("stall", "voc"):
            self.vocdoni(route, query)
        else:
            self.ordo(route)

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def ordo(self, route: str) -> None:
        if route == "/jobs":
            self.send(200, json.dumps(ORDO_JOBS).encode())
        elif route.startswith("/jobs/") and "," in route:  # batch: as Ordo, found:false if unknown
            by_id = {job["id"]: job for job in ORDO_JOBS}
            ids = [int(part) for part in route.removeprefix("/jobs/").split(",")]
            items = [{"id": i, "found": True, "job": by_id[i], "steps": [], "duration_ms": 8000}
                     if i in by_id else {"id": i, "found": False} for i in ids]
            self.send(200, json.dumps(items).encode())
        elif route == "/recipes":
            self.send(200, json.dumps([{"id": 1, "name": "dem"}]).encode())
        else:
            self.send(404, b'{"error": "not found"}')

    def vocdoni(self, route: str, query: dict[str, str]) -> None:
        if route != "/jobs":
            self.send(404, b"404 page not found\n", {"Content-Type": "text/plain"})
            return
        org = query.get("orgAddress", "")
        jobs = [{"jobId": f"{org[-4:]}{i:028x}", "type": "publish_process",
                 "status": "completed"} for i in range(2)]
        body = {"pagination": {"totalItems": 2, "currentPage": 1, "lastPage": 1,
                               "previousPage": None, "nextPage": None}, "jobs": jobs}
        self.send(200, json.dumps(body).encode())

    def drip(self, fault: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"[")
        while self.world.mode(fault) == "drip":  # one byte every half second: never a read timeout
            self.wfile.flush()
            time.sleep(0.5)
            self.wfile.write(b" ")

    def endless(self, fault: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b" " * 65536
        while self.world.mode(fault) == "endless":
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def hang(self, fault: str) -> None:
        while self.world.mode(fault) == "hang":
            time.sleep(0.05)
        self.send(503, b"")


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[World, str]]:
    """Run the hostile API on loopback; yield its state and base URL."""
    state = World()
    state.bomb = gzip_bomb()
    handler = type("Handler", (Hostile,), {"world": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.modes.clear()
        server.shutdown()
        server.server_close()


def config(url: str, body: str, **defaults: Any) -> str:
    """Return an exporter config with short intervals and the given sources."""
    settings = {"interval": f"{INTERVAL}s", "timeout": f"{TIMEOUT}s", "retries": 0, "jitter": 0,
                **defaults}
    lines = "\n".join(f"  {k}: {v}" for k, v in settings.items())
    return f'state:\n  path: ":memory:"\ndefaults:\n{lines}\nsources:\n{body.format(url=url)}'


def ordo(name: str, extra: str = "") -> str:
    return (f"  - name: {name}\n    kind: ordo\n    base_url: {{url}}/{name}\n"
            f"    auth: {{{{token: t}}}}\n    organization: {name}\n{extra}")


def up(url: str, source: str, org: str) -> float | None:
    return select(scrape(url), "asyncjob_up", source=source, org=org).get(
        (("org", org), ("source", source)))


def errors(url: str, source: str, org: str, reason: str) -> float:
    found = select(scrape(url), "asyncjob_poll_errors_total", source=source, org=org,
                   reason=reason)
    return sum(found.values())


def recovers(url: str, source: str, org: str, budget: float) -> float:
    """Wait for up=1 again; return how long it took."""
    start = time.monotonic()
    wait_for(lambda: up(url, source, org) == 1.0, budget, f"{source} recovery")
    return time.monotonic() - start


def peak_rss_kb(proc: Proc) -> int:
    return proc.status_kb("VmHWM")


def test_dripping_body_fails_at_the_timeout_and_recovers(world: tuple[World, str],
                                                         tmp_path: Path) -> None:
    """A body dripping a byte every 0.5 s fails each poll at `timeout` (reason timeout)."""
    state, api = world
    with exporter(tmp_path, config(api, ordo("drip"))) as (url, _):
        wait_for(lambda: up(url, "drip", "drip") == 1.0, 10, "first poll")
        state.modes["drip"] = "drip"
        wait_for(lambda: errors(url, "drip", "drip", "timeout") >= 2, 4 * (INTERVAL + TIMEOUT),
                 "polls failing at the deadline")
        assert up(url, "drip", "drip") == 0.0
        state.modes["drip"] = "ok"
        took = recovers(url, "drip", "drip", TIMEOUT + 2 * INTERVAL + 1)
        assert took <= TIMEOUT + 2 * INTERVAL + 1


@pytest.mark.parametrize("fault", ["bomb", "endless"])
def test_oversized_answers_fail_as_too_large_with_bounded_memory(
        world: tuple[World, str], tmp_path: Path, fault: str) -> None:
    """A 2 MB -> 2 GiB gzip bomb or an endless body stops at 64 MiB; RSS stays < 300 MB."""
    state, api = world
    with exporter(tmp_path, config(api, ordo(fault), timeout="20s")) as (url, proc):
        wait_for(lambda: up(url, fault, fault) == 1.0, 10, "first poll")
        state.modes[fault] = fault
        try:
            wait_for(lambda: errors(url, fault, fault, "too_large") >= 2, 30,
                     f"{fault} counted as too_large")
            assert up(url, fault, fault) == 0.0
            assert peak_rss_kb(proc) < RSS_LIMIT_KB, peak_rss_kb(proc)
            requests = select(scrape(url), "asyncjob_api_requests_total", source=fault,
                              code="too_large")
            assert sum(requests.values()) >= 2
        finally:
            state.modes[fault] = "ok"
        recovers(url, fault, fault, 2 * INTERVAL + 1)
        assert peak_rss_kb(proc) < RSS_LIMIT_KB
        assert "max_response_bytes" in proc.output()


@pytest.mark.parametrize(("retry_after", "extra"), [("Infinity", ""),
                                                     ("604800", "    max_retry_after: 2s\n")])
def test_retry_after_cannot_block_a_source_until_restart(
        world: tuple[World, str], tmp_path: Path, retry_after: str, extra: str) -> None:
    """Retry-After: Infinity is ignored and a week is cut to max_retry_after: the org heals."""
    state, api = world
    name = "retry"
    with exporter(tmp_path, config(api, ordo(name, extra))) as (url, _):
        wait_for(lambda: up(url, name, name) == 1.0, 10, "first poll")
        state.modes[name] = f"429:{retry_after}"
        wait_for(lambda: errors(url, name, name, "rate_limited") >= 1, 5, "rate limited")
        time.sleep(2 * INTERVAL)
        state.modes[name] = "ok"
        recovers(url, name, name, 2 * INTERVAL + 3)  # + the capped Retry-After block


def test_api_auto_does_not_stick_to_v1_after_a_proxy_404(world: tuple[World, str],
                                                         tmp_path: Path) -> None:
    """An HTML 404 on every list route at start pins nothing; v2 is found once it answers."""
    state, api = world
    state.modes["voc"] = "html404"
    body = ("  - name: voc\n    kind: vocdoni\n    base_url: {url}/voc\n    api: auto\n"
            f"    auth: {{{{token: t}}}}\n    organizations:\n      - address: \"{ORG_A}\"\n")
    try:
        with exporter(tmp_path, config(api, body)) as (url, proc):
            wait_for(lambda: errors(url, "voc", ORG_A, "http_4xx") >= 2, 10, "proxy 404s")
            assert up(url, "voc", ORG_A) == 0.0
            state.modes["voc"] = "ok"
            recovers(url, "voc", ORG_A, 2 * INTERVAL + 1)
            detected = [e for e in proc.json_lines() if e.get("event") == "api_detected"]
            assert [e["api"] for e in detected] == ["v2"]
    finally:
        state.modes["voc"] = "ok"


def test_a_stalled_org_is_down_while_its_sibling_answers(world: tuple[World, str],
                                                         tmp_path: Path) -> None:
    """Org A's request hangs; org B on the same source keeps answering: only A reads down."""
    state, api = world
    body = ("  - name: stall\n    kind: vocdoni\n    base_url: {url}/stall\n    api: v2\n"
            f"    auth: {{{{token: t}}}}\n    organizations:\n"
            f"      - address: \"{ORG_A}\"\n      - address: \"{ORG_B}\"\n")
    cfg = config(api, body, interval="0.5s", timeout="4s", retries=2)
    try:
        with exporter(tmp_path, cfg) as (url, _):
            wait_for(lambda: up(url, "stall", ORG_A) == 1.0 and up(url, "stall", ORG_B) == 1.0,
                     10, "first polls")
            state.modes["stall"] = "hang"
            start = time.monotonic()
            # the hung request would only fail after 3 attempts x 4 s; the watchdog cancels it
            # once A got no answer for 3 intervals (1.5 s), whatever B's requests do
            wait_for(lambda: errors(url, "stall", ORG_A, "timeout") >= 1, 6, "stall cancelled")
            assert time.monotonic() - start < 6
            assert up(url, "stall", ORG_A) == 0.0
            assert up(url, "stall", ORG_B) == 1.0
            assert errors(url, "stall", ORG_B, "timeout") == 0
            state.modes["stall"] = "ok"
            recovers(url, "stall", ORG_A, 2 * 0.5 + 2)
    finally:
        state.modes["stall"] = "ok"
