"""HTTP endpoints: /metrics from the render cache, landing page, health, readiness, reload.

A stdlib threading server: scrapes only copy cached bytes, so a thread per connection is cheap,
and a slow or idle client holds one daemon thread until its socket timeout, never the others.
"""

from __future__ import annotations

import html
import http.client
import io
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import structlog

from exporter.payload import Payload
from exporter.render import MetricsCache
from exporter.webconfig import REALM, WebConfig, WebConfigError, WebConfigWatcher

log = structlog.get_logger()

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
PLAIN_TYPE = "text/plain; charset=utf-8"
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
IDLE_TIMEOUT = 10.0

ReadyFn = Callable[[], tuple[bool, dict[str, Any]]]
ReloadFn = Callable[[], tuple[bool, str]]


@dataclass(frozen=True, slots=True)
class Response:
    """What a route answers; headers beyond Content-Type/Length go in `headers`."""

    status: int
    content_type: str
    body: bytes | Payload  # a Payload: a rendered exposition, written in chunks
    headers: Mapping[str, str] = field(default_factory=dict)


def _json(status: int, payload: Mapping[str, Any]) -> Response:
    """Return a JSON response."""
    return Response(status, JSON_TYPE, json.dumps(payload).encode() + b"\n")


def _plain(status: int, text: str, **headers: str) -> Response:
    """Return a short text/plain response."""
    return Response(status, PLAIN_TYPE, text.encode() + b"\n", headers)


def _accepts(header: str | None, wanted: str) -> bool:
    """Tell whether an Accept or Accept-Encoding header lists `wanted` with a non-zero q."""
    for part in (header or "").split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if name.lower() != wanted:
            continue
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            return True
    return False


def parse_listen(listen: str) -> tuple[str, int]:
    """Split "host:port", ":port" (all interfaces) or "[v6]:port"; ValueError when malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"invalid listen address {listen!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"invalid listen address {listen!r}: put IPv6 hosts in brackets")
    return host, int(port)


class _HeaderBudget:
    """File wrapper that caps the header section's size, so huge headers cost nothing."""

    def __init__(self, raw: io.BufferedIOBase, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def readline(self, size: int = -1) -> bytes:
        """Read one header line, raising LineTooLong (-> 431) once the budget is spent."""
        line = self._raw.readline(size)
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong("header section")
        return line


class _HTTPServer(ThreadingHTTPServer):
    """Threading server with a bounded backlog, dual-stack bind and per-connection TLS."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, addr: tuple[Any, ...], family: int, app: ExporterServer) -> None:
        self.address_family = family
        self.app = app
        super().__init__(addr, _Handler)

    def server_bind(self) -> None:
        """Accept IPv4 too on an IPv6 wildcard socket, like Go's ":port"."""
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Do the TLS handshake in the connection's own thread, never in the accept loop."""
        ctx = self.app.tls_context()
        if ctx is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.app.idle_timeout)
        try:
            conn = ctx.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as exc:
            log.debug("tls_handshake_failed", client=client_address[0], error=type(exc).__name__)
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log broken connections at debug level instead of printing tracebacks."""
        log.debug("http_connection_error", client=client_address[0])


class _Handler(BaseHTTPRequestHandler):
    """Routes one connection's requests to the ExporterServer."""

    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY a keep-alive scraper (Prometheus)
    # waits ~40 ms per scrape for the delayed ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer
    server_version = "asyncjob-exporter"

    def setup(self) -> None:
        """Apply the idle timeout before any read."""
        super().setup()
        self.connection.settimeout(self.server.app.idle_timeout)

    def parse_request(self) -> bool:
        """Parse headers with a size budget; oversize headers get 431 from the base class."""
        raw = self.rfile
        self.rfile = _HeaderBudget(raw, MAX_HEADER_BYTES)  # type: ignore[assignment]
        try:
            return super().parse_request()
        finally:
            self.rfile = raw

    def do_GET(self) -> None:
        """Serve GET."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Serve HEAD like GET without a body."""
        self._dispatch()

    def do_POST(self) -> None:
        """Serve POST."""
        self._dispatch()

    def _dispatch(self) -> None:
        """Drain the body, answer, and log the request at debug level."""
        clock = self.server.app.monotonic
        started = clock()
        self._drain_body()
        path = urlsplit(self.path).path
        resp, extra = self.server.app.respond(self.command, path, self.headers)
        self._send(resp, extra)
        log.debug("http_request", method=self.command, path=path, status=resp.status,
                  duration=round(clock() - started, 6))

    def _drain_body(self) -> None:
        """Read a small request body so keep-alive stays in sync; close on a large one."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _send(self, resp: Response, extra: Mapping[str, str]) -> None:
        """Write status, headers and (except for HEAD) the body."""
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in {**extra, **resp.headers}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            body = resp.body
            for chunk in (body,) if isinstance(body, bytes) else body.chunks():
                self.wfile.write(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's stderr access log; _dispatch logs through structlog."""

    def log_error(self, format: str, *args: Any) -> None:
        """Send stdlib protocol errors (timeouts, bad requests) to debug logs."""
        log.debug("http_protocol_error", detail=format % args)

# Prometheus' wording, plus how to turn it on
LIFECYCLE_DISABLED = (
    "Lifecycle API is not enabled: start with --web.enable-lifecycle"
    " (ASYNCJOB_WEB_ENABLE_LIFECYCLE=true) to allow POST /-/reload; SIGHUP always reloads."
)


class ExporterServer:
    """The exporter's HTTP server; routes know only the render cache and two callbacks."""

    def __init__(
        self,
        listen: str,
        cache: MetricsCache,
        *,
        ready: ReadyFn,
        reload: ReloadFn | None = None,
        web_config_file: str | None = None,
        version: str,
        idle_timeout: float = IDLE_TIMEOUT,
        lifecycle: bool = False,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.listen = listen
        self.monotonic = monotonic  # request durations in the access log
        self._lifecycle = lifecycle  # POST /-/reload only with --web.enable-lifecycle
        self.idle_timeout = idle_timeout
        self._host, self._port = parse_listen(listen)
        self._cache = cache
        self._ready = ready
        self._reload = reload
        self._version = version
        # loaded now so an invalid file fails start-up (WebConfigError), not the first scrape
        self._web = WebConfigWatcher(web_config_file) if web_config_file else None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: dict[str, tuple[tuple[str, ...], Callable[[Any], Response]]] = {
            "/metrics": (("GET", "HEAD"), self._metrics),
            "/": (("GET", "HEAD"), self._landing),
            "/healthz": (("GET", "HEAD"), lambda _: _plain(200, "ok")),
            "/readyz": (("GET", "HEAD"), self._readyz),
            "/-/reload": (("POST",), self._do_reload),
        }

    @property
    def port(self) -> int:
        """Return the bound port (useful with port 0)."""
        if self._httpd is None:
            return self._port
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Bind and serve in a daemon thread; OSError with the address when it is taken."""
        family, addr = self._address()
        try:
            self._httpd = _HTTPServer(addr, family, self)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {self.listen}: {exc.strerror}") from exc
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name="http-server", daemon=True,
        )
        self._thread.start()
        log.info("http_listening", address=self.listen, port=self.port,
                 tls=self._web is not None and self._web.tls_enabled)

    def stop(self) -> None:
        """Stop accepting, close the socket and wait for the serve loop."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        self._httpd = None

    def tls_context(self) -> ssl.SSLContext | None:
        """Return the TLS context for a new connection, None for plain HTTP."""
        return None if self._web is None else self._web.ssl_context()

    def respond(self, method: str, path: str, headers: Any) -> tuple[Response, dict[str, str]]:
        """Answer one request: auth, routing, method check; returns (response, extra headers)."""
        config = WebConfig()
        if self._web is not None:
            try:
                config = self._web.current()
            except WebConfigError:
                return _plain(500, "Internal Server Error: invalid web config"), {}
            if not self._web.authenticate(config, headers.get("Authorization")):
                auth = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
                return _plain(401, "Unauthorized", **auth), dict(config.headers)
        extra = dict(config.headers)
        route = self._routes.get(path)
        if route is None:
            return _plain(404, "Not Found"), extra
        methods, handler = route
        if method not in methods:
            return _plain(405, "Method Not Allowed", Allow=", ".join(methods)), extra
        return handler(headers), extra

    def _address(self) -> tuple[int, tuple[Any, ...]]:
        """Resolve the listen host; an empty host means every interface, dual-stack if possible."""
        if self._host == "":
            if socket.has_dualstack_ipv6():
                return socket.AF_INET6, ("::", self._port)
            return socket.AF_INET, ("0.0.0.0", self._port)
        infos = socket.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        return infos[0][0], infos[0][4]

    def _metrics(self, headers: Any) -> Response:
        """Serve cached exposition bytes in the negotiated format and encoding."""
        openmetrics = _accepts(headers.get("Accept"), "application/openmetrics-text")
        gzipped = _accepts(headers.get("Accept-Encoding"), "gzip")
        try:
            body = self._cache.serve(openmetrics, gzipped)
        except Exception as exc:  # only the very first render runs here
            log.error("metrics_render_failed", error=type(exc).__name__)
            return _plain(500, "Internal Server Error: cannot render metrics")
        extra = {"Vary": "Accept, Accept-Encoding"}
        if gzipped:
            extra["Content-Encoding"] = "gzip"
        return Response(200, OPENMETRICS_TYPE if openmetrics else TEXT_TYPE, body, extra)

    def _landing(self, headers: Any) -> Response:
        """Serve a small HTML page linking the endpoints; no configuration is shown."""
        version = html.escape(self._version)
        links = "".join(
            f'<li><a href="{p}">{p}</a></li>' for p in ("/metrics", "/healthz", "/readyz")
        )
        page = (
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>asyncjob-exporter</title>"
            f"</head><body><h1>asyncjob-exporter</h1><p>Version {version}</p>"
            f"<ul>{links}</ul></body></html>\n"
        )
        return Response(200, HTML_TYPE, page.encode())

    def _readyz(self, headers: Any) -> Response:
        """Answer 200 once every discovery succeeded and every org polled, else 503."""
        ok, details = self._ready()
        return _json(200 if ok else 503, {"ready": ok, **details})

    def _do_reload(self, headers: Any) -> Response:
        """Run the reload callback and report its outcome."""
        if self._reload is None:
            return _plain(404, "Not Found")
        if not self._lifecycle:
            return _plain(403, LIFECYCLE_DISABLED)
        try:
            ok, message = self._reload()
        except Exception as exc:  # a crashing reload must not kill the connection thread
            log.error("reload_crashed", error=type(exc).__name__)
            return _json(500, {"status": "error", "error": "internal error"})
        if ok:
            return _json(200, {"status": "ok"})
        return _json(500, {"status": "error", "error": message})
