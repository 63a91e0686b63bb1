"""Loopback fakes of the Vocdoni v2 and Ordo job APIs that misbehave when a test says so."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, Any]
Handler = Callable[[str, dict[str, str]], Answer]


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 request handler that answers JSON (None: an empty body, as for a 304)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer `body` as JSON with `headers`; the server adds its Date header."""
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve a request handler class on a free 127.0.0.1 port and yield the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve(handler: Handler) -> Iterator[str]:
    """Serve `handler(path, query) -> (status, json body)` on 127.0.0.1 and yield the base URL."""

    class _Req(JsonHandler):
        protocol_version = "HTTP/1.0"  # as before: one request per connection

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            status, body = handler(parts.path, query)
            self.send_json(status, body)

    with serve_handler(_Req) as url:
        yield url


def iso(t: float | None) -> str | None:
    """Format unix seconds as Ordo does (ISO 8601 UTC with milliseconds)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class VocdoniV2:
    """GET /jobs?orgAddress=&page=&limit= and GET /jobs/{id}; `mode` per org picks a lie."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, list[dict[str, Any]]] = {}  # address -> jobs, oldest first
        self.mode: dict[str, str] = {}  # address -> normal|repeat|short|empty|lastpage
        self.hits: Counter[str] = Counter()  # address -> list requests served

    def add(self, address: str, n: int, status: str = "completed", job_type: str = "a",
            prefix: str = "j") -> list[str]:
        """Append n jobs to an org's list; return their ids."""
        with self.lock:
            jobs = self.jobs.setdefault(address, [])
            start = len(jobs)
            new = [{"jobId": f"{prefix}{start + i:05d}", "type": job_type, "status": status}
                   for i in range(n)]
            jobs.extend(new)
            return [j["jobId"] for j in new]

    def __call__(self, path: str, query: dict[str, str]) -> Answer:
        with self.lock:
            if path.startswith("/jobs/"):
                return self._detail(path.removeprefix("/jobs/"))
            if path != "/jobs":
                return 404, {"error": "no route"}
            address = query.get("orgAddress", "")
            self.hits[address] += 1
            wanted = query.get("type")
            jobs = [j for j in reversed(self.jobs.get(address, []))
                    if wanted is None or j["type"] == wanted]
            page, limit = int(query.get("page", "1")), int(query.get("limit", "100"))
            return 200, self._page(jobs, page, limit, self.mode.get(address, "normal"))

    def _detail(self, job_id: str) -> Answer:
        for jobs in self.jobs.values():
            for job in jobs:
                if job["jobId"] == job_id:
                    return 200, job
        return 404, {"error": "job not found", "code": 40026}

    @staticmethod
    def _page(jobs: list[dict[str, Any]], page: int, limit: int, mode: str) -> dict[str, Any]:
        """Serve one page of `jobs` (newest first), lying as `mode` says."""
        total = len(jobs)
        if mode == "empty":
            jobs, total = [], 0
        last = max(1, -(-total // limit))
        items = jobs[(page - 1) * limit: page * limit]
        if mode == "repeat" and page == 2:
            items = [jobs[limit - 1], *items[:-1]]  # page 1's last again; one job never shown
        if mode == "short" and page == last:
            items = items[:-1]
        if mode == "lastpage":
            last = 1_000_000_000
        return {"pagination": {"totalItems": total, "currentPage": page, "lastPage": last},
                "jobs": items}


class Ordo:
    """GET /jobs, /recipes, /jobs/{id} and the batch route, over jobs a test edits directly."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[int, dict[str, Any]] = {}  # id -> job (with "steps": [...])
        self.recipes: dict[int, str] = {1: "lidar"}
        self.list_empty = False
        self.hidden: set[int] = set()  # ids the list leaves out while their detail still answers

    def job(self, job_id: int, status: str, created: float, *, recipe: int = 1,
            started: float | None = None, finished: float | None = None,
            steps: list[dict[str, Any]] | None = None) -> None:
        """Create or replace a job."""
        with self.lock:
            self.jobs[job_id] = {"id": job_id, "recipe_id": recipe, "status": status,
                                 "created_at": created, "started_at": started,
                                 "finished_at": finished, "steps": steps or []}

    def reset(self) -> None:
        """Drop every job and recipe, as a database reset does (ids restart at 1)."""
        with self.lock:
            self.jobs.clear()
            self.recipes.clear()

    def __call__(self, path: str, query: dict[str, str]) -> Answer:
        with self.lock:
            if path == "/jobs":
                return 200, [] if self.list_empty else [
                    self._item(j) for j in sorted(self.jobs.values(), key=lambda j: -j["id"])
                    if j["id"] not in self.hidden]
            if path == "/recipes":
                return 200, [{"id": rid, "name": name, "version": "1"}
                             for rid, name in self.recipes.items()]
            ids = path.removeprefix("/jobs/")
            if "," in ids:
                return 200, [self._batch_item(int(i)) for i in ids.split(",")]
            job = self.jobs.get(int(ids))
            return (200, self._detail(job)) if job else (404, {"error": "Job not found"})

    def _item(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"id": job["id"], "recipe_id": job["recipe_id"], "status": job["status"],
                "created_at": iso(job["created_at"]), "started_at": iso(job["started_at"]),
                "finished_at": iso(job["finished_at"]), "error": None}

    def _detail(self, job: dict[str, Any]) -> dict[str, Any]:
        start, end = job["started_at"], job["finished_at"]
        steps = [{"job_id": job["id"], "step_id": s["step_id"], "step_type": s["step_type"],
                  "status": s["status"], "attempt": s["attempt"],
                  "started_at": iso(s.get("started_at")), "finished_at": iso(s.get("finished_at")),
                  "claimed_at": None, "error": None} for s in job["steps"]]
        duration = int((end - start) * 1000) if start is not None and end is not None else None
        return {"job": self._item(job), "progress": None, "duration_ms": duration,
                "timeline": [], "steps": steps, "artifacts": [], "outputs": []}

    def _batch_item(self, job_id: int) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            return {"id": job_id, "found": False}
        return {"id": job_id, "found": True, **self._detail(job)}
