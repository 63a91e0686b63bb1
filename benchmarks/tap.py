"""A loopback TCP relay that counts what an exporter asks of its upstream: requests and bytes.

Put between the exporter and the API (simulator or real Ordo), it sees exactly the exporter's
traffic and nobody else's: answer bytes as they cross the wire (headers included) and GET
requests, counted by their blank line (a GET has no body, so each header block is one request).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress

from benchmarks.harness import free_port

HEAD_END = b"\r\n\r\n"


def count_heads(tail: bytes, chunk: bytes) -> tuple[int, bytes]:
    """Count request header ends in `chunk`; `tail` carries a split end over to the next chunk."""
    data = tail + chunk
    count = data.count(HEAD_END)
    after = data.rfind(HEAD_END)
    rest = data if after < 0 else data[after + len(HEAD_END):]
    return count, rest[-(len(HEAD_END) - 1):] if rest else b""


class Tap:
    """Relay 127.0.0.1:port to an upstream port in a thread; count requests and answer bytes."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.requests = 0
        self.bytes_down = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """Return the base URL to give the exporter."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Tap:
        """Listen, then relay in the background thread."""
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", self.port), self._loop)
        self._server = started.result(10)
        return self

    def counts(self) -> tuple[int, int]:
        """Return (requests, answer bytes) so far."""
        return self.requests, self.bytes_down

    def stop(self) -> None:
        """Close the listener and stop the thread."""
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer, up=True),
                             self._pump(up_reader, writer, up=False))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up: bool) -> None:
        tail = b""
        try:
            while chunk := await reader.read(65536):
                if up:
                    found, tail = count_heads(tail, chunk)
                    self.requests += found
                else:
                    self.bytes_down += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with suppress(ConnectionError, OSError):
                writer.close()
