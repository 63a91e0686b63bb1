"""POST /-/reload only with --web.enable-lifecycle (Prometheus convention); SIGHUP always."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.integration.harness import exporter, scrape, select, wait_for

CONFIG = """\
state: {path: ":memory:"}
sources:
  - name: ordo
    kind: ordo
    base_url: http://127.0.0.1:9/ordo
    auth: {token: t}
    organization: lidar
"""
RELOADED = "asyncjob_config_last_reload_success_timestamp_seconds"


def test_reload_endpoint_needs_the_flag_but_sighup_always_works(tmp_path: Path) -> None:
    with exporter(tmp_path, CONFIG) as (url, proc):
        resp = httpx.post(f"{url}/-/reload", timeout=10)
        assert resp.status_code == 403 and "--web.enable-lifecycle" in resp.text
        before = select(scrape(url), RELOADED)[()]
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: select(scrape(url), RELOADED)[()] > before, 10, "SIGHUP reload")
    with exporter(tmp_path, CONFIG, "--web.enable-lifecycle", name="on") as (url, _):
        resp = httpx.post(f"{url}/-/reload", timeout=10)
        assert resp.status_code == 200 and resp.json() == {"status": "ok"}
