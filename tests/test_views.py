"""Views: an org's snapshot holds capped per-job views, live counts only, unexpired failures."""

from __future__ import annotations

from collections import Counter

from exporter.state.aggregates import Aggregates
from exporter.state.jobbook import JobRecord
from exporter.state.snapshot import SeriesKind
from exporter.state.steps import StepsView
from exporter.state.views import OrgParts, org_snapshot


def _parts(agg: Aggregates, active: dict[str, JobRecord]) -> OrgParts:
    counts = Counter({("t", "running"): len(active), ("t", "failed"): 0})
    steps = StepsView((), {}, {}, {}, {}, {})
    return OrgParts("src", "org", ("t",), ("running", "failed"), counts, agg, active, steps,
                    len(active))


def test_snapshot_caps_per_job_views_and_expires_old_failures() -> None:
    agg = Aggregates()
    agg.failed_at.update(old=("t", 10.0), new=("t", 95.0))
    active = {str(i): JobRecord("t", "running", first_seen=float(i), progress=0.5)
              for i in range(3)}
    dropped: list[tuple[SeriesKind, str]] = []
    snap = org_snapshot(_parts(agg, active), cap=2, retention=50.0,
                        drop=lambda kind, job: dropped.append((kind, job)), now=100.0)
    assert snap.failed_jobs == {("t", "new"): 95.0}
    assert "old" not in agg.failed_at  # expired for good, not only hidden
    assert snap.progress == {("t", "0"): 0.5, ("t", "1"): 0.5}
    assert (SeriesKind.PROGRESS, "2") in dropped
    assert snap.oldest_active == {("t", "running"): 0.0}
    assert snap.jobs == {("t", "running"): 3}  # zero counts are not exported
    assert snap.tracked_jobs == 3
