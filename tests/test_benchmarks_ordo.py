"""The Ordo benchmarks' own code: the counting relay, the readings' arithmetic, the report."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import yaml

from benchmarks import ordo_bench, ordo_report, qexp
from benchmarks.ordo_measure import by_role, latency_stats, polls_done
from benchmarks.tap import Tap, count_heads


def test_request_heads_split_anywhere_are_counted_once() -> None:
    """A header end split across two reads counts once; two requests in one read count twice."""
    stream = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    assert count_heads(b"", stream)[0] == 2
    for split in range(1, len(stream)):
        first, tail = count_heads(b"", stream[:split])
        second, _ = count_heads(tail, stream[split:])
        assert first + second == 2, split


def test_tap_counts_only_what_passes_through_it() -> None:
    """The relay sees each GET and every answer byte (headers included) and nobody else's."""
    body = b"x" * 5000

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            """Stay quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tap = Tap(server.server_address[1]).start()
    try:
        with httpx.Client(timeout=5) as client:  # one keep-alive connection, three requests
            for _ in range(3):
                assert client.get(f"{tap.url}/jobs/1,2").content == body
        httpx.get(f"http://127.0.0.1:{server.server_address[1]}/direct", timeout=5)
        requests, down = tap.counts()
        assert requests == 3
        assert 3 * len(body) < down < 3 * (len(body) + 400)
    finally:
        tap.stop()
        server.shutdown()


def test_statement_time_is_split_by_role_and_statement() -> None:
    """PostgreSQL time of one side is its role's growth between readings, nobody else's."""
    before = {("postgres", "SELECT a"): (10, 5.0), ("qe_reader", "SELECT b"): (1, 1.0)}
    after = {("postgres", "SELECT a"): (14, 9.0), ("qe_reader", "SELECT b"): (3, 11.0),
             ("postgres", "SELECT x FROM job_step_detailing"): (2, 44.0),
             ("bench", "UPDATE job"): (50, 500.0)}
    assert by_role(before, after, "postgres") == (6, 48.0)
    assert by_role(before, after, "postgres", "job_step_detailing") == (2, 44.0)
    assert by_role(before, after, "qe_reader") == (2, 10.0)


def test_poll_and_query_counts_are_read_from_metrics() -> None:
    """Polls of this exporter and successful queries of query-exporter, summed over labels."""
    ours = ('asyncjob_poll_duration_seconds_count{org="a",source="o"} 7.0\n'
            'asyncjob_poll_duration_seconds_count{org="b",source="o"} 3.0\n'
            'asyncjob_poll_duration_seconds_sum{org="a",source="o"} 9.0\n')
    theirs = ('queries_total{database="ordo",query="a",status="success"} 4.0\n'
              'queries_total{database="ordo",query="b",status="error"} 9.0\n'
              'queries_total{database="ordo",query="b",status="success"} 4.0\n')
    assert polls_done(ours) == 10
    assert qexp.successful_queries(theirs) == 8
    assert latency_stats([]) == {"requests": 0}
    assert latency_stats([1.0, 2.0, 3.0])["p50_ms"] == 2.0


def test_query_exporter_config_has_six_queries_on_the_read_only_role() -> None:
    """query-exporter's config parses, names the reader role and gives each query its metric."""
    cfg = yaml.safe_load(qexp.config(5432, "qe_reader", 5.0))
    assert cfg["databases"]["ordo"]["dsn"].endswith("qe_reader@127.0.0.1:5432/ordo")
    assert len(cfg["queries"]) == 6
    for query in cfg["queries"].values():
        assert query["interval"] == 5 and query["metrics"][0] in cfg["metrics"]
        assert query["metrics"][0] in query["sql"]


def _side(bytes_: int, cpu: float, p99: float) -> dict[str, Any]:
    return {"per_poll": {"requests": 2.0, "bytes": bytes_, "node_cpu_s": 0.01, "pg_ms": 4.0,
                         "pg_statements": 10.0, "exporter_cpu_s": cpu},
            "queries_per_poll": 6, "scrape": {"p50_ms": 0.5, "p99_ms": 2.0}, "rss_mb": 60.0,
            "other_client": {"p50_ms": 10.0, "p99_ms": p99}}


def _scale(ours_bytes: int, ours_p99: float) -> dict[str, Any]:
    call = {"bytes": 10, "p50_ms": 1.0, "node_cpu_s": 0.1, "pg_ms": 2.0, "detailing_ms": 22.0}
    return {"ours": _side(ours_bytes, 0.02, ours_p99), "query_exporter": _side(4000, 0.01, 30.0),
            "none": {"other_client": {"p99_ms": 30.0}},
            "none_after": {"other_client": {"p99_ms": 34.0}},
            "list_jobs": call, "index": {"without": call, "with": {**call, "detailing_ms": 0.2},
                                         "other_client_with": {"p99_ms": 12.0}}}


def test_targets_judge_the_top_scale_against_both_quiet_windows() -> None:
    """The targets use the largest scale; the other client's baseline is the mean of both."""
    keys = ordo_bench.summarize(ordo_bench.RealSettings(),
                                {"1000": _scale(10, 99.0), "100000": _scale(250_000, 38.0)})
    targets = keys["ordo_real_targets"]
    assert targets["bytes per poll < 200 KB (100k jobs)"] is False
    assert targets["other client's p99 within 20% of no exporter (100k jobs)"] is True  # < 38.4
    assert keys["ordo_real_other_p99_ratio_vs_none"] == round(38.0 / 32.0, 2)
    assert keys["ordo_real_detailing_ms_per_batch"] == 22.0


def test_report_shows_each_side_and_the_ratio() -> None:
    """RESULTS.md's real-Ordo section puts ours, query-exporter and their ratio side by side."""
    results = ordo_bench.summarize(ordo_bench.RealSettings(), {"100000": _scale(50_000, 31.0)})
    results["ordo_steady"] = {"1000": {"requests_per_poll": 1.2, "bytes_per_poll": 7615,
                                       "cpu_s_per_poll": 0.008, "first_sync_s": 1.6,
                                       "first_sync_bytes": 186621, "tracked_jobs": 1005,
                                       "rss_mb": 51.8}}
    md = "\n".join(ordo_report.sections(results))
    assert "| bytes per poll (answers on the wire) | 50,000 / 4,000 / 0.08x |" in md
    assert "| exporter CPU per poll (s) | 0.020 / 0.010 / 0.50x |" in md
    assert "| 1,000 | 1.2 | 7,615 | 8 ms |" in md
    assert "22.0 / 0.2" in md and "| yes |" in md
    assert ordo_report.sections({}) == []
