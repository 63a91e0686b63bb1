"""Transport-free request/response types and a tiny regex router for the simulated APIs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request as the mounts see it; `path` is relative to the mount."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def arg(self, name: str) -> str | None:
        """Return the first value of a query parameter, as Go's URL.Query().Get does."""
        values = self.query.get(name)
        return values[0] if values else None

    def bearer(self) -> str | None:
        """Return the token after `Bearer `, or None."""
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def json_body(self) -> Any:
        """Decode the body as JSON; raises ValueError when it is not."""
        return json.loads(self.body.decode() or "null")


@dataclass(slots=True)
class Response:
    """An HTTP response; `truncate` makes the server cut the body and drop the connection."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False


def json_response(status: int, payload: Any, content_type: str = "application/json") -> Response:
    """Encode like Go's json.Encoder: compact, with a trailing newline."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False) + "\n"
    return Response(status, body.encode(), content_type)


def text_response(
    status: int, text: str, content_type: str = "text/plain; charset=utf-8",
) -> Response:
    """Return a plain-text body."""
    return Response(status, text.encode(), content_type)


Handler = Callable[[Request, dict[str, str]], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """A matched route: its template for counting and the handler to call."""

    template: str
    handler: Handler
    params: dict[str, str]


class Router:
    """Match method + path against `{name}` templates (optionally with a regex)."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []

    def add(self, method: str, template: str, handler: Handler, pattern: str | None = None) -> None:
        """Register a route; `pattern` overrides the regex built from the template."""
        if pattern is None:
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self._routes.append((method, re.compile(f"^{pattern}$"), template, handler))

    def match(self, method: str, path: str) -> tuple[Route | None, bool]:
        """Return the route, and whether the path exists under another method."""
        other_method = False
        for m, regex, template, handler in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            if m == method:
                return Route(template, handler, found.groupdict()), False
            other_method = True
        return None, other_method
