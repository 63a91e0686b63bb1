"""The /_sim control plane: ground truth, request counts, clock control, faults, job injection."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from exporter.simulator.http import Request, Response, Router, json_response, text_response
from exporter.simulator.ordo import oerror
from exporter.simulator.vocdoni import auth_required, verror
from exporter.simulator.world import MOUNTS, ControlError, World

FAULT_MODES: frozenset[str] = frozenset({
    "none", "500", "502", "503", "429", "timeout", "bad_json", "html", "truncated", "401",
})
_NGINX = ("<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
          "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


@dataclass(slots=True)
class FaultRule:
    """One injected failure mode for a mount ("*" = every mount without its own rule)."""

    mode: str
    ratio: float = 1.0
    count: int | None = None  # remaining injections; None = until cleared
    retry_after: int | str | None = 2  # 429 Retry-After: seconds or an HTTP-date
    timeout_s: float = 30.0


class Faults:
    """Decide per request whether to inject a fault; thread-safe."""

    def __init__(self, seed: int) -> None:
        self._rules: dict[str, FaultRule] = {}
        self._rng = random.Random(f"{seed}:faults")
        self._lock = threading.Lock()

    def set(self, mount: str, rule: FaultRule) -> None:
        """Install (or with mode none, clear) the rule of a mount."""
        with self._lock:
            if rule.mode == "none":
                self._rules.pop(mount, None)
            else:
                self._rules[mount] = rule

    def rules(self) -> dict[str, dict[str, Any]]:
        """Return the installed rules."""
        with self._lock:
            return {m: asdict(r) for m, r in self._rules.items()}

    def pick(self, mount: str) -> FaultRule | None:
        """Return the fault to inject into this request, consuming one of its count."""
        with self._lock:
            key = mount if mount in self._rules else "*"
            rule = self._rules.get(key)
            if rule is None or self._rng.random() >= rule.ratio:
                return None
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    del self._rules[key]
            return rule


def fault_response(
    rule: FaultRule, mount: str, real: Callable[[], Response], stopping: threading.Event,
) -> Response:
    """Build the faulty answer; `timeout` waits (interruptibly) before a 504."""
    vocdoni = mount != "ordo"
    mode = rule.mode
    if mode == "500":
        return (verror(500, 50002, "server error: operation failed") if vocdoni
                else oerror(500, "Internal server error"))
    if mode in ("502", "503"):
        title = "502 Bad Gateway" if mode == "502" else "503 Service Temporarily Unavailable"
        return text_response(int(mode), _NGINX.format(title), "text/html")
    if mode == "429":
        resp = text_response(429, "Server capacity exceeded.\n")
        if rule.retry_after is not None:
            resp.headers["Retry-After"] = str(rule.retry_after)
        return resp
    if mode == "timeout":
        stopping.wait(rule.timeout_s)
        return text_response(504, _NGINX.format("504 Gateway Time-out"), "text/html")
    if mode == "bad_json":
        return text_response(200, '{"jobs": [{"jobId": "0f", "type": ', "application/json")
    if mode == "html":
        page = "<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>\n"
        return text_response(200, page, "text/html; charset=utf-8")
    if mode == "401":
        return auth_required() if vocdoni else oerror(401, "Invalid token")
    resp = real()  # truncated: the real answer, cut mid-body
    resp.truncate = True
    return resp


class RequestLog:
    """Count API requests by route template; thread-safe."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, template: str) -> None:
        """Count one request."""
        with self._lock:
            self._counts[template] += 1

    def snapshot(self) -> dict[str, Any]:
        """Return {"total": n, "by_route": {...}}."""
        with self._lock:
            return {"total": sum(self._counts.values()), "by_route": dict(self._counts)}

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()


class Control:
    """Handlers of /_sim/*; no auth, JSON in and out."""

    def __init__(self, world: World, faults: Faults, log: RequestLog) -> None:
        self.world = world
        self.faults = faults
        self.log = log
        self.router = Router()
        r = self.router
        r.add("GET", "/truth", lambda _q, _p: json_response(200, self.world.truth()))
        r.add("GET", "/requests", lambda _q, _p: json_response(200, self.log.snapshot()))
        r.add("POST", "/requests/reset", self._reset)
        r.add("GET", "/clock", self._clock)
        r.add("POST", "/pause", self._pause)
        r.add("POST", "/resume", self._resume)
        r.add("POST", "/advance", self._advance)
        r.add("GET", "/faults", lambda _q, _p: json_response(200, self.faults.rules()))
        r.add("POST", "/faults", self._set_fault)
        r.add("POST", "/fail_job", self._fail_job)
        r.add("POST", "/jobs", self._add_jobs)
        r.add("POST", "/delete_org", self._delete_org)

    def handle(self, req: Request) -> Response:
        """Dispatch a control request; bad input gives 400 {"error": ...}."""
        route, _ = self.router.match(req.method, req.path)
        if route is None:
            return json_response(404, {"error": f"no control route {req.method} {req.path}"})
        try:
            return route.handler(req, route.params)
        except (ControlError, ValueError, TypeError, KeyError) as exc:
            return json_response(400, {"error": str(exc)})

    def _reset(self, _req: Request, _p: dict[str, str]) -> Response:
        self.log.reset()
        return json_response(200, {"ok": True})

    def _clock(self, _req: Request, _p: dict[str, str]) -> Response:
        with self.world.lock:
            clock = self.world.clock
            return json_response(200, {"now": clock.now(), "paused": clock.paused})

    def _pause(self, req: Request, p: dict[str, str]) -> Response:
        with self.world.lock:
            self.world.clock.pause()
            self.world.sync()
        return self._clock(req, p)

    def _resume(self, req: Request, p: dict[str, str]) -> Response:
        with self.world.lock:
            self.world.clock.resume()
        return self._clock(req, p)

    def _advance(self, req: Request, p: dict[str, str]) -> Response:
        seconds = float(_body(req).get("seconds", 0))
        with self.world.lock:
            self.world.clock.advance(seconds)
            self.world.sync()
        return self._clock(req, p)

    def _set_fault(self, req: Request, _p: dict[str, str]) -> Response:
        body = _body(req)
        mount, mode = str(body.get("mount", "*")), str(body.get("mode", "none"))
        if mount != "*" and mount not in MOUNTS:
            raise ControlError(f"unknown mount {mount!r}")
        if mode not in FAULT_MODES:
            raise ControlError(f"unknown fault mode {mode!r}")
        count = body.get("count")
        rule = FaultRule(mode, float(body.get("ratio", 1.0)),
                         None if count is None else int(count),
                         body.get("retry_after", 2), float(body.get("timeout_s", 30.0)))
        self.faults.set(mount, rule)
        return json_response(200, self.faults.rules())

    def _fail_job(self, req: Request, _p: dict[str, str]) -> Response:
        body = _body(req)
        ids = self.world.add_jobs(str(body.get("mount", "vocdoni")), body.get("org"),
                                  body.get("job_type"), 1, fail=True)
        return json_response(200, {"job_id": ids[0]})

    def _add_jobs(self, req: Request, _p: dict[str, str]) -> Response:
        body = _body(req)
        ids = self.world.add_jobs(str(body.get("mount", "vocdoni")), body.get("org"),
                                  body.get("job_type"), int(body.get("count", 1)))
        return json_response(200, {"job_ids": ids})

    def _delete_org(self, req: Request, _p: dict[str, str]) -> Response:
        body = _body(req)
        gone = self.world.delete_org(str(body.get("mount", "vocdoni")), body.get("org"))
        return json_response(200, {"deleted": gone})


def _body(req: Request) -> dict[str, Any]:
    data = req.json_body() if req.body.strip() else {}
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data
