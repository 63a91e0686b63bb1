"""Read an API answer safely: bounded size after decompression, bounded JSON nesting."""

from __future__ import annotations

import codecs
import json
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from exporter.pacing import Pacer
from exporter.sources.base import PollError, PollReason

# JSON nested deeper than this is cut (the value becomes TOO_DEEP) instead of crashing the parser.
MAX_JSON_DEPTH = 200
TOO_DEEP = "<nested too deep>"
TOO_LONG = "<number too long>"
# Only encodings the bounded decoder below can inflate piece by piece are asked for.
ACCEPT_ENCODING = "gzip, deflate"
CHUNK = 64 * 1024
PARSE_SLICE = 16 * 1024  # bytes split into items between two looks at the pacer (~1 ms)


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
        self._size = 0
        self._sink: Callable[[bytes], None] | None = None  # streamed: pieces go on, not kept
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

    def stream_to(self, sink: Callable[[bytes], None]) -> None:
        """Hand each decoded piece to `sink` from now on instead of keeping it."""
        self._sink = sink

    def _room(self) -> int:
        return self._cap - self._size + 1

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap:
            raise TooLarge(f"{self._what}: answer larger than max_response_bytes "
                           f"({self._cap} bytes); raise it if the API is right")
        if self._sink is not None:
            self._sink(data)
        else:
            self._buf += data

    def text(self, charset: str | None) -> str:
        """Decode the collected body (UTF-8 unless the answer says otherwise)."""
        try:
            return self._buf.decode(charset or "utf-8", errors="replace")
        except LookupError:
            return self._buf.decode("utf-8", errors="replace")


_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


class ArrayItems:
    """Split a streamed JSON array into items as bytes arrive; memory: one chunk and one item.

    Each item is parsed by the standard library's C scanner (faster than a token-streaming
    parser, measured 5x on an 18 MB Ordo list). An item that scanner refuses (nested too deep,
    an integer of thousands of digits, or cut short) waits for the end of the body, where the
    rest goes through parse_json and its markers, as a whole body would. A body that is not an
    array is kept whole (an error object is small) and parsed at close into `document`.
    """

    def __init__(self, on_item: Callable[[Any], None], what: str,
                 charset: str | None = None) -> None:
        self._on_item, self._what = on_item, what
        try:
            self._decoder = codecs.getincrementaldecoder(charset or "utf-8")("replace")
        except LookupError:
            self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf, self._pos = "", 0
        self._state = "start"  # start | open | item | comma | end | whole
        self._retry_at = 0  # after a refused item, scan again once the buffer holds this much
        self.document: Any = None  # the parsed body when it was not an array
        self.items = 0

    def feed(self, data: bytes) -> None:
        """Take the next decoded piece of the body; hand every complete item on."""
        self._append(self._decoder.decode(data))
        self._scan(final=False)

    def close(self) -> None:
        """Finish the body: hand on the last items; raise PollError if it was not JSON."""
        self._append(self._decoder.decode(b"", True))
        self._scan(final=True)
        if self._state == "whole":
            self.document = parse_json(self._buf, self._what)
        elif self._state != "end":
            raise PollError(PollReason.DECODE, f"{self._what} body is not JSON")

    def _append(self, text: str) -> None:
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            self._buf, self._pos = self._buf[self._pos:], 0
        self._buf += text

    def _skip(self) -> bool:
        """Skip whitespace; return True when a character follows."""
        buf, pos = self._buf, self._pos
        while pos < len(buf) and buf[pos] in _WHITESPACE:
            pos += 1
        self._pos = pos
        return pos < len(buf)

    def _scan(self, final: bool) -> None:
        """Advance through the buffer as far as complete values allow."""
        while self._state != "whole" and self._skip():
            char, state = self._buf[self._pos], self._state
            if state == "start":
                self._state = "open" if char == "[" else "whole"
                self._pos += char == "["
            elif (state == "open" and char == "]") or (state == "comma" and char in ",]"):
                self._state = "item" if char == "," else "end"
                self._pos += 1
            elif state in ("open", "item") and char != "]":
                if not self._item(final):
                    return
            else:  # trailing data after the array, a missing comma or a trailing one
                raise PollError(PollReason.DECODE, f"{self._what} body is not JSON")

    def _item(self, final: bool) -> bool:
        """Parse one item; False when it needs more of the body first."""
        if not final and len(self._buf) - self._pos < self._retry_at:
            return False
        try:
            value, end = _DECODER.raw_decode(self._buf, self._pos)
        except (ValueError, RecursionError):
            if not final:  # cut short by the chunk, or refused: look again with twice the text
                self._retry_at = 2 * (len(self._buf) - self._pos)
                return False
            self._rest()
            return True
        after = end
        while after < len(self._buf) and self._buf[after] in _WHITESPACE:
            after += 1
        if not final and (after == len(self._buf) or self._buf[after] not in ",]"):
            self._retry_at = 2 * (len(self._buf) - self._pos)  # "1." may go on as "1.5"
            return False
        self._retry_at, self._pos, self._state = 0, end, "comma"
        self.items += 1
        self._on_item(value)
        return True

    def _rest(self) -> None:
        """Parse the rest of the array as one body: deep or huge values become markers."""
        rest = parse_json("[" + self._buf[self._pos:], self._what)
        if not isinstance(rest, list):
            raise PollError(PollReason.DECODE, f"{self._what} body is not JSON")
        self._buf, self._pos, self._state = "", 0, "end"
        for value in rest:
            self.items += 1
            self._on_item(value)


async def read_streamed(chunks: AsyncIterator[bytes], body: BoundedBody, items: ArrayItems,
                        worked: Callable[[float], None] = lambda seconds: None) -> None:
    """Inflate (bounded) and split an answer in slices, pausing between them; tell `worked`
    how long each slice's parsing took (it is not the API's time)."""
    pending: list[bytes] = []
    body.stream_to(pending.append)
    pacer = Pacer()
    async for raw in chunks:
        body.feed(raw)
        for piece in pending:
            for start in range(0, len(piece), PARSE_SLICE):
                began = time.perf_counter()
                items.feed(piece[start:start + PARSE_SLICE])
                worked(time.perf_counter() - began)  # before the next await: the deadline
                await pacer.breathe()
        pending.clear()
    items.close()
