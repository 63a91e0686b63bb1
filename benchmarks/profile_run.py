"""Run the daemon under cProfile on every thread: `python -m benchmarks.profile_run OUT ARGS...`.

cProfile alone sees only the main thread, but the exposition renders on its own thread; this
wraps Thread.run so each thread gets a profile, and merges them into OUT at exit (SIGTERM).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
from typing import Any

from exporter.cli import main


def run(out: str, argv: list[str]) -> int:
    """Profile main(argv) and all threads it starts; write merged stats to `out`."""
    profiles: list[cProfile.Profile] = []
    original = threading.Thread.run

    def profiled(self: threading.Thread, *args: Any) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    threading.Thread.run = profiled  # type: ignore[method-assign]
    main_prof = cProfile.Profile()
    main_prof.enable()
    try:
        code = main(argv)
    finally:
        main_prof.disable()
        stats = pstats.Stats(main_prof)
        for prof in profiles:
            try:
                stats.add(prof)
            except TypeError:  # a thread still running: no stats yet
                continue
        stats.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
