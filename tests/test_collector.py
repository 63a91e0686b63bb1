"""JobsCollector: every contract family, dense series, ages, exemplars, golden output."""

from __future__ import annotations

import platform
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import (
    CACHED,
    FAMILIES,
    POLL_REASON_LABELS,
    SERIES_DROPPED_LABELS,
    JobsCollector,
)
from exporter.exposition import Family
from exporter.render import generate_openmetrics as generate_om
from exporter.sources.base import JOB_STATUSES, STEP_STATUSES, PollReason, RequestStatsView
from exporter.state.hist import API_LATENCY_BUCKETS
from exporter.state.snapshot import (
    DiscoveryHealth,
    Exemplar,
    ExporterSnapshot,
    Histogram,
    OrgHealth,
    OrgSnapshot,
    SeriesKind,
)

NOW = 10_000.0
S, ORG_NAME = "ordo", "lidar"
ORG = {"source": S, "org": ORG_NAME}
REPO = Path(__file__).resolve().parents[1]
SPEC = REPO.parent / "shared" / "spec" / "metrics.md"  # the binding contract
DOCS = REPO / "docs" / "metrics.md"
# In the binding spec but not exported (none today).
SPEC_NOT_EXPORTED: set[str] = set()


def _exposed(fam: Family) -> str:
    """Return a family's name as /metrics spells it (the library appends _total to counters)."""
    return fam.name + "_total" if fam.kind == "counter" else fam.name


# The contract as the collector states it: exposed name -> (type, label names).
CONTRACT = {_exposed(f): (f.kind, set(f.labels)) for f in FAMILIES}
JOB_FAMILIES = [f.name for f in FAMILIES if "job_type" in f.labels]  # as the parser names them


def _contract_table(path: Path) -> dict[str, tuple[str, set[str]]]:
    """Parse the metric tables of a contract page: exposed name -> (type, label names)."""
    if not path.exists():
        pytest.fail(f"metrics contract not found at {path}")
    table: dict[str, tuple[str, set[str]]] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`asyncjob_"):
            continue
        kind = cells[1].split()[0]
        labels = re.sub(r"\([^)]*\)", "", cells[2])
        names = {x.strip() for x in labels.split(",")} - {"—", ""}
        for name in re.findall(r"`(asyncjob_\w+)`", cells[0]):
            table[name] = (kind, names)
    assert len(table) > 25, f"could not parse the metric tables of {path}"
    return table


def _hist(counts: tuple[int, ...], total: float, **exemplars: Exemplar) -> Histogram:
    """Return a two-bound histogram (1s, 5s)."""
    return Histogram((1.0, 5.0), counts, total, {int(k[1:]): v for k, v in exemplars.items()})


def full_snapshot(shard: tuple[int, int] | None = (1, 3)) -> ExporterSnapshot:
    """Return a snapshot touching every field the collector reads."""
    org = OrgSnapshot(
        source=S, org=ORG_NAME, job_types=("lidar", "ortho"),
        jobs={("lidar", "running"): 2, ("lidar", "pending"): 1},
        finished={("lidar", "completed"): 7, ("ortho", "failed"): 1},
        last_finished={("lidar", "completed"): 9_000.0},
        durations={("lidar", "completed"): _hist(
            (1, 3, 7), 60.5, b1=Exemplar("job-42", 4.5, 9_000.0))},
        queue_wait={"lidar": _hist((2, 2, 2), 1.0)},
        oldest_active={("lidar", "running"): 9_400.0, ("lidar", "pending"): 20_000.0},
        progress={("lidar", "job-1"): 0.25},
        active_starts={("lidar", "running", "job-1"): 9_400.0},
        failed_jobs={("ortho", "job-9"): 9_500.0},
        import_items={"added": 12},
        vanished={"org_members": 2},
        step_types=(("lidar", "REPROJECT_LAS"),),
        steps={("lidar", "REPROJECT_LAS", "running"): 2},
        step_finished={("lidar", "REPROJECT_LAS", "success"): 5},
        step_durations={("lidar", "REPROJECT_LAS", "success"): _hist((0, 5, 5), 12.0)},
        step_attempts={("lidar", "REPROJECT_LAS"): 3},
        step_stale={("lidar", "REPROJECT_LAS"): 9_880.0},
        tracked_jobs=11,
        series_dropped={SeriesKind.PROGRESS: 4},
        invalid_items={"bad_timestamp": 1},
    )
    health = OrgHealth(S, ORG_NAME, up=True, last_success=9_990.0,
                       poll_duration=Histogram((0.1, 1.0), (3, 4, 4), 0.9),
                       poll_errors={PollReason.TIMEOUT: 2}, synced=True, resync_progress=0.25)
    latency = Histogram(API_LATENCY_BUCKETS, (*([1] * len(API_LATENCY_BUCKETS)), 2), 31.0)
    requests = RequestStatsView({("/jobs", "200"): 5, ("/jobs/{id}", "429"): 1},
                                {"/jobs": latency}, rate_limited=1, rate_limit_remaining=42)
    discovery = {"auto": DiscoveryHealth("auto", up=False, last_success=9_000.0,
                                         errors={PollReason.AUTH: 3})}
    return ExporterSnapshot({(S, ORG_NAME): org}, {(S, ORG_NAME): health}, {S: requests},
                            reload_success=False, reload_timestamp=1_234.0, shard=shard,
                            state_persistent=True, state_write_errors=0,
                            discovery=discovery)


def registry_for(snap: ExporterSnapshot, now: float = NOW) -> CollectorRegistry:
    """Return a private registry holding a collector over `snap`."""
    registry = CollectorRegistry()
    registry.register(JobsCollector(lambda: snap, clock=lambda: now, version="1.2.3"))
    return registry


@pytest.mark.parametrize(("name", "labels", "value"), [
    ("asyncjob_jobs", {"job_type": "lidar", "status": "running"}, 2),
    ("asyncjob_jobs", {"job_type": "ortho", "status": "unknown"}, 0),
    ("asyncjob_finished_total", {"job_type": "lidar", "status": "completed"}, 7),
    ("asyncjob_finished_total", {"job_type": "ortho", "status": "partial"}, 0),
    ("asyncjob_last_finished_timestamp_seconds", {"job_type": "lidar", "status": "completed"},
     9_000),
    ("asyncjob_duration_seconds_bucket", {"job_type": "lidar", "status": "completed", "le": "5.0"},
     3),
    ("asyncjob_duration_seconds_count", {"job_type": "lidar", "status": "completed"}, 7),
    ("asyncjob_duration_seconds_sum", {"job_type": "lidar", "status": "completed"}, 60.5),
    ("asyncjob_queue_wait_seconds_bucket", {"job_type": "lidar", "le": "+Inf"}, 2),
    ("asyncjob_oldest_active_age_seconds", {"job_type": "lidar", "status": "running"}, 600),
    ("asyncjob_oldest_active_age_seconds", {"job_type": "lidar", "status": "pending"}, 0),
    ("asyncjob_progress_ratio", {"job_type": "lidar", "job_id": "job-1"}, 0.25),
    ("asyncjob_failed_job_info", {"job_type": "ortho", "job_id": "job-9"}, 1),
    ("asyncjob_import_items_total", {"outcome": "added"}, 12),
    ("asyncjob_import_items_total", {"outcome": "errored"}, 0),
    ("asyncjob_jobs_vanished_total", {"job_type": "org_members"}, 2),
    ("asyncjob_steps", {"job_type": "lidar", "step_type": "REPROJECT_LAS",
                        "step_status": "running"}, 2),
    ("asyncjob_step_finished_total", {"job_type": "lidar", "step_type": "REPROJECT_LAS",
                                      "step_status": "success"}, 5),
    ("asyncjob_step_duration_seconds_bucket", {"job_type": "lidar", "step_type": "REPROJECT_LAS",
                                               "step_status": "success", "le": "1.0"}, 0),
    ("asyncjob_step_retries_total", {"job_type": "lidar", "step_type": "REPROJECT_LAS"}, 3),
    ("asyncjob_step_stale_seconds", {"job_type": "lidar", "step_type": "REPROJECT_LAS"}, 120),
    ("asyncjob_up", {}, 1),
    ("asyncjob_last_poll_success_timestamp_seconds", {}, 9_990),
    ("asyncjob_poll_duration_seconds_bucket", {"le": "0.1"}, 3),
    ("asyncjob_poll_duration_seconds_sum", {}, 0.9),
    ("asyncjob_poll_errors_total", {"reason": "timeout"}, 2),
    ("asyncjob_poll_errors_total", {"reason": "schema"}, 0),
    ("asyncjob_tracked_jobs", {}, 11),
    ("asyncjob_resync_progress_ratio", {}, 0.25),
    ("asyncjob_series_dropped_total", {"metric": "asyncjob_progress_ratio"}, 4),
])
def test_org_sample_values(name: str, labels: dict[str, str], value: float) -> None:
    registry = registry_for(full_snapshot())
    assert registry.get_sample_value(name, {**ORG, **labels}) == value


@pytest.mark.parametrize(("name", "labels", "value"), [
    ("asyncjob_api_requests_total", {"source": S, "endpoint": "/jobs", "code": "200"}, 5),
    ("asyncjob_api_requests_total", {"source": S, "endpoint": "/jobs/{id}", "code": "429"}, 1),
    ("asyncjob_api_request_duration_seconds_bucket",
     {"source": S, "endpoint": "/jobs", "le": "0.005"}, 1),
    ("asyncjob_api_request_duration_seconds_count", {"source": S, "endpoint": "/jobs"}, 2),
    ("asyncjob_api_request_duration_seconds_sum", {"source": S, "endpoint": "/jobs"}, 31),
    ("asyncjob_api_rate_limited_total", {"source": S}, 1),
    ("asyncjob_api_rate_limit_remaining", {"source": S}, 42),
    ("asyncjob_config_last_reload_successful", {}, 0),
    ("asyncjob_config_last_reload_success_timestamp_seconds", {}, 1_234),
    ("asyncjob_shard_info", {"index": "1", "count": "3"}, 1),
    ("asyncjob_discovery_up", {"source": "auto"}, 0),
    ("asyncjob_discovery_last_success_timestamp_seconds", {"source": "auto"}, 9_000),
    ("asyncjob_discovery_errors_total", {"source": "auto", "reason": "auth"}, 3),
    ("asyncjob_discovery_errors_total", {"source": "auto", "reason": "timeout"}, 0),
    ("asyncjob_build_info", {"version": "1.2.3", "python_version": platform.python_version()}, 1),
])
def test_global_sample_values(name: str, labels: dict[str, str], value: float) -> None:
    assert registry_for(full_snapshot()).get_sample_value(name, labels) == value


def _families(registry: CollectorRegistry) -> dict[str, object]:
    """Parse the text exposition back, keyed by family name."""
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_every_contract_family_has_its_type_and_labels() -> None:
    families = _families(registry_for(full_snapshot()))
    for name, (typ, labels) in CONTRACT.items():
        fam = families[name.removesuffix("_total")]
        assert fam.type == typ, name  # type: ignore[attr-defined]
        assert fam.samples, f"{name}: full_snapshot() must give every family a series"  # type: ignore[attr-defined]
        for sample in fam.samples:  # type: ignore[attr-defined]
            assert set(sample.labels) - {"le"} == labels, (name, sample)
            assert sample.timestamp is None, "no sample timestamps"
    assert set(families) == {f.name for f in FAMILIES}


def test_families_match_the_binding_spec() -> None:
    """Names, types and labels of the spec are those of FAMILIES; FAMILIES may only add."""
    spec = _contract_table(SPEC)
    missing = set(spec) - set(CONTRACT)
    assert missing <= SPEC_NOT_EXPORTED, f"spec metrics without a family: {missing}"
    for name in set(spec) & set(CONTRACT):
        assert CONTRACT[name] == spec[name], name


def test_docs_document_exactly_the_families() -> None:
    docs = _contract_table(DOCS)
    assert set(docs) == set(CONTRACT), set(docs) ^ set(CONTRACT)
    for name, entry in CONTRACT.items():
        assert docs[name] == entry, name


def test_contract_table_parsing() -> None:
    table = _contract_table(DOCS)
    assert table["asyncjob_oldest_active_age_seconds"] == (
        "gauge", {"source", "org", "job_type", "status"})  # "(pending/running only)" dropped
    assert table["asyncjob_config_last_reload_success_timestamp_seconds"] == ("gauge", set())
    assert table["asyncjob_build_info"] == ("gauge", {"version", "python_version"})


def test_poll_reasons_map_to_the_spec_labels_in_order() -> None:
    line = next(x for x in SPEC.read_text().splitlines() if "`asyncjob_poll_errors_total`" in x)
    listed = re.search(r"reason ∈ ([^|]+)", line)
    assert listed, line
    spec = [re.sub(r"\(.*", "", x).strip() for x in listed.group(1).split(",")]
    assert list(POLL_REASON_LABELS) == list(PollReason)  # every reason, in enum order
    assert list(POLL_REASON_LABELS.values()) == spec


def test_dropped_series_are_labelled_with_family_names() -> None:
    assert set(SERIES_DROPPED_LABELS) == set(SeriesKind)
    assert set(SERIES_DROPPED_LABELS.values()) <= set(CONTRACT)
    org = replace(full_snapshot().orgs[(S, ORG_NAME)],
                  series_dropped={kind: 1 for kind in SeriesKind})
    registry = registry_for(ExporterSnapshot(orgs={(S, ORG_NAME): org}))
    for label in SERIES_DROPPED_LABELS.values():
        labels = {**ORG, "metric": label}
        assert registry.get_sample_value("asyncjob_series_dropped_total", labels) == 1


def _names_in(root: Path) -> list[str]:
    """Return `file: name` for every metric name written in the Python source under `root`."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        for name in re.findall(r"asyncjob_\w+", path.read_text()):
            hits.append(f"{path.relative_to(REPO)}: {name}")
    return hits


def test_sources_and_state_name_no_metric() -> None:
    """Exposition names live in the collector only; sources and state use neutral enums."""
    assert _names_in(REPO / "exporter" / "sources") == []
    assert _names_in(REPO / "exporter" / "state") == []
    assert _names_in(REPO / "exporter")  # the scan sees names where they are written


def test_status_series_are_dense() -> None:
    registry = registry_for(full_snapshot())
    for job_type in ("lidar", "ortho"):
        for status in JOB_STATUSES:
            labels = {**ORG, "job_type": job_type, "status": status}
            assert registry.get_sample_value("asyncjob_jobs", labels) is not None
        for status in ("completed", "failed", "partial"):
            labels = {**ORG, "job_type": job_type, "status": status}
            assert registry.get_sample_value("asyncjob_finished_total", labels) is not None
    step = {**ORG, "job_type": "lidar", "step_type": "REPROJECT_LAS"}
    for status in STEP_STATUSES:
        assert registry.get_sample_value("asyncjob_steps", {**step, "step_status": status}) == (
            2 if status == "running" else 0)
    for status in ("success", "failed", "skipped"):
        labels = {**step, "step_status": status}
        assert registry.get_sample_value("asyncjob_step_finished_total", labels) is not None
    for reason in POLL_REASON_LABELS.values():
        labels = {**ORG, "reason": reason}
        assert registry.get_sample_value("asyncjob_poll_errors_total", labels) is not None
    families = _families(registry)
    assert len(families["asyncjob_jobs"].samples) == 2 * len(JOB_STATUSES)  # type: ignore[attr-defined]


def test_ages_grow_with_the_clock_between_polls() -> None:
    snap = full_snapshot()
    clock = [NOW]
    registry = CollectorRegistry()
    registry.register(JobsCollector(lambda: snap, clock=lambda: clock[0]))
    labels = {**ORG, "job_type": "lidar", "status": "running"}
    step = {**ORG, "job_type": "lidar", "step_type": "REPROJECT_LAS"}
    assert registry.get_sample_value("asyncjob_oldest_active_age_seconds", labels) == 600
    assert registry.get_sample_value("asyncjob_step_stale_seconds", step) == 120
    clock[0] += 30
    assert registry.get_sample_value("asyncjob_oldest_active_age_seconds", labels) == 630
    assert registry.get_sample_value("asyncjob_step_stale_seconds", step) == 150


def test_exemplars_only_in_openmetrics() -> None:
    registry = registry_for(full_snapshot())
    om = generate_om(registry).decode()
    line = next(x for x in om.splitlines() if 'asyncjob_duration_seconds_bucket' in x
                and 'le="5.0"' in x)
    assert line.endswith(' 3.0 # {job_id="job-42"} 4.5 9000.0')
    assert om.rstrip().endswith("# EOF")
    assert "job-42" not in generate_latest(registry).decode()


def test_shard_info_only_when_sharded() -> None:
    text = generate_latest(registry_for(full_snapshot(shard=None))).decode()
    assert "asyncjob_shard_info" not in text
    assert "asyncjob_up{" in text


def test_job_help_texts_name_the_poll_interval() -> None:
    families = _families(registry_for(full_snapshot()))
    for name in JOB_FAMILIES:
        doc = families[name].documentation  # type: ignore[attr-defined]
        assert "background polls" in doc and "defaults.interval" in doc, name
        assert doc.endswith(CACHED), name  # one shared suffix ...
    assert len(CACHED) <= 60, CACHED  # ... and a short one
    assert "defaults.interval" not in families["asyncjob_up"].documentation  # type: ignore[attr-defined]


def test_describe_lists_the_families_without_collecting() -> None:
    calls: list[int] = []

    def snapshot() -> ExporterSnapshot:
        calls.append(1)
        return ExporterSnapshot()

    collector = JobsCollector(snapshot)
    described = collector.describe()
    assert [(m.name, m.type) for m in described] == [(f.name, f.kind) for f in FAMILIES]
    assert all(not m.samples for m in described)
    registry = CollectorRegistry()
    registry.register(collector)
    assert calls == []
    generate_latest(registry)
    assert calls == [1], "one snapshot reference per collect"


@pytest.mark.parametrize("clash", [
    lambda: Gauge("asyncjob_up", "another up", registry=None),
    lambda: Counter("asyncjob_finished", "another finished", registry=None),
    lambda: Gauge("asyncjob_duration_seconds_count", "a histogram's sample", registry=None),
    lambda: Gauge("asyncjob_build_info", "another build info", registry=None),
    lambda: JobsCollector(ExporterSnapshot),
])
def test_registry_refuses_a_clashing_name_at_registration(clash: Callable[[], object]) -> None:
    calls: list[int] = []
    registry = CollectorRegistry()
    registry.register(JobsCollector(lambda: calls.append(1) or ExporterSnapshot()))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(clash())  # type: ignore[arg-type]
    assert calls == [], "the clash is found from describe(), without a collect"


def test_series_of_a_removed_org_disappear() -> None:
    snap = [full_snapshot()]
    registry = CollectorRegistry()
    registry.register(JobsCollector(lambda: snap[0], clock=lambda: NOW))
    assert registry.get_sample_value("asyncjob_up", ORG) == 1
    snap[0] = ExporterSnapshot()
    text = generate_latest(registry).decode()
    assert "lidar" not in text
    assert "asyncjob_config_last_reload_successful 1.0" in text


def test_down_org_without_success_has_no_timestamp() -> None:
    empty = Histogram((), (), 0.0)
    health = OrgHealth(S, ORG_NAME, up=False, last_success=None, poll_duration=empty)
    registry = registry_for(ExporterSnapshot(health={(S, ORG_NAME): health}))
    assert registry.get_sample_value("asyncjob_up", ORG) == 0
    assert registry.get_sample_value("asyncjob_last_poll_success_timestamp_seconds", ORG) is None
    assert registry.get_sample_value("asyncjob_poll_errors_total", {**ORG, "reason": "auth"}) == 0


GOLDEN_SNAPSHOT = ExporterSnapshot(
    orgs={("v", "acme"): OrgSnapshot("v", "acme", job_types=("org_members",),
                                      jobs={("org_members", "running"): 1}, tracked_jobs=1)},
    reload_timestamp=5.0,
)


def test_golden_text_output() -> None:
    registry = CollectorRegistry()
    registry.register(JobsCollector(lambda: GOLDEN_SNAPSHOT, clock=lambda: NOW, version="0.0.0"))
    lines = [x for x in generate_latest(registry).decode().splitlines()
             if not x.startswith("# HELP") and "build_info" not in x]
    job = 'job_type="org_members",org="acme",source="v"'
    assert lines == [
        "# TYPE asyncjob_jobs gauge",
        *(f'asyncjob_jobs{{{job},status="{s}"}} {1.0 if s == "running" else 0.0}'
          for s in JOB_STATUSES),
        "# TYPE asyncjob_finished_total counter",
        *(f'asyncjob_finished_total{{{job},status="{s}"}} 0.0'
          for s in ("completed", "failed", "partial", "cancelled")),
        *(f"# TYPE {name} {typ}" for name, typ in [
            ("asyncjob_last_finished_timestamp_seconds", "gauge"),
            ("asyncjob_duration_seconds", "histogram"),
            ("asyncjob_queue_wait_seconds", "histogram"),
            ("asyncjob_oldest_active_age_seconds", "gauge"),
            ("asyncjob_progress_ratio", "gauge"),
            ("asyncjob_active_job_start_timestamp_seconds", "gauge"),
            ("asyncjob_failed_job_info", "gauge"),
            ("asyncjob_import_items_total", "counter"),
            ("asyncjob_jobs_vanished_total", "counter"),
            ("asyncjob_steps", "gauge"),
            ("asyncjob_step_finished_total", "counter"),
            ("asyncjob_step_duration_seconds", "histogram"),
            ("asyncjob_step_retries_total", "counter"),
            ("asyncjob_step_stale_seconds", "gauge"),
            ("asyncjob_up", "gauge"),
            ("asyncjob_last_poll_success_timestamp_seconds", "gauge"),
            ("asyncjob_poll_duration_seconds", "histogram"),
            ("asyncjob_poll_errors_total", "counter"),
            ("asyncjob_api_requests_total", "counter"),
            ("asyncjob_api_request_duration_seconds", "histogram"),
            ("asyncjob_api_rate_limited_total", "counter"),
            ("asyncjob_api_rate_limit_remaining", "gauge"),
            ("asyncjob_resync_progress_ratio", "gauge"),
            ("asyncjob_tracked_jobs", "gauge"),
        ]),
        'asyncjob_tracked_jobs{org="acme",source="v"} 1.0',
        "# TYPE asyncjob_series_dropped_total counter",
        "# TYPE asyncjob_api_invalid_items_total counter",
        "# TYPE asyncjob_config_last_reload_successful gauge",
        "asyncjob_config_last_reload_successful 1.0",
        "# TYPE asyncjob_config_last_reload_success_timestamp_seconds gauge",
        "asyncjob_config_last_reload_success_timestamp_seconds 5.0",
    ]


def test_invalid_api_items_are_counted_per_org() -> None:
    """Rejected or clamped API data is visible as a counter, not only in logs."""
    from prometheus_client import CollectorRegistry

    from exporter.collector import JobsCollector
    from exporter.state.snapshot import ExporterSnapshot, OrgSnapshot

    org = OrgSnapshot(source="s", org="o", invalid_items={"progress_out_of_range": 3})
    snap = ExporterSnapshot(orgs={("s", "o"): org})
    registry = CollectorRegistry()
    registry.register(JobsCollector(lambda: snap, clock=lambda: 100.0))
    value = registry.get_sample_value(
        "asyncjob_api_invalid_items_total",
        {"source": "s", "org": "o", "what": "progress_out_of_range"})
    assert value == 3.0


def test_state_persistence_families_follow_the_store() -> None:
    failing = registry_for(replace(full_snapshot(), state_persistent=False, state_write_errors=3))
    assert failing.get_sample_value("asyncjob_state_persistent") == 0.0
    assert failing.get_sample_value("asyncjob_state_write_errors_total") == 3.0
    memory = registry_for(replace(full_snapshot(), state_persistent=None, state_write_errors=0))
    assert memory.get_sample_value("asyncjob_state_persistent") is None  # absent with :memory:
    assert memory.get_sample_value("asyncjob_state_write_errors_total") == 0.0
