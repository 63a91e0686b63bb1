"""Turn Ordo JSON bodies into observations; pure functions so every shape is testable offline."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard, TypeVar

from exporter.sources import parse
from exporter.sources.base import (
    INVALID_ATTEMPT,
    INVALID_DURATION,
    INVALID_ID,
    INVALID_ITEM,
    INVALID_PROGRESS,
    JobObservation,
    PollError,
    PollReason,
    StepObservation,
)
from exporter.sources.parse import ParseNotes

T = TypeVar("T")

JOB_STATUS_MAP: Mapping[str, str] = {
    "pending": "pending",
    "running": "running",
    "success": "completed",
    "completed": "completed",
    "failed": "failed",
    "partial": "partial",
}
STEP_STATUSES_KNOWN: frozenset[str] = frozenset(
    {"pending", "running", "success", "failed", "skipped", "blocked"}
)



class _BadId(PollError):
    """A job id that is not one: the item is left out as bad_id."""

    def __init__(self, what: str) -> None:
        super().__init__(PollReason.SCHEMA,
                         f"ordo: unexpected response shape: {what} id is not an integer")


def parse_items(notes: ParseNotes, raws: list[Any], parse: Callable[[Any], T],
                what: str) -> list[T]:
    """Parse each item; leave bad ones out (counted), unless all are bad (a new shape)."""
    out: list[T] = []
    for raw in raws:
        item = _parse_one(notes, raw, parse)
        if item is not None:
            out.append(item)
    if raws and not out:
        raise schema_error(f"every {what} item is malformed")
    notes.dropped += len(raws) - len(out)
    return out


def _parse_one(notes: ParseNotes, raw: Any, parse: Callable[[Any], T]) -> T | None:
    """Parse one item; a bad one is counted and left out (None)."""
    try:
        return parse(raw)
    except _BadId:
        notes.note(INVALID_ID)
    except PollError as exc:
        if exc.reason is not PollReason.SCHEMA:
            raise
        notes.note(INVALID_ITEM)
    return None


@dataclass(frozen=True, slots=True)
class ListedJob:
    """One item of GET /jobs before its recipe is named."""

    job_id: int
    recipe_id: int | None
    status: str  # normalized
    created_at: float | None
    started_at: float | None
    finished_at: float | None

    def observe(self, job_type: str) -> JobObservation:
        """Build the list-only observation: no steps, no progress."""
        return JobObservation(
            job_id=str(self.job_id),
            job_type=job_type,
            status=self.status,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


def schema_error(what: str) -> PollError:
    """Build the schema PollError; never echo API text, which may carry job errors."""
    return PollError(PollReason.SCHEMA, f"ordo: unexpected response shape: {what}")


def normalize_job_status(raw: str, notes: ParseNotes) -> str:
    """Map Ordo's free-text job status onto the fixed label set."""
    key = raw.strip().lower()
    status = notes.status_map.get(key) or JOB_STATUS_MAP.get(key)
    if status is None:
        notes.unknown(raw)
        return "unknown"
    return status


def normalize_step_status(raw: str, notes: ParseNotes) -> str:
    """Map Ordo's free-text step status onto the fixed label set."""
    status = raw.strip().lower()
    if status not in STEP_STATUSES_KNOWN:
        notes.unknown(raw)
        return "unknown"
    return status


def parse_time(value: object, notes: ParseNotes) -> float | None:
    """Parse an ISO 8601 timestamp to unix seconds; tolerate Z, offsets and missing ms."""
    return parse.parse_time(value, notes, naive_utc=True)


def _is_number(value: object) -> TypeGuard[int | float]:
    """Tell JSON numbers from booleans, which Python counts as ints."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _job_id(value: object, what: str) -> int:
    """Return a job id, which Ordo stores as SERIAL, or reject the body."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _BadId(what)


def _recipe_id(value: object) -> int | None:
    """Return the recipe id; a missing one just leaves the job unnamed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _require_list(body: Any, what: str) -> list[Any]:
    """Reject bodies that are not the bare JSON array Ordo documents."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and "error" in body:
        raise schema_error(f"{what} answered an error object instead of an array")
    raise schema_error(f"{what} is not an array")


def _require_dict(value: Any, what: str) -> dict[str, Any]:
    """Reject items that are not JSON objects."""
    if isinstance(value, dict):
        return value
    raise schema_error(f"{what} is not an object")


def _status(item: Mapping[str, Any], what: str) -> str:
    """Return the raw status string or reject the item."""
    raw = item.get("status")
    if not isinstance(raw, str):
        raise schema_error(f"{what} has no string status")
    return raw


def parse_job_list(body: Any, notes: ParseNotes) -> list[ListedJob]:
    """Parse GET /jobs: a bare array, newest first."""
    jobs = _require_list(body, "/jobs")
    return parse_items(notes, jobs, lambda raw: _listed(raw, notes), "/jobs")


class JobListReader:
    """Parse GET /jobs items as they stream in: small ListedJobs kept, the raw dicts not."""

    def __init__(self, notes: ParseNotes) -> None:
        self.notes = notes
        self.jobs: list[ListedJob] = []
        self.top: ListedJob | None = None  # the highest id, found on the way
        self._raws = 0

    def add(self, raw: Any) -> None:
        """Parse one list item; a bad one is counted and left out."""
        self._raws += 1
        job = _parse_one(self.notes, raw, lambda item: _listed(item, self.notes))
        if job is not None:
            self.jobs.append(job)
            if self.top is None or job.job_id > self.top.job_id:
                self.top = job

    def finish(self, document: Any) -> list[ListedJob]:
        """Return the jobs; `document` is the body when it was not an array (an error)."""
        if document is not None:
            return parse_job_list(document, self.notes)
        if self._raws and not self.jobs:
            raise schema_error("every /jobs item is malformed")
        self.notes.dropped += self._raws - len(self.jobs)
        return self.jobs


def _listed(raw: Any, notes: ParseNotes) -> ListedJob:
    """Parse one GET /jobs item."""
    item = _require_dict(raw, "/jobs item")
    return ListedJob(
        job_id=_job_id(item.get("id"), "/jobs item"),
        recipe_id=_recipe_id(item.get("recipe_id")),
        status=normalize_job_status(_status(item, "/jobs item"), notes),
        created_at=parse_time(item.get("created_at"), notes),
        started_at=parse_time(item.get("started_at"), notes),
        finished_at=parse_time(item.get("finished_at"), notes),
    )


def parse_recipes(body: Any) -> dict[int, str]:
    """Parse GET /recipes into recipe id -> name; unnamed recipes are left out."""
    names: dict[int, str] = {}
    for raw in _require_list(body, "/recipes"):
        item = _require_dict(raw, "/recipes item")
        recipe_id = _recipe_id(item.get("id"))
        name = item.get("name")
        if recipe_id is None:
            raise schema_error("/recipes item id is not an integer")
        if isinstance(name, str) and name.strip():
            names[recipe_id] = name.strip()
    return names


def parse_progress(value: object, notes: ParseNotes) -> float | None:
    """Return progress.percentage raw (0..1); the tracker clamps and counts outliers."""
    if value is None:
        return None
    if isinstance(value, dict):
        pct = value.get("percentage")
        if pct is None:
            return None
        if _is_number(pct):
            return float(pct)
    notes.note(INVALID_PROGRESS)
    return None


def parse_duration(value: object, notes: ParseNotes) -> float | None:
    """Convert duration_ms to seconds; null means the job has not both started and finished."""
    if value is None:
        return None
    if _is_number(value):
        return float(value) / 1000.0
    notes.note(INVALID_DURATION)
    return None


def _attempt(value: object, notes: ParseNotes) -> int:
    """Return the step attempt counter, 0 when Ordo has none."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    notes.note(INVALID_ATTEMPT)
    return 0


def _last_progress_at(
    step: Mapping[str, Any], started: float | None, notes: ParseNotes
) -> float | None:
    """Pick the freshest liveness signal: detailing, else claim, else start."""
    detailing = step.get("last_detailing")
    if isinstance(detailing, dict):
        updated = parse_time(detailing.get("updated_at"), notes)
        if updated is not None:
            return updated
    claimed = parse_time(step.get("claimed_at"), notes)
    return claimed if claimed is not None else started


def parse_step(raw: Any, notes: ParseNotes) -> StepObservation:
    """Parse one steps[] item; its error text is deliberately dropped."""
    step = _require_dict(raw, "step")
    step_id = step.get("step_id")
    if not isinstance(step_id, str):
        raise schema_error("step has no string step_id")
    step_type = step.get("step_type")
    started = parse_time(step.get("started_at"), notes)
    return StepObservation(
        step_id=step_id,
        step_type=step_type if isinstance(step_type, str) and step_type else "unknown",
        status=normalize_step_status(_status(step, "step"), notes),
        attempt=_attempt(step.get("attempt"), notes),
        started_at=started,
        finished_at=parse_time(step.get("finished_at"), notes),
        last_progress_at=_last_progress_at(step, started, notes),
    )


def parse_steps(value: object, notes: ParseNotes) -> tuple[StepObservation, ...]:
    """Parse steps[]; a job without the key has no steps."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise schema_error("steps is not an array")
    return tuple(parse_items(notes, value, lambda raw: parse_step(raw, notes), "step"))


def parse_detail(body: Any, notes: ParseNotes) -> JobObservation:
    """Parse a job status response (single route or a found batch item); job_type left empty."""
    detail = _require_dict(body, "job detail")
    job = _require_dict(detail.get("job"), "job detail 'job'")
    return JobObservation(
        job_id=str(_job_id(job.get("id"), "job detail")),
        job_type="",
        status=normalize_job_status(_status(job, "job detail"), notes),
        created_at=parse_time(job.get("created_at"), notes),
        started_at=parse_time(job.get("started_at"), notes),
        finished_at=parse_time(job.get("finished_at"), notes),
        duration_s=parse_duration(detail.get("duration_ms"), notes),
        progress=parse_progress(detail.get("progress"), notes),
        steps=parse_steps(detail.get("steps"), notes),
    )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Outcome of one batch call: details found and ids Ordo no longer has."""

    found: dict[int, JobObservation]
    missing: tuple[int, ...]
    # job id -> its recipe id, for jobs found without a list item (new ids past the highest)
    recipe_ids: dict[int, int | None] = field(default_factory=dict)


def parse_batch(body: Any, requested: Iterable[int], notes: ParseNotes) -> BatchResult:
    """Parse GET /jobs/1,2,3; ids not requested are ignored, ids not answered stay list-only."""
    wanted = set(requested)
    found: dict[int, JobObservation] = {}
    missing: list[int] = []
    recipe_ids: dict[int, int | None] = {}
    items = parse_items(notes, _require_list(body, "/jobs/{ids}"),
                        lambda raw: (*_batch_item(raw, notes), detail_recipe_id(raw)),
                        "/jobs/{ids}")
    for job_id, detail, recipe_id in items:
        if job_id not in wanted:
            continue
        if detail is None:
            missing.append(job_id)
        else:
            found[job_id] = detail
            recipe_ids[job_id] = recipe_id
    return BatchResult(found=found, missing=tuple(missing), recipe_ids=recipe_ids)


def detail_recipe_id(body: Any) -> int | None:
    """Return the recipe id of a job detail (single route or batch item), None if absent."""
    job = body.get("job") if isinstance(body, dict) else None
    return _recipe_id(job.get("recipe_id")) if isinstance(job, dict) else None


def _batch_item(raw: Any, notes: ParseNotes) -> tuple[int, JobObservation | None]:
    """Parse one batch item: its id and its detail, None when Ordo no longer has the job."""
    item = _require_dict(raw, "/jobs/{ids} item")
    job_id = _job_id(item.get("id"), "/jobs/{ids} item")
    flag = item.get("found")
    if not isinstance(flag, bool):
        raise schema_error("/jobs/{ids} item has no boolean 'found'")
    if not flag:
        return job_id, None
    detail = parse_detail(item, notes)
    if detail.job_id != str(job_id):
        raise schema_error("/jobs/{ids} item id differs from its job id")
    return job_id, detail
