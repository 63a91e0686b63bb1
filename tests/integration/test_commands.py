"""`demo` and `once` as a user runs them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from tests.integration.harness import EXE, Proc, free_port, scrape, select, simulator, wait_for


def _total(samples: dict, name: str) -> float:  # type: ignore[type-arg]
    return sum(select(samples, name).values())


def test_demo_serves_live_changing_values(tmp_path: Path) -> None:
    port = free_port()
    proc = Proc([*EXE, "demo", "--web.listen-address", f"127.0.0.1:{port}", "--log.format",
                 "json"], tmp_path / "demo.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 30,
                 "demo ready")
        assert f"{url}/metrics" in proc.output()

        def rendered() -> dict | None:  # type: ignore[type-arg]
            s = scrape(url)
            ups = select(s, "asyncjob_up")
            ok = len(ups) == 9 and all(v == 1 for v in ups.values())
            return s if ok and _total(s, "asyncjob_jobs") > 0 else None

        # /readyz answers 200 only once /metrics serves bytes that include every org's first poll
        first = rendered()
        assert first is not None, "ready, but /metrics did not show every org's first poll"
        sources = {dict(k)["source"] for k in select(first, "asyncjob_up")}
        assert {"vocdoni-demo", "vocdoni-legacy", "ordo-demo", "github-demo",
                "airflow-demo", "gitlab-demo"} <= sources

        def changed() -> bool:
            now = scrape(url)
            return any(now.get(k) != v for k, v in first.items()
                       if k[0].startswith(("asyncjob_jobs", "asyncjob_finished_total")))

        wait_for(changed, 2 * 2.0 + 1, "a job metric to change within one poll interval")
    finally:
        assert proc.stop() == 0


def test_once_prints_exposition_and_fails_when_an_org_fails(tmp_path: Path) -> None:
    with simulator(tmp_path, "--vocdoni-orgs", "1", "--vocdoni-v1-orgs", "0") as url:
        org = sorted(httpx.get(f"{url}/_sim/truth").json()["vocdoni"])[0]
        cfg = tmp_path / "c.yaml"
        base = f"""
state: {{path: "{tmp_path / 'never.db'}"}}
sources:
  - name: v2
    kind: vocdoni
    base_url: {url}/vocdoni
    auth: {{token: sim-token}}
    organizations: [{{address: "{org}", name: acme}}]
"""
        cfg.write_text(base)
        ok = subprocess.run([*EXE, "once", "--config.file", str(cfg), "--log.format", "json"],
                            capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr[-2000:]
        assert 'asyncjob_up{org="acme",source="v2"} 1.0' in ok.stdout
        assert not (tmp_path / "never.db").exists()  # a dry run writes no state
        bad = base + """  - name: down
    kind: ordo
    base_url: http://127.0.0.1:9/ordo
    auth: {token: x}
    organization: gone
"""
        cfg.write_text(bad)
        started = time.monotonic()
        fail = subprocess.run([*EXE, "once", "--config.file", str(cfg), "--log.format", "json"],
                              capture_output=True, text=True, timeout=60)
        assert fail.returncode == 1
        assert 'asyncjob_up{org="gone",source="down"} 0.0' in fail.stdout
        assert 'asyncjob_up{org="acme",source="v2"} 1.0' in fail.stdout
        assert time.monotonic() - started < 30
