"""HTTP client policy shared by all sources: timeouts, retries, rate limits, request stats."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx
import structlog

from exporter.sources.base import ON_PROGRESS, ClientSettings, PollError, PollReason, RequestStats
from exporter.sources.body import (
    ACCEPT_ENCODING,
    CHUNK,
    ArrayItems,
    BoundedBody,
    TooLarge,
    parse_json,
    read_streamed,
)
from exporter.sources.connpool import transport as pooled_transport
from exporter.sources.http_status import parse_retry_after, status_error

log = structlog.get_logger()
T = TypeVar("T")
# Builds the item splitter of one attempt of a streamed GET, given the answer's charset.
StreamFactory = Callable[[str | None], ArrayItems]

# Upstream gateways answer these when the API is briefly unavailable: worth another try.
RETRY_STATUSES: frozenset[int] = frozenset({502, 503, 504})
@dataclass(frozen=True)
class ApiResponse:
    """One HTTP answer, detached from the connection so callers never hold sockets."""

    status: int
    headers: httpx.Headers
    text: str
    endpoint: str = ""
    streamed: ArrayItems | None = None  # a streamed array: its items went to the splitter

    def json(self) -> Any:
        """Parse whatever the Content-Type says: Vocdoni sends JSON errors as text/plain."""
        if self.streamed is not None:
            return self.streamed.document
        return parse_json(self.text, self.endpoint or "response")


class _Limiter:
    """Token bucket (as GCRA) plus a Retry-After block that holds back every request."""

    def __init__(self, rate: float, sleep: Callable[[float], Awaitable[None]],
                 clock: Callable[[], float]) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        burst = max(1.0, rate)
        self._tolerance = (burst - 1.0) * self._interval
        self._tat = float("-inf")  # theoretical arrival time of the next request
        self.blocked_until = float("-inf")
        self._sleep = sleep
        self._clock = clock

    def block(self, seconds: float) -> None:
        """Hold back all requests for `seconds` from now (a 429 answer)."""
        self.blocked_until = max(self.blocked_until, self._clock() + seconds)

    async def acquire(self, max_block_wait: float) -> None:
        """Wait until a request may go out; fail fast when a Retry-After block is too long."""
        while True:
            now = self._clock()
            block = self.blocked_until - now
            if block > max_block_wait:
                raise PollError(PollReason.RATE_LIMITED,
                                f"API asked to wait {block:.0f}s (Retry-After)")
            tat = max(self._tat, now)
            wait = max(block, tat - self._tolerance - now)
            if wait <= 0:
                self._tat = tat + self._interval
                return
            if block > 0:  # the API asked for this wait: the org is waiting, not stalled
                on_answer = ON_PROGRESS.get()
                if on_answer is not None:
                    on_answer(block)
            await self._sleep(wait)


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: sources authenticate by token or header.

    An API's Set-Cookie (a load balancer's, a session's) is never sent back, and answers are
    not parsed for cookies: httpx's parse took ~5% of the event loop at 10,000 orgs.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        """Ignore the answer's cookies."""


class ApiClient:
    """An httpx client that applies one source's HTTP policy and records every attempt."""

    def __init__(
        self,
        settings: ClientSettings,
        stats: RequestStats,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        auth: Callable[[], Awaitable[dict[str, str]]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self._auth = auth
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(max(1, settings.concurrency))
        self._limiter = _Limiter(settings.max_requests_per_second, sleep, clock)
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            # keep `concurrency` connections open: httpx's default pool reopens most of them
            transport=transport or pooled_transport(settings.concurrency),
            timeout=httpx.Timeout(settings.timeout),
            headers={"User-Agent": settings.user_agent, "Accept": "application/json",
                     "Accept-Encoding": ACCEPT_ENCODING},
            follow_redirects=False,
        )
        self._client._cookies = _NoCookies()  # httpx has no switch for its cookie jar

    def backoff(self, retry: int) -> float:
        """Return a full-jitter delay before retry number `retry` (0-based)."""
        cap = min(self.settings.backoff_max, self.settings.backoff_base * 2**retry)
        return self._rng.uniform(0.0, cap)

    async def request(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        expect: Collection[int] = (200,),
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
        stream: StreamFactory | None = None,
    ) -> ApiResponse:
        """Send one logical request with retries; raise PollError unless the status is expected.

        With `stream`, a 200 answer is split into array items as it arrives (each attempt gets
        a fresh splitter), so a large list is never held whole.
        """
        retries = 0
        rate_limit_retried = False
        while True:
            outcome = await self._attempt(method, path, endpoint, params, json_body, auth,
                                          headers, stream)
            if isinstance(outcome, ApiResponse):
                if outcome.status in expect:
                    return outcome
                if outcome.status == 429:
                    self._on_rate_limited(outcome, endpoint)
                    if not rate_limit_retried:
                        rate_limit_retried = True
                        continue
                if outcome.status not in RETRY_STATUSES or retries >= self.settings.retries:
                    raise status_error(method, endpoint, outcome.status, outcome.text)
            elif retries >= self.settings.retries:
                raise outcome
            delay = self.backoff(retries)
            retries += 1
            log.debug("api_retry", host=self._client.base_url.host, endpoint=endpoint,
                      attempt=retries, delay=round(delay, 3))
            await self._sleep(delay)

    async def get_json(
        self,
        path: str,
        endpoint: str,
        *,
        params: Mapping[str, str | int] | None = None,
        auth: bool = True,
    ) -> Any:
        """GET a 200 JSON document; raise NotFound on a JSON 404 and PollError otherwise."""
        response = await self.request("GET", path, endpoint, params=params, auth=auth)
        return response.json()

    async def get_array(self, path: str, endpoint: str, stream: StreamFactory, *,
                        params: Mapping[str, str | int] | None = None) -> Any:
        """GET a JSON array item by item into `stream`'s sink; return the body if not an array."""
        response = await self.request("GET", path, endpoint, params=params, stream=stream)
        return response.json()

    def pause(self, seconds: float) -> None:
        """Hold back every request for `seconds` (an API's own budget is nearly spent)."""
        self._limiter.block(seconds)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _on_rate_limited(self, response: ApiResponse, endpoint: str) -> None:
        """Block every request of this client for the Retry-After delay."""
        delay = parse_retry_after(
            response.headers.get("Retry-After"), response.headers.get("Date"), self._wall_clock(),
            self.settings.max_retry_after,
        )
        self._limiter.block(delay)
        log.warning("api_rate_limited", host=self._client.base_url.host, endpoint=endpoint,
                    retry_after=round(delay, 3))

    async def _attempt(
        self,
        method: str,
        path: str,
        endpoint: str,
        params: Mapping[str, str | int] | None,
        json_body: Any,
        auth: bool,
        extra_headers: Mapping[str, str] | None,
        stream: StreamFactory | None = None,
    ) -> ApiResponse | PollError:
        """Make one HTTP attempt; return the answer or the retryable transport error."""
        # auth first and outside the semaphore: a login it triggers needs a slot of its own
        headers = dict(extra_headers or {})
        if auth and self._auth is not None:
            headers.update(await self._auth())
        async with self._semaphore:
            await self._limiter.acquire(self.settings.timeout * 3)
            start = self._clock()
            try:
                async with asyncio.timeout(self.settings.timeout) as deadline:  # the exchange
                    status, resp_headers, text, streamed = await self._exchange(
                        method, path, endpoint, params, json_body, headers, stream, deadline)
            except (TimeoutError, httpx.TimeoutException):
                self.stats.record(endpoint, "timeout", self._clock() - start)
                return PollError(PollReason.TIMEOUT, f"{method} {endpoint} timed out "
                                 f"(no full answer within {self.settings.timeout:g}s)")
            except httpx.TransportError as exc:
                self.stats.record(endpoint, "connect_error", self._clock() - start)
                return PollError(PollReason.CONNECT,
                                 f"{method} {endpoint} failed: {type(exc).__name__}")
            except PollError as exc:  # too large or undecodable: retrying will not help
                code = "decode_error" if exc.reason is PollReason.DECODE else exc.reason.value
                self.stats.record(endpoint, code, self._clock() - start)
                raise
            except httpx.DecodingError:  # e.g. a broken gzip body: retrying will not help
                self.stats.record(endpoint, "decode_error", self._clock() - start)
                raise PollError(PollReason.DECODE,
                                f"{method} {endpoint}: undecodable body") from None
            except httpx.HTTPError as exc:  # anything else httpx raises is a failed exchange
                self.stats.record(endpoint, "error", self._clock() - start)
                raise PollError(PollReason.CONNECT,
                                f"{method} {endpoint}: {type(exc).__name__}") from None
            self.stats.record(endpoint, str(status), self._clock() - start)
            on_answer = ON_PROGRESS.get()
            if on_answer is not None:
                on_answer()
            return ApiResponse(status, resp_headers, text, endpoint, streamed)

    async def _exchange(
        self,
        method: str,
        path: str,
        endpoint: str,
        params: Mapping[str, str | int] | None,
        json_body: Any,
        headers: Mapping[str, str],
        stream: StreamFactory | None = None,
        deadline: asyncio.Timeout | None = None,
    ) -> tuple[int, httpx.Headers, str, ArrayItems | None]:
        """Send and read one answer, never holding more than max_response_bytes of it."""
        cap = self.settings.max_response_bytes
        what = f"{method} {endpoint}"
        async with self._client.stream(
            method, path, params=params, json=json_body, headers=headers
        ) as resp:
            declared = resp.headers.get("Content-Length", "")
            encoding = resp.headers.get("Content-Encoding", "")
            if declared.isdigit() and int(declared) > cap:
                raise TooLarge(f"{what}: answer of {declared} bytes is larger than "
                               f"max_response_bytes ({cap}); raise it if the API is right")
            if resp.is_stream_consumed:  # an in-memory answer (tests' MockTransport): decoded
                encoding = ""
            if stream is not None and resp.status_code == 200:
                items = stream(resp.charset_encoding)
                await read_streamed(_raw_chunks(resp), BoundedBody(encoding, cap, what), items,
                                    partial(_extend, deadline))
                return resp.status_code, resp.headers, "", items
            body = BoundedBody(encoding, cap, what)
            async for raw in _raw_chunks(resp):
                body.feed(raw)
            return resp.status_code, resp.headers, body.text(resp.charset_encoding), None


def _extend(deadline: asyncio.Timeout | None, seconds: float) -> None:
    """Move the exchange's deadline by time spent parsing: `timeout` bounds the network only."""
    when = deadline.when() if deadline is not None else None
    if deadline is not None and when is not None:
        deadline.reschedule(when + seconds)


async def _raw_chunks(resp: httpx.Response) -> AsyncIterator[bytes]:
    """Yield the answer's raw bytes; an in-memory answer (tests' MockTransport) is decoded."""
    if resp.is_stream_consumed:
        yield resp.content
        return
    async for raw in resp.aiter_raw(CHUNK):
        yield raw


async def gather_limited(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run calls with at most `limit` at a time; re-raise the first failure as itself."""
    results: list[Any] = [None] * len(calls)
    todo = iter(enumerate(calls))

    async def worker() -> None:
        for index, call in todo:
            results[index] = await call()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(limit, len(calls))):
                group.create_task(worker())
    except BaseExceptionGroup as failure:
        first: BaseException = failure
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return results
