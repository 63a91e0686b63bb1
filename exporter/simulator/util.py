"""Formatting and identity helpers shared by the simulated APIs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime

GO_ZERO_TIME = "0001-01-01T00:00:00Z"

# Label-safety fodder: quotes, backslashes, newlines, unicode, and a 300-char string.
HOSTILE_LABELS: tuple[str, ...] = (
    'quote"type',
    "back\\slash",
    "new\nline",
    "unicodé-✓-日本語",
    "x" * 300,
)


def _split_ms(ts: float) -> tuple[str, int]:
    ms = round(ts * 1000)
    seconds, frac = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return stamp, frac


def go_time(ts: float | None) -> str:
    """Format like Go's RFC3339Nano of a Mongo (millisecond) time: trailing zeros trimmed."""
    if ts is None:
        return GO_ZERO_TIME
    stamp, frac = _split_ms(ts)
    if frac:
        stamp += (f".{frac:03d}").rstrip("0")
    return stamp + "Z"


def js_time(ts: float | None) -> str | None:
    """Format like JavaScript's Date.toISOString (what Express sends for timestamptz)."""
    if ts is None:
        return None
    stamp, frac = _split_ms(ts)
    return f"{stamp}.{frac:03d}Z"


def hex_id(rng: random.Random, nbytes: int) -> str:
    """Return a bare lowercase hex id of `nbytes` random bytes, as Vocdoni's NewJobID."""
    return f"{rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def derived_hex(*parts: str) -> str:
    """Return 64 hex chars derived from `parts`, so results need no storage."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def is_hex(value: str, length: int | None = None) -> bool:
    """Tell whether `value` is non-empty hex (of `length` chars when given)."""
    if not value or (length is not None and len(value) != length):
        return False
    try:
        int(value, 16)
    except ValueError:
        return False
    return all(c in "0123456789abcdefABCDEF" for c in value)


def norm_address(value: str) -> str | None:
    """Normalize an org address as go-ethereum's IsHexAddress accepts it, else None."""
    bare = value[2:] if value[:2] in ("0x", "0X") else value
    return "0x" + bare.lower() if is_hex(bare, 40) else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(secret: bytes, claims: dict[str, object]) -> str:
    """Sign HS256 claims the way Vocdoni's jwtauth does."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(sig)}"


def read_jwt(secret: bytes, token: str) -> dict[str, object] | None:
    """Return the claims of a well-signed token, else None (expiry is the caller's check)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        want = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _unb64(parts[2])):
            return None
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None
