"""Dense status series only over the statuses a source kind can produce; `unknown` once seen."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from exporter.collector import JobsCollector
from exporter.config import OrgConfig
from exporter.orgloop import OrgLoop
from exporter.sources.base import ClientSettings, JobObservation, OrgTarget, PollResult
from exporter.sources.ordo import OrdoSource
from exporter.sources.vocdoni import VocdoniSource
from exporter.state.snapshot import ExporterSnapshot
from exporter.state.tracker import OrgTracker, TrackerSettings


def _statuses(text: str, metric: str) -> set[str]:
    """Return the status label values of `metric` in an exposition."""
    out = set()
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            out.add(line.split('status="')[1].split('"')[0])
    return out


def _scrape(tracker: OrgTracker) -> str:
    snap = ExporterSnapshot(orgs={("s", "o"): tracker.snapshot(10.0)})
    registry = CollectorRegistry()
    registry.register(JobsCollector(lambda: snap, clock=lambda: 10.0))
    return generate_latest(registry).decode()


def _tracker(statuses: tuple[str, ...]) -> OrgTracker:
    t = OrgTracker("s", "o", TrackerSettings())
    t.statuses = statuses
    return t


def test_vocdoni_never_exports_running_or_partial() -> None:
    t = _tracker(VocdoniSource.job_statuses)
    t.apply(PollResult(jobs=(JobObservation("a", "relay_vote", "pending"),), complete=True), 1.0)
    text = _scrape(t)
    assert _statuses(text, "asyncjob_jobs") == {"pending", "completed", "failed"}
    assert _statuses(text, "asyncjob_finished_total") == {"completed", "failed"}


def test_ordo_keeps_every_contract_status_but_unknown_until_seen() -> None:
    t = _tracker(OrdoSource.job_statuses)
    t.apply(PollResult(jobs=(JobObservation("1", "lidar", "running"),), complete=True), 1.0)
    text = _scrape(t)
    assert _statuses(text, "asyncjob_jobs") == {
        "pending", "running", "completed", "failed", "partial"}
    assert _statuses(text, "asyncjob_finished_total") == {"completed", "failed", "partial"}


def test_unknown_appears_once_seen_and_stays() -> None:
    t = _tracker(VocdoniSource.job_statuses)
    t.apply(PollResult(jobs=(JobObservation("a", "relay_vote", "pending"),), complete=True), 1.0)
    assert "unknown" not in _statuses(_scrape(t), "asyncjob_jobs")
    t.apply(PollResult(jobs=(JobObservation("a", "relay_vote", "unknown"),), complete=True), 2.0)
    assert "unknown" in _statuses(_scrape(t), "asyncjob_jobs")
    t.apply(PollResult(jobs=(JobObservation("a", "relay_vote", "completed"),), complete=True), 3.0)
    text = _scrape(t)
    assert 'status="unknown"} 0.0' in text  # stays at 0 instead of freezing or vanishing


def test_org_loop_takes_the_status_set_from_its_source() -> None:
    org = OrgConfig(address="0xabc", label="acme", job_types=(), interval=30.0, timeout=10.0,
                    full_resync_interval=3600.0, failed_job_retention=3600.0, jitter=0.0,
                    max_job_types_per_org=50, max_step_types_per_org=50,
                    max_job_series_per_org=500)
    source = VocdoniSource("voc", ClientSettings(base_url="http://127.0.0.1:9"), token="t")
    loop = OrgLoop(OrgTarget("voc", "acme", "0xabc"), org, source, publish=lambda *a: None)
    assert loop.tracker.statuses == ("pending", "completed", "failed")
