"""Three shard processes against one simulator cover every org exactly once."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import EXE, sim_post, simulator, truth

ORGS = 30


def _config(url: str, orgs: list[str]) -> str:
    lines = "\n".join(f'      - address: "{a}"' for a in orgs)
    return f"""
state: {{path: ":memory:"}}
defaults: {{interval: 1s, timeout: 5s, max_requests_per_second: 200, concurrency: 16}}
sources:
  - name: v2
    kind: vocdoni
    base_url: {url}/vocdoni
    api: v2
    auth: {{token: "${{SIM_TOKEN}}"}}
    organizations:
{lines}
"""


def _once(cfg: Path, *flags: str) -> dict[tuple[str, str, str], float]:
    proc = subprocess.run([*EXE, "once", "--config.file", str(cfg), "--log.format", "json",
                           *flags], capture_output=True, text=True, timeout=120,
                          env={"SIM_TOKEN": "sim-token", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs: dict[tuple[str, str, str], float] = {}
    shard_info = []
    for family in text_string_to_metric_families(proc.stdout):
        for s in family.samples:
            if s.name == "asyncjob_jobs":
                jobs[(s.labels["org"], s.labels["job_type"], s.labels["status"])] = s.value
            if s.name == "asyncjob_shard_info":
                shard_info.append(s.labels)
    if flags:
        index, count = flags[-1].split("/")
        assert shard_info == [{"index": index, "count": count}]
    else:
        assert shard_info == []
    return jobs


def test_three_shards_cover_every_org_once_and_match_unsharded(tmp_path: Path) -> None:
    with simulator(tmp_path, "--vocdoni-orgs", str(ORGS), "--vocdoni-v1-orgs", "0",
                   "--history", "12", "--seed", "3") as url:
        sim_post(url, "pause")
        sim_truth = truth(url)["vocdoni"]
        orgs = sorted(sim_truth)
        assert len(orgs) == ORGS
        cfg = tmp_path / "c.yaml"
        cfg.write_text(_config(url, orgs))
        whole = _once(cfg)
        shards = [_once(cfg, "--shard", f"{i}/3") for i in range(3)]
    owners = Counter(org for shard in shards for org in {k[0] for k in shard})
    assert set(owners) == set(orgs)
    assert all(n == 1 for n in owners.values()), owners
    assert all(len({k[0] for k in shard}) > 0 for shard in shards)
    union: dict[tuple[str, str, str], float] = {}
    for shard in shards:
        union.update(shard)
    assert union == whole
    for org in orgs:
        total = sum(v for (o, _, _), v in whole.items() if o == org)
        assert total == sim_truth[org]["total"], org
