"""Every log call in exporter/ names a snake_case event that docs/logging.md lists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.fakes import SourceFacts

REPO = Path(__file__).resolve().parent.parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "msg"}
SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


def _is_logger(node: ast.expr) -> bool:
    """Return True for `log` / `self.log` / `logger` receivers."""
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return name in ("log", "logger", "_log")


def log_events() -> dict[str, list[str]]:
    """Return event -> ['file:line', ...] for every log call under exporter/."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "exporter").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in LEVELS or not _is_logger(node.func.value):
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            first = node.args[0] if node.args else None
            event = first.value if isinstance(first, ast.Constant) else None
            found.setdefault(event if isinstance(event, str) else f"<not a literal> {where}",
                             []).append(where)
    return found


def test_the_scanner_finds_the_known_calls() -> None:
    events = log_events()
    assert {"poll_summary", "poll_failed", "vocdoni_login", "http_listening"} <= set(events)


def test_every_log_event_is_snake_case() -> None:
    bad = {e: w for e, w in log_events().items() if not SNAKE.fullmatch(e)}
    assert bad == {}


def test_every_log_event_is_documented() -> None:
    doc = (REPO / "docs" / "logging.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", doc, re.M))
    events = set(log_events())
    assert sorted(events - listed) == []
    assert sorted(listed - events) == []  # no stale rows


class _FakeSource(SourceFacts):
    """A source that answers from a script: a PollResult or a PollError."""

    def __init__(self, answers: list[object]) -> None:
        from exporter.sources.base import RequestStats

        self.stats = RequestStats()
        self.answers = answers

    async def poll(self, target: object, known: object, full: bool) -> object:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self) -> None:
        return None


def test_poll_summary_at_info_only_when_something_happened() -> None:
    import asyncio

    from structlog.testing import capture_logs

    from exporter.config import OrgConfig
    from exporter.orgloop import OrgLoop
    from exporter.sources.base import JobObservation, OrgTarget, PollError, PollResult

    job = JobObservation("j1", "relay_vote", "pending")
    source = _FakeSource([
        PollResult(jobs=(job,), complete=True),  # first sync: a new job -> info
        PollResult(jobs=(job,), complete=True),  # nothing changed -> debug
        PollError("http_5xx", "GET /jobs answered 503"),
    ])
    org = OrgConfig(address="0xabc", label="acme", job_types=(), interval=30.0, timeout=10.0,
                    full_resync_interval=3600.0, failed_job_retention=3600.0, jitter=0.0,
                    max_job_types_per_org=50, max_step_types_per_org=50,
                    max_job_series_per_org=500)
    loop = OrgLoop(OrgTarget("voc", "acme", "0xabc"), org, source,  # type: ignore[arg-type]
                   publish=lambda *a, **k: None, clock=lambda: 100.0)
    with capture_logs() as logs:
        for _ in range(3):
            asyncio.run(loop.poll_once())
    summaries = [(e["log_level"], e["new"]) for e in logs if e["event"] == "poll_summary"]
    assert summaries == [("info", 1), ("debug", 0)]
    (failed,) = [e for e in logs if e["event"] == "poll_failed"]
    assert failed["host"] == "api.example.org" and failed["reason"] == "http_5xx"
    assert "503" in failed["error"] and failed["source"] == "voc"


def test_vocdoni_login_names_its_source() -> None:
    from exporter.sources.base import ClientSettings
    from exporter.sources.vocdoni import VocdoniSource

    source = VocdoniSource("voc-prod", ClientSettings(base_url="https://api.example.org"),
                           email="a@example.org", password="p")
    assert source._auth.source == "voc-prod"
    assert source.host == "api.example.org"
