"""Read an API answer safely: bounded size after decompression, bounded JSON nesting."""

from __future__ import annotations

import json
import zlib
from typing import Any

from exporter.sources.base import PollError, PollReason

# JSON nested deeper than this is cut (the value becomes TOO_DEEP) instead of crashing the parser.
MAX_JSON_DEPTH = 200
TOO_DEEP = "<nested too deep>"
TOO_LONG = "<number too long>"
# Only encodings the bounded decoder below can inflate piece by piece are asked for.
ACCEPT_ENCODING = "gzip, deflate"
CHUNK = 64 * 1024


class TooLarge(PollError):
    """An answer grew past max_response_bytes (after decompression): refused, not retried."""

    def __init__(self, message: str) -> None:
        super().__init__(PollReason.TOO_LARGE, message)


def parse_json(text: str, what: str) -> Any:
    """Parse JSON; values nested past MAX_JSON_DEPTH become TOO_DEEP instead of a crash."""
    try:
        return json.loads(text)
    except ValueError as exc:
        if "limit" not in str(exc):  # not an integer of thousands of digits: not JSON at all
            raise PollError(PollReason.DECODE, f"{what} body is not JSON") from None
    except RecursionError:
        pass
    try:
        return json.loads(cut_deep_json(text, MAX_JSON_DEPTH), parse_int=_parse_int)
    except (ValueError, RecursionError):
        raise PollError(PollReason.DECODE, f"{what} body is not JSON") from None


def _parse_int(digits: str) -> int | str:
    """Read an integer; one too long to be a count or an id becomes TOO_LONG."""
    return int(digits) if len(digits) <= 40 else TOO_LONG


def cut_deep_json(text: str, limit: int) -> str:
    """Replace every array or object opened at depth `limit` with a TOO_DEEP string."""
    out: list[str] = []
    depth, start, in_string, escaped, cut_from = 0, 0, False, False, -1
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth == limit and cut_from < 0:
                out.append(text[start:i])
                cut_from = i
        elif ch in "]}":
            if depth == limit and cut_from >= 0:
                out.append(json.dumps(TOO_DEEP))
                start, cut_from = i + 1, -1
            depth -= 1
    out.append(text[start:] if cut_from < 0 else "")
    return "".join(out)


class BoundedBody:
    """Inflate and collect a body piece by piece; raise TooLarge past `cap` decoded bytes."""

    def __init__(self, encoding: str, cap: int, what: str) -> None:
        self._cap, self._what = cap, what
        self._buf = bytearray()
        encoding = encoding.strip().lower()
        self._inflate: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS)
        elif encoding not in ("", "identity"):
            raise PollError(PollReason.DECODE, f"{what}: unsupported Content-Encoding")

    def feed(self, raw: bytes) -> None:
        """Add one raw chunk; decoded output is bounded before it is ever allocated."""
        if self._inflate is None:
            self._add(raw)
            return
        try:
            data = self._inflate.decompress(raw, self._room())
            self._add(data)
            while self._inflate.unconsumed_tail:
                self._add(self._inflate.decompress(self._inflate.unconsumed_tail, self._room()))
        except zlib.error:
            raise PollError(PollReason.DECODE, f"{self._what}: undecodable body") from None

    def _room(self) -> int:
        return self._cap - len(self._buf) + 1

    def _add(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > self._cap:
            raise TooLarge(f"{self._what}: answer larger than max_response_bytes "
                           f"({self._cap} bytes); raise it if the API is right")

    def text(self, charset: str | None) -> str:
        """Decode the collected body (UTF-8 unless the answer says otherwise)."""
        try:
            return self._buf.decode(charset or "utf-8", errors="replace")
        except LookupError:
            return self._buf.decode("utf-8", errors="replace")
