"""Tests of exporter.sources.vocdoni_parse: list and job items of both API generations."""

from __future__ import annotations

from typing import Any

from exporter.sources.base import PollError
from exporter.sources.parse import ParseNotes
from exporter.sources.vocdoni_parse import slim_item as _slim
from exporter.sources.vocdoni_parse import v1_job, v2_job


def test_slimmed_list_items_parse_like_the_originals() -> None:
    """The memory-saving copy of a Vocdoni list item normalizes (or fails) exactly the same."""
    items: list[dict[str, Any]] = [
        {"jobId": "a", "type": "relay_votes", "status": "failed",
         "result": {"votes": [{"x": 1}] * 3, "added": 2, "total": 3}, "errors": ["e"]},
        {"jobId": "b", "type": "org_members", "status": "completed",
         "result": {"added": 5, "total": 6}, "errors": ["bob@example.org: bad phone"]},
        {"jobId": "c", "type": "publish_process", "status": "pending", "result": None},
        {"jobId": "d", "type": "publish_process", "status": "weird", "result": []},
        {"jobId": "e", "type": "org_members", "status": "pending", "errors": "not a list"},
        {"jobId": "f", "type": "org_members", "completed": True, "added": -1, "total": 4,
         "createdAt": "2024-01-01T00:00:00Z", "completedAt": "2024-01-01T00:00:05.1234567Z"},
        {"jobId": "g", "type": "relay_vote", "completed": "yes"},
    ]

    def outcome(parse: Any, item: dict[str, Any]) -> Any:
        notes = ParseNotes()
        try:
            return parse(item, notes), dict(notes.counts), notes.unknown_statuses
        except PollError as exc:
            return "error", str(exc)

    for item in items:
        slim = _slim(item)
        assert "'votes'" not in str(slim) and "bob@" not in str(slim)
        for parse in (v2_job, v1_job):
            assert outcome(parse, slim) == outcome(parse, item), (item, parse)
