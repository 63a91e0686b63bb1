"""Exposition parts: written in chunks equal to the whole, gzipped once, never copied whole."""

from __future__ import annotations

import gzip

from exporter.payload import CHUNK, Payload


def _parts() -> list[bytes]:
    return [f"line_{n} {n}\n".encode() * (n % 50) for n in range(20_000)]


def test_chunks_add_up_to_the_parts_in_order_and_stay_near_the_chunk_size() -> None:
    parts = _parts()
    payload = Payload(parts)
    chunks = list(payload.chunks())
    assert b"".join(chunks) == b"".join(parts) == payload.join()
    assert len(payload) == sum(map(len, parts))
    assert len(chunks) > 10
    assert all(len(c) < CHUNK + max(map(len, parts)) for c in chunks)


def test_gzip_is_the_whole_compressed_and_computed_once() -> None:
    payload = Payload(_parts())
    assert not payload.has_gzip()
    first = payload.gzipped()
    assert gzip.decompress(first) == payload.join()
    assert payload.gzipped() is first and payload.has_gzip()
    assert Payload(_parts()).gzipped() == first  # equal renders give equal bytes


def test_an_empty_payload_is_empty() -> None:
    payload = Payload([b"", b""])
    assert len(payload) == 0 and list(payload.chunks()) == [] and payload.join() == b""
    assert gzip.decompress(payload.gzipped()) == b""
