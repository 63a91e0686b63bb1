"""Label safety: clean_label, caps, exemplars, and hostile API strings through to both formats."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as generate_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.collector import JobsCollector
from exporter.config import SourceConfig
from exporter.render import generate_openmetrics
from exporter.sources.base import JobObservation, PollResult, StepObservation
from exporter.state.labels import (
    MAX_EXEMPLAR_CHARS,
    MAX_LABEL_LENGTH,
    OVERFLOW_VALUE,
    CappedLabels,
    _clean_chars,
    clean_label,
    exemplar_labels,
)
from exporter.state.snapshot import ExporterSnapshot
from exporter.state.store import StateStore
from exporter.state.tracker import OrgTracker, TrackerSettings

HOSTILE = (
    'quote"type', "back\\slash", "new\nline", "cr\rlf\r\n", "tab\there", "nul\x00byte",
    "del\x7fc1\x85", "ls\u2028ps\u2029", "bidi\u202eevil\u202c", "unicodé-✓-日本語",
    "lone\ud800surrogate", "x" * 300, "y" * 300 + "1", "y" * 300 + "2", "  padded  ", "\n\t",
    "", '} 1\nfake_metric{a="b', "# EOF",
)


def _has_forbidden(text: str) -> bool:
    """Tell whether a cleaned value still holds a character clean_label must remove."""
    return any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in "\u202e\u202c"
               for c in text)


@pytest.mark.parametrize("raw", HOSTILE)
def test_clean_label_output_is_safe_bounded_and_idempotent(raw: str) -> None:
    out = clean_label(raw)
    out.encode("utf-8")  # strict: raises on anything that is not valid UTF-8
    assert 0 < len(out) <= MAX_LABEL_LENGTH
    assert not _has_forbidden(out)
    assert out == out.strip()
    assert clean_label(out) == out  # state restored from disk is cleaned a second time


def test_clean_label_keeps_what_prometheus_can_escape_and_drops_controls() -> None:
    assert clean_label('quote"type') == 'quote"type'
    assert clean_label("back\\slash") == "back\\slash"
    assert clean_label("new\nline") == "newline"
    assert clean_label("cr\rlf\r\n") == "crlf"
    assert clean_label("ls\u2028ps\u2029") == "lsps"
    assert clean_label("bidi\u202eevil\u202c") == "bidievil"
    assert clean_label("unicodé-✓-日本語") == "unicodé-✓-日本語"
    assert clean_label("lone\ud800surrogate") == "lone?surrogate"
    assert clean_label("  padded  ") == "padded"
    assert clean_label("") == clean_label("\n\t") == "unknown"
    assert clean_label(12345) == "12345"
    exact = "z" * MAX_LABEL_LENGTH
    assert clean_label(exact) == exact


def test_long_values_keep_a_prefix_and_stay_distinct() -> None:
    a, b = clean_label("y" * 300 + "1"), clean_label("y" * 300 + "2")
    assert len(a) == len(b) == MAX_LABEL_LENGTH
    assert a != b  # distinct job ids must not merge: each job is counted once
    assert a.startswith("y" * 100) and b.startswith("y" * 100)
    assert clean_label("y" * 300 + "1") == a  # deterministic across calls (and restarts)


def test_clean_label_fuzz() -> None:
    rng = random.Random(6)
    alphabet = [chr(c) for c in (*range(0, 0x80), 0x85, 0xA0, 0x2028, 0x202E, 0x1F600, 0xD800)]
    for _ in range(3000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        out = clean_label(raw)
        out.encode("utf-8")
        assert 0 < len(out) <= MAX_LABEL_LENGTH and not _has_forbidden(out)
        assert clean_label(out) == out


def test_capped_labels_overflow_and_count_each_drop_once() -> None:
    caps = CappedLabels(2)
    assert caps.admit("a") == ("a", False)
    assert caps.admit("b") == ("b", False)
    assert caps.admit("c") == (OVERFLOW_VALUE, True)
    assert caps.admit("c") == (OVERFLOW_VALUE, False)  # same value: not a new drop
    assert caps.admit("a") == ("a", False)  # admitted values stay admitted


def test_overflow_value_never_takes_a_slot() -> None:
    caps = CappedLabels(2)
    assert caps.admit(OVERFLOW_VALUE) == (OVERFLOW_VALUE, False)  # restored "other" jobs
    assert caps.admit("a") == ("a", False)
    assert caps.admit("b") == ("b", False)


def _typed(*jobs: tuple[str, str]) -> PollResult:
    return PollResult(jobs=tuple(JobObservation(job_id=j, job_type=t, status="running")
                                 for j, t in jobs), complete=True)


def test_restart_keeps_the_capped_job_type_set(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    settings = TrackerSettings(max_job_types_per_org=2)
    store = StateStore(path)
    before = OrgTracker("s", "o", settings)
    store.restore(before)
    before.apply(_typed(("5", "alpha"), ("6", "beta")), 1.0)
    before.apply(_typed(("5", "alpha"), ("6", "beta"), ("0", "gamma")), 2.0)  # gamma: other
    store.save(before)
    types = set(before.snapshot(2.0).job_types)
    assert types == {"alpha", "beta", OVERFLOW_VALUE}
    store.close()
    store = StateStore(path)
    after = OrgTracker("s", "o", settings)
    store.restore(after)  # job "0" (other) may come back first: it must not take a slot
    after.apply(_typed(("5", "alpha"), ("6", "beta"), ("0", "gamma"), ("7", "beta")), 3.0)
    assert set(after.snapshot(3.0).job_types) == types
    assert after.snapshot(3.0).jobs[("beta", "running")] == 2
    store.close()


def test_exemplar_labels_respect_the_openmetrics_limit() -> None:
    room = MAX_EXEMPLAR_CHARS - len("job_id")
    assert exemplar_labels("j" * room) == {"job_id": "j" * room}
    assert exemplar_labels("j" * (room + 1)) is None
    assert exemplar_labels("0xabc-123_z") == {"job_id": "0xabc-123_z"}
    for risky in ('a"b', "a\\b", "a\nb"):
        assert exemplar_labels(risky) is None


def test_discovered_org_addresses_are_validated() -> None:
    src = SourceConfig(
        name="s", kind="vocdoni", base_url="http://127.0.0.1:1", token="t",
        organizations_auto=True, orgs=(), interval=1.0, timeout=1.0,
        concurrency=1, max_requests_per_second=1.0, full_resync_interval=60.0,
        failed_job_retention=60.0, jitter=0.0, retries=0, max_job_types_per_org=50,
        max_step_types_per_org=100, max_job_series_per_org=500,
    )
    assert src.discovered_org("0X" + "AB" * 20).label == "0x" + "ab" * 20
    for bad in ('0x"}\nfake 1', "0x" + "g" * 40, "0x" + "a" * 41, ""):
        with pytest.raises(ValueError):
            src.discovered_org(bad)


def _hostile_exposition() -> tuple[list[str], list[str], list[str]]:
    """Feed hostile ids, job types and step types through tracker + collector; render both."""
    tracker = OrgTracker("src", "org", TrackerSettings())
    types = list(HOSTILE)
    ids = [f"{i}-{raw}" for i, raw in enumerate(HOSTILE)] + ["y" * 300]
    steps = tuple(StepObservation(step_id=f"s{i}", step_type=raw, status="running",
                                  started_at=1.0, last_progress_at=1.0)
                  for i, raw in enumerate(HOSTILE))

    def poll(status: str) -> PollResult:
        jobs = [JobObservation(job_id=jid, job_type=types[i % len(types)], status=status,
                               progress=0.5 if status == "running" else None,
                               duration_s=2.0 if status == "failed" else None,
                               steps=steps if status == "running" else None)
                for i, jid in enumerate(ids)]
        return PollResult(jobs=tuple(jobs), complete=True)

    tracker.apply(PollResult(jobs=(), complete=True), 1.0)  # first sync: nothing is history
    tracker.apply(poll("running"), 2.0)
    running = tracker.snapshot(2.0)
    tracker.apply(poll("failed"), 3.0)
    failed = tracker.snapshot(3.0)
    registry = CollectorRegistry(auto_describe=False)
    snaps = iter([ExporterSnapshot(orgs={("src", "org"): running}),
                  ExporterSnapshot(orgs={("src", "org"): failed})])
    current = next(snaps)
    registry.register(JobsCollector(lambda: current, clock=lambda: 4.0))
    texts = [generate_text(registry).decode(), generate_openmetrics(registry).decode()]
    current = next(snaps)
    texts += [generate_text(registry).decode(), generate_openmetrics(registry).decode()]
    return texts[0::2], texts[1::2], ids  # (text renders, OpenMetrics renders, raw ids)


def _label_values(families: list[Metric], name: str) -> Counter[str]:
    values: Counter[str] = Counter()
    for family in families:
        for sample in family.samples:
            if name in sample.labels:
                values[sample.labels[name]] += 1
    return values


def test_hostile_strings_render_into_expositions_both_parsers_accept() -> None:
    texts, oms, ids = _hostile_exposition()
    text_families = [f for text in texts for f in parse_text(text)]
    om_families: list[Metric] = [f for om in oms for f in parse_openmetrics(om)]  # type: ignore[no-untyped-call]
    openmetrics = "".join(oms)
    wanted_types = {clean_label(raw) for raw in HOSTILE}
    wanted_ids = {clean_label(raw) for raw in ids}
    for families in (text_families, om_families):
        assert set(_label_values(families, "job_type")) == wanted_types
        assert set(_label_values(families, "step_type")) == wanted_types
        assert set(_label_values(families, "job_id")) == wanted_ids
    # exemplars stay for plain ids; the 128-character id (OpenMetrics limit) and ids with
    # quotes or backslashes are left out of exemplars, while their jobs are still counted
    exemplar_ids = set(re.findall(r'# \{job_id="([^"\\]*)"\}', openmetrics))
    assert exemplar_ids and exemplar_ids <= wanted_ids
    assert clean_label("y" * 300) not in exemplar_ids
    assert openmetrics.count("# {") == len(re.findall(r'# \{job_id="[^"\\]*"\}', openmetrics))
    # an injected line never becomes a sample of its own
    assert not any(f.name.startswith("fake_metric") for f in text_families + om_families)


def test_hostile_exposition_passes_promtool() -> None:
    texts, _, _ = _hostile_exposition()
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: run scripts/ensure-prometheus.sh"
    for text in texts:
        done = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                              capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_raised_caps_apply_through_the_tracker_settings() -> None:
    def poll(*step_types: str) -> PollResult:
        steps = tuple(StepObservation(step_id=t, step_type=t, status="running")
                      for t in step_types)
        return PollResult(jobs=(
            JobObservation(job_id="1", job_type="alpha", status="running", steps=steps),
            JobObservation(job_id="2", job_type="beta", status="running")), complete=True)

    tracker = OrgTracker("s", "o", TrackerSettings(max_job_types_per_org=1,
                                                   max_step_types_per_org=1))
    tracker.apply(poll("S1", "S2"), 1.0)
    snap = tracker.snapshot(1.0)
    assert set(snap.job_types) == {"alpha", OVERFLOW_VALUE}
    assert {s for _, s in snap.step_types} == {"S1", OVERFLOW_VALUE}
    # what OrgLoop does on reload with the same tracker: the new caps hold from the next poll
    tracker.settings = TrackerSettings(max_job_types_per_org=5, max_step_types_per_org=5)
    tracker.apply(poll("S1", "S2", "S3"), 2.0)
    tracker.apply(PollResult(jobs=(*poll("S1", "S2", "S3").jobs, JobObservation(
        job_id="3", job_type="gamma", status="running")), complete=True), 3.0)
    snap = tracker.snapshot(3.0)
    assert "gamma" in snap.job_types
    assert "S3" in {s for _, s in snap.step_types}


def test_ascii_fast_path_equals_the_general_cleaning() -> None:
    """clean_label's ASCII shortcut gives exactly what the general path gives, for any input."""
    rng = random.Random(8)
    cases = ["", " ", "a", " a", "a ", "0x" + "ab" * 20, "x" * 128, "x" * 129, "a\tb", "\x7f",
             "ü", 'a"b\\c', "job id"]
    cases += ["".join(chr(rng.randint(0, 0x2100)) for _ in range(rng.randint(0, 140)))
              for _ in range(3000)]
    cases += ["".join(chr(rng.randint(0x1F, 0x80)) for _ in range(rng.randint(0, 140)))
              for _ in range(3000)]
    for value in cases:
        assert clean_label(value) == _clean_chars(value), repr(value)
