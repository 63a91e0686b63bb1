"""The real exporter refuses state files it does not own, touching nothing, and says why."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from exporter.state.fileguard import APPLICATION_ID
from exporter.state.store import StateStore
from tests.integration.harness import EXE, exporter, fill, free_port, scrape, tmpfs, wait_for

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
state:
  path: "{state}"
defaults: {{interval: 1s}}
sources:
  - name: src
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {{token: t}}
    organizations:
      - address: "0x{addr}"
"""


def _config(where: Path, state: Path) -> Path:
    cfg = where / "exporter.yaml"
    cfg.write_text(CONFIG.format(state=state, addr="a" * 40))
    cfg.chmod(0o644)
    return cfg


def _start(cfg: Path, prefix: tuple[str, ...] | list[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run the exporter until it exits (it must refuse to start)."""
    return subprocess.run(
        [*prefix, *EXE, "--config.file", str(cfg),
         "--web.listen-address", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )


def _assert_refused(proc: subprocess.CompletedProcess[str], state: Path, reason: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    out = proc.stderr + proc.stdout
    assert "Traceback" not in out, out
    assert out.strip() == f"asyncjob-exporter run: cannot use state file {state}: {reason}", out


def _snapshot(where: Path) -> dict[str, bytes | None]:
    """Return every file under `where` with its bytes (None for directories)."""
    return {str(p.relative_to(where)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(where.rglob("*"))}


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    db.execute("INSERT INTO notes (body) VALUES ('keep me')")
    db.commit()
    db.close()


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b"PGDMP custom dump, not SQLite\n" * 50), "not a SQLite database"),
    (_foreign, "SQLite file of another application"),
    (lambda p: p.touch(), "empty file the exporter did not create"),
])
def test_start_is_refused_and_the_path_left_untouched(
    tmp_path: Path, make: Callable[[Path], None], reason: str
) -> None:
    state = tmp_path / "data" / "state.db"
    state.parent.mkdir()
    make(state)
    before = _snapshot(state.parent)
    _assert_refused(_start(_config(tmp_path, state)), state, reason)
    assert _snapshot(state.parent) == before


def test_locked_database_is_refused_not_moved_aside(tmp_path: Path) -> None:
    state = tmp_path / "data" / "state.db"
    StateStore(str(state)).close()
    before = _snapshot(state.parent)
    other = sqlite3.connect(state, isolation_level=None)  # another program, mid-transaction
    other.execute("BEGIN IMMEDIATE")
    try:
        _assert_refused(_start(_config(tmp_path, state)), state, "database is locked")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert _snapshot(state.parent) == before


def test_second_exporter_on_the_same_state_file_refuses_to_start(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    cfg = _config(tmp_path, state)
    with exporter(tmp_path, cfg.read_text()) as (url, _):
        _assert_refused(_start(cfg), state, "in use by another asyncjob-exporter process")
        assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200  # the first runs on


# Root ignores file modes: the exporter runs as root without the capabilities that override them.
NO_DAC_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                   "--inh-caps=-dac_override,-dac_read_search", "--"]


def test_no_permission_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "data" / "state.db"
    StateStore(str(state)).close()
    state.chmod(0o444)
    before = _snapshot(state.parent)
    _assert_refused(_start(_config(tmp_path, state), prefix=NO_DAC_OVERRIDE), state,
                    "Permission denied")
    assert _snapshot(state.parent) == before



def test_read_only_mount_is_refused(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        state = mnt / "state.db"
        StateStore(str(state)).close()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        before = _snapshot(mnt)
        _assert_refused(_start(_config(tmp_path, state)), state, "Read-only file system")
        assert _snapshot(mnt) == before


def test_disk_full_at_start_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        fill(mnt)
        state = mnt / "state.db"
        proc = _start(_config(tmp_path, state))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith(f"asyncjob-exporter run: cannot use state file {state}: ")
        assert "full" in proc.stderr or "No space left" in proc.stderr, proc.stderr
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]


def test_own_corrupt_file_is_moved_aside_and_counted(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    store = StateStore(str(state))
    store.db.execute("CREATE TABLE padding (x BLOB)")
    store.db.executemany("INSERT INTO padding VALUES (?)", [(b"p" * 3000,)] * 40)
    store.close()
    data = bytearray(state.read_bytes())
    assert int.from_bytes(data[68:72], "big") == APPLICATION_ID
    data[4096:4096 * 8] = b"\xa5" * (4096 * 7)  # wreck the schema and table pages
    state.write_bytes(bytes(data))
    with exporter(tmp_path, _config(tmp_path, state).read_text()) as (url, proc):
        wait_for(lambda: scrape(url).get(("asyncjob_state_write_errors_total", ())) == 1.0, 10,
                 "moved-aside file counted")
        assert scrape(url)[("asyncjob_state_persistent", ())] == 1.0
        events = [e for e in proc.json_lines()
                  if e.get("event") == "state_file_corrupt_moved_aside"]
        assert len(events) == 1 and events[0]["level"] == "error", proc.output()
    moved = list(tmp_path.glob("state.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == bytes(data)
    time.sleep(0)  # the fresh file is a usable state file of ours
    db = sqlite3.connect(state)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()
