"""Turn Vocdoni job JSON (both API generations) into JobObservations, dropping error strings."""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exporter.sources.base import JobObservation, PollError

# Job states the Vocdoni API defines (db.JobStatus); anything else normalizes to "unknown".
VOCDONI_STATUSES: frozenset[str] = frozenset({"pending", "completed", "failed"})
# Import jobs never store a status: v1 GET /jobs/{id} shows "" for them.
IMPORT_TYPES: frozenset[str] = frozenset({"org_members", "census_participants"})
# Larger counts are not plausible for one job; such items are treated as corrupt.
MAX_COUNT = 2**31 - 1
# Raw unknown statuses are reported for logging; keep them short.
MAX_RAW_STATUS = 64
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass
class ParseNotes:
    """Per-poll tallies of sanitized input and unknown raw statuses."""

    counts: Counter[str] = field(default_factory=Counter)
    unknown_statuses: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Page:
    """One list page: its jobs (raw dicts, validated) and pagination numbers."""

    total: int
    last_page: int
    jobs: tuple[dict[str, Any], ...]


def _schema(what: str) -> PollError:
    """Name the field, never its value: values may be members' personal data."""
    return PollError("schema", f"vocdoni: unexpected {what}")


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
    total = _int_field(pagination, "totalItems", "pagination")
    if total is None or total < 0:
        raise _schema("pagination.totalItems")
    last = _int_field(pagination, "lastPage", "pagination")
    jobs = body.get("jobs")
    if jobs is None:
        jobs = []
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise _schema("type of jobs")
    for job in jobs:
        _require_identity(job)
    return Page(total=total, last_page=max(1, last or 1), jobs=tuple(jobs))


def _require_identity(job: dict[str, Any]) -> None:
    """Reject items without the fields every job must have."""
    job_id = job.get("jobId")
    if not isinstance(job_id, str) or not job_id:
        raise _schema("or missing jobId")
    if not isinstance(job.get("type"), str) or not job["type"]:
        raise _schema("or missing type")


def job_identity(job: dict[str, Any]) -> tuple[str, str]:
    """Return (jobId, type) of a validated item."""
    _require_identity(job)
    return str(job["jobId"]), str(job["type"])


def normalize_status(raw: Any, notes: ParseNotes) -> str:
    """Map the API status to the contract's values; remember unknown raw ones."""
    if not isinstance(raw, str):
        raise _schema("type of status")
    if raw in VOCDONI_STATUSES:
        return raw
    notes.unknown_statuses.add(raw[:MAX_RAW_STATUS])
    return "unknown"


def _count(obj: dict[str, Any], key: str, where: str, notes: ParseNotes) -> int | None:
    """Return a sane count (missing = 0); None and a note when negative or huge."""
    value = _int_field(obj, key, where)
    if value is None:
        return 0
    if value < 0 or value > MAX_COUNT:
        notes.counts["invalid_number"] += 1
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


def parse_time(value: Any, where: str) -> float | None:
    """Parse an RFC 3339 timestamp; Go's zero time (year 1) means unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _schema(f"type of {where}")
    text = _FRACTION.sub(r"\1", value.strip())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _schema(f"format of {where}") from None
    if moment.year <= 1:
        return None
    if moment.tzinfo is None:
        raise _schema(f"time zone of {where}")
    return moment.timestamp()


def v1_job(job: dict[str, Any], notes: ParseNotes) -> tuple[JobObservation, bool]:
    """Normalize an old-API list item; returns it as pending plus its `completed` flag."""
    job_id, job_type = job_identity(job)
    completed = job.get("completed", False)
    if not isinstance(completed, bool):
        raise _schema("type of completed")
    created = parse_time(job.get("createdAt"), "createdAt")
    finished = parse_time(job.get("completedAt"), "completedAt")
    duration = None
    if created is not None and finished is not None:
        duration = finished - created
        if duration < 0 or not math.isfinite(duration):
            notes.counts["invalid_timestamp"] += 1
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


# The only item fields the parsers read; a full re-list keeps every item until it is normalized,
# and dropping the rest (results, vote lists, error texts) cut peak RSS at 100k jobs by ~4x.
KEPT_FIELDS = ("jobId", "type", "status", "completed", "createdAt", "completedAt", "added",
                "total")
KEPT_RESULT_FIELDS = ("added", "total")


def slim_item(job: dict[str, Any]) -> dict[str, Any]:
    """Return the part of a list item the parsers use; malformed fields are kept for them."""
    out = {k: job[k] for k in KEPT_FIELDS if k in job}
    for key in ("type", "status"):  # few distinct values: share one string object each
        if isinstance(out.get(key), str):
            out[key] = sys.intern(out[key])
    result = job.get("result")
    if isinstance(result, dict):
        kept = {k: result[k] for k in KEPT_RESULT_FIELDS if k in result}
        if kept:
            out["result"] = kept
    elif result is not None:
        out["result"] = result
    errors = job.get("errors")
    if isinstance(errors, list):
        if errors:
            out["errors"] = [None] * len(errors)  # only the count is read; texts may be personal
    elif errors is not None:
        out["errors"] = errors
    return out
