"""Per-job start timestamps: every active job of the oldest ones is named, capped per org."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from exporter.collector import JobsCollector
from exporter.sources.base import JobObservation, PollResult
from exporter.state.snapshot import ExporterSnapshot, SeriesKind
from exporter.state.tracker import OrgTracker, TrackerSettings

METRIC = "asyncjob_active_job_start_timestamp_seconds"


def _job(
    job_id: str, status: str, job_type: str = "publish_process", **kw: object
) -> JobObservation:
    return JobObservation(job_id=job_id, job_type=job_type, status=status, **kw)  # type: ignore[arg-type]


def _tracker(cap: int = 500) -> OrgTracker:
    return OrgTracker("voc", "acme", TrackerSettings(max_job_series_per_org=cap))


def test_every_active_job_gets_its_start_even_without_progress() -> None:
    t = _tracker()
    t.apply(PollResult(jobs=(
        _job("a", "pending", job_type="relay_vote"),  # no progress, no created_at: first seen
        _job("b", "running", created_at=50.0),
        _job("c", "completed", created_at=10.0),  # terminal: no series
    ), complete=True), now=100.0)
    snap = t.snapshot(100.0)
    assert snap.active_starts == {
        ("relay_vote", "pending", "a"): 100.0,
        ("publish_process", "running", "b"): 50.0,
    }


def test_cap_keeps_the_oldest_and_counts_the_rest_once() -> None:
    t = _tracker(cap=2)
    jobs = tuple(_job(f"j{i}", "pending", created_at=float(100 - i)) for i in range(5))
    t.apply(PollResult(jobs=jobs, complete=True), now=200.0)
    t.snapshot(200.0)
    snap = t.snapshot(201.0)
    assert set(snap.active_starts) == {("publish_process", "pending", "j4"),
                                       ("publish_process", "pending", "j3")}
    assert snap.series_dropped[SeriesKind.ACTIVE_JOB_START] == 3


def test_collector_exposes_the_start_with_job_id() -> None:
    t = _tracker()
    stuck = _job("stuck-1", "pending", created_at=42.0)
    t.apply(PollResult(jobs=(stuck,), complete=True), now=100.0)
    snap = ExporterSnapshot(orgs={("voc", "acme"): t.snapshot(100.0)})
    registry = CollectorRegistry()
    registry.register(JobsCollector(lambda: snap, clock=lambda: 100.0))
    text = generate_latest(registry).decode()
    line = (f'{METRIC}{{job_id="stuck-1",job_type="publish_process",org="acme",'
            f'source="voc",status="pending"}} 42.0')
    assert line in text
