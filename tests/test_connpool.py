"""The HTTP client keeps `concurrency` requests in flight on as many kept-alive connections."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from httpcore._async import connection_pool

from exporter.sources.base import ClientSettings, RequestStats
from exporter.sources.http import ApiClient

BOUND = 30  # above httpx's default of 20 kept-alive connections
WAVES = 4


@dataclass
class GateServer:
    """A loopback HTTP/1.1 server that answers only once BOUND requests are in flight."""

    connections: int = 0
    in_flight: int = 0
    peak: int = 0
    waiting: list[asyncio.Event] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one kept-alive connection, holding each until a wave is full."""
        self.connections += 1
        try:
            while await reader.readline():
                while await reader.readline() not in (b"\r\n", b""):
                    pass
                await self._wait_for_wave()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _wait_for_wave(self) -> None:
        """Hold this answer until BOUND requests wait together, then release them all."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        released = asyncio.Event()
        self.waiting.append(released)
        if len(self.waiting) >= BOUND:
            for event in self.waiting:
                event.set()
            self.waiting.clear()
        await released.wait()
        self.in_flight -= 1


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count requests the pool handed a connection that another request had already taken."""
    count = [0]
    original = connection_pool.AsyncPoolRequest.clear_connection

    def counted(self: connection_pool.AsyncPoolRequest) -> None:
        count[0] += 1
        original(self)

    monkeypatch.setattr(connection_pool.AsyncPoolRequest, "clear_connection", counted)
    yield count


async def _run(server: GateServer) -> None:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = ApiClient(ClientSettings(base_url=f"http://127.0.0.1:{port}", concurrency=BOUND,
                                      max_requests_per_second=0, retries=0),
                       RequestStats())
    try:
        async with asyncio.timeout(10):  # a client that cannot fill a wave fails, not hangs
            await asyncio.gather(*(client.get_json(f"/jobs/{i}", "jobs")
                                   for i in range(BOUND * WAVES)))
    finally:
        await client.aclose()
        listener.close()


def test_requests_in_flight_reach_concurrency_on_kept_connections(retries: list[int]) -> None:
    server = GateServer()
    asyncio.run(_run(server))
    assert server.peak == BOUND
    # httpx's default pool kept 20 and reopened the rest: a TCP connect per request
    assert server.connections == BOUND
    # httpcore's pool gave one idle connection to several queued requests: all but one retried
    assert retries[0] == 0
