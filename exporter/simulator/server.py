"""Serve the simulated APIs over HTTP: /vocdoni, /vocdoni-v1, /ordo (also as /github, /airflow,
/gitlab) and the /_sim control plane."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from exporter.simulator.airflow import AirflowApi
from exporter.simulator.clock import SimClock
from exporter.simulator.control import Control, Faults, RequestLog, fault_response
from exporter.simulator.github import GitHubApi
from exporter.simulator.gitlab import GitLabApi
from exporter.simulator.http import Request, Response, text_response
from exporter.simulator.options import SimOptions
from exporter.simulator.ordo import OrdoApi
from exporter.simulator.vocdoni import VocdoniApi, chi_not_found
from exporter.simulator.world import World

log = structlog.get_logger()
Resolver = Callable[[Request], tuple[str, Callable[[], Response]]]


class SimApp:
    """Route a request to a mount, count it, and apply latency and faults."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.stopping = threading.Event()
        self.faults = Faults(world.opts.seed)
        self.requests = RequestLog()
        self.control = Control(world, self.faults, self.requests)
        self.mounts: dict[str, Resolver] = {
            "vocdoni": VocdoniApi(world, "vocdoni").resolve,
            "vocdoni-v1": VocdoniApi(world, "vocdoni-v1").resolve,
            "ordo": OrdoApi(world).resolve,
            "github": GitHubApi(world).resolve,  # the Ordo world as GitHub Actions runs
            "airflow": AirflowApi(world).resolve,  # the Ordo world as Airflow DAG runs
            "gitlab": GitLabApi(world).resolve,  # the Ordo world as GitLab pipelines
        }

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one request; never raises."""
        parts = urlsplit(target)
        _, mount, rest = (parts.path + "/").split("/", 2) if parts.path.count("/") >= 1 \
            else ("", "", "")
        sub = "/" + rest.rstrip("/") if rest.rstrip("/") else "/"
        req = Request(method, sub, parse_qs(parts.query, keep_blank_values=True), headers, body)
        if mount == "_sim":
            return self.control.handle(req)
        resolver = self.mounts.get(mount)
        if resolver is None:
            return chi_not_found()
        template, answer = resolver(req)
        self.requests.add(f"{method} /{mount}{template}")
        if self.world.opts.latency_ms > 0:
            self.stopping.wait(self.world.opts.latency_ms / 1000.0)
        rule = self.faults.pick(mount)
        if rule is not None:
            return fault_response(rule, mount, answer, self.stopping)
        return answer()


class _Handler(BaseHTTPRequestHandler):
    """Adapt http.server to SimApp.dispatch."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms ACK stalls
    server_version = "asyncjob-sim/1"

    def _serve(self) -> None:
        app: SimApp = self.server.app  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            resp = app.dispatch(self.command, self.path, headers, body)
        except Exception:  # a simulator bug must not kill the connection thread silently
            log.exception("sim_request_failed", method=self.command, path=self.path)
            resp = text_response(500, "simulator error\n")
        self._write(resp)

    def _write(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if resp.truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if resp.truncate:
            self.wfile.write(resp.body[: len(resp.body) // 2])
            self.close_connection = True
            return
        self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the access log would drown test output."""


class _Server(ThreadingHTTPServer):
    """Threaded server with a listen backlog like a real API front's."""

    # socketserver's default of 5 drops SYNs when a client opens dozens of connections at
    # once (concurrency 50): each drop is a 1-3 s TCP retransmit stall in the client's poll.
    request_queue_size = 128


@dataclass
class SimulatorHandle:
    """A running simulator: where it listens, its world, and how to stop it."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    app: SimApp

    @property
    def port(self) -> int:
        """Return the bound port."""
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:8801."""
        host = str(self.server.server_address[0])
        return f"http://{host}:{self.port}"

    @property
    def world(self) -> World:
        """Return the world, for in-process tests."""
        return self.app.world

    def stop(self) -> None:
        """Stop serving and release the port; interrupts injected timeouts."""
        self.app.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_simulator(opts: SimOptions, clock: SimClock | None = None) -> SimulatorHandle:
    """Build the world and serve it from a daemon thread; port 0 picks a free port."""
    world = World(opts, clock)
    server = _Server((opts.listen_host, opts.listen_port), _Handler)
    server.daemon_threads = True
    app = SimApp(world)
    server.app = app  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="asyncjob-sim", daemon=True)
    thread.start()
    return SimulatorHandle(server, thread, app)


def banner(handle: SimulatorHandle) -> str:
    """Return what a newcomer needs to point an exporter at the simulator."""
    world, url, opts = handle.world, handle.url, handle.world.opts
    with world.lock:
        new, old = sorted(world.vocdoni.orgs), sorted(world.vocdoni_v1.orgs)
    return "\n".join([
        f"asyncjob-exporter simulate: serving on {url} (seed {opts.seed}, speed {opts.speed:g}x)",
        f"  Vocdoni, new API:  base_url {url}/vocdoni     orgs: {', '.join(new) or 'none'}",
        f"  Vocdoni, old API:  base_url {url}/vocdoni-v1  orgs: {', '.join(old) or 'none'}",
        f"  Ordo:              base_url {url}/ordo        organization: any label",
        f"  credentials: Vocdoni login email {opts.email} password {opts.password}"
        f" (or bearer token {opts.token}); Ordo bearer token {opts.token}",
        f"  truth: GET {url}/_sim/truth (what the APIs hold now, to compare with the metrics)",
        "  a ready exporter config for it: asyncjob-exporter demo --print-config",
    ])


def run_simulator(opts: SimOptions) -> int:
    """Serve in the foreground until SIGINT or SIGTERM; return the exit code."""
    handle = start_simulator(opts)
    print(banner(handle), flush=True)
    done = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("simulator_stopping", signal=signum)
        done.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("simulator_started", url=handle.url, seed=opts.seed,
             vocdoni=f"{handle.url}/vocdoni", vocdoni_v1=f"{handle.url}/vocdoni-v1",
             ordo=f"{handle.url}/ordo")
    try:
        while not done.wait(0.5):
            pass
    finally:
        handle.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
    return 0
