"""Make label values from API data safe and bounded before they reach a metric family.

Every string an API sends that becomes a label value (job ids, job types, step types) passes
through clean_label() in the tracker, so the exposition stays valid UTF-8, one sample per line,
and bounded in size whatever the API sends. Escaping of `"`, `\\` and newlines is left to
prometheus_client's encoders, which apply the text-format rules.
"""

from __future__ import annotations

import hashlib
import unicodedata

MAX_LABEL_LENGTH = 128
OVERFLOW_VALUE = "other"
EMPTY_VALUE = "unknown"
# OpenMetrics allows at most 128 characters for an exemplar's label names and values together.
MAX_EXEMPLAR_CHARS = 128
EXEMPLAR_LABEL = "job_id"
_EXEMPLAR_UNSAFE = frozenset('"\\\n')
# Control characters, lone surrogates and the Unicode line/paragraph separators (some parsers and
# Python's str.splitlines() treat the latter as line breaks).
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Bidirectional overrides and isolates: they can make a label read differently than it sorts
# ("Trojan Source"); harmless formatting characters such as ZWJ in emoji are kept.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# A truncated value keeps a short digest of the whole so distinct long ids stay distinct.
_DIGEST_CHARS = 8
_SEPARATOR = "~"


def _keep(ch: str) -> bool:
    """Tell whether a character may stay in a label value."""
    return ch not in _BIDI_CONTROLS and unicodedata.category(ch) not in _DROPPED_CATEGORIES


def clean_label(value: object) -> str:
    """Return a printable, length-capped label value; APIs send arbitrary strings.

    Idempotent (state restored from disk is cleaned again), deterministic across restarts, and
    injective enough for job ids: values longer than MAX_LABEL_LENGTH keep a prefix plus a digest
    of the whole value instead of colliding on a shared prefix.
    """
    text = value if isinstance(value, str) else str(value)
    # Job ids are hex or decimal: printable ASCII without edge spaces is already clean, and
    # returning the same object spares a 100k-job first sync a copy of every id (CPU, peak RSS).
    if (text.isascii() and text.isprintable() and 0 < len(text) <= MAX_LABEL_LENGTH
            and text[0] != " " and text[-1] != " "):
        return text
    return _clean_chars(text)


def _clean_chars(text: str) -> str:
    """Clean character by character: the general path of clean_label."""
    # Replace lone surrogates so the exposition is valid UTF-8.
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    text = "".join(ch for ch in text if _keep(ch)).strip()
    if len(text) > MAX_LABEL_LENGTH:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=_DIGEST_CHARS // 2).hexdigest()
        head = text[: MAX_LABEL_LENGTH - _DIGEST_CHARS - len(_SEPARATOR)].rstrip()
        text = f"{head}{_SEPARATOR}{digest}"
    return text or EMPTY_VALUE


def exemplar_labels(job_id: str) -> dict[str, str] | None:
    """Return a job's exemplar label set, or None when it could break an OpenMetrics scrape.

    Exemplars are optional hints, so risky ones are left out rather than altered (a truncated id
    would point at a job that does not exist): ids over OpenMetrics' 128-character limit make
    parsers reject the whole scrape, and prometheus_client's parser mis-reads escaped quotes
    inside exemplar labels.
    """
    if len(EXEMPLAR_LABEL) + len(job_id) > MAX_EXEMPLAR_CHARS:
        return None
    if any(ch in _EXEMPLAR_UNSAFE for ch in job_id):
        return None
    return {EXEMPLAR_LABEL: job_id}


class CappedLabels:
    """Admit at most `cap` distinct values; the rest collapse into OVERFLOW_VALUE."""

    __slots__ = ("_cap", "_overflowed", "_values")

    # Past this many distinct overflowed values, drops are no longer told apart (memory bound).
    MAX_TRACKED_OVERFLOW = 100_000

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._values: set[str] = set()
        self._overflowed: set[str] = set()

    def admit(self, value: str) -> tuple[str, bool]:
        """Return (label to use, True when this value was newly dropped by the cap).

        OVERFLOW_VALUE itself never takes a slot: state restored after a restart holds it for
        jobs the cap dropped, and letting it in would push out a value admitted before.
        """
        if value in self._values or value == OVERFLOW_VALUE:
            return value, False
        if len(self._values) < self._cap:
            self._values.add(value)
            return value, False
        if value in self._overflowed:
            return OVERFLOW_VALUE, False
        if len(self._overflowed) < self.MAX_TRACKED_OVERFLOW:
            self._overflowed.add(value)
            return OVERFLOW_VALUE, True
        return OVERFLOW_VALUE, False

    def set_cap(self, cap: int) -> None:
        """Change the cap on reload: a raised cap admits new values at once, admitted ones stay."""
        self._cap = cap
