"""Simulator -> exporter -> real Prometheus -> real Alertmanager -> webhook; dashboards' queries.

One stack serves both halves: simulator A (no random failures) feeds source `alerting`, whose
failed jobs must notify once per burst and resolve; simulator C (every job stuck pending) feeds
source `outage`, whose API goes down right after the first poll, so it must page as
AsyncJobExporterDown only; simulator B (failures, stuck jobs, Ordo steps, 429s) feeds the other
sources, against which every dashboard panel's query must return data. Prometheus loads
alerts.yml with `for:` and age thresholds divided by SCALE, Alertmanager runs
prometheus/alertmanager.example.yml with only its receivers and group timers replaced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scripts.promstack import (
    REPO,
    RULES,
    WebhookReceiver,
    alertmanager,
    example_config,
    has_value,
    load_dashboards,
    metric_names,
    panel_queries,
    prometheus,
    query,
    query_range,
    require_binaries,
    scaled_rules,
    variable_selectors,
)
from tests.integration.harness import exporter, scrape, sim_post, simulator, truth, wait_for

RETENTION_S = 10  # failed_job_retention of source `alerting`: the alert resolves after it
RUN_S = 25  # how long simulator B runs before the dashboard queries
SCALE = 60  # `for:` and age thresholds of alerts.yml divided by this: 5m -> 5s, 30m -> 30s
GROUP_WAIT = 3  # seconds, the example's group_wait (30s) for this test
GROUP_INTERVAL = 2  # seconds, the example's group_interval (5m) for this test
MAX_PENDING_S = 1800 // SCALE  # the largest pending_age_seconds threshold, scaled
BURST = 30  # failures of one job type within a second
LATENCY_FILE = REPO / "benchmarks" / "alert_latency.json"
SIM_A = ("--seed", "11", "--job-rate", "0.5", "--failure-ratio", "0", "--stuck-ratio", "0",
         "--job-duration-s", "1", "--history", "5", "--vocdoni-orgs", "1",
         "--vocdoni-v1-orgs", "0", "--ordo-job-rate", "0", "--ordo-history", "0")
SIM_B = ("--seed", "5", "--job-rate", "3", "--failure-ratio", "0.3", "--stuck-ratio", "0.2",
         "--job-duration-s", "2", "--history", "10", "--vocdoni-orgs", "2",
         "--vocdoni-v1-orgs", "1", "--ordo-job-rate", "2", "--ordo-history", "10")
SIM_C = ("--seed", "13", "--job-rate", "1", "--failure-ratio", "0", "--stuck-ratio", "1",
         "--job-duration-s", "1", "--history", "0", "--vocdoni-orgs", "1",
         "--vocdoni-v1-orgs", "0", "--ordo-job-rate", "0", "--ordo-history", "0")


def _orgs(addresses: dict[str, Any]) -> str:
    """Render the organizations list of a source."""
    return "\n".join(f'      - address: "{a}"' for a in sorted(addresses))


def config_for(sim_a: str, sim_b: str, sim_c: str, state: Path, truth_a: Any, truth_b: Any,
               truth_c: Any) -> str:
    """Return an exporter config: `alerting` on simulator A, three sources on B, `outage` on C."""
    return f"""
state:
  path: {state}
defaults:
  interval: 1s
  timeout: 5s
  jitter: 0
sources:
  - name: alerting
    kind: vocdoni
    base_url: {sim_a}/vocdoni
    api: auto
    failed_job_retention: {RETENTION_S}s
    auth:
      token: ${{SIM_TOKEN}}
    organizations:
{_orgs(truth_a["vocdoni"])}
  - name: vocdoni-v2
    kind: vocdoni
    base_url: {sim_b}/vocdoni
    api: auto
    auth:
      token: ${{SIM_TOKEN}}
    organizations:
{_orgs(truth_b["vocdoni"])}
  - name: vocdoni-v1
    kind: vocdoni
    base_url: {sim_b}/vocdoni-v1
    api: auto
    max_job_types_per_org: 2  # the dropped-series panels need a cap that bites
    auth:
      token: ${{SIM_TOKEN}}
    organizations:
{_orgs(truth_b["vocdoni-v1"])}
  - name: ordo
    kind: ordo
    base_url: {sim_b}/ordo
    auth:
      token: ${{SIM_TOKEN}}
    organization: ordo
  - name: discovered  # organizations: auto, for the discovery panels
    kind: vocdoni
    base_url: {sim_b}/vocdoni-v1
    api: auto
    auth: {{email: ops@example.org, password_file: pw}}
    organizations: auto
  - name: outage
    kind: vocdoni
    base_url: {sim_c}/vocdoni
    api: auto
    auth:
      token: ${{SIM_TOKEN}}
    organizations:
{_orgs(truth_c["vocdoni"])}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run both simulators, the exporter, Alertmanager, Prometheus and the webhook receiver."""
    try:
        require_binaries()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    tmp = tmp_path_factory.mktemp("alerting")
    for sub in "abc":
        (tmp / sub).mkdir()
    with (
        WebhookReceiver() as receiver,
        simulator(tmp / "a", *SIM_A) as sim_a,
        simulator(tmp / "b", *SIM_B) as sim_b,
        simulator(tmp / "c", *SIM_C) as sim_c,
    ):
        truth_a, truth_b, truth_c = truth(sim_a), truth(sim_b), truth(sim_c)
        cfg = config_for(sim_a, sim_b, sim_c, tmp / "state.db", truth_a, truth_b, truth_c)
        (tmp / "pw").write_text("sim-password\n")  # the simulator's login password
        am_config = example_config(receiver.url, f"{GROUP_WAIT}s", f"{GROUP_INTERVAL}s")
        with (
            exporter(tmp, cfg, "--shard", "0/1", env={"SIM_TOKEN": "sim-token"}) as (url, _),
            alertmanager(tmp, receiver.url, am_config) as am,
            prometheus(tmp, [url.removeprefix("http://")], am,
                       rules=scaled_rules(tmp, SCALE)) as prom,
        ):
            start = time.time()
            wait_for(lambda: query(prom, "asyncjob_api_rate_limited_total"), 20, "first scrape")
            # source `outage`: stuck pending jobs seen once, then its API answers 503 for good
            wait_for(lambda: query(prom, 'asyncjob_oldest_active_age_seconds{source="outage",'
                                         'status="pending"}'), 20, "outage source polled")
            sim_post(sim_c, "faults", {"mount": "vocdoni", "mode": "503"})
            # an Ordo job whose first step fails, and a few 429s: the steps and API panels
            # need them to happen while Prometheus watches
            sim_post(sim_b, "fail_job", {"mount": "ordo", "job_type": "lidar-ept"})
            sim_post(sim_b, "faults", {"mount": "vocdoni", "mode": "429", "count": 2,
                                       "retry_after": 1})
            yield {"sim_a": sim_a, "sim_b": sim_b, "url": url, "prom": prom, "am": am,
                   "receiver": receiver, "org": next(iter(truth_a["vocdoni"])), "start": start,
                   "outage_org": next(iter(truth_c["vocdoni"]))}


def _firing_failed(prom: str) -> list[dict[str, Any]]:
    """Return the active AsyncJobFailed alerts of source `alerting`, as Prometheus sees them."""
    return query(prom, 'ALERTS{alertname="AsyncJobFailed", source="alerting"}')


def test_failed_job_notifies_with_its_labels_then_resolves(stack: dict[str, Any]) -> None:
    prom, receiver, org = stack["prom"], stack["receiver"], stack["org"]
    sim_a = stack["sim_a"]
    failed_counter = ('asyncjob_finished_total{source="alerting", job_type="publish_process", '
                      'status="failed"}')
    # the failed counter must exist at 0 first, so that increase() sees the failure and the
    # rule's counter fallback really has something to (not) fire on
    sim_post(sim_a, "jobs", {"mount": "vocdoni", "org": org, "job_type": "publish_process"})
    wait_for(lambda: query(prom, failed_counter + " == 0"), 20, "failed counter at 0")
    time.sleep(1.5)  # a second scrape of the 0

    started = time.monotonic()
    job_id = sim_post(sim_a, "fail_job", {"mount": "vocdoni", "org": org,
                                          "job_type": "publish_process"})["job_id"]
    fired = wait_for(lambda: [(at, a) for at, a in receiver.alerts(
        "firing", alertname="AsyncJobFailed", source="alerting", job_type="publish_process")
        if job_id in a["annotations"]["job_ids"].split(",")],
        30, f"AsyncJobFailed notification naming {job_id}")
    latency = fired[0][0] - started
    print(f"\nalert latency (fail_job -> webhook): {latency:.2f} s")
    LATENCY_FILE.parent.mkdir(exist_ok=True)
    LATENCY_FILE.write_text(json.dumps({"alert_latency_s": round(latency, 3)}) + "\n")

    labels, annotations = fired[0][1]["labels"], fired[0][1]["annotations"]
    # one alert per job type: no job_id label; the template's query named the job
    assert labels == {"alertname": "AsyncJobFailed", "severity": "warning", "source": "alerting",
                      "org": org, "job_type": "publish_process"}
    assert annotations["job_ids"] == job_id
    assert annotations["summary"].startswith("1 publish_process job(s)")
    assert job_id in annotations["description"] and org in annotations["description"]
    assert annotations["runbook"] and annotations["runbook_url"].endswith("#asyncjobfailed")
    assert "var-job_type=publish_process" in annotations["dashboard_url"]
    # only that job: simulator A fails nothing else, and no job-less fallback alert
    others = [a for _, a in receiver.alerts(alertname="AsyncJobFailed", source="alerting")
              if a["annotations"]["job_ids"] != job_id]
    assert not others, others
    assert query(prom, f"increase({failed_counter}[15m]) > 0"), "the failure was not counted"

    # failed_job_retention drops asyncjob_failed_job_info: the alert resolves, and the
    # increase(...[15m]) fallback must not take over while the counter still shows the failure
    resolved = wait_for(
        lambda: receiver.alerts("resolved", alertname="AsyncJobFailed", source="alerting",
                                job_type="publish_process"),
        RETENTION_S + 30, f"resolved notification for {job_id}")
    print(f"alert resolved {resolved[0][0] - fired[0][0]:.2f} s after firing "
          f"(failed_job_retention {RETENTION_S}s)")
    # not before the retention ran out: the exporter saw the failure after fail_job returned,
    # so it drops the info RETENTION_S after `started` at the earliest (firing waits on
    # group_wait and the rule's evaluation, so it is no bound: a resolve 8.0 s after a 4.5 s
    # firing is on time)
    assert resolved[0][0] - started >= RETENTION_S
    quiet_until = time.monotonic() + 4
    while time.monotonic() < quiet_until:
        assert not _firing_failed(prom), _firing_failed(prom)
        time.sleep(0.5)
    assert query(prom, f"increase({failed_counter}[15m]) > 0"), "the fallback was not tested"
    others = [a for _, a in receiver.alerts(alertname="AsyncJobFailed", source="alerting")
              if a["annotations"]["job_ids"] != job_id]
    assert not others, others


def _notes_with(receiver: WebhookReceiver, status: str, **labels: str) -> list[dict[str, Any]]:
    """Return the webhook payloads holding at least one alert with this status and labels."""
    return [note for note in receiver.payloads()
            if any(a["status"] == status and all(a["labels"].get(k) == v for k, v in labels.items())
                   for a in note["alerts"])]


def test_failure_burst_arrives_as_one_notification(stack: dict[str, Any]) -> None:
    prom, receiver, org, sim_a = stack["prom"], stack["receiver"], stack["org"], stack["sim_a"]
    # the stream must be known first: failures in a stream's first read are history
    sim_post(sim_a, "jobs", {"mount": "vocdoni", "org": org, "job_type": "set_process_status"})
    counter = ('asyncjob_finished_total{source="alerting", job_type="set_process_status", '
               'status="failed"}')
    wait_for(lambda: query(prom, counter), 20, "stream known")
    job_ids = {sim_post(sim_a, "fail_job", {"mount": "vocdoni", "org": org,
                                            "job_type": "set_process_status"})["job_id"]
               for _ in range(BURST)}
    labels = {"alertname": "AsyncJobFailed", "source": "alerting",
              "job_type": "set_process_status"}
    wait_for(lambda: _notes_with(receiver, "firing", **labels), 30, "burst notification")
    # Prometheus counts the whole burst in one alert ...
    def counted() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())
                and float(a["value"]) == BURST]
    (alert,) = wait_for(counted, 20, f"AsyncJobFailed counting {BURST} failures")
    assert alert["annotations"]["summary"].startswith(f"{BURST} set_process_status job(s)")
    # the template's query ran in Prometheus and named five of the burst's jobs
    ids = alert["annotations"]["job_ids"].split(",")
    assert len(ids) == 5 and set(ids) <= job_ids, (ids, job_ids)
    assert all(i in alert["annotations"]["description"] for i in ids)
    # ... and Alertmanager sends it once, however the count grows meanwhile
    time.sleep(3 * GROUP_INTERVAL + 1)
    (note,) = _notes_with(receiver, "firing", **labels)
    (sent,) = [a for a in note["alerts"] if a["labels"]["job_type"] == "set_process_status"]
    # it carries what Prometheus knew when it was sent (the first poll may see part of the burst)
    ids = sent["annotations"]["job_ids"].split(",")
    assert 1 <= len(ids) <= 5 and set(ids) <= job_ids, (ids, job_ids)
    assert note["groupLabels"] == {"source": "alerting", "org": org,
                                   "alertname": "AsyncJobFailed"}


def test_outage_with_stuck_jobs_notifies_exporter_down_only(stack: dict[str, Any]) -> None:
    prom, receiver, org = stack["prom"], stack["receiver"], stack["outage_org"]
    # the exporter keeps serving the (stale) ages, past every pending threshold
    over = (f'max(asyncjob_oldest_active_age_seconds{{source="outage", status="pending"}}) '
            f'> {MAX_PENDING_S + 10}')
    wait_for(lambda: query(prom, over), 90, "stale ages past the pending thresholds")
    down = wait_for(lambda: receiver.alerts("firing", alertname="AsyncJobExporterDown",
                                            source="outage", org=org), 30, "ExporterDown")
    assert down[0][1]["annotations"]["runbook_url"].endswith("#asyncjobexporterdown")
    time.sleep(GROUP_WAIT + GROUP_INTERVAL)
    others = [a["labels"] for _, a in receiver.alerts(source="outage")
              if a["labels"]["alertname"] != "AsyncJobExporterDown"]
    assert not others, others
    firing = query(prom, 'ALERTS{source="outage", alertstate="firing"}')
    assert {s["metric"]["alertname"] for s in firing} == {"AsyncJobExporterDown"}, firing


def test_example_inhibition_silences_the_consequences(stack: dict[str, Any]) -> None:
    receiver, am = stack["receiver"], stack["am"]
    src = "inhibition-test"

    def alert(name: str, **labels: str) -> dict[str, Any]:
        return {"labels": {"alertname": name, "severity": "warning", "source": src, **labels},
                "annotations": {"summary": name}}

    alerts = [
        alert("AsyncJobExporterDown", org="down", instance="a:9877"),
        alert("AsyncJobStuckPending", org="down", job_type="t"),
        alert("AsyncJobFailed", org="down", job_type="t"),
        alert("AsyncJobStuckPending", org="fine", job_type="t"),
    ]
    other = "inhibition-test-discovery"
    alerts += [{"labels": {"alertname": "AsyncJobDiscoveryFailing", "severity": "warning",
                           "source": other, "instance": "a:9877"}, "annotations": {}},
               {"labels": {"alertname": "AsyncJobStepStale", "severity": "warning",
                           "source": other, "org": "x", "job_type": "t", "step_type": "s"},
                "annotations": {}}]
    httpx.post(f"{am}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
    wait_for(lambda: receiver.alerts("firing", source=src, org="fine"), 20, "uninhibited alert")
    time.sleep(GROUP_WAIT + GROUP_INTERVAL)
    got = {(a["labels"]["alertname"], a["labels"]["source"], a["labels"].get("org", ""))
           for _, a in receiver.alerts("firing") if a["labels"]["source"] in (src, other)}
    assert got == {("AsyncJobExporterDown", src, "down"), ("AsyncJobStuckPending", src, "fine"),
                   ("AsyncJobDiscoveryFailing", other, "")}


def test_rate_limited_alert_reaches_the_receiver(stack: dict[str, Any]) -> None:
    receiver = stack["receiver"]
    wait_for(lambda: receiver.alerts("firing", alertname="AsyncJobAPIRateLimited",
                                     source="vocdoni-v2"), 20, "AsyncJobAPIRateLimited")


def _wait_for_run(stack: dict[str, Any]) -> None:
    """Let simulator B run RUN_S seconds under Prometheus before the dashboard checks."""
    remaining = stack["start"] + RUN_S - time.time()
    if remaining > 0:
        time.sleep(remaining)


def test_every_dashboard_panel_returns_data(stack: dict[str, Any]) -> None:
    _wait_for_run(stack)
    prom, end = stack["prom"], time.time()
    start = stack["start"]
    # Grafana's $__range is the picked time range; the test range is the run so far
    queries = panel_queries(rate_interval="1m", interval="1s", range_=f"{int(end - start)}s")
    data: dict[tuple[str, str], bool] = {}
    for q in queries:
        if q.instant:
            result = query(prom, q.expr, at=end)
        else:
            result = query_range(prom, q.expr, start, end, 1)
        key = (q.dashboard, q.panel["title"])
        data[key] = data.get(key, False) or has_value(result)
    assert len(data) >= 40, sorted(data)
    empty = sorted(key for key, ok in data.items() if not ok)
    assert not empty, f"panels without data after {RUN_S}s: {empty}"


def test_every_metric_the_dashboards_use_is_exported(stack: dict[str, Any]) -> None:
    exported = {name for name, _ in scrape(stack["url"])}
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
                for r in g["rules"] if "record" in r}
    exprs = [q.target["expr"] for q in panel_queries()]
    for dashboard in load_dashboards().values():
        exprs += [sel for sel, _ in variable_selectors(dashboard).values()]
    used = set().union(*(metric_names(e) for e in exprs))
    assert len(used) > 25, used
    missing = {n for n in used if n not in exported and n not in recorded}
    assert not missing, f"dashboards use metrics the exporter does not expose: {missing}"


def test_every_dashboard_variable_offers_values(stack: dict[str, Any]) -> None:
    prom = stack["prom"]
    for name, dashboard in load_dashboards().items():
        for var, (selector, label) in variable_selectors(dashboard).items():
            values = httpx.get(f"{prom}/api/v1/label/{label}/values",
                               params={"match[]": selector}, timeout=10).json()["data"]
            assert values, f"{name}: variable {var} ({selector}, {label}) offers nothing"
