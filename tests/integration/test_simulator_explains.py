"""The simulator explains itself: --help per knob, a start banner, `demo --print-config`."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import httpx
import yaml

from exporter.simulator import SimOptions
from tests.integration.harness import (
    EXE,
    exporter,
    scrape,
    select,
    simulator,
    truth,
    wait_for,
)


def test_simulate_help_gives_meaning_unit_and_default_of_every_knob() -> None:
    out = subprocess.run([*EXE, "simulate", "--help"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    flat = " ".join(out.split())
    for f in dataclasses.fields(SimOptions):
        if f.name in ("listen_host", "listen_port"):
            continue
        assert " ".join(f.metadata["help"].split()) in flat, f.name
        shown = "(default off)" if isinstance(f.default, bool) else f"(default {f.default})"
        assert shown in flat, f.name
    for unit in ("milliseconds", "in seconds", "per second", "0..1"):
        assert unit in flat


def test_simulate_prints_orgs_credentials_and_truth(tmp_path: Path) -> None:
    with simulator(tmp_path, "--vocdoni-orgs", "2", "--vocdoni-v1-orgs", "1") as url:
        orgs = truth(url)
        log = (tmp_path / "sim.log").read_text()
    assert f"{url}/_sim/truth" in log and "sim-password" in log and "sim-token" in log
    for mount in ("vocdoni", "vocdoni-v1"):
        assert f"{url}/{mount} " in log
        for address in orgs[mount]:
            assert address in log


def test_demo_print_config_is_a_working_template(tmp_path: Path) -> None:
    done = subprocess.run([*EXE, "demo", "--print-config"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    config = done.stdout
    assert config.startswith("# asyncjob-exporter demo config")
    data = yaml.safe_load(config)
    with simulator(tmp_path) as url:  # a default simulator: the very orgs of the template
        orgs = truth(url)
        listed = {s["name"]: [o["address"] for o in s.get("organizations", [])]
                  for s in data["sources"]}
        assert listed["vocdoni-demo"] == sorted(orgs["vocdoni"])
        assert listed["vocdoni-legacy"] == sorted(orgs["vocdoni-v1"])
        text = config.replace("http://127.0.0.1:8801", url)
        env = {"ASYNCJOB_DEMO_TOKEN": "sim-token"}
        with exporter(tmp_path, text, env=env) as (exp, _):
            wait_for(lambda: httpx.get(f"{exp}/readyz", timeout=2).status_code == 200, 30,
                     "ready")
            ups = select(scrape(exp), "asyncjob_up")
            # Ordo and the GitHub, GitLab and Airflow faces of its world: one org each
            assert len(ups) == 4 + len(orgs["vocdoni"]) + len(orgs["vocdoni-v1"])
            assert set(ups.values()) == {1.0}
