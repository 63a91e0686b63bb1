"""Startup failures as a user meets them: one line naming the cause, a non-zero exit code."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import EXE

CONFIG = """
state: {path: ":memory:"}
sources:
  - name: o
    kind: ordo
    base_url: http://127.0.0.1:9/ordo
    auth: {token: t}
    organization: lidar
"""


@pytest.fixture
def busy() -> Iterator[str]:
    """Yield a loopback HOST:PORT another socket already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def _one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", [
    ["simulate", "--listen"],
    ["demo", "--log.format", "json", "--web.listen-address"],
    ["run", "--log.format", "json", "--web.listen-address"],
])
def test_busy_port(command: list[str], busy: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    extra = ["--config.file", str(cfg)] if command[0] == "run" else []
    done = _run(*command, busy, *extra)
    assert done.returncode == 1
    _one_line_error(done, f"cannot listen on {busy}", "Address already in use")
    assert "Errno" not in done.stderr


def test_once_with_a_shard_out_of_range(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    done = _run("once", "--config.file", str(cfg), "--shard", "3/3")
    assert done.returncode == 1
    _one_line_error(done, "--shard", "3/3")


def test_bad_log_level_in_the_environment_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    done = _run("once", "--config.file", str(cfg), env={"ASYNCJOB_LOG_LEVEL": "loud"})
    _one_line_error(done, "ASYNCJOB_LOG_LEVEL", "loud")


def test_prometheus_spelling_warn_is_accepted_and_filters_info(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    done = _run("once", "--config.file", str(cfg), "--log.level", "warn", "--log.format", "json")
    assert done.returncode == 1  # the org is unreachable
    assert '"poll_failed"' in done.stderr and '"level": "info"' not in done.stderr
    assert "asyncjob_up" in done.stdout
