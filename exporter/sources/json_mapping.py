"""Turn JSON items into jobs and steps with the configured JMESPath expressions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jmespath
import structlog
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from exporter.sources.base import (
    INVALID_ID,
    INVALID_ITEM,
    INVALID_PROGRESS,
    MAX_JOB_ID_LENGTH,
    TERMINAL_STEP_STATUSES,
    JobObservation,
    PollError,
    PollReason,
    StepObservation,
)
from exporter.sources.json_config import JobsModel, StepsModel
from exporter.sources.parse import ParseNotes, parse_time

log = structlog.get_logger()
# Epoch numbers above this are milliseconds (1e11 s is the year 5138).
UNNAMED_TYPE = "unknown"
MAX_TYPE_LENGTH = 128


MapNotes = ParseNotes  # the shared notes of exporter.sources.parse


def compile_all(model: JobsModel | StepsModel, keys: tuple[str, ...]) -> dict[str, ParsedResult]:
    """Compile the expressions a model sets (the config already checked their syntax)."""
    out: dict[str, ParsedResult] = {}
    for key in keys:
        expr = getattr(model, key, None)
        if expr is not None:
            out[key] = jmespath.compile(expr)
    return out


JOB_KEYS = ("items", "id", "type", "status", "created_at", "started_at", "finished_at",
            "progress", "duration")
STEP_KEYS = ("items", "id", "type", "status", "attempt", "started_at", "finished_at")


def search(expr: ParsedResult, value: Any, what: str) -> Any:
    """Evaluate one expression; a type error inside a function is a schema change."""
    try:
        return expr.search(value)
    except JMESPathError as exc:
        raise PollError(PollReason.SCHEMA, f"{what}: expression {expr.expression!r} failed: "
                        f"{type(exc).__name__}") from None


def items_of(expr: ParsedResult, body: Any, endpoint: str) -> list[Any]:
    """Return the list of items of one page; anything but a list means the API changed."""
    found = search(expr, body, endpoint)
    if not isinstance(found, list):
        kind = "nothing" if found is None else type(found).__name__
        raise PollError(PollReason.SCHEMA, f"{endpoint}: items expression {expr.expression!r} "
                        f"matched {kind}, expected a list")
    return found


def ident(value: Any) -> str | None:
    """Return an id as text; ints and non-empty short strings only."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    return text if text and len(text) <= MAX_JOB_ID_LENGTH else None


def label(value: Any) -> str:
    """Return a job or step type as text; anything odd becomes `unknown`."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:MAX_TYPE_LENGTH]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return UNNAMED_TYPE


class Mapper:
    """Apply one source's job and step mappings, collecting notes per poll."""

    def __init__(self, jobs: JobsModel, steps: StepsModel | None,
                 status_map: Mapping[str, str], step_status_map: Mapping[str, str]) -> None:
        self.job_exprs = compile_all(jobs, JOB_KEYS)
        self.step_exprs = compile_all(steps, STEP_KEYS) if steps is not None else {}
        self.status_map = dict(status_map)
        self.step_status_map = dict(step_status_map)

    def _times(self, exprs: Mapping[str, ParsedResult], item: Any, notes: MapNotes,
               keys: tuple[str, ...]) -> dict[str, float | None]:
        """Read each time field; a bad one is counted and left out, the item kept."""
        out: dict[str, float | None] = {}
        for key in keys:
            expr = exprs.get(key)
            raw = search(expr, item, key) if expr is not None else None
            out[key] = parse_time(raw, notes, epochs=True)
        return out

    def _status(self, raw: Any, table: Mapping[str, str], notes: MapNotes) -> str:
        """Map a raw status; anything unmapped is `unknown`, reported for logging once."""
        text = raw.strip().lower() if isinstance(raw, str) else str(raw).lower()
        status = table.get(text)
        if status is None:
            notes.unknown(text)
            return "unknown"
        return status

    def job_or_none(self, item: Any, notes: MapNotes) -> JobObservation | None:
        """Map one job item; one an expression fails on (a function on null) is left out."""
        try:
            return self.job(item, notes)
        except PollError as exc:
            log.info("json_item_left_out", error=str(exc))
            notes.note(INVALID_ITEM)
            notes.dropped += 1
            return None

    def step_or_none(self, item: Any, notes: MapNotes) -> StepObservation | None:
        """Map one step item; one an expression fails on is left out and counted."""
        try:
            return self.step(item, notes)
        except PollError as exc:
            log.info("json_step_left_out", error=str(exc))
            notes.note(INVALID_ITEM)
            return None

    def job(self, item: Any, notes: MapNotes) -> JobObservation | None:
        """Map one job item; an item without a usable id is left out and counted."""
        if not isinstance(item, dict):
            notes.note(INVALID_ITEM)
            notes.dropped += 1
            return None
        ex = self.job_exprs
        job_id = ident(search(ex["id"], item, "id"))
        if job_id is None:
            notes.note(INVALID_ID)
            notes.dropped += 1
            return None
        times = self._times(ex, item, notes, ("created_at", "started_at", "finished_at"))
        return JobObservation(
            job_id=job_id,
            job_type=label(search(ex["type"], item, "type")) if "type" in ex else UNNAMED_TYPE,
            status=self._status(search(ex["status"], item, "status"), self.status_map, notes),
            created_at=times["created_at"], started_at=times["started_at"],
            finished_at=times["finished_at"],
            duration_s=self._number(ex.get("duration"), item, notes),
            progress=self._number(ex.get("progress"), item, notes),
        )

    def _number(self, expr: ParsedResult | None, item: Any, notes: MapNotes) -> float | None:
        """Read an optional number; the wrong type is counted and left out."""
        if expr is None:
            return None
        value = search(expr, item, expr.expression)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            notes.note(INVALID_PROGRESS)
            return None
        return float(value)

    def step(self, item: Any, notes: MapNotes) -> StepObservation | None:
        """Map one step item; one without a usable id is left out and counted."""
        ex = self.step_exprs
        step_id = ident(search(ex["id"], item, "id")) if isinstance(item, dict) else None
        if step_id is None:
            notes.note(INVALID_ID if isinstance(item, dict) else INVALID_ITEM)
            return None
        times = self._times(ex, item, notes, ("started_at", "finished_at"))
        attempt = search(ex["attempt"], item, "attempt") if "attempt" in ex else 0
        return StepObservation(
            step_id=step_id,
            step_type=label(search(ex["type"], item, "type")) if "type" in ex else UNNAMED_TYPE,
            status=self._status(search(ex["status"], item, "status"), self.step_status_map,
                                notes),
            attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0,
            started_at=times["started_at"], finished_at=times["finished_at"],
            last_progress_at=times["finished_at"] or times["started_at"],
        )


def step_progress(steps: tuple[StepObservation, ...]) -> float | None:
    """Return the share of terminal steps, the progress of APIs that report none."""
    if not steps:
        return None
    done = sum(1 for step in steps if step.status in TERMINAL_STEP_STATUSES)
    return done / len(steps)
