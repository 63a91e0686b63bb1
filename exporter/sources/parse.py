"""The parsing toolkit every source shares: per-poll notes and the one timestamp policy.

The vocabulary of `what` values these notes count is base.INVALID_ITEM_WHATS.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exporter.sources.base import INVALID_ITEM, INVALID_TIMESTAMP, MAX_RAW_STATUS, PollError

_FRACTION = re.compile(r"(\.\d{6})\d+")  # nanoseconds (Go) -> microseconds
EPOCH_MS_THRESHOLD = 1e11  # epoch numbers above this are milliseconds (year 5138 in seconds)


@dataclass
class ParseNotes:
    """Per-poll tallies of sanitized input, unknown raw statuses and left-out items."""

    counts: Counter[str] = field(default_factory=Counter)
    unknown_statuses: dict[str, None] = field(default_factory=dict)  # ordered set
    status_map: Mapping[str, str] = field(default_factory=dict)  # the operator's, lowercased
    dropped: int = 0  # items left out: the list is then not known to be complete
    last_error: PollError | None = None  # why the last item was left out

    def note(self, what: str) -> None:
        """Count one tolerated oddity so the tracker can expose it."""
        self.counts[what] += 1

    def unknown(self, raw: str) -> None:
        """Remember a raw status once (truncated) so the tracker logs it once."""
        self.unknown_statuses.setdefault(raw[:MAX_RAW_STATUS], None)

    def drop(self, error: PollError | None = None) -> None:
        """Count an item left out of this poll."""
        self.counts[INVALID_ITEM] += 1
        self.dropped += 1
        self.last_error = error if error is not None else self.last_error


def read_time(value: Any, *, naive_utc: bool = False, epochs: bool = False,
              go_zero: bool = False) -> float | None:
    """Read an ISO 8601 time (per-kind leniency as flags); None when unset, ValueError if bad.

    naive_utc: a time without zone is UTC (Ordo) instead of unknowable; epochs: numbers are
    epoch seconds or milliseconds; go_zero: "" and Go's zero time (year 1) mean unset.
    """
    if value is None or (go_zero and value == ""):
        return None
    if isinstance(value, bool):
        raise ValueError("bool is not a time")
    if epochs and isinstance(value, int | float):
        seconds = float(value) / (1000.0 if abs(value) > EPOCH_MS_THRESHOLD else 1.0)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("bad epoch")
        return seconds
    if not isinstance(value, str):
        raise ValueError("not a time")
    moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00"))
    if go_zero and moment.year <= 1:
        return None
    if moment.tzinfo is None:
        if not naive_utc:
            raise ValueError("no time zone")
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_time(value: Any, notes: ParseNotes, **policy: bool) -> float | None:
    """Read a time like read_time; count an unreadable one as INVALID_TIMESTAMP."""
    try:
        return read_time(value, **policy)
    except ValueError:
        notes.note(INVALID_TIMESTAMP)
        return None
