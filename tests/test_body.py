"""Streamed JSON arrays: items split as bytes arrive, with the whole-body error handling."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.sources.base import PollError
from exporter.sources.body import TOO_DEEP, ArrayItems

DOCS: list[Any] = [
    [],
    [1, 2, 3],
    [{"a": 'x]"[', "b": [1, {"c": None}]}, 1.5, "s", True, None, -3e5, 12345],
    [[], [[]], {}],
]


def split(body: bytes, step: int) -> tuple[list[Any], Any]:
    """Feed `body` in pieces of `step` bytes; return the items and the non-array document."""
    out: list[Any] = []
    items = ArrayItems(out.append, "/jobs")
    for start in range(0, len(body), step):
        items.feed(body[start:start + step])
    items.close()
    return out, items.document


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 65536])
def test_items_are_the_same_whatever_the_chunk_boundaries(doc: Any, step: int) -> None:
    """A chunk may end inside a string, a number ("1." then "5") or between tokens."""
    for body in (json.dumps(doc).encode(), json.dumps(doc, indent=2).encode()):
        assert split(body, step) == (doc, None)


def test_items_are_handed_on_before_the_body_ends() -> None:
    """Memory stays one chunk and one item: each item leaves as soon as it is complete."""
    out: list[Any] = []
    items = ArrayItems(out.append, "/jobs")
    body = json.dumps([{"id": i} for i in range(1000)]).encode()
    items.feed(body[: len(body) // 2])
    assert 400 < len(out) < 600
    items.feed(body[len(body) // 2:])
    items.close()
    assert [o["id"] for o in out] == list(range(1000))


def test_a_body_that_is_not_an_array_is_parsed_whole() -> None:
    """An error object (or any other shape) comes back as the document for its own message."""
    assert split(b'  {"error": "boom"}', 3) == ([], {"error": "boom"})


@pytest.mark.parametrize("body", [b"<html>x</html>", b'[{"id":1}', b'[{"id":1},', b"[1] junk",
                                  b"[1,]", b"[,1]", b"", b"[1 2]", b"[1]\n[2]"])
@pytest.mark.parametrize("step", [1, 4, 100])
def test_broken_bodies_are_decode_errors(body: bytes, step: int) -> None:
    """HTML, a cut-short body, trailing data or a stray comma: the whole answer is refused."""
    with pytest.raises(PollError) as info:
        split(body, step)
    assert info.value.reason == "decode"


def test_deep_and_huge_values_become_markers_and_the_items_after_them_stay() -> None:
    """100k-deep nesting and a 70k-digit integer are cut as a whole body would cut them."""
    deep = "[" * 100_000 + "]" * 100_000
    body = ('[{"id": 1, "result": ' + deep + '}, {"id": "b\\"[{"}, {"id": ' + "9" * 70_000
            + '}, {"id": 4}]').encode()
    out, document = split(body, 65536)
    assert document is None
    assert [item["id"] for item in out] == [1, 'b"[{', "<number too long>", 4]
    value, depth = out[0]["result"], 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert value == TOO_DEEP
