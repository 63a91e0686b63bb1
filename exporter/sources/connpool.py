"""An httpx transport whose connection pool keeps up to `concurrency` busy connections busy.

httpcore 1.0.9's pool has two faults that show with many concurrent requests to one host:
it counts every connection, not the idle ones, against `max_keepalive_connections` (so with
more requests in flight than that, nearly every request opens a new TCP connection), and one
assignment pass gives the same idle connection to several queued requests (all but one then
fail with ConnectionNotAvailable and go round again: a busy loop that starves the event loop).
This pool fixes both in its assignment pass; everything else is httpcore's.
"""

from __future__ import annotations

import httpcore
import httpx
from httpcore._async.interfaces import AsyncConnectionInterface


class FairPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, with idle connections counted as idle and one request per connection."""

    def _assign_requests_to_connections(self) -> list[AsyncConnectionInterface]:
        """Drop surplus idle connections, then give each queued request a connection of its own.

        Runs twice per request: the usual case (nothing queued, no surplus) touches each
        connection once (the full scan was ~4% of the event loop's time at 10,000 orgs).
        """
        closing: list[AsyncConnectionInterface] = []
        self._connections = [c for c in self._connections if not c.is_closed()]
        queued = [r for r in self._requests if r.is_queued()]
        if not queued and len(self._connections) <= self._max_keepalive_connections:
            return closing
        taken = {id(r.connection) for r in self._requests if r.connection is not None}
        idle = [c for c in self._connections if id(c) not in taken and c.is_idle()]
        for conn in idle[self._max_keepalive_connections:]:
            self._connections.remove(conn)
            closing.append(conn)
        for request in queued:
            picked = self._pick(request.request.url.origin, taken, closing)
            if picked is None:
                break  # every connection is busy: wait for one to come back
            request.assign_to_connection(picked)
            taken.add(id(picked))
        return closing

    def _pick(self, origin: httpcore.Origin, taken: set[int],
              closing: list[AsyncConnectionInterface]) -> AsyncConnectionInterface | None:
        """Return a free live connection, or a new one if the limit allows (closing an idle one)."""
        for conn in list(self._connections):
            if id(conn) in taken or not conn.is_available():
                continue
            if conn.has_expired():  # checked only here: it asks the socket (a system call)
                self._connections.remove(conn)
                closing.append(conn)
            elif conn.can_handle_request(origin):
                return conn
        if len(self._connections) >= self._max_connections:
            spare = next((c for c in self._connections if id(c) not in taken and c.is_idle()),
                         None)
            if spare is None:
                return None
            self._connections.remove(spare)
            closing.append(spare)
        conn = self.create_connection(origin)
        self._connections.append(conn)
        return conn


def transport(concurrency: int) -> httpx.AsyncHTTPTransport:
    """Return an HTTP transport keeping `concurrency` connections open, none opened twice."""
    limits = httpx.Limits(max_connections=max(1, concurrency),
                          max_keepalive_connections=max(1, concurrency))
    built = httpx.AsyncHTTPTransport(limits=limits)
    built._pool = FairPool(
        ssl_context=built._pool._ssl_context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
    )
    return built
