"""HTTP routes of the simulated Ordo API (Express 4: static bearer token, bare JSON arrays)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html import escape
from typing import Any

from exporter.simulator.http import Request, Response, Route, Router, text_response
from exporter.simulator.ordo_render import job_detail, list_item, recipe_json
from exporter.simulator.world import World

MAX_BATCH = 100
_PARSE_INT = re.compile(r"^\s*([+-]?\d+)")
_EXECUTORS = {
    "REPROJECT_LAS": "Reproject a LAS/LAZ point cloud", "BUILD_EPT": "Build an Entwine point tile",
    "GENERATE_DEM": "Rasterize a DEM", "INGEST_IMAGES": "Ingest drone images",
    "ALIGN_PHOTOS": "Align photos", "BUILD_MOSAIC": "Build an orthomosaic",
    "GENERATE_TILES": "Cut XYZ tiles", "VALIDATE_VECTOR": "Validate a vector file",
    "LOAD_POSTGIS": "Load into PostGIS",
}


def ojson(status: int, payload: Any) -> Response:
    """Encode as Express res.json does: compact, utf-8 charset, no trailing newline."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, body, "application/json; charset=utf-8")


def oerror(status: int, message: str) -> Response:
    """Return Ordo's only error shape: {"error": message}."""
    return ojson(status, {"error": message})


def express_not_found(method: str, path: str) -> Response:
    """Return Express's default HTML 404 page."""
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>Error</title>\n</head>\n<body>\n"
            f"<pre>Cannot {method} {escape(path)}</pre>\n</body>\n</html>\n")
    resp = text_response(404, page, "text/html; charset=utf-8")
    resp.headers["Content-Security-Policy"] = "default-src 'none'"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def parse_int(raw: str) -> int | None:
    """Mimic JavaScript parseInt: leading digits count ("12abc" is 12), else NaN (None)."""
    found = _PARSE_INT.match(raw)
    return int(found.group(1)) if found else None


class OrdoApi:
    """The Ordo mount: auth middleware first, then routes, then Express's HTML 404."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.router = Router()
        r = self.router
        r.add("GET", "/recipes", self.recipes)
        r.add("GET", "/recipes/{id}", self.recipe)
        r.add("GET", "/executors", self.executors)
        r.add("GET", "/jobs", self.jobs)
        r.add("GET", "/jobs/{ids}", self.batch, pattern=r"/jobs/(?P<ids>[0-9,]+,[0-9,]+)")
        r.add("GET", "/jobs/{id}", self.job)

    def resolve(self, req: Request) -> tuple[str, Callable[[], Response]]:
        """Return the route template and a thunk: auth runs before routing, as in app.ts."""
        if req.method == "GET" and req.path == "/health":
            return "/health", lambda: ojson(200, {"status": "ok"})
        route, _ = self.router.match(req.method, req.path)
        template = route.template if route is not None else "/*"
        return template, lambda: self._answer(req, route)

    def _answer(self, req: Request, route: Route | None) -> Response:
        auth = req.headers.get("authorization")
        if auth is None or not auth.startswith("Bearer "):
            return oerror(401, "Missing or invalid Authorization header")
        if auth[7:] != self.world.opts.token:
            return oerror(401, "Invalid token")
        if route is None:
            return express_not_found(req.method, req.path)
        return route.handler(req, route.params)

    def recipes(self, _req: Request, _p: dict[str, str]) -> Response:
        """GET /recipes: bare array, id DESC, no paging."""
        ids = sorted((r.rid for r in self.world.ordo.recipes), reverse=True)
        return ojson(200, [recipe_json(self.world.ordo, rid) for rid in ids])

    def recipe(self, _req: Request, p: dict[str, str]) -> Response:
        """GET /recipes/:id."""
        rid = parse_int(p["id"])
        if rid is None:
            return oerror(400, "Invalid recipe ID")
        found = recipe_json(self.world.ordo, rid)
        return ojson(200, found) if found else oerror(404, "Recipe not found")

    def executors(self, _req: Request, _p: dict[str, str]) -> Response:
        """GET /executors: the step registry, ordered by step_type."""
        types = sorted({s.step_type for r in self.world.ordo.recipes for s in r.steps})
        return ojson(200, [
            {"type": t, "description": _EXECUTORS.get(t, "simulated executor"), "params": {},
             "accepts": [], "produces": []} for t in types])

    def jobs(self, _req: Request, _p: dict[str, str]) -> Response:
        """GET /jobs: every job, id DESC; the query string is ignored."""
        with self.world.lock:
            now = self.world.sync()
            return ojson(200, [list_item(j, now) for j in reversed(self.world.ordo.jobs)])

    def job(self, _req: Request, p: dict[str, str]) -> Response:
        """GET /jobs/:id: full status."""
        jid = parse_int(p["id"])
        if jid is None:
            return oerror(400, "Invalid job ID")
        with self.world.lock:
            now = self.world.sync()
            found = self.world.ordo.by_id.get(jid)
            if found is None:
                return oerror(404, "Job not found")
            return ojson(200, job_detail(found, now))

    def batch(self, _req: Request, p: dict[str, str]) -> Response:
        """GET /jobs/1,2,3: 2..100 ids, answered in request order."""
        raw = [part.strip() for part in p["ids"].split(",") if part.strip()]
        if len(raw) < 2:
            return oerror(400, "Batch endpoint requires at least 2 job IDs")
        if len(raw) > MAX_BATCH:
            return oerror(400, f"Cannot request more than {MAX_BATCH} job IDs at once")
        ids = []
        for part in raw:
            if not part.isdigit():
                return oerror(400, f'Invalid job ID: "{part}"')
            if int(part) <= 0:
                return oerror(400, f'Job ID must be a positive integer: "{part}"')
            ids.append(int(part))
        with self.world.lock:
            now = self.world.sync()
            out = []
            for jid in ids:
                found = self.world.ordo.by_id.get(jid)
                out.append({"id": jid, "found": True, **job_detail(found, now)} if found
                           else {"id": jid, "found": False})
            return ojson(200, out)
