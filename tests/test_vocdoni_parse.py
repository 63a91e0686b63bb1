"""Tests of exporter.sources.vocdoni_parse: list and job items of both API generations."""

from __future__ import annotations



