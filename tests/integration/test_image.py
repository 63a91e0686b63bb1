"""Build the real container image, run it as its users would, scrape it, and stop it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exporter import __version__

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO.parent / "shared" / "tools" / "container-image"
TAG = "localhost/asyncjob-exporter:pytest"
BUILD_TIMEOUT = 300.0  # first build on a fresh machine also installs buildah and a base image
RUN_TIMEOUT = 60.0

pytestmark = [pytest.mark.image]


def test_image_tool_is_usable() -> None:
    """Fail loudly (never skip) when the image cannot be built here."""
    assert TOOL.exists(), f"{TOOL} not found (shared/ must sit beside the repo)"
    assert sys.platform == "linux" and os.geteuid() == 0, "container-image needs root on Linux"


def _tool(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=REPO)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """Build the image once per run; ASYNCJOB_TEST_IMAGE reuses a tag built beforehand."""
    prebuilt = os.environ.get("ASYNCJOB_TEST_IMAGE")
    if prebuilt:
        yield prebuilt
        return
    done = _tool("build", TAG, ".", timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    yield TAG
    # Without a layer cache a kept image saves nothing; removing it keeps storage from growing.
    subprocess.run(["buildah", "rmi", "-f", TAG], capture_output=True, timeout=60, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(root: int) -> list[int]:
    """Return the pids below root (buildah runs the exporter a few processes down)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _exporter_pid(root: int) -> int | None:
    """Return the pid of the Python process running the console script, if started."""
    for pid in _descendants(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"python3") and b"asyncjob-exporter" in argv[1]:
            return pid
    return None


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _stop(proc: subprocess.Popen[bytes], exporter: int | None) -> None:
    """Stop the exporter the way a container runtime does (SIGTERM), then its wrappers."""
    if exporter is not None:
        try:
            os.kill(exporter, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def demo(image: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """Run `demo` from the image on a free loopback port; yield (base url, exporter pid)."""
    port = _free_port()
    log = (tmp_path / "container.log").open("wb")
    proc = subprocess.Popen(
        [str(TOOL), "run", image, "demo", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
    )
    base, pid = f"http://127.0.0.1:{port}", None
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            pid = pid or _exporter_pid(proc.pid)
            try:
                if pid and httpx.get(f"{base}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        output = (tmp_path / "container.log").read_text(errors="replace")[-3000:]
        assert proc.poll() is None, f"container exited with {proc.returncode}:\n{output}"
        assert pid is not None, output
        yield base, pid
    finally:
        _stop(proc, pid)
        log.close()


def test_image_config_runs_console_script_as_non_root(image: str) -> None:
    done = _tool("inspect", image)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    uid, _, gid = config["User"].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit()
    assert config["Entrypoint"] == ["asyncjob-exporter"]
    assert config["Cmd"] == ["--config.file", "/etc/asyncjob-exporter/config.yaml"]
    assert "9877/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]


def test_image_carries_oci_labels(image: str) -> None:
    done = _tool("inspect", image)
    assert done.returncode == 0, done.stderr
    labels = json.loads(done.stdout)["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.revision"]
    assert labels["org.opencontainers.image.source"]


def test_image_prints_version(image: str) -> None:
    done = _tool("run", image, "--version")
    assert done.returncode == 0, done.stderr[-2000:]
    assert __version__ in done.stdout


def test_image_default_config_needs_its_environment(image: str) -> None:
    done = _tool("run", image, "check-config", "/etc/asyncjob-exporter/config.yaml")
    assert done.returncode == 1
    assert "VOCDONI_BASE_URL" in done.stdout + done.stderr  # the baked config is there, env-driven


def test_image_demo_serves_metrics_as_non_root(demo: tuple[str, int]) -> None:
    base, pid = demo
    assert _uid(pid) != 0
    body = httpx.get(f"{base}/metrics", timeout=5).text
    assert "asyncjob_build_info{" in body
    assert f'version="{__version__}"' in body
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
