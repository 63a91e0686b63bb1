"""Server clock estimate: late answers never pull it back, real clock steps are adopted."""

from __future__ import annotations

from email.utils import formatdate

from exporter.sources.server_clock import SKEW_BLOCK, ServerClock, http_date

T0 = 1_796_385_600.0  # 2026-12-04T12:00:00Z


def date(seconds: float) -> str:
    """Spell a time as a server's Date header does (whole seconds, GMT)."""
    return formatdate(seconds, usegmt=True)


def test_a_late_answer_lowers_its_sample_but_not_the_estimate() -> None:
    now = [T0 + 0.25]
    clock = ServerClock(lambda: now[0])
    assert clock.observe("a", date(T0 + 10)) == T0 + 10  # the server runs 10 s ahead
    assert clock.offset("a") == 9.75
    now[0] += 5  # Date written at T0 + 11, read 4 s later
    clock.observe("a", date(T0 + 11))
    assert clock.offset("a") == 9.75 and clock.now("a") == now[0] + 9.75
    assert clock.offset("b") == 0.0  # per key; nothing read yet


def test_a_better_sample_is_adopted_at_once() -> None:
    now = [T0 + 0.875]
    clock = ServerClock(lambda: now[0])
    clock.observe("a", date(T0))  # Date truncated 0.875 s behind
    now[0] = T0 + 1.125
    clock.observe("a", date(T0 + 1))
    assert clock.offset("a") == -0.125


def test_a_real_step_back_is_adopted_within_two_blocks() -> None:
    now = [T0]
    clock = ServerClock(lambda: now[0])
    adopted_after = None
    for n in range(1, 3 * SKEW_BLOCK):
        now[0] += 1
        step = 0 if n == 1 else -30  # the server's clock steps back 30 s after one answer
        clock.observe("a", date(now[0] + step))
        if adopted_after is None and clock.offset("a") == -30:
            adopted_after = n - 1
    assert adopted_after is not None and SKEW_BLOCK <= adopted_after <= 2 * SKEW_BLOCK


def test_a_missing_or_malformed_date_is_no_sample() -> None:
    clock = ServerClock(lambda: T0)
    clock.observe("a", date(T0 + 5))
    for bad in (None, "", "yesterday", "Fri, 99 Dec 2026 12:00:00 GMT"):
        assert clock.observe("a", bad) is None
    assert clock.offset("a") == 5
    assert http_date(date(T0)) == T0
