"""Histogram buckets configurable per source/org (`duration_buckets`, `step_duration_buckets`)."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, load_config
from exporter.orgloop import tracker_settings
from exporter.sources.base import JobObservation, PollResult, StepObservation
from exporter.state.snapshot import DURATION_BUCKETS
from exporter.state.tracker import OrgTracker
from tests.fakes import WriteConfig

ADDR = "0x" + "1" * 40
VOCDONI = f"""
defaults:
  duration_buckets: [1, 10, 1m]
sources:
  - name: voc
    kind: vocdoni
    base_url: https://api.example.org
    auth: {{token: t}}
    step_duration_buckets: [2, 4]
    organizations:
      - address: "{ADDR}"
        duration_buckets: ["500ms", 5s]
      - address: "0x{"2" * 40}"
"""


def test_buckets_merge_defaults_source_org(write_config: WriteConfig) -> None:
    (src,) = load_config(write_config(VOCDONI), env={}).sources
    assert src.duration_buckets == (1.0, 10.0, 60.0)
    assert src.step_duration_buckets == (2.0, 4.0)
    first, second = src.orgs
    assert first.duration_buckets == (0.5, 5.0) and second.duration_buckets == (1.0, 10.0, 60.0)
    assert second.step_duration_buckets == (2.0, 4.0)


def test_builtin_default_buckets(write_config: WriteConfig) -> None:
    text = VOCDONI.replace("defaults:\n  duration_buckets: [1, 10, 1m]\n", "")
    (src,) = load_config(write_config(text), env={}).sources
    assert src.orgs[1].duration_buckets == DURATION_BUCKETS


@pytest.mark.parametrize("bad", ["[10, 5]", "[1, 1]", "[0, 5]", "[-1]", "[]", "[.inf]", "[true]"])
def test_bad_buckets_are_rejected_with_the_location(write_config: WriteConfig, bad: str) -> None:
    text = VOCDONI.replace("[1, 10, 1m]", bad)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text), env={})
    assert next(loc for loc, _ in info.value.details).startswith("defaults.duration_buckets")


def test_tracker_histograms_use_the_org_buckets(write_config: WriteConfig) -> None:
    (src,) = load_config(write_config(VOCDONI), env={}).sources
    t = OrgTracker("voc", "o", tracker_settings(src.orgs[0]))
    t.apply(PollResult(jobs=(), complete=True), 0.0)
    step = StepObservation("s", "REPROJECT", "running", started_at=1.0)
    job = JobObservation("j", "lidar", "running", created_at=0.0, started_at=1.0, steps=(step,))
    t.apply(PollResult(jobs=(job,), complete=True), 2.0)
    step = StepObservation("s", "REPROJECT", "success", started_at=1.0, finished_at=3.0)
    job = JobObservation("j", "lidar", "completed", created_at=0.0, started_at=1.0,
                         finished_at=3.0, steps=(step,))
    t.apply(PollResult(jobs=(job,), complete=True), 5.0)
    snap = t.snapshot(5.0)
    assert snap.durations[("lidar", "completed")].bounds == (0.5, 5.0)
    assert snap.queue_wait["lidar"].bounds == (0.5, 5.0)
    assert next(iter(snap.step_durations.values())).bounds == (2.0, 4.0)
