"""Shared fixtures: every test starts with structlog's default configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Undo setup_logging() calls made by CLI tests so later tests log to a live stream."""
    yield
    structlog.reset_defaults()
