"""Hold a rendered exposition as the parts it was built from, so no render copies it whole.

At 10,000 orgs one exposition is ~60 MB per format. Its parts are the per-org lines the
render cache keeps anyway (exporter/fragments.py); joining them into one bytes object per
format, for the render being served and the one being built, took ~240 MB at the peak.
Scrapes write the parts in chunks instead; gzip is computed once per render and variant.
"""

from __future__ import annotations

import threading
import zlib
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate

CHUNK = 256 * 1024  # bytes a scrape writes at once: few syscalls, a small transient copy
GZIP_LEVEL = 6
_GZIP_WBITS = 31  # zlib's gzip container: fixed header (mtime 0), so equal input, equal bytes


class Payload:
    """Immutable exposition bytes in parts; len() is the byte size."""

    def __init__(self, parts: Sequence[bytes]) -> None:
        self._parts = tuple(parts)
        ends = list(accumulate(map(len, self._parts)))  # C loops: 500k parts at 10,000 orgs
        self._size = ends[-1] if ends else 0
        self._bounds = _chunk_bounds(ends)
        self._gzip: bytes | None = None
        self._gzip_lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    def chunks(self) -> Iterator[bytes]:
        """Yield the bytes in chunks of about CHUNK, joining small parts."""
        parts = self._parts
        for start, end in self._bounds:
            yield parts[start] if end == start + 1 else b"".join(parts[start:end])

    def join(self) -> bytes:
        """Return the whole exposition as one bytes object (tests, small outputs)."""
        return b"".join(self._parts)

    def gzipped(self) -> bytes:
        """Return the gzip of the bytes, compressed once however many threads ask."""
        found = self._gzip
        if found is not None:
            return found
        with self._gzip_lock:
            if self._gzip is None:
                packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
                out = [packer.compress(chunk) for chunk in self.chunks()]
                out.append(packer.flush())
                self._gzip = b"".join(out)
            return self._gzip

    def has_gzip(self) -> bool:
        """Tell whether the gzip variant was computed already."""
        return self._gzip is not None


def _chunk_bounds(ends: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Return (start, end) part ranges of about CHUNK bytes, from the parts' running ends."""
    bounds: list[tuple[int, int]] = []
    start, total = 0, ends[-1] if ends else 0
    while start < len(ends):
        offset = ends[start - 1] if start else 0
        # the first part whose end reaches a chunk's worth of bytes closes this chunk
        end = min(bisect_left(ends, offset + CHUNK, start), len(ends) - 1) + 1
        while end < len(ends) and ends[end - 1] == ends[end]:  # take trailing empty parts
            end += 1
        bounds.append((start, end))
        start = end
    return tuple(bounds) if total else ()
