"""Run the real Ordo service (Node + a throw-away PostgreSQL 15) on loopback: benchmarks, tests.

Copies the read-only upstream tree (../shared/upstream), gives it node_modules (cached by lock
hash), starts PostgreSQL as a non-root OS user on a free port and Ordo on another, and tears both
down. `bash scripts/ensure-ordo.sh` installs what it needs. Imports nothing from the exporter or
from tests/: the integration tests (tests/integration/ordo_upstream.py) import it from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import Proc, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / ".." / "shared" / "upstream"
CACHE = ROOT / ".cache" / "ordo-node_modules"
PG_DIRS = (Path("/usr/local/bin"), Path("/usr/lib/postgresql/15/bin"),
           *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
PG_OS_USER = os.environ.get("ORDO_PG_USER", "asyncjob-pg")  # PostgreSQL refuses to run as root
TOKEN = "real-ordo-token"
SCHEMA = "ordo"
HINT = "run `bash scripts/ensure-ordo.sh` (installs PostgreSQL, psql, Node.js and npm from Debian)"


class OrdoSetupError(RuntimeError):
    """A prerequisite of the real-Ordo tests is missing: the tests fail, never skip."""


def find_bin(name: str, dirs: tuple[Path, ...] = PG_DIRS) -> str:
    """Find a binary on PATH or in the usual PostgreSQL 15 directories."""
    found = shutil.which(name)
    if found:
        return found
    for d in dirs:
        if (d / name).is_file():
            return str(d / name)
    where = f"on PATH or in {', '.join(str(d) for d in dirs)}" if dirs else "on PATH"
    raise OrdoSetupError(f"`{name}` not found {where}; {HINT}")


def _run(args: list[str], timeout: float, what: str, **kw: Any) -> str:
    """Run a command with a deadline; raise with its output when it fails."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                              **kw)
    except subprocess.TimeoutExpired as exc:
        raise OrdoSetupError(f"{what}: timed out after {timeout}s") from exc
    if done.returncode != 0:
        raise OrdoSetupError(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return str(done.stdout)


def ensure_os_user(name: str = PG_OS_USER) -> str | None:
    """Return the non-root user PostgreSQL runs as (created when root); None when not root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        _run([find_bin("useradd", (Path("/usr/sbin"), Path("/sbin"))), "--system",
              "--no-create-home", "--shell", "/usr/sbin/nologin", name], 30, f"useradd {name}")
    return name


def _as_user(user: str | None, args: list[str]) -> list[str]:
    """Prefix a command so it runs as `user` (root only)."""
    if user is None:
        return args
    return [find_bin("runuser", (Path("/usr/sbin"), Path("/sbin"))), "-u", user, "--", *args]


def install_ordo(dest: Path) -> Path:
    """Copy the read-only upstream Ordo to `dest` and give it node_modules (cached by lock hash)."""
    src = UPSTREAM / "ordo"
    if not (src / "dist" / "app.js").is_file():
        raise OrdoSetupError(f"upstream Ordo not found at {src.resolve()}")
    app = dest / "ordo"
    shutil.copytree(src, app, ignore=shutil.ignore_patterns("node_modules"))
    lock = hashlib.sha256((src / "package-lock.json").read_bytes()).hexdigest()[:16]
    cached = CACHE / lock / "node_modules"
    if not cached.is_dir():
        npm = find_bin("npm", ())
        _run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund"], 300, "npm ci", cwd=app)
        staging = CACHE / f"{lock}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copytree(app / "node_modules", staging / "node_modules", symlinks=True)
        with suppress(OSError):  # another run may have filled the cache meanwhile
            staging.rename(CACHE / lock)
        shutil.rmtree(staging, ignore_errors=True)
    else:
        shutil.copytree(cached, app / "node_modules", symlinks=True)
    return app


@dataclass
class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1, owned by a non-root OS user."""

    base: Path
    user: str | None
    port: int = field(default_factory=free_port)
    options: tuple[str, ...] = ()  # extra `-c name=value` server settings

    @property
    def data(self) -> Path:
        """Return the cluster directory."""
        return self.base / "data"

    def start(self) -> None:
        """initdb (first time) and start; wait until it accepts connections."""
        if not self.data.exists():
            _run(_as_user(self.user, [find_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                                      "--auth=trust", "-E", "UTF8", "--no-sync"]), 120, "initdb")
        settings = ("listen_addresses=127.0.0.1", "fsync=off", *self.options)
        opts = f"-p {self.port} -k {self.base} " + " ".join(f"-c {s}" for s in settings)
        _run(_as_user(self.user, [find_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-w",
                                  "-t", "60", "-l", str(self.base / "pg.log"), "start"]), 90,
             "pg_ctl start")

    def stop(self) -> None:
        """Stop the cluster now (immediate mode); never raises."""
        with suppress(OrdoSetupError, OSError):
            _run(_as_user(self.user, [find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                      "-w", "-t", "30", "stop"]), 45, "pg_ctl stop")

    def psql(self, sql: str, db: str = SCHEMA, *, role: str = "postgres",
             timeout: float = 30) -> str:
        """Run SQL (any length: read from stdin) through psql; return its tuples-only output."""
        args = [find_bin("psql", (Path("/usr/bin"), *PG_DIRS)), "-h", "127.0.0.1", "-p",
                str(self.port), "-U", role, "-d", db, "-X", "-q", "-At",
                "-v", "ON_ERROR_STOP=1", "-f", "-"]
        return _run(args, timeout, f"psql {sql[:60]!r}", input=sql).strip()

    def rows(self, query: str) -> list[dict[str, Any]]:
        """Run a SELECT and return its rows as dicts (through json_agg)."""
        out = self.psql(f"SELECT coalesce(json_agg(q), '[]') FROM ({query}) q")
        rows: list[dict[str, Any]] = json.loads(out)
        return rows


class OrdoService:
    """The real Ordo (node dist/app.js) on a copy of the upstream tree, plus its PostgreSQL."""

    def __init__(self, base: Path, app: Path, pg: Postgres) -> None:
        self.base, self.app, self.pg = base, app, pg
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None
        self._starts = 0

    def start(self) -> None:
        """Start node with the loopback preload; Ordo runs its migrations, then /health answers."""
        self._starts += 1
        env = {"API_TOKEN": TOKEN, "PORT": str(self.port), "DB_SCHEMA": SCHEMA,
               "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg.port}/{SCHEMA}",
               "NODE_ENV": "production", "BIND_HOST": "127.0.0.1"}
        preload = str((UPSTREAM / "ordo-loopback.js").resolve())
        self.proc = Proc([find_bin("node", ()), "-r", preload, str(self.app / "dist" / "app.js")],
                         self.base / f"ordo-{self._starts}.log", env)
        proc = self.proc
        wait_for(lambda: proc.proc.poll() is None and httpx.get(
            f"{self.url}/health", timeout=2).status_code == 200, 30,
            f"Ordo /health\n{proc.output()}")
        wait_for(lambda: self.get("/executors").status_code == 200, 15, "Ordo migrations")

    def stop(self) -> None:
        """Stop node (SIGTERM, then SIGKILL); never raises."""
        if self.proc is not None:
            self.proc.stop(timeout=5)
            self.proc = None

    def restart(self) -> None:
        """Restart the node process on the same port and database."""
        self.stop()
        self.start()

    def get(self, path: str, token: str | None = TOKEN) -> httpx.Response:
        """GET a route, with the deployment token unless told otherwise."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON with the token; return the JSON answer (raises on non-2xx)."""
        resp = httpx.post(f"{self.url}{path}", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"})
        if resp.status_code >= 300:
            raise AssertionError(f"POST {path}: {resp.status_code} {resp.text}")
        return resp.json()

    def reset_database(self) -> None:
        """Drop Ordo's schema and restart it: migrations recreate it and every id restarts at 1."""
        self.stop()
        self.pg.psql(f"DROP SCHEMA {SCHEMA} CASCADE")
        self.start()


@contextmanager
def real_ordo_service(pg_options: tuple[str, ...] = ()) -> Iterator[OrdoService]:
    """Run PostgreSQL + Ordo for a test session or a benchmark; tear both down even on failure."""
    for name in ("node", "npm"):
        find_bin(name, ())
    for name in ("initdb", "pg_ctl", "postgres"):
        find_bin(name)
    user = ensure_os_user()
    base = Path(tempfile.mkdtemp(prefix="asyncjob-ordo-"))
    base.chmod(0o755)
    pg_base = base / "pg"
    pg_base.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(pg_base, entry.pw_uid, entry.pw_gid)
    pg = Postgres(pg_base, user, options=pg_options)
    service: OrdoService | None = None
    try:
        app = install_ordo(base)
        pg.start()
        pg.psql(f"CREATE DATABASE {SCHEMA}", db="postgres")
        service = OrdoService(base, app, pg)
        service.start()
        yield service
    finally:
        if service is not None:
            service.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
