"""SourcePool: one client per source, swapped when its identity changes, old ones retired."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from exporter.config import SourceConfig, load_config
from exporter.pool import RETIRE_GRACE, Background, SourcePool
from tests.fakes import FakeSource
from tests.faketime import FakeTime

CONFIG = """
state: {{path: ":memory:"}}
sources:
  - name: v
    kind: vocdoni
    base_url: http://127.0.0.1:9
    auth: {{token: {token}}}
    organizations: [{{address: "0x1111111111111111111111111111111111111111", name: acme}}]
"""


class Client(FakeSource):
    """A fake client that records its closing, or fails to close."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.closed = 0
        self.fail_close = fail

    async def aclose(self) -> None:
        self.closed += 1
        if self.fail_close:
            raise OSError("socket already gone")


def _cfg(tmp_path: Path, token: str) -> SourceConfig:
    path = tmp_path / f"{token}.yaml"
    path.write_text(CONFIG.format(token=token))
    return load_config(path).sources[0]


def _pool(t: FakeTime, built: list[Client], fail: bool = False) -> SourcePool:
    def build(cfg: Any) -> Client:
        built.append(Client(fail))
        return built[-1]

    return SourcePool(build, Background(), t.sleep)


def test_same_identity_keeps_the_client_a_new_one_retires_the_old_after_the_grace(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        t, built = FakeTime(), []
        pool = _pool(t, built)
        assert not pool.ensure(_cfg(tmp_path, "a"), running=True)
        assert not pool.ensure(_cfg(tmp_path, "a"), running=True)
        assert len(built) == 1
        assert pool.ensure(_cfg(tmp_path, "b"), running=True)  # credentials changed
        assert pool.sources["v"] is built[1]
        await t.advance(RETIRE_GRACE - 1)
        assert built[0].closed == 0  # polls in flight may still use it
        await t.advance(1)
        assert built[0].closed == 1 and built[1].closed == 0
        await pool.close_all()
        assert built[0].closed == 1 and built[1].closed == 1  # a retired client is closed once

    asyncio.run(scenario())


def test_close_all_closes_current_and_retired_clients_and_survives_failures(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        t, built = FakeTime(), []
        pool = _pool(t, built, fail=True)
        pool.ensure(_cfg(tmp_path, "a"), running=False)
        pool.ensure(_cfg(tmp_path, "b"), running=False)  # not running: retired, not scheduled
        with structlog.testing.capture_logs() as logs:
            await pool.close_all()
        assert [c.closed for c in built] == [1, 1]
        failures = [e for e in logs if e["event"] == "client_close_failed"]
        assert len(failures) == 2 and failures[0]["error"] == "OSError"

    asyncio.run(scenario())


def test_dropped_source_is_closed_in_the_background(tmp_path: Path) -> None:
    async def scenario() -> None:
        t, built = FakeTime(), []
        pool = _pool(t, built)
        pool.ensure(_cfg(tmp_path, "a"), running=True)
        pool.drop("v")
        assert pool.sources == {}
        await t.settle()
        assert built[0].closed == 1

    asyncio.run(scenario())
