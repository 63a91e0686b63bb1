"""Run the real Ordo service (Node + a throw-away PostgreSQL 15) on loopback, and play its workers.

Ordo itself never moves a job along: n8n workers write job and step rows straight into
PostgreSQL. `Worker` does the same with SQL through the `psql` client, and keeps the history of
step attempts that PostgreSQL overwrites (Ordo has no attempt log), so tests can compare the
exporter with the truth. Everything binds 127.0.0.1 on free ports and is bounded in time.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import Proc, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
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

    @property
    def data(self) -> Path:
        """Return the cluster directory."""
        return self.base / "data"

    def start(self) -> None:
        """initdb (first time) and start; wait until it accepts connections."""
        if not self.data.exists():
            _run(_as_user(self.user, [find_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                                      "--auth=trust", "-E", "UTF8", "--no-sync"]), 120, "initdb")
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(_as_user(self.user, [find_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-w",
                                  "-t", "60", "-l", str(self.base / "pg.log"), "start"]), 90,
             "pg_ctl start")

    def stop(self) -> None:
        """Stop the cluster now (immediate mode); never raises."""
        with suppress(OrdoSetupError, OSError):
            _run(_as_user(self.user, [find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                      "-w", "-t", "30", "stop"]), 45, "pg_ctl stop")

    def psql(self, sql: str, db: str = SCHEMA) -> str:
        """Run SQL (any length: read from stdin) through psql; return its tuples-only output."""
        args = [find_bin("psql", (Path("/usr/bin"), *PG_DIRS)), "-h", "127.0.0.1", "-p",
                str(self.port), "-U", "postgres", "-d", db, "-X", "-q", "-At",
                "-v", "ON_ERROR_STOP=1", "-f", "-"]
        return _run(args, 30, f"psql {sql[:60]!r}", input=sql).strip()

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
def real_ordo_service() -> Iterator[OrdoService]:
    """Run PostgreSQL + Ordo for a test session; tear both down even on failure."""
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
    pg = Postgres(pg_base, user)
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


# --- playing Ordo's n8n workers -------------------------------------------------------------

EXECUTORS = ("FETCH", "PROCESS", "PUBLISH")


def register_executors(pg: Postgres) -> None:
    """Register the step types the test recipes use (n8n's registry is a table too)."""
    for step_type in EXECUTORS:
        pg.psql(
            f"INSERT INTO {SCHEMA}.step_executor (step_type, n8n_workflow, accepts, produces, "
            f"description) VALUES ('{step_type}', 'wf-{step_type.lower()}', "
            """'{"src": "any"}', '{"out": "any"}', 'test executor') ON CONFLICT DO NOTHING""")


def recipe_definition(steps: list[tuple[str, str]]) -> dict[str, Any]:
    """Return a linear recipe: each step reads the previous step's `out` (the first: job:src)."""
    recipe = []
    prev = "job:src"
    for step_id, step_type in steps:
        recipe.append({"id": step_id, "type": step_type, "inputs": {"src": prev},
                       "outputs": {"out": f"step:{step_id}.out"}})
        prev = f"step:{step_id}.out"
    return {"recipe": recipe}


@dataclass(frozen=True)
class Attempt:
    """One finished step attempt as a worker ended it: the truth Ordo keeps no history of."""

    job_id: int
    job_type: str
    step_id: str
    step_type: str
    attempt: int
    status: str
    seconds: float | None  # None: never started (skipped), so no run time
    seen: bool = True  # False: overwritten by the retry before anyone could read it


@dataclass
class Worker:
    """Play n8n: move jobs and steps along with SQL; remember every ended attempt."""

    ordo: OrdoService
    attempts: list[Attempt] = field(default_factory=list)
    retries: list[tuple[str, str]] = field(default_factory=list)  # (job type, step type) claims

    def recipe(self, name: str, steps: list[tuple[str, str]]) -> int:
        """Create a recipe through the API; return its id."""
        register_executors(self.ordo.pg)
        body = {"name": name, "version": "1.0.0", "definition": recipe_definition(steps)}
        return int(self.ordo.post("/recipes", body)["id"])

    def job(self, recipe_id: int, age_s: float = 120.0) -> int:
        """Create a job through the API, created `age_s` ago so every timestamp is in the past."""
        body = {"recipe_id": recipe_id,
                "inputs": {"job:src": {"type": "any", "uri": "s3://b/in", "hash": "h0"}}}
        job_id = int(self.ordo.post("/jobs", body)["id"])
        self.sql(f"UPDATE {SCHEMA}.job SET created_at = now() - interval '{age_s} seconds' "
                 f"WHERE id = {job_id}")
        return job_id

    def sql(self, statement: str) -> str:
        """Run one SQL statement on Ordo's database."""
        return self.ordo.pg.psql(statement)

    def start_job(self, job_id: int, wait_s: float) -> None:
        """Claim the job: running, started `wait_s` after it was created."""
        self.sql(f"UPDATE {SCHEMA}.job SET status = 'running', started_at = created_at + "
                 f"interval '{wait_s} seconds' WHERE id = {job_id}")

    def run_step(self, job_id: int, step_id: str, attempt: int, at_s: float) -> None:
        """Claim a step's attempt `attempt`, started `at_s` after the job started."""
        self.sql(
            f"UPDATE {SCHEMA}.job_step s SET status = 'running', attempt = {attempt}, "
            "claimed_by = 'n8n-worker-1', claimed_at = j.started_at + "
            f"interval '{at_s} seconds', started_at = j.started_at + interval '{at_s} seconds', "
            f"finished_at = NULL, error = NULL FROM {SCHEMA}.job j WHERE j.id = s.job_id "
            f"AND s.job_id = {job_id} AND s.step_id = '{step_id}'")
        if attempt > 1:
            row = self._names(job_id, step_id)
            self.retries.append((row["name"], row["step_type"]))
            ended = any(a.job_id == job_id and a.step_id == step_id and a.attempt == attempt - 1
                        for a in self.attempts)
            if not ended:  # a lost lease: the earlier attempt ended unsuccessfully, untimed
                self.attempts.append(Attempt(job_id, row["name"], step_id, row["step_type"],
                                             attempt - 1, "failed", None, seen=False))

    def _names(self, job_id: int, step_id: str) -> dict[str, Any]:
        """Return the recipe name, step type and attempt of one step row."""
        return self.ordo.pg.rows(
            f"SELECT r.name, s.step_type, s.attempt FROM {SCHEMA}.job_step s JOIN {SCHEMA}.job j "
            f"ON j.id = s.job_id JOIN {SCHEMA}.recipe r ON r.id = j.recipe_id "
            f"WHERE s.job_id = {job_id} AND s.step_id = '{step_id}'")[0]

    def detail(self, job_id: int, step_id: str, percent: float) -> None:
        """Append a progress row, as n8n does while a step runs."""
        self.sql(f"INSERT INTO {SCHEMA}.job_step_detailing (job_id, step_id, log, progress) "
                 f"VALUES ({job_id}, '{step_id}', 'working', "
                 f"""'{{"progress": {percent}}}')""")

    def end_step(self, job_id: int, step_id: str, status: str, seconds: float,
                 seen: bool = True) -> None:
        """End the running attempt of a step; `seen=False` when a retry overwrites it at once."""
        error = "'boom'" if status == "failed" else "NULL"
        self.sql(f"UPDATE {SCHEMA}.job_step SET status = '{status}', finished_at = started_at + "
                 f"interval '{seconds} seconds', error = {error} WHERE job_id = {job_id} "
                 f"AND step_id = '{step_id}'")
        row = self._names(job_id, step_id)
        self.attempts.append(Attempt(job_id, row["name"], step_id, row["step_type"],
                                     int(row["attempt"]), status, seconds, seen))

    def skip(self, job_id: int, step_id: str) -> None:
        """Skip a step that never ran (its input failed): finished, never started."""
        self.sql(f"UPDATE {SCHEMA}.job_step s SET status = 'skipped', finished_at = j.started_at "
                 f"FROM {SCHEMA}.job j WHERE j.id = s.job_id AND s.job_id = {job_id} "
                 f"AND s.step_id = '{step_id}'")
        row = self._names(job_id, step_id)
        self.attempts.append(Attempt(job_id, row["name"], step_id, row["step_type"],
                                     int(row["attempt"]), "skipped", None))

    def finish_job(self, job_id: int, status: str, run_s: float) -> None:
        """Finalize the job as n8n's finalizer does."""
        self.sql(f"UPDATE {SCHEMA}.job SET status = '{status}', finished_at = started_at + "
                 f"interval '{run_s} seconds' WHERE id = {job_id}")

    def complete(self, job_id: int, steps: list[str], wait_s: float = 2.0,
                 retried: str | None = None) -> None:
        """Run a whole job to success in one go; `retried` fails once and succeeds on attempt 2."""
        self.start_job(job_id, wait_s)
        at = 0.5
        for step_id in steps:
            if step_id == retried:
                self.run_step(job_id, step_id, 1, at)
                self.end_step(job_id, step_id, "failed", 1.25, seen=False)
                at += 2.0
                self.run_step(job_id, step_id, 2, at)
            else:
                self.run_step(job_id, step_id, 1, at)
            self.end_step(job_id, step_id, "success", 3.5)
            at += 4.0
        self.finish_job(job_id, "success", at + 0.5)


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    """Poll a predicate every 0.1 s until truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
