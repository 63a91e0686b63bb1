"""A live exporter keeps an org's health counters across a reload; process metrics are served."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.integration.harness import exporter, free_port, scrape, select, wait_for

CONFIG = """
state: {{path: ":memory:"}}
defaults: {{interval: {interval}, timeout: 1s, retries: 0, jitter: 0}}
sources:
  - name: dead
    kind: ordo
    base_url: http://127.0.0.1:{port}/ordo
    auth: {{token: x}}
    organization: lidar
"""


def _health(url: str) -> tuple[float, float, float]:
    samples = scrape(url)
    errors = sum(select(samples, "asyncjob_poll_errors_total", source="dead").values())
    polls = sum(select(samples, "asyncjob_poll_duration_seconds_count", source="dead").values())
    reloaded = sum(select(samples,
                          "asyncjob_config_last_reload_success_timestamp_seconds").values())
    return errors, polls, reloaded


def test_reload_with_changed_org_settings_keeps_its_counters(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: every poll fails with `connect`
    with exporter(tmp_path, CONFIG.format(interval="0.2s", port=port)) as (url, proc):
        wait_for(lambda: _health(url)[0] >= 8, 20, "failed polls counted")
        samples = scrape(url)
        assert select(samples, "process_resident_memory_bytes")
        assert select(samples, "process_cpu_seconds_total")
        assert select(samples, "python_info")
        (tmp_path / "exporter.yaml").write_text(CONFIG.format(interval="0.25s", port=port))
        errors, polls, reloaded = _health(url)
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _health(url)[2] > reloaded, 10, "reload applied")
        after_errors, after_polls, _ = _health(url)
        # before the fix both restarted at 0 with the org's new loop
        assert after_errors >= errors and after_polls >= polls, (errors, after_errors)
