"""HTTP answers as poll errors: which status means what, and how long Retry-After asks for."""

from __future__ import annotations

import json
import math

from exporter.sources.base import PollError, PollReason
from exporter.sources.server_clock import http_date

# Retry-After is optional (Vocdoni's chi throttle never sends it): wait this long then.
DEFAULT_RETRY_AFTER = 1.0


class HttpStatusError(PollError):
    """An unexpected HTTP status; carries the status and the API's numeric error code if any."""

    def __init__(self, reason: PollReason, message: str, status: int,
                 api_code: int | None = None) -> None:
        super().__init__(reason, message)
        self.status = status
        self.api_code = api_code


class AuthError(HttpStatusError):
    """401/403, kept distinct so a caller can log in again on 401 before giving up."""

    def __init__(self, message: str, status: int, api_code: int | None = None) -> None:
        super().__init__(PollReason.AUTH, message, status, api_code)


class NotFound(HttpStatusError):
    """404 with a JSON error body: the resource is gone (a plain-text 404 means a missing route)."""

    def __init__(self, message: str, api_code: int | None = None) -> None:
        super().__init__(PollReason.HTTP_4XX, message, 404, api_code)


def parse_retry_after(value: str | None, date_header: str | None, wall_now: float,
                      cap: float = 600.0) -> float:
    """Return the delay a Retry-After header asks for (at most `cap`), against the server's Date."""
    return min(cap, _retry_after(value, date_header, wall_now))


def _retry_after(value: str | None, date_header: str | None, wall_now: float) -> float:
    """Read delay-seconds or an HTTP date; anything else (Infinity, NaN, junk) is ignored."""
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else DEFAULT_RETRY_AFTER
    when = http_date(value)
    if when is None:
        return DEFAULT_RETRY_AFTER
    now = http_date(date_header)
    if now is None:
        now = wall_now
    return max(0.0, when - now)


def _api_code(text: str) -> int | None:
    """Return the numeric `code` of a JSON error body, or None when the body is not one."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if isinstance(body, dict):
        code = body.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None


def _is_json(text: str) -> bool:
    """Tell a JSON body (API error) from a router's plain-text page."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def status_error(method: str, endpoint: str, status: int, text: str) -> PollError:
    """Map an unexpected status to the poll error reason; never echo the body (personal data)."""
    code = _api_code(text)
    suffix = f" (code {code})" if code is not None else ""
    msg = f"{method} {endpoint} answered {status}{suffix}"
    if status in (401, 403):
        return AuthError(msg, status, code)
    if status == 404 and _is_json(text):
        return NotFound(msg, code)
    if status == 429:
        return HttpStatusError(PollReason.RATE_LIMITED, msg, status, code)
    if status >= 500:
        return HttpStatusError(PollReason.HTTP_5XX, msg, status, code)
    return HttpStatusError(PollReason.HTTP_4XX, msg, status, code)
