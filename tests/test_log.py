"""Logging setup: formats, levels, and no frame locals (credentials) in tracebacks."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from exporter.log import setup_logging


def _log_exception(secret: str) -> None:
    log = structlog.get_logger()
    password = secret  # a local a naive traceback renderer would print
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("poll crashed", source="s")
    assert password


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_carry_no_locals(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("info", fmt)
    _log_exception("hunter2-very-secret")
    out = stream.getvalue()
    assert "RuntimeError" in out and "poll crashed" in out
    assert "hunter2-very-secret" not in out


def test_json_lines_and_level_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("warning", "json")
    log = structlog.get_logger()
    log.info("hidden", a=1)
    log.warning("shown", a=2)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["level"], r["a"]) for r in lines] == [("shown", "warning", 2)]
    assert "timestamp" in lines[0]


def test_warn_is_warning_and_unknown_levels_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("warn", "json")
    log = structlog.get_logger()
    log.info("hidden")
    log.warning("shown")
    lines = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert lines == ["shown"]
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("loud", "json")
