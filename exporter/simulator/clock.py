"""World clock: wall time scaled by `speed`, which tests can pause and advance."""

from __future__ import annotations

import time
from collections.abc import Callable


class SimClock:
    """Give the world its notion of now; not thread-safe, callers hold the world lock."""

    def __init__(
        self,
        source: Callable[[], float] = time.time,
        speed: float = 1.0,
        origin: float | None = None,
    ) -> None:
        self._source = source
        self._speed = speed
        self._base = source()
        self._origin = self._base if origin is None else origin
        self._offset = 0.0
        self._paused_at: float | None = None

    def _running_now(self) -> float:
        return self._origin + (self._source() - self._base) * self._speed + self._offset

    def now(self) -> float:
        """Return world time in unix seconds; frozen while paused."""
        if self._paused_at is not None:
            return self._paused_at
        return self._running_now()

    @property
    def paused(self) -> bool:
        """Tell whether the world is frozen."""
        return self._paused_at is not None

    def pause(self) -> None:
        """Freeze the world so tests can compare truth with what the API lists."""
        if self._paused_at is None:
            self._paused_at = self._running_now()

    def resume(self) -> None:
        """Let time flow again from where it was frozen, without a jump."""
        if self._paused_at is None:
            return
        self._offset += self._paused_at - self._running_now()
        self._paused_at = None

    def advance(self, seconds: float) -> None:
        """Jump the world forward, paused or not."""
        if seconds < 0:
            raise ValueError("cannot move the clock backwards")
        if self._paused_at is not None:
            self._paused_at += seconds
        else:
            self._offset += seconds
