"""Tests of the shared HTTP policy: retries, backoff, rate limits, error mapping, stats."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import pytest
import structlog

from exporter.sources.base import ON_PROGRESS, ClientSettings, PollError, RequestStats
from exporter.sources.body import MAX_JSON_DEPTH, TOO_DEEP
from exporter.sources.http import ApiClient, ApiResponse
from exporter.sources.http_status import AuthError, HttpStatusError, NotFound, parse_retry_after
from tests.fakes import FakeClock

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def make_client(
    handler: Handler,
    ft: FakeClock,
    *,
    stats: RequestStats | None = None,
    auth: Callable[[], Awaitable[dict[str, str]]] | None = None,
    base_url: str = "http://api.test",
    **overrides: Any,
) -> ApiClient:
    settings_kw: dict[str, Any] = {"max_requests_per_second": 1000.0, "retries": 3}
    settings_kw.update(overrides)
    settings = ClientSettings(base_url=base_url, **settings_kw)
    return ApiClient(
        settings,
        stats or RequestStats(),
        transport=httpx.MockTransport(handler),
        auth=auth,
        sleep=ft.sleep,
        clock=ft,
        rng=random.Random(7),
        wall_clock=lambda: 1_800_000_000.0,
    )


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(asyncio.wait_for(main(), timeout=5))


def sequence(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """Answer requests with the given responses in order (the last one repeats)."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        item = responses[min(len(seen), len(responses) - 1)]
        seen.append(request)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def test_an_api_cookie_is_never_sent_back() -> None:
    """Sources authenticate by token: a load balancer's or session's Set-Cookie is not replayed."""
    handler, seen = sequence(httpx.Response(200, json=[1], headers={
        "Set-Cookie": "session=abc; Path=/"}))
    client = make_client(handler, FakeClock())
    assert run(client.get_json("/x", "/x")) == [1]
    assert run(client.get_json("/x", "/x")) == [1]
    assert len(seen) == 2 and "cookie" not in seen[1].headers
    assert not client._client.cookies


def test_backoff_is_full_jitter_within_capped_bounds() -> None:
    ft = FakeClock()
    handler, _ = sequence(httpx.Response(200, json={}))
    client = make_client(handler, ft, backoff_base=0.5, backoff_max=3.0)
    for retry in range(8):
        cap = min(3.0, 0.5 * 2**retry)
        samples = [client.backoff(retry) for _ in range(300)]
        assert all(0.0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.9  # uses the whole range, not a fixed delay
        assert min(samples) < cap * 0.1
    run(client.aclose())


def test_retries_502_503_504_then_succeeds() -> None:
    ft = FakeClock()
    handler, seen = sequence(
        httpx.Response(502), httpx.Response(503), httpx.Response(504), httpx.Response(200, json=[1])
    )
    stats = RequestStats()
    client = make_client(handler, ft, stats=stats, backoff_base=1.0, backoff_max=3.0)
    assert run(client.get_json("/x", "/x")) == [1]
    assert len(seen) == 4
    assert len(ft.sleeps) == 3
    for retry, delay in enumerate(ft.sleeps):
        assert 0.0 <= delay <= min(3.0, 1.0 * 2**retry)
    assert stats.requests == {
        ("/x", "502"): 1, ("/x", "503"): 1, ("/x", "504"): 1, ("/x", "200"): 1,
    }


@pytest.mark.parametrize(
    ("failure", "reason", "code"),
    [
        (httpx.Response(503), "http_5xx", "503"),
        (httpx.ReadTimeout("slow"), "timeout", "timeout"),
        (httpx.ConnectTimeout("slow"), "timeout", "timeout"),
        (httpx.ConnectError("refused"), "connect", "connect_error"),
    ],
)
def test_retryable_failures_give_up_after_configured_retries(
    failure: httpx.Response | Exception, reason: str, code: str
) -> None:
    ft = FakeClock()
    handler, seen = sequence(failure)
    stats = RequestStats()
    client = make_client(handler, ft, stats=stats, retries=2)
    with pytest.raises(PollError) as info:
        run(client.get_json("/jobs/abc", "/jobs/{id}"))
    assert info.value.reason == reason
    assert len(seen) == 3
    assert stats.requests == {("/jobs/{id}", code): 3}


def test_zero_retries_means_one_attempt() -> None:
    ft = FakeClock()
    handler, seen = sequence(httpx.Response(504))
    client = make_client(handler, ft, retries=0)
    with pytest.raises(PollError):
        run(client.get_json("/x", "/x"))
    assert len(seen) == 1
    assert ft.sleeps == []


@pytest.mark.parametrize(
    ("response", "exc_type", "reason"),
    [
        (httpx.Response(500, text='{"error":"server error","code":50002}\n'), HttpStatusError,
         "http_5xx"),
        (httpx.Response(501), HttpStatusError, "http_5xx"),
        (httpx.Response(401, text='{"error":"authentication required","code":40001}\n'),
         AuthError, "auth"),
        (httpx.Response(403, json={"error": "API keys are not permitted", "code": 40157}),
         AuthError, "auth"),
        (httpx.Response(400, text='{"error":"invalid URL parameter","code":40010}'),
         HttpStatusError, "http_4xx"),
        (httpx.Response(404, text='{"error":"job not found","code":40026}\n',
                        headers={"Content-Type": "text/plain; charset=utf-8"}), NotFound,
         "http_4xx"),
        (httpx.Response(409), HttpStatusError, "http_4xx"),
    ],
)
def test_status_mapping_without_retry(
    response: httpx.Response, exc_type: type[PollError], reason: str
) -> None:
    ft = FakeClock()
    handler, seen = sequence(response)
    client = make_client(handler, ft)
    with pytest.raises(exc_type) as info:
        run(client.get_json("/x", "/x"))
    assert info.value.reason == reason
    assert len(seen) == 1
    assert isinstance(info.value, HttpStatusError)
    assert info.value.status == response.status_code
    # the body's message is never echoed (it may carry personal data)
    assert "required" not in str(info.value) and "invalid" not in str(info.value)


def test_json_error_code_is_kept() -> None:
    ft = FakeClock()
    handler, _ = sequence(httpx.Response(404, text='{"error":"job not found","code":40026}\n'))
    client = make_client(handler, ft)
    with pytest.raises(NotFound) as info:
        run(client.get_json("/jobs/1", "/jobs/{id}"))
    assert info.value.api_code == 40026
    assert "40026" in str(info.value)


def test_plain_text_404_is_not_notfound() -> None:
    ft = FakeClock()
    handler, _ = sequence(httpx.Response(404, text="404 page not found\n"))
    client = make_client(handler, ft)
    with pytest.raises(HttpStatusError) as info:
        run(client.get_json("/jobs", "/jobs"))
    assert not isinstance(info.value, NotFound)
    assert info.value.reason == "http_4xx"
    assert info.value.status == 404


@pytest.mark.parametrize(
    "body", ["<html><body>Bad gateway</body></html>", "", "not json", '{"a": 1'],
)
def test_non_json_success_body_is_decode_error(body: str) -> None:
    ft = FakeClock()
    handler, _ = sequence(httpx.Response(200, text=body, headers={"Content-Type": "text/html"}))
    client = make_client(handler, ft)
    with pytest.raises(PollError) as info:
        run(client.get_json("/x", "/x"))
    assert info.value.reason == "decode"


def test_api_response_json_reads_text_plain() -> None:
    resp = ApiResponse(200, httpx.Headers({"Content-Type": "text/plain"}), '{"ok": true}\n')
    assert resp.json() == {"ok": True}


def test_request_accepts_expected_statuses() -> None:
    ft = FakeClock()
    handler, seen = sequence(httpx.Response(202, json={"jobId": "ab"}))
    client = make_client(handler, ft)
    resp = run(client.request("POST", "/x", "/x", json_body={"a": 1}, expect=(200, 202)))
    assert resp.status == 202 and resp.json() == {"jobId": "ab"}
    assert seen[0].method == "POST"
    assert json.loads(seen[0].content) == {"a": 1}


def test_429_retry_after_seconds_blocks_all_requests() -> None:
    ft = FakeClock()
    times: dict[str, list[float]] = {"/a": [], "/b": []}

    async def handler(request: httpx.Request) -> httpx.Response:
        times[request.url.path].append(ft.now)
        if request.url.path == "/a" and len(times["/a"]) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, text="Too many")
        return httpx.Response(200, json={})

    stats = RequestStats()
    client = make_client(handler, ft, stats=stats)

    async def both() -> None:
        async def late_b() -> Any:
            await asyncio.sleep(0)
            return await client.get_json("/b", "/b")

        await asyncio.gather(client.get_json("/a", "/a"), late_b())

    run(both())
    start = times["/a"][0]
    assert times["/a"][1] >= start + 7
    assert times["/b"][0] >= start + 7  # the other request waited too
    assert stats.rate_limited == 1
    assert stats.requests[("/a", "429")] == 1


def test_429_retry_after_http_date_uses_server_date() -> None:
    ft = FakeClock()
    times: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        times.append(ft.now)
        if len(times) == 1:
            return httpx.Response(429, headers={
                "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
                "Retry-After": "Wed, 21 Oct 2026 07:28:09 GMT",
            })
        return httpx.Response(200, json={})

    client = make_client(handler, ft)
    run(client.get_json("/a", "/a"))
    assert len(times) == 2
    assert times[1] - times[0] >= 9
    assert times[1] - times[0] < 10


def test_parse_retry_after_variants() -> None:
    wall = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert parse_retry_after("3", None, wall) == 3.0
    assert parse_retry_after("1.5", None, wall) == 1.5
    assert parse_retry_after(None, None, wall) == 1.0
    assert parse_retry_after("soon", None, wall) == 1.0
    assert parse_retry_after("-4", None, wall) == 0.0
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:20 GMT", None, wall) == 20.0
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:20 GMT", "garbage", wall) == 20.0
    assert parse_retry_after("Fri, 15 Jan 2027 07:00:00 GMT", None, wall) == 0.0


def test_429_without_retry_after_waits_one_second() -> None:
    ft = FakeClock()
    times: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        times.append(ft.now)
        if len(times) == 1:
            return httpx.Response(429, text="Server capacity exceeded.")
        return httpx.Response(200, json={})

    client = make_client(handler, ft)
    run(client.get_json("/a", "/a"))
    assert times[1] - times[0] >= 1.0


def test_second_429_fails_with_rate_limited() -> None:
    ft = FakeClock()
    handler, seen = sequence(httpx.Response(429, headers={"Retry-After": "1"}))
    stats = RequestStats()
    client = make_client(handler, ft, stats=stats)
    with pytest.raises(PollError) as info:
        run(client.get_json("/a", "/a"))
    assert info.value.reason == "rate_limited"
    assert len(seen) == 2
    assert stats.rate_limited == 2


def test_429_longer_than_three_timeouts_fails_fast_and_blocks() -> None:
    ft = FakeClock()
    handler, seen = sequence(httpx.Response(429, headers={"Retry-After": "31"}))
    client = make_client(handler, ft, timeout=10.0)
    with pytest.raises(PollError) as info:
        run(client.get_json("/a", "/a"))
    assert info.value.reason == "rate_limited"
    assert len(seen) == 1
    assert ft.sleeps == []  # no long wait inside a poll
    # later requests do not hit the API before the Retry-After time either
    with pytest.raises(PollError) as again:
        run(client.get_json("/b", "/b"))
    assert again.value.reason == "rate_limited"
    assert len(seen) == 1
    ft.now += 31
    handler_ok, seen_ok = sequence(httpx.Response(200, json={}))
    client._client._transport = httpx.MockTransport(handler_ok)
    run(client.get_json("/b", "/b"))
    assert len(seen_ok) == 1


def test_token_bucket_spacing_with_fractional_rate() -> None:
    ft = FakeClock()
    times: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        times.append(ft.now)
        return httpx.Response(200, json={})

    client = make_client(handler, ft, max_requests_per_second=0.5)

    async def many() -> None:
        for _ in range(4):
            await client.get_json("/a", "/a")

    run(many())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [pytest.approx(2.0)] * 3


def test_token_bucket_allows_burst_then_spaces_concurrent_requests() -> None:
    ft = FakeClock()
    times: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        times.append(ft.now)
        return httpx.Response(200, json={})

    client = make_client(handler, ft, max_requests_per_second=2.5, concurrency=20)

    async def many() -> None:
        await asyncio.gather(*(client.get_json("/a", "/a") for _ in range(10)))

    run(many())
    times.sort()
    start = times[0]
    # burst of 2 at once, then never faster than 2.5 per second
    assert times[1] - start < 0.01
    for n, t in enumerate(times):
        assert t - start >= (n + 1 - 2.5) / 2.5 - 1e-9
    assert times[-1] - start <= 10 / 2.5


def test_concurrency_limit_counts_in_flight() -> None:
    ft = FakeClock()
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):
            await asyncio.sleep(0)
        in_flight -= 1
        return httpx.Response(200, json={})

    client = make_client(handler, ft, concurrency=3)

    async def many() -> None:
        await asyncio.gather(*(client.get_json(f"/a/{i}", "/a/{i}") for i in range(12)))

    run(many())
    assert peak == 3


def test_stats_use_endpoint_template_and_latency() -> None:
    ft = FakeClock()

    async def handler(request: httpx.Request) -> httpx.Response:
        ft.now += 0.3
        return httpx.Response(200, json={})

    stats = RequestStats()
    client = make_client(handler, ft, stats=stats)
    run(client.get_json("/jobs/deadbeef", "/jobs/{id}"))
    view = stats.view()
    assert view.requests == {("/jobs/{id}", "200"): 1}
    latency = view.latency["/jobs/{id}"]
    assert latency.sum == pytest.approx(0.3)
    assert latency.counts[-1] == 1


def test_base_url_prefix_params_and_auth_header() -> None:
    ft = FakeClock()
    handler, seen = sequence(httpx.Response(200, json={}))

    async def auth() -> dict[str, str]:
        return {"Authorization": "Bearer s3cr3t"}

    client = make_client(handler, ft, auth=auth, base_url="http://api.test/ordo")
    run(client.get_json("/jobs", "/jobs", params={"page": 2, "q": "x"}))
    run(client.get_json("/jobs", "/jobs", auth=False))
    assert seen[0].url.path == "/ordo/jobs"
    assert dict(seen[0].url.params) == {"page": "2", "q": "x"}
    assert seen[0].headers["Authorization"] == "Bearer s3cr3t"
    assert seen[0].headers["User-Agent"] == "asyncjob-exporter"
    assert "Authorization" not in seen[1].headers


def test_token_never_in_errors_or_logs() -> None:
    ft = FakeClock()
    handler, _ = sequence(
        httpx.Response(503), httpx.Response(429),
        httpx.Response(401, text='{"error":"authentication required","code":40001}'),
    )

    async def auth() -> dict[str, str]:
        return {"Authorization": "Bearer s3cr3t"}

    client = make_client(handler, ft, auth=auth)
    with structlog.testing.capture_logs() as logs, pytest.raises(AuthError) as info:
        run(client.get_json("/x", "/x"))
    assert "s3cr3t" not in str(info.value) and "s3cr3t" not in repr(info.value.args)
    assert logs and "s3cr3t" not in repr(logs)


def test_undecodable_body_is_a_decode_poll_error_not_a_crash() -> None:
    """A gzip body that does not decompress fails the poll with reason decode."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"not gzip at all",
                               headers={"Content-Encoding": "gzip"})

    async def run() -> None:
        stats = RequestStats()
        client = ApiClient(ClientSettings(base_url="http://api.test", retries=0), stats,
                         transport=httpx.MockTransport(handler))
        try:
            await client.get_json("/jobs", "/jobs")
        except PollError as exc:
            assert exc.reason == "decode"
        else:
            raise AssertionError("expected a PollError")
        finally:
            await client.aclose()
        assert stats.requests == {("/jobs", "decode_error"): 1}

    asyncio.run(run())


# --- bounded work per request: deadline, size cap, Retry-After cap, nesting ------------------


def test_retry_after_infinity_and_junk_are_ignored_and_long_waits_capped() -> None:
    """Infinity/NaN/junk fall back to the default wait; a huge wait is cut to the cap."""
    wall = 1_800_000_000.0
    for junk in ("Infinity", "inf", "NaN", "-Infinity", "1e999", "soon", "3 seconds"):
        assert parse_retry_after(junk, None, wall) == 1.0, junk
    assert parse_retry_after("86400", None, wall) == 600.0  # default cap: 10 minutes
    assert parse_retry_after("86400", None, wall, cap=30.0) == 30.0
    assert parse_retry_after("Fri, 15 Jan 2100 08:00:20 GMT", None, wall, cap=45.0) == 45.0


def test_retry_after_infinity_does_not_block_the_source_until_restart() -> None:
    """After Retry-After: Infinity the source is usable again once the default wait passed."""
    ft = FakeClock()
    handler, seen = sequence(httpx.Response(429, headers={"Retry-After": "Infinity"}),
                             httpx.Response(200, json={"ok": 1}))
    client = make_client(handler, ft)
    assert run(client.get_json("/a", "/a")) == {"ok": 1}
    assert len(seen) == 2


def test_retry_after_over_the_cap_blocks_only_for_the_cap() -> None:
    """A week-long Retry-After holds the source back max_retry_after, then requests go out."""
    ft = FakeClock()
    handler, _ = sequence(httpx.Response(429, headers={"Retry-After": "604800"}))
    client = make_client(handler, ft, timeout=1.0, max_retry_after=20.0)
    with pytest.raises(PollError):
        run(client.get_json("/a", "/a"))
    ft.now += 21
    handler_ok, seen_ok = sequence(httpx.Response(200, json={}))
    client._client._transport = httpx.MockTransport(handler_ok)
    run(client.get_json("/b", "/b"))
    assert len(seen_ok) == 1


async def _serve(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                   Awaitable[None]]) -> tuple[asyncio.Server, str]:
    """Start a loopback HTTP server that misbehaves as `handler` says."""
    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def _real_client(url: str, stats: RequestStats, **overrides: Any) -> ApiClient:
    settings_kw: dict[str, Any] = {"max_requests_per_second": 1000.0, "retries": 0}
    settings_kw.update(overrides)
    return ApiClient(ClientSettings(base_url=url, **settings_kw), stats)


def test_a_dripping_body_fails_at_the_total_timeout() -> None:
    """One byte every 0.1 s never trips httpx's per-read timeout; the total deadline does."""
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n[")
        while True:
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(b" ")

    async def scenario() -> float:
        server, url = await _serve(drip)
        stats = RequestStats()
        client = _real_client(url, stats, timeout=0.5)
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            with pytest.raises(PollError) as info:
                await client.get_json("/jobs", "/jobs")
            assert info.value.reason == "timeout"
            assert stats.requests == {("/jobs", "timeout"): 1}
            return loop.time() - start
        finally:
            await client.aclose()
            server.close()

    elapsed = asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    assert 0.4 < elapsed < 2.0


def _gzip_bomb(decoded: int) -> bytes:
    """Return a gzip stream of `decoded` zero bytes (about 1000:1)."""
    import zlib
    comp = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * (1 << 20)
    parts = [comp.compress(block) for _ in range(decoded >> 20)]
    return b"".join(parts) + comp.flush()


def test_a_gzip_bomb_fails_as_too_large_without_inflating_it() -> None:
    """64 MiB of zeros in 64 KB of gzip stops at the cap, decoded piece by piece."""
    bomb = _gzip_bomb(64 << 20)

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb))
        writer.write(bomb)
        await writer.drain()

    async def scenario() -> None:
        server, url = await _serve(send)
        stats = RequestStats()
        client = _real_client(url, stats, max_response_bytes=1 << 20)
        try:
            with pytest.raises(PollError) as info:
                await client.get_json("/jobs", "/jobs")
        finally:
            await client.aclose()
            server.close()
        assert info.value.reason == "too_large"
        assert "max_response_bytes" in str(info.value)
        assert stats.requests == {("/jobs", "too_large"): 1}

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))


def test_an_endless_body_fails_as_too_large() -> None:
    """A chunked body that never ends is cut at max_response_bytes, well before the timeout."""
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 65536
        while True:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()

    async def scenario() -> None:
        server, url = await _serve(endless)
        stats = RequestStats()
        client = _real_client(url, stats, max_response_bytes=2 << 20, timeout=5.0)
        try:
            with pytest.raises(PollError) as info:
                await client.get_json("/jobs", "/jobs")
        finally:
            await client.aclose()
            server.close()
        assert info.value.reason == "too_large"

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))


def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    """Content-Length above the cap fails at once; the cap is also applied to in-memory bodies."""
    ft = FakeClock()
    handler, _ = sequence(httpx.Response(200, content=b"[" + b" " * 2000 + b"]"))
    client = make_client(handler, ft, max_response_bytes=1000)
    with pytest.raises(PollError) as info:
        run(client.get_json("/jobs", "/jobs"))
    assert info.value.reason == "too_large"


def test_an_answer_just_under_the_cap_is_read() -> None:
    """The cap is a bound, not an off-by-one: an answer of exactly the cap passes."""
    body = json.dumps({"jobs": ["x" * 50]}).encode()
    ft = FakeClock()
    handler, _ = sequence(httpx.Response(200, content=body))
    client = make_client(handler, ft, max_response_bytes=len(body))
    assert run(client.get_json("/jobs", "/jobs")) == {"jobs": ["x" * 50]}


def test_deeply_nested_json_is_cut_not_a_recursion_error() -> None:
    """100k-deep nesting parses: the too-deep value becomes a marker string."""
    deep = "[" * 100_000 + "]" * 100_000
    text = '{"jobs": [{"jobId": "a", "result": ' + deep + '}, {"jobId": "b\\"[{"}]}'
    parsed = ApiResponse(200, httpx.Headers(), text, "/jobs").json()
    assert parsed["jobs"][1] == {"jobId": 'b"[{'}
    assert parsed["jobs"][0]["jobId"] == "a"
    value = parsed["jobs"][0]["result"]
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert value == TOO_DEEP and depth < MAX_JSON_DEPTH


def test_an_integer_of_70k_digits_is_a_marker_not_a_failed_document() -> None:
    """Python refuses ints over 4300 digits; such a value becomes a marker, the rest parses."""
    text = '[{"id": ' + "9" * 70_000 + '}, {"id": 2}]'
    parsed = ApiResponse(200, httpx.Headers(), text, "/jobs").json()
    assert parsed == [{"id": "<number too long>"}, {"id": 2}]
    with pytest.raises(PollError) as info:
        ApiResponse(200, httpx.Headers(), "<html>limit</html>", "/jobs").json()
    assert info.value.reason == "decode"


def test_requests_held_by_retry_after_tell_their_poll_how_long() -> None:
    """Every poll whose request waits out a Retry-After block hears of the wait (no stall)."""
    ft = FakeClock()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, text="Too many")
        return httpx.Response(200, json={})

    stats = RequestStats()
    client = make_client(handler, ft, stats=stats)
    heard: dict[str, list[float]] = {"a": [], "b": []}

    async def poll(org: str, path: str) -> None:
        ON_PROGRESS.set(lambda wait=0.0: heard[org].append(wait))
        while org == "b" and not stats.rate_limited:  # b asks once the block is in force
            await asyncio.sleep(0)
        await client.get_json(path, path)

    async def both() -> None:
        await asyncio.gather(poll("a", "/a"), poll("b", "/b"))

    run(both())
    assert max(heard["a"]) == pytest.approx(7, abs=0.01)  # the org that got the 429
    assert max(heard["b"]) == pytest.approx(7, abs=0.01)  # a sibling held back by the block
