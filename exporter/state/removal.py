"""Which known jobs a poll proves gone: "not found", or two complete lists in a row lacking them.

A job is removed only on positive evidence (docs/reliability.md). The walk over every known
job stops every MERGE_SLICE jobs so the caller can let scrapes in: at 100k jobs it is tens of
milliseconds of work.
"""

from __future__ import annotations

from collections.abc import Container, Generator, Iterable

from exporter.sources.base import PollResult

MERGE_SLICE = 64  # jobs merged or walked between two looks at the pacer's clock


def proven_gone(known: Iterable[str], seen: Container[str] | None, result: PollResult,
                missing: dict[str, int]) -> Generator[None, None, set[str]]:
    """Return the ids to drop; count a first miss in `missing`, forget it once listed again.

    `seen` holds the ids this poll observed; None when every known job was observed (the
    tracker knew nothing before this poll: nothing can be lacking).
    """
    gone = set(result.gone)
    if seen is not None:
        for job_id in [j for j in missing if j in seen]:
            del missing[job_id]
    if not result.complete:
        return gone
    for job_id in [j for j in missing if j in result.listed]:  # a resync pass saw it
        del missing[job_id]
    if seen is None:
        return gone
    lacking = []
    for walked, job_id in enumerate(known, 1):
        if job_id not in seen and job_id not in gone and job_id not in result.listed:
            lacking.append(job_id)
        if walked % MERGE_SLICE == 0:
            yield
    for job_id in lacking:
        misses = missing.get(job_id, 0) + 1
        if misses >= 2:
            gone.add(job_id)
        else:
            missing[job_id] = misses
    return gone
