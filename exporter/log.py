"""Structured logging setup: JSON lines by default, console on a TTY."""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = ("debug", "info", "warn", "warning", "error")  # "warn": Prometheus' spelling
# Tracebacks without frame locals: locals hold credentials (login bodies, Authorization headers).
_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def setup_logging(level: str = "info", fmt: str | None = None) -> None:
    """Configure structlog once; `fmt` None picks console on a TTY, JSON elsewhere."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (expected one of {', '.join(LEVELS)})")
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback))
    else:
        processors += [_TRACEBACKS, structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper())
        ),
        # Resolve sys.stderr per logger so a replaced stream (tests, daemons) is honoured.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
