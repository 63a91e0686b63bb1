"""HTTP routes of the simulated Vocdoni SaaS API, new (main) and old (v2.9.0) generations."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from exporter.simulator.http import Request, Response, Router, json_response, text_response
from exporter.simulator.util import derived_hex, go_time, is_hex, make_jwt, norm_address, read_jwt
from exporter.simulator.vocdoni_render import (
    render_members_job,
    render_new,
    render_v1_item,
    render_v1_status,
)
from exporter.simulator.vocdoni_world import IMPORT_TYPES, VocdoniWorld, VOrg
from exporter.simulator.world import World

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_NOT_ADMIN = "authentication required: user is not admin or manager of organization"


def verror(status: int, code: int, message: str) -> Response:
    """Write an errors.Error through Go's http.Error: JSON body, text/plain header, newline."""
    resp = json_response(status, {"error": message, "code": code},
                         content_type="text/plain; charset=utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def chi_not_found() -> Response:
    """Return chi's plain-text 404 for a route that is not registered."""
    resp = text_response(404, "404 page not found\n")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def auth_required() -> Response:
    """Return 401/40001, what any missing, bad or expired JWT gets."""
    return verror(401, 40001, "authentication required")


class VocdoniApi:
    """One Vocdoni mount: routes, JWT auth and handlers over a VocdoniWorld."""

    def __init__(self, world: World, mount: str) -> None:
        self.world = world
        self.mount = mount
        self.vw: VocdoniWorld = world.vocdoni_mount(mount)
        self.old = mount == "vocdoni-v1"
        self.secret = derived_hex(str(world.opts.seed), mount, "jwt").encode()
        self.router = Router()
        r = self.router
        r.add("POST", "/auth/login", self.login)
        r.add("POST", "/auth/refresh", self.refresh)
        r.add("GET", "/auth/addresses", self.addresses)
        r.add("GET", "/ping", lambda _req, _p: text_response(200, "."))
        if self.old:
            r.add("GET", "/organizations/{address}/jobs", self.list_old)
            r.add("GET", "/organizations/{address}/members/job/{jobId}", self.members_job)
            r.add("GET", "/jobs/{jobId}", self.job_old)
        else:
            r.add("GET", "/jobs", self.list_new)
            r.add("GET", "/jobs/{jobId}", self.job_new)

    def resolve(self, req: Request) -> tuple[str, Callable[[], Response]]:
        """Return the route template and a thunk answering the request (chi 404/405 if none)."""
        route, other = self.router.match(req.method, req.path)
        if route is not None:
            return route.template, lambda: route.handler(req, route.params)
        if other:
            return "/*", lambda: Response(405, b"", "text/plain; charset=utf-8")
        return "/*", chi_not_found

    # --- auth -------------------------------------------------------------------------------

    def _issue(self, now: float) -> dict[str, Any]:
        expires = now + self.world.opts.token_ttl_s
        # v2.9.0 wrote exp in nanoseconds, so its tokens never expire (fixed in 64a3307).
        exp = int(expires * 1e9) if self.old else int(expires)
        token = make_jwt(self.secret, {"userId": self.world.opts.email, "exp": exp})
        return {"token": token, "expirity": go_time(expires)}

    def authed(self, req: Request, now: float) -> bool:
        """Tell whether the request carries a valid, unexpired JWT of the sim user."""
        token = req.bearer()
        if token and token == self.world.opts.token:
            return True  # a pre-issued long-lived token (config `auth.token`) of the sim user
        claims = read_jwt(self.secret, token) if token else None
        if not claims or claims.get("userId") != self.world.opts.email:
            return False
        exp = claims.get("exp")
        return isinstance(exp, int) and exp > now

    def login(self, req: Request, _p: dict[str, str]) -> Response:
        """POST /auth/login {email,password} -> {token, expirity}."""
        try:
            body = req.json_body()
        except ValueError:
            return verror(400, 40004, "malformed JSON body")
        opts = self.world.opts
        if not isinstance(body, dict) or body.get("email") != opts.email \
                or body.get("password") != opts.password:
            return verror(401, 40102, "invalid login credentials")
        with self.world.lock:
            return json_response(200, self._issue(self.world.clock.now()))

    def refresh(self, req: Request, _p: dict[str, str]) -> Response:
        """POST /auth/refresh: a still-valid JWT buys a new one."""
        with self.world.lock:
            now = self.world.clock.now()
            if not self.authed(req, now):
                return auth_required()
            return json_response(200, self._issue(now))

    def addresses(self, req: Request, _p: dict[str, str]) -> Response:
        """GET /auth/addresses: the orgs the user belongs to."""
        with self.world.lock:
            if not self.authed(req, self.world.clock.now()):
                return auth_required()
            return json_response(200, {"addresses": list(self.vw.orgs)})

    # --- lists ------------------------------------------------------------------------------

    def _paginate(self, req: Request, org: VOrg, jtype: str | None) -> tuple[int, int] | Response:
        limit = _int_or(req.arg("limit"), DEFAULT_LIMIT)
        limit = DEFAULT_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)
        raw = req.arg("page")
        page = _int_or(raw, -1) if raw else 1
        last = max(1, math.ceil(self.vw.count(org, jtype) / limit))
        if page < 1 or page > last:
            return verror(400, 40010, "invalid URL parameter: page not found")
        return page, limit

    def _list(self, req: Request, org: VOrg, jtype: str | None, now: float) -> Response:
        paged = self._paginate(req, org, jtype)
        if isinstance(paged, Response):
            return paged
        page, limit = paged
        total = self.vw.count(org, jtype)
        last = max(1, math.ceil(total / limit))
        jobs = self.vw.page(org, jtype, page, limit)
        items = ([render_v1_item(j, now) for j in jobs] if self.old
                 else [render_new(j, now, with_errors=True) for j in jobs])
        pagination = {"totalItems": total, "previousPage": page - 1 if page > 1 else None,
                      "currentPage": page, "nextPage": page + 1 if page < last else None,
                      "lastPage": last}
        return json_response(200, {"pagination": pagination, "jobs": items})

    def list_new(self, req: Request, _p: dict[str, str]) -> Response:
        """GET /jobs?orgAddress=&page=&limit=&type= (manager/admin JWT)."""
        with self.world.lock:
            now = self.world.sync()
            if not self.authed(req, now):
                return auth_required()
            address = norm_address(req.arg("orgAddress") or "")
            if address is None:
                return verror(400, 40010, "invalid URL parameter: invalid orgAddress")
            org = self.vw.orgs.get(address)
            if org is None:
                return verror(401, 40001, _NOT_ADMIN)
            jtype = req.arg("type") or None
            if jtype is not None and jtype not in self.vw.valid_types:
                return verror(400, 40010, f"invalid URL parameter: invalid job type: {jtype}")
            return self._list(req, org, jtype, now)

    def list_old(self, req: Request, p: dict[str, str]) -> Response:
        """GET /organizations/{address}/jobs (v2.9.0; type only org_members/census_participants)."""
        with self.world.lock:
            now = self.world.sync()
            if not self.authed(req, now):
                return auth_required()
            address = norm_address(p["address"])
            if address is None:
                return verror(400, 40010, "invalid URL parameter: invalid organization address")
            org = self.vw.orgs.get(address)
            if org is None:
                return verror(400, 40011, "organization address is required")
            jtype = req.arg("type") or None
            if jtype is not None and jtype not in IMPORT_TYPES:
                return verror(400, 40010, "invalid URL parameter: invalid job type")
            return self._list(req, org, jtype, now)

    # --- single jobs ------------------------------------------------------------------------

    def _lookup(self, job_id: str) -> Any:
        if not is_hex(job_id):
            return verror(400, 40010, "invalid URL parameter: invalid job ID")
        job = self.vw.jobs.get(job_id.lower())
        return job if job is not None else verror(404, 40026, "job not found")

    def job_new(self, req: Request, p: dict[str, str]) -> Response:
        """GET /jobs/{jobId}: public; import errors only for a manager's JWT."""
        with self.world.lock:
            now = self.world.sync()
            job = self._lookup(p["jobId"])
            if isinstance(job, Response):
                return job
            return json_response(200, render_new(job, now, with_errors=self.authed(req, now)))

    def job_old(self, req: Request, p: dict[str, str]) -> Response:
        """GET /jobs/{jobId} of v2.9.0: {jobId,type,status,result?,error?}."""
        with self.world.lock:
            now = self.world.sync()
            job = self._lookup(p["jobId"])
            if isinstance(job, Response):
                return job
            return json_response(200, render_v1_status(job, now))

    def members_job(self, req: Request, p: dict[str, str]) -> Response:
        """GET /organizations/{address}/members/job/{jobId}: any auth, org not checked."""
        with self.world.lock:
            now = self.world.sync()
            if not self.authed(req, now):
                return auth_required()
            job = self._lookup(p["jobId"])
            if isinstance(job, Response):
                return job
            return json_response(200, render_members_job(job, now))


def _int_or(raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return default
