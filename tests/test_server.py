"""ExporterServer over real loopback HTTP: routes, negotiation, limits, timeouts."""

from __future__ import annotations

import gzip
import http.client
import json
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

from exporter.collector import JobsCollector
from exporter.fragments import OrgFragments
from exporter.payload import CHUNK, Payload
from exporter.render import MetricsCache
from exporter.server import OPENMETRICS_TYPE, TEXT_TYPE, ExporterServer, parse_listen
from exporter.state.snapshot import ExporterSnapshot, Histogram, OrgHealth

SNAP = ExporterSnapshot(health={("src", "acme"): OrgHealth(
    "src", "acme", up=True, last_success=1.0, poll_duration=Histogram((1.0,), (1, 1), 0.2))})


class Harness:
    """A started server plus knobs for readiness and reload outcomes."""

    def __init__(self, **kwargs: Any) -> None:
        registry = CollectorRegistry()
        registry.register(JobsCollector(lambda: SNAP, version="1.0.0"))
        self.cache = MetricsCache(registry)
        self.ready_state: tuple[bool, dict[str, Any]] = (True, {})
        self.reload_result: tuple[bool, str] = (True, "ok")
        self.reloads = 0
        self.server = ExporterServer(
            "127.0.0.1:0", self.cache, ready=lambda: self.ready_state, reload=self._reload,
            version="1.0.0", **kwargs,
        )
        self.server.start()

    def _reload(self) -> tuple[bool, str]:
        self.reloads += 1
        return self.reload_result

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp, resp.read()
        finally:
            conn.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.server.stop()


def test_metrics_text_format(harness: Harness) -> None:
    resp, body = harness.request("GET", "/metrics")
    assert resp.status == 200
    assert resp.getheader("Content-Type") == TEXT_TYPE
    assert resp.getheader("Content-Encoding") is None
    assert b'asyncjob_up{org="acme",source="src"} 1.0' in body
    assert not body.endswith(b"# EOF\n")


def test_metrics_openmetrics_negotiation(harness: Harness) -> None:
    accept = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.5"
    resp, body = harness.request("GET", "/metrics", {"Accept": accept})
    assert resp.getheader("Content-Type") == OPENMETRICS_TYPE
    assert body.endswith(b"# EOF\n")
    resp, _ = harness.request("GET", "/metrics", {"Accept": "application/openmetrics-text;q=0"})
    assert resp.getheader("Content-Type") == TEXT_TYPE


def test_a_metrics_body_larger_than_a_chunk_arrives_whole() -> None:
    """Renders are written in chunks of parts: every byte once, in order, Content-Length right."""
    health = {("src", f"org-{n:05d}"): OrgHealth(
        "src", f"org-{n:05d}", up=True, last_success=1.0,
        poll_duration=Histogram((1.0,), (1, 1), 0.2)) for n in range(3000)}
    collector = JobsCollector(lambda: ExporterSnapshot(health=health), version="1.0.0")
    cache = MetricsCache(CollectorRegistry(), fragments=OrgFragments(collector).encode)
    server = ExporterServer("127.0.0.1:0", cache, ready=lambda: (True, {}),
                            reload=lambda: (True, "ok"), version="1.0.0")
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
    finally:
        server.stop()
    assert len(body) > 2 * CHUNK
    assert int(resp.getheader("Content-Length") or 0) == len(body)
    assert body == cache.get(False, False)
    payload = cache.serve(False, False)
    assert isinstance(payload, Payload) and len(list(payload.chunks())) > 2
    assert body.count(b"asyncjob_up{") == 3000


def test_metrics_gzip(harness: Harness) -> None:
    resp, body = harness.request("GET", "/metrics", {"Accept-Encoding": "deflate, gzip"})
    assert resp.getheader("Content-Encoding") == "gzip"
    assert b"asyncjob_up{" in gzip.decompress(body)
    assert int(resp.getheader("Content-Length", "0")) == len(body)


def test_metrics_head_has_length_but_no_body(harness: Harness) -> None:
    _, full = harness.request("GET", "/metrics")
    resp, body = harness.request("HEAD", "/metrics")
    assert resp.status == 200 and body == b""
    assert resp.getheader("Content-Length") == str(len(full))


def test_scrapes_do_not_render(harness: Harness) -> None:
    harness.cache.render_now()
    before = harness.cache.renders
    for _ in range(5):
        harness.request("GET", "/metrics")
    assert harness.cache.renders == before


def test_landing_page(harness: Harness) -> None:
    resp, body = harness.request("GET", "/")
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/html")
    page = body.decode()
    for part in ("asyncjob-exporter", "1.0.0", 'href="/metrics"', 'href="/healthz"',
                 'href="/readyz"'):
        assert part in page


def test_healthz(harness: Harness) -> None:
    resp, body = harness.request("GET", "/healthz")
    assert (resp.status, body) == (200, b"ok\n")


def test_readyz(harness: Harness) -> None:
    harness.ready_state = (False, {"missing": ["src/acme"]})
    resp, body = harness.request("GET", "/readyz")
    assert resp.status == 503
    assert resp.getheader("Content-Type") == "application/json"
    assert json.loads(body) == {"ready": False, "missing": ["src/acme"]}
    harness.ready_state = (True, {})
    resp, body = harness.request("GET", "/readyz")
    assert resp.status == 200 and json.loads(body) == {"ready": True}


@pytest.fixture
def lifecycle() -> Iterator[Harness]:
    h = Harness(lifecycle=True)
    yield h
    h.server.stop()


def test_reload_refused_without_lifecycle_flag(harness: Harness) -> None:
    resp, body = harness.request("POST", "/-/reload", body=b"")
    assert resp.status == 403
    assert b"--web.enable-lifecycle" in body and b"SIGHUP" in body
    assert harness.reloads == 0


def test_reload(lifecycle: Harness) -> None:
    harness = lifecycle
    resp, body = harness.request("POST", "/-/reload", body=b"")
    assert resp.status == 200 and json.loads(body) == {"status": "ok"}
    harness.reload_result = (False, "config.yaml: sources[0].kind: unknown")
    resp, body = harness.request("POST", "/-/reload", body=b"x=1")
    assert resp.status == 500
    assert json.loads(body) == {"status": "error", "error": "config.yaml: sources[0].kind: unknown"}
    resp, _ = harness.request("GET", "/-/reload")
    assert resp.status == 405 and resp.getheader("Allow") == "POST"
    assert harness.reloads == 2


def test_unknown_path_and_method(harness: Harness) -> None:
    assert harness.request("GET", "/nope")[0].status == 404
    assert harness.request("POST", "/metrics")[0].status == 405
    assert harness.request("GET", "/metrics?x=1")[0].status == 200


def test_keep_alive_serves_several_requests(harness: Harness) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", harness.server.port, timeout=5)
    try:
        for path in ("/healthz", "/metrics", "/readyz"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
    finally:
        conn.close()


def test_huge_headers_rejected(harness: Harness) -> None:
    headers = {f"X-Filler-{i}": "a" * 1000 for i in range(20)}
    resp, _ = harness.request("GET", "/metrics", headers)
    assert resp.status == 431


def _open(sock: socket.socket) -> bool:
    """Tell whether the server still holds a connection open (no EOF waiting to be read)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def test_idle_and_slow_connections_do_not_block_scrapes() -> None:
    """A scrape is answered while an idle and a half-sent request hold their connections."""
    h = Harness(idle_timeout=60.0)
    try:
        idle = socket.create_connection(("127.0.0.1", h.server.port), timeout=5)
        slow = socket.create_connection(("127.0.0.1", h.server.port), timeout=5)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        resp, _ = h.request("GET", "/metrics")
        assert resp.status == 200
        assert _open(idle) and _open(slow)  # answered while both still waited
        idle.close()
        slow.close()
    finally:
        h.server.stop()


def test_idle_connection_dropped_without_blocking_scrapes() -> None:
    """Idle and half-sent connections are closed by the server once idle_timeout passes."""
    h = Harness(idle_timeout=0.2)
    try:
        idle = socket.create_connection(("127.0.0.1", h.server.port), timeout=5)
        slow = socket.create_connection(("127.0.0.1", h.server.port), timeout=5)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        assert h.request("GET", "/metrics")[0].status == 200
        for sock in (idle, slow):
            assert sock.recv(1024) == b""  # closed by the server (a hang fails at 5 s)
            sock.close()
    finally:
        h.server.stop()


def test_access_log_at_debug_without_headers() -> None:
    ticks = iter([10.0, 10.25])
    h = Harness(monotonic=lambda: next(ticks))
    conn = http.client.HTTPConnection("127.0.0.1", h.server.port, timeout=5)
    try:
        with structlog.testing.capture_logs() as logs:
            conn.request("GET", "/healthz",
                         headers={"Authorization": "Basic c2VjcmV0OnNlY3JldA=="})
            conn.getresponse().read()
            h.server.monotonic = lambda: 0.0
            # the same connection's next answer comes after the first request's log line
            conn.request("GET", "/healthz")
            conn.getresponse().read()
    finally:
        conn.close()
        h.server.stop()
    entry = next(e for e in logs if e["event"] == "http_request")
    assert entry["log_level"] == "debug"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/healthz", 200)
    assert entry["duration"] == 0.25  # measured on the injected clock
    assert "c2VjcmV0" not in repr(logs)


def test_port_taken_raises_clear_oserror(harness: Harness) -> None:
    other = ExporterServer(f"127.0.0.1:{harness.server.port}", harness.cache,
                           ready=lambda: (True, {}), version="1")
    with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:"):
        other.start()


def test_wildcard_listen_accepts_ipv4() -> None:
    cache = MetricsCache(CollectorRegistry())
    server = ExporterServer(":0", cache, ready=lambda: (True, {}), version="1")
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.stop()


def test_concurrent_scrapes(harness: Harness) -> None:
    results: list[int] = []

    def scrape() -> None:
        results.append(harness.request("GET", "/metrics")[0].status)

    threads = [threading.Thread(target=scrape) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [200] * 20


@pytest.mark.parametrize(("listen", "expected"), [
    (":9877", ("", 9877)), ("0.0.0.0:1", ("0.0.0.0", 1)), ("[::1]:9877", ("::1", 9877)),
    ("localhost:0", ("localhost", 0)),
])
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9877", "host:", "::1:9877", "h:99999", "h:x"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        parse_listen(listen)
