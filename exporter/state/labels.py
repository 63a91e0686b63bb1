"""Make label values from API data safe and bounded before they reach a metric family."""

from __future__ import annotations

import unicodedata

MAX_LABEL_LENGTH = 128
OVERFLOW_VALUE = "other"


def clean_label(value: object) -> str:
    """Return a printable, length-capped label value; APIs send arbitrary strings."""
    text = value if isinstance(value, str) else str(value)
    # Drop surrogates and other invalid code points so the exposition is valid UTF-8.
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cs"))
    text = text.strip()
    if len(text) > MAX_LABEL_LENGTH:
        text = text[:MAX_LABEL_LENGTH]
    return text or "unknown"


class CappedLabels:
    """Admit at most `cap` distinct values; the rest collapse into OVERFLOW_VALUE."""

    __slots__ = ("_cap", "_overflowed", "_values")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._values: set[str] = set()
        self._overflowed: set[str] = set()

    def admit(self, value: str) -> tuple[str, bool]:
        """Return (label to use, True when this value was newly dropped by the cap)."""
        if value in self._values:
            return value, False
        if len(self._values) < self._cap:
            self._values.add(value)
            return value, False
        if value in self._overflowed:
            return OVERFLOW_VALUE, False
        # Bound the memory of the overflow set itself; past that, stop counting distinct drops.
        if len(self._overflowed) < 100_000:
            self._overflowed.add(value)
            return OVERFLOW_VALUE, True
        return OVERFLOW_VALUE, False

    def set_cap(self, cap: int) -> None:
        """Change the cap on reload; already admitted values stay."""
        self._cap = cap
