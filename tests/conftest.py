"""Shared fixtures: structlog's default configuration for every test, a config file writer."""

from __future__ import annotations

import pathlib
import textwrap
from collections.abc import Iterator

import pytest
import structlog

from tests.fakes import WriteConfig


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Undo setup_logging() calls made by CLI tests so later tests log to a live stream."""
    yield
    structlog.reset_defaults()



@pytest.fixture
def write_config(tmp_path: pathlib.Path) -> WriteConfig:
    """Write dedented YAML to tmp_path/config.yaml (or `name`) and return its path."""

    def write(text: str, name: str = "config.yaml") -> pathlib.Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
