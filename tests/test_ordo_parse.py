"""Offline tests of Ordo response parsing: every shape the reference doc shows, plus surprises."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.sources.base import INVALID_DURATION as NOTE_BAD_DURATION
from exporter.sources.base import INVALID_PROGRESS as NOTE_BAD_PROGRESS
from exporter.sources.base import INVALID_TIMESTAMP as NOTE_BAD_TIMESTAMP
from exporter.sources.base import PollError
from exporter.sources.ordo_parse import (
    normalize_job_status,
    normalize_step_status,
    parse_batch,
    parse_detail,
    parse_job_list,
    parse_recipes,
    parse_time,
)
from exporter.sources.parse import ParseNotes

T0 = datetime(2026, 2, 26, 12, 0, tzinfo=UTC).timestamp()
SECRET_ERROR = "member alice@example.org failed"


def detail_body(job_id: int = 42, status: str = "running") -> dict[str, Any]:
    """Return the job detail example of the reference doc, with real timestamps."""
    return {
        "job": {"id": job_id, "recipe_id": 2, "status": status,
                "created_at": "2026-02-26T12:00:00.000Z", "started_at": "2026-02-26T12:00:05.000Z",
                "finished_at": None, "error": SECRET_ERROR, "params": {"dem": {"resolution": 1}}},
        "progress": {"percentage": 0.55, "completed_steps": 1, "total_steps": 3},
        "duration_ms": None,
        "timeline": [{"step": "reproject", "type": "REPROJECT_LAS", "status": "success",
                      "started_at": "2026-02-26T12:00:05.000Z",
                      "finished_at": "2026-02-26T12:01:26.234Z", "duration_ms": 81234}],
        "steps": [
            {"job_id": job_id, "step_id": "dem", "step_type": "GENERATE_DEM", "status": "running",
             "attempt": 1, "claimed_by": "n8n-worker-3", "claimed_at": "2026-02-26T12:01:30.000Z",
             "started_at": "2026-02-26T12:01:31.000Z", "finished_at": None, "error": None,
             "max_concurrency": 2,
             "last_detailing": {"id": 7, "job_id": job_id, "step_id": "dem", "log": "tile 22/34",
                                "progress": {"progress": 65},
                                "updated_at": "2026-02-26T12:05:00.000Z"}},
            {"job_id": job_id, "step_id": "reproject", "step_type": "REPROJECT_LAS",
             "status": "success", "attempt": 0, "claimed_by": "n8n-worker-1",
             "claimed_at": "2026-02-26T12:00:04.000Z", "started_at": "2026-02-26T12:00:05.000Z",
             "finished_at": "2026-02-26T12:01:26.234Z", "error": SECRET_ERROR,
             "max_concurrency": None, "last_detailing": None},
            {"job_id": job_id, "step_id": "tiles", "step_type": "BUILD_EPT", "status": "pending",
             "attempt": None, "claimed_by": None, "claimed_at": None, "started_at": None,
             "finished_at": None, "error": None, "max_concurrency": None},
        ],
        "artifacts": [],
        "outputs": [{"job_id": job_id, "artifact_name": "step:dem.output_dem",
                     "path": "final/dem.tif", "delivered_uri": None, "delivered_at": None,
                     "created_at": "2026-02-26T12:00:00.000Z"}],
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-02-26T12:00:00.000Z", T0),
        ("2026-02-26T12:00:00Z", T0),
        ("2026-02-26T12:00:00.250Z", T0 + 0.25),
        ("2026-02-26T14:00:00+02:00", T0),
        ("2026-02-26T12:00:00.000+00:00", T0),
        ("2026-02-26T12:00:00", T0),  # naive: Ordo serializes UTC
        (None, None),
    ],
)
def test_parse_time_accepts_iso_variants(raw: str | None, expected: float | None) -> None:
    notes = ParseNotes()
    assert parse_time(raw, notes) == expected
    assert not notes.counts


@pytest.mark.parametrize("raw", ["yesterday", "", 1772107200, {"t": 1}])
def test_parse_time_counts_unparsable(raw: object) -> None:
    notes = ParseNotes()
    assert parse_time(raw, notes) is None
    assert notes.counts[NOTE_BAD_TIMESTAMP] == 1


def test_job_status_normalization() -> None:
    notes = ParseNotes()
    mapped = [normalize_job_status(s, notes) for s in
              ("success", "completed", "pending", "running", "failed", "partial", "Success")]
    assert mapped == ["completed", "completed", "pending", "running", "failed", "partial",
                      "completed"]
    assert normalize_job_status("cancelled", notes) == "unknown"
    assert normalize_job_status("cancelled", notes) == "unknown"
    assert list(notes.unknown_statuses) == ["cancelled"]


def test_step_status_normalization() -> None:
    notes = ParseNotes()
    for status in ("pending", "running", "success", "failed", "skipped", "blocked"):
        assert normalize_step_status(status, notes) == status
    assert normalize_step_status("completed", notes) == "unknown"
    assert list(notes.unknown_statuses) == ["completed"]


def test_parse_job_list_reference_shape() -> None:
    body = [
        {"id": 43, "recipe_id": 2, "status": "running", "created_at": "2026-02-26T12:00:00.000Z",
         "started_at": "2026-02-26T12:00:05.000Z", "finished_at": None, "error": None},
        {"id": 41, "recipe_id": None, "status": "success", "created_at": "2026-02-26T11:00:00Z",
         "started_at": None, "finished_at": "bogus", "error": SECRET_ERROR},
    ]
    notes = ParseNotes()
    jobs = parse_job_list(body, notes)
    assert [(j.job_id, j.recipe_id, j.status) for j in jobs] == [
        (43, 2, "running"), (41, None, "completed"),
    ]
    assert jobs[0].started_at == T0 + 5 and jobs[0].finished_at is None
    assert jobs[1].started_at is None and jobs[1].finished_at is None
    assert notes.counts[NOTE_BAD_TIMESTAMP] == 1
    observation = jobs[0].observe("lidar")
    assert observation.job_id == "43" and observation.job_type == "lidar"
    assert observation.steps is None and observation.progress is None
    assert SECRET_ERROR not in repr(jobs)


@pytest.mark.parametrize(
    "body",
    [
        {"jobs": []},
        {"error": "Internal server error"},
        "nope",
        [["not", "an", "object"]],
        [{"recipe_id": 1, "status": "running"}],
        [{"id": "7", "recipe_id": 1, "status": "running"}],
        [{"id": True, "recipe_id": 1, "status": "running"}],
        [{"id": 7, "recipe_id": 1}],
        [{"id": 7, "recipe_id": 1, "status": 3}],
    ],
)
def test_parse_job_list_schema_errors(body: Any) -> None:
    with pytest.raises(PollError) as caught:
        parse_job_list(body, ParseNotes())
    assert caught.value.reason == "schema"
    assert "Internal server error" not in str(caught.value)


def test_parse_detail_reference_example() -> None:
    notes = ParseNotes()
    job = parse_detail(detail_body(), notes)
    assert (job.job_id, job.status, job.job_type) == ("42", "running", "")
    assert job.created_at == T0 and job.started_at == T0 + 5 and job.finished_at is None
    assert job.progress == pytest.approx(0.55)
    assert job.duration_s is None
    assert job.steps is not None
    dem, reproject, tiles = job.steps
    assert (dem.step_id, dem.step_type, dem.status, dem.attempt) == (
        "dem", "GENERATE_DEM", "running", 1)
    assert dem.last_progress_at == T0 + 300  # last_detailing.updated_at wins
    assert reproject.finished_at == pytest.approx(T0 + 86.234)
    assert reproject.last_progress_at == T0 + 4  # claimed_at when no detailing
    assert (tiles.attempt, tiles.started_at, tiles.last_progress_at) == (0, None, None)
    assert not notes.counts
    assert SECRET_ERROR not in repr(job)


def test_parse_detail_finished_job_and_missing_parts() -> None:
    body = detail_body(status="success")
    body["job"]["finished_at"] = "2026-02-26T12:10:00Z"
    body["duration_ms"] = 595000
    del body["progress"]
    del body["steps"]
    body["steps"] = None
    job = parse_detail(body, ParseNotes())
    assert job.status == "completed"
    assert job.duration_s == pytest.approx(595.0)
    assert job.progress is None
    assert job.steps == ()


def test_parse_detail_started_at_is_last_progress_fallback() -> None:
    body = detail_body()
    step = body["steps"][0]
    step["last_detailing"] = {"updated_at": None}
    step["claimed_at"] = None
    job = parse_detail(body, ParseNotes())
    assert job.steps is not None and job.steps[0].last_progress_at == T0 + 91


def test_parse_detail_tolerates_odd_values_and_counts_them() -> None:
    body = detail_body()
    body["progress"] = {"percentage": "55%"}
    body["duration_ms"] = "long"
    body["steps"][0]["attempt"] = "two"
    body["steps"][0]["step_type"] = None
    body["steps"][1]["status"] = "done"
    notes = ParseNotes()
    job = parse_detail(body, notes)
    assert job.progress is None and job.duration_s is None
    assert job.steps is not None
    assert (job.steps[0].attempt, job.steps[0].step_type) == (0, "unknown")
    assert job.steps[1].status == "unknown"
    assert notes.counts[NOTE_BAD_PROGRESS] == 1 and notes.counts[NOTE_BAD_DURATION] == 1
    assert list(notes.unknown_statuses) == ["done"]


def test_parse_detail_keeps_out_of_range_progress_raw() -> None:
    body = detail_body()
    body["progress"] = {"percentage": 55}
    assert parse_detail(body, ParseNotes()).progress == 55.0
    body["progress"] = {"completed_steps": 1}
    assert parse_detail(body, ParseNotes()).progress is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("job"),
        lambda b: b["job"].pop("status"),
        lambda b: b["job"].update(id="42"),
        lambda b: b.update(steps={"dem": {}}),
        lambda b: b.update(steps=["dem", {"step_id": "x"}]),  # no step is readable: a new shape
    ],
)
def test_parse_detail_schema_errors(mutate: Any) -> None:
    body = detail_body()
    mutate(body)
    with pytest.raises(PollError) as caught:
        parse_detail(body, ParseNotes())
    assert caught.value.reason == "schema"


@pytest.mark.parametrize(
    ("mutate", "what"),
    [
        (lambda b: b["steps"][0].pop("step_id"), "bad_item"),
        (lambda b: b["steps"][0].update(status=None), "bad_item"),
        (lambda b: b["steps"].append("dem"), "bad_item"),
        (lambda b: b["steps"].append([[[[{"step_id": "deep"}]]]]), "bad_item"),
    ],
)
def test_one_bad_step_is_left_out_and_counted(mutate: Any, what: str) -> None:
    """A malformed step among good ones is dropped and counted; the job still parses."""
    body = detail_body()
    mutate(body)
    notes = ParseNotes()
    job = parse_detail(body, notes)
    assert job.steps is not None and 2 <= len(job.steps) <= 3
    assert notes.counts == {what: 1}


def test_one_bad_list_item_is_left_out_and_counted() -> None:
    """Bad items of GET /jobs (id, shape, status, huge id) fail only themselves."""
    good = {"id": 1, "recipe_id": 1, "status": "running", "created_at": "2026-02-26T12:00:00Z"}
    body = [good, {"id": "x" * 70_000, "status": "running"}, {"id": 2.5, "status": "running"},
            {"id": 3, "status": 7}, ["nested", ["list"]], "<nested too deep>",
            {**good, "id": 4, "created_at": "yesterday"}]
    notes = ParseNotes()
    jobs = parse_job_list(body, notes)
    assert [j.job_id for j in jobs] == [1, 4]
    assert notes.counts == {"bad_id": 2, "bad_item": 3, "bad_timestamp": 1}
    assert notes.dropped == 5


def test_status_map_maps_raw_statuses_before_the_builtin_table() -> None:
    """An operator's status_map wins; what neither knows stays unknown, truncated."""
    notes = ParseNotes(status_map={"cancelled": "failed", "success": "partial"})
    assert normalize_job_status("Cancelled", notes) == "failed"
    assert normalize_job_status("success", notes) == "partial"
    assert normalize_job_status("x" * 500, notes) == "unknown"
    assert list(notes.unknown_statuses) == ["x" * 40]


def test_parse_batch_found_and_missing() -> None:
    found = {"id": 42, "found": True, **detail_body(42)}
    body = [found, {"id": 44, "found": False}, {"id": 99, "found": False}]
    result = parse_batch(body, [42, 44], ParseNotes())
    assert list(result.found) == [42]
    assert result.found[42].progress == pytest.approx(0.55)
    assert result.missing == (44,)  # 99 was not asked for


@pytest.mark.parametrize(
    "body",
    [
        {"error": "Batch endpoint requires at least 2 job IDs"},
        [{"id": 42}],
        [{"id": 42, "found": "yes"}],
        [{"id": 42, "found": True}],
        [{"id": 42, "found": True, **detail_body(43)}],
    ],
)
def test_parse_batch_schema_errors(body: Any) -> None:
    with pytest.raises(PollError) as caught:
        parse_batch(body, [42, 43], ParseNotes())
    assert caught.value.reason == "schema"


def test_parse_recipes() -> None:
    body = [
        {"id": 3, "name": "lidar-dem", "version": "2", "definition": {}, "created_at": None},
        {"id": 2, "name": " ", "version": "1", "definition": {}, "created_at": None},
        {"id": 1, "name": "lidar-dem", "version": "1", "definition": {}, "created_at": None},
    ]
    assert parse_recipes(body) == {3: "lidar-dem", 1: "lidar-dem"}
    with pytest.raises(PollError):
        parse_recipes([{"name": "x"}])
    with pytest.raises(PollError):
        parse_recipes({"error": "Invalid token"})
