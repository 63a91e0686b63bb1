"""Turn Vocdoni job JSON (both API generations) into JobObservations, dropping error strings."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.sources import parse
from exporter.sources.base import (
    INVALID_ID,
    INVALID_ITEM,
    INVALID_NUMBER,
    INVALID_TIMESTAMP,
    MAX_JOB_ID_LENGTH,
    JobObservation,
    PollError,
    PollReason,
)
from exporter.sources.parse import ParseNotes

# Job states the Vocdoni API defines (db.JobStatus); anything else normalizes to "unknown".
VOCDONI_STATUSES: frozenset[str] = frozenset({"pending", "completed", "failed"})
# Import jobs never store a status: v1 GET /jobs/{id} shows "" for them.
IMPORT_TYPES: frozenset[str] = frozenset({"org_members", "census_participants"})
# Larger counts are not plausible for one job; such items are treated as corrupt.
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class Page:
    """One list page: its jobs (raw dicts, validated) and pagination numbers."""

    total: int
    last_page: int
    jobs: tuple[dict[str, Any], ...]
    invalid: Mapping[str, int] = field(default_factory=dict)  # items left out or clamped
    dropped: int = 0  # items left out


def _schema(what: str) -> PollError:
    """Name the field, never its value: values may be members' personal data."""
    return PollError(PollReason.SCHEMA, f"vocdoni: unexpected {what}")


def _int_field(obj: dict[str, Any], key: str, where: str) -> int | None:
    """Return an int field or None when absent (omitempty); reject other JSON types."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _schema(f"type of {where}.{key}")
    return value


def parse_page(body: Any) -> Page:
    """Validate a list response of either generation."""
    if not isinstance(body, dict):
        raise _schema("list body (not an object)")
    pagination = body.get("pagination")
    if not isinstance(pagination, dict):
        raise _schema("or missing pagination")
    invalid: Counter[str] = Counter()
    total = _clamped(pagination, "totalItems", invalid)
    if total is None or total < 0:
        raise _schema("pagination.totalItems")
    last = _clamped(pagination, "lastPage", invalid)
    jobs = body.get("jobs")
    if jobs is None:
        jobs = []
    if not isinstance(jobs, list):
        raise _schema("type of jobs")
    kept = []
    for job in jobs:
        what = _identity_problem(job)
        if what is None:
            kept.append(job)
        else:
            invalid[what] += 1
    if jobs and not kept:
        raise _schema("jobs (no item has a jobId and a type)")
    return Page(total=total, last_page=max(1, last or 1), jobs=tuple(kept), invalid=invalid,
                dropped=len(jobs) - len(kept))


def _clamped(obj: dict[str, Any], key: str, invalid: Counter[str]) -> int | None:
    """Read a pagination number; an absurd one (1e400, 1e30) is clamped and counted."""
    value = obj.get(key)
    if isinstance(value, float) and (not math.isfinite(value) or value > MAX_COUNT):
        invalid[INVALID_NUMBER] += 1
        return MAX_COUNT if value > 0 else None
    number = _int_field(obj, key, "pagination")
    if number is not None and number > MAX_COUNT:
        invalid[INVALID_NUMBER] += 1
        return MAX_COUNT
    return number


def _identity_problem(job: Any) -> str | None:
    """Return why an item cannot be a job (bad_item, bad_id), or None when it can."""
    if not isinstance(job, dict):
        return INVALID_ITEM
    job_id = job.get("jobId")
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID_LENGTH:
        return INVALID_ID
    if not isinstance(job.get("type"), str) or not job["type"]:
        return INVALID_ITEM
    return None


def _require_identity(job: dict[str, Any]) -> None:
    """Reject items without the fields every job must have."""
    what = _identity_problem(job)
    if what == INVALID_ID:
        raise _schema("or missing jobId")
    if what is not None:
        raise _schema("or missing type")


def job_identity(job: dict[str, Any]) -> tuple[str, str]:
    """Return (jobId, type) of a validated item."""
    _require_identity(job)
    return str(job["jobId"]), str(job["type"])


def normalize_status(raw: Any, notes: ParseNotes) -> str:
    """Map the API status to the contract's values; remember unknown raw ones."""
    if not isinstance(raw, str):
        raise _schema("type of status")
    mapped = notes.status_map.get(raw.strip().lower())
    if mapped is not None:
        return mapped
    if raw in VOCDONI_STATUSES:
        return raw
    notes.unknown(raw)
    return "unknown"


def _count(obj: dict[str, Any], key: str, where: str, notes: ParseNotes) -> int | None:
    """Return a sane count (missing = 0); None and a note when fractional, NaN, negative, huge."""
    try:
        value = _int_field(obj, key, where)
    except PollError:
        if not isinstance(obj.get(key), float):
            raise
        value = -1  # 1.5, NaN, inf: a number, but not a count
    if value is None:
        return 0
    if value < 0 or value > MAX_COUNT:
        notes.counts[INVALID_NUMBER] += 1
        return None
    return value


def _errors_len(obj: dict[str, Any], where: str) -> int:
    """Count import errors without keeping them (they may carry personal data)."""
    errors = obj.get("errors")
    if errors is None:
        return 0
    if not isinstance(errors, list):
        raise _schema(f"type of {where}.errors")
    return len(errors)


def _progress(added: int | None, total: int | None) -> float | None:
    """Return added/total when both are known and total > 0."""
    if added is None or total is None or total <= 0:
        return None
    return added / total


def counters(
    obj: dict[str, Any], where: str, notes: ParseNotes, job_type: str
) -> dict[str, Any]:
    """Return progress/items fields of a JobObservation from added/total/errors."""
    added = _count(obj, "added", where, notes)
    total = _count(obj, "total", where, notes)
    fields: dict[str, Any] = {"progress": _progress(added, total)}
    if job_type == "org_members":
        fields["items_added"] = added
        fields["items_errored"] = _errors_len(obj, where)
    return fields


def v2_job(job: dict[str, Any], notes: ParseNotes) -> JobObservation:
    """Normalize one job of the new API (list item or GET /jobs/{id})."""
    job_id, job_type = job_identity(job)
    status = normalize_status(job.get("status"), notes)
    result = job.get("result")
    if result is None:
        result = {}
    if not isinstance(result, dict):
        raise _schema("type of result")
    fields = counters(result, "result", notes, job_type)
    if job_type == "org_members":
        fields["items_errored"] = _errors_len(job, "job")
    return JobObservation(job_id=job_id, job_type=job_type, status=status, **fields)


def parse_time(value: Any, where: str, notes: ParseNotes) -> float | None:
    """Parse an RFC 3339 timestamp; Go's zero time (year 1) means unset; junk is counted."""
    return parse.parse_time(value, notes, go_zero=True)


def v1_job(job: dict[str, Any], notes: ParseNotes) -> tuple[JobObservation, bool]:
    """Normalize an old-API list item; returns it as pending plus its `completed` flag."""
    job_id, job_type = job_identity(job)
    completed = job.get("completed", False)
    if not isinstance(completed, bool):
        raise _schema("type of completed")
    created = parse_time(job.get("createdAt"), "createdAt", notes)
    finished = parse_time(job.get("completedAt"), "completedAt", notes)
    duration = None
    if created is not None and finished is not None:
        duration = finished - created
        if duration < 0 or not math.isfinite(duration):
            notes.counts[INVALID_TIMESTAMP] += 1
            duration = None
    fields = counters(job, "job", notes, job_type)
    obs = JobObservation(
        job_id=job_id, job_type=job_type, status="pending", created_at=created,
        finished_at=finished if completed else None,
        duration_s=duration if completed else None, **fields,
    )
    return obs, completed


def v1_status(body: Any, job_type: str, notes: ParseNotes) -> str:
    """Read the status of an old-API GET /jobs/{id}; import jobs show "" and are done."""
    if not isinstance(body, dict):
        raise _schema("job body (not an object)")
    raw = body.get("status", "")
    if raw == "" and job_type in IMPORT_TYPES:
        return "completed"
    return normalize_status(raw, notes)


def members_progress(body: Any, notes: ParseNotes) -> dict[str, Any]:
    """Read an old-API members/job answer into progress and item counts."""
    if not isinstance(body, dict):
        raise _schema("members job body (not an object)")
    return counters(body, "members_job", notes, "org_members")


def addresses(body: Any) -> list[str]:
    """Read GET /auth/addresses."""
    if not isinstance(body, dict) or not isinstance(body.get("addresses"), list):
        raise _schema("or missing addresses")
    found = body["addresses"]
    if not all(isinstance(a, str) for a in found):
        raise _schema("type of addresses[]")
    return [str(a) for a in found]
