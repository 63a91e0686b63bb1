"""JSON shapes of Ordo jobs at a given time, and the Ordo ground truth."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from exporter.simulator.ordo_world import OJob, OrdoWorld, StepPlan, normalized
from exporter.simulator.util import derived_hex, js_time

DETAIL_TICK_S = 5.0  # n8n writes a detailing row every few seconds while a step runs
TERMINAL = frozenset({"success", "failed", "partial"})


@dataclass(frozen=True, slots=True)
class StepView:
    """A step as job_step would hold it at one instant."""

    status: str
    attempt: int
    claimed_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    detail: tuple[int, float, float] | None = None  # (tick, updated_at, progress 0..100)


def _detail(sp: StepPlan, i: int, now: float, done: bool) -> tuple[int, float, float]:
    start, end = sp.attempts[i]
    span = max(end - start, 1e-6)
    if done and sp.outcome == "success" and i == len(sp.attempts) - 1:
        return 9999, end, 100.0
    upto = min(now, end)
    tick = int((upto - start) // DETAIL_TICK_S)
    if sp.stale and i == len(sp.attempts) - 1:
        tick = 0  # hangs: no progress row after the first one
    at = start + tick * DETAIL_TICK_S
    return tick, at, min(99.0, float(int(100 * (at - start) / span)))


def step_view(sp: StepPlan, now: float) -> StepView:
    """Derive the step's status, attempt and detailing from its plan."""
    if sp.outcome == "skipped":
        if sp.finish is not None and now >= sp.finish:
            return StepView("skipped", 0, finished_at=sp.finish)
        return StepView("pending", 0)
    if not sp.attempts or now < sp.attempts[0][0]:
        return StepView("pending", 0)
    i = max(k for k, (claim, _) in enumerate(sp.attempts) if claim <= now)
    claim, end = sp.attempts[i]
    last = i == len(sp.attempts) - 1
    if now < end:
        return StepView("running", i + 1, claim, claim, None, None, _detail(sp, i, now, False))
    if not last:
        return StepView("blocked", i + 1, claim, claim, None, sp.errors[i],
                        _detail(sp, i, now, False))
    error = sp.errors[-1] if sp.outcome == "failed" else None
    return StepView(sp.outcome or "failed", i + 1, claim, claim, end, error,
                    _detail(sp, i, now, True))


def list_item(job: OJob, now: float) -> dict[str, Any]:
    """Return a GET /jobs item: exactly these seven keys."""
    status = job.status(now)
    done = status in TERMINAL
    return {
        "id": job.jid, "recipe_id": job.recipe.rid, "status": status,
        "created_at": js_time(job.created),
        "started_at": js_time(job.started if status != "pending" else None),
        "finished_at": js_time(job.finish if done else None),
        "error": _job_error(job) if done else None,
    }


def _job_error(job: OJob) -> str | None:
    bad = [sp for sp in job.steps if sp.outcome == "failed"]
    if job.outcome == "failed" and bad:
        return f"Step {bad[0].sdef.step_id} failed: {bad[0].errors[-1]}"
    if job.outcome == "partial":
        return f"{len(bad)} of {len(job.steps)} steps failed"
    return None


def _step_json(job: OJob, idx: int, sp: StepPlan, v: StepView) -> dict[str, Any]:
    step_id = sp.sdef.step_id
    last: dict[str, Any] | None = None
    if v.detail is not None:
        tick, at, progress = v.detail
        last = {
            "id": job.jid * 1_000_000 + idx * 100_000 + v.attempt * 10_000 + tick,
            "job_id": job.jid, "step_id": step_id,
            "log": f"{sp.sdef.step_type.lower()}: chunk {tick}" if tick < 9999 else "done",
            "progress": {"progress": int(progress)}, "updated_at": js_time(at),
        }
    return {
        "job_id": job.jid, "step_id": step_id, "step_type": sp.sdef.step_type,
        "status": v.status, "attempt": v.attempt,
        "claimed_by": sp.worker if v.claimed_at is not None else None,
        "claimed_at": js_time(v.claimed_at), "started_at": js_time(v.started_at),
        "finished_at": js_time(v.finished_at), "error": v.error,
        "max_concurrency": sp.sdef.max_concurrency, "last_detailing": last,
    }


def _progress(views: list[StepView]) -> dict[str, Any]:
    total = 0.0
    for v in views:
        if v.status == "success":
            total += 1.0
        elif v.status == "running" and v.detail is not None:
            total += v.detail[2] / 100.0
    done = sum(1 for v in views if v.status in ("success", "failed"))
    share = total / len(views) if views else 0.0
    # JavaScript prints whole numbers without ".0"
    return {"percentage": int(share) if share.is_integer() else share, "completed_steps": done,
            "total_steps": len(views)}


def _ms(a: float | None, b: float | None) -> int | None:
    # Ordo subtracts the millisecond timestamps it stored, as js_time shows them.
    return round(b * 1000) - round(a * 1000) if a is not None and b is not None else None


def _timeline(steps: list[StepPlan], views: list[StepView]) -> list[dict[str, Any]]:
    # Ordo stable-sorts the steps (ordered by step_id) on started_at in milliseconds.
    pairs = sorted(zip(steps, views, strict=True), key=lambda p: p[0].sdef.step_id)
    rows = [{
        "step": sp.sdef.step_id, "type": sp.sdef.step_type, "status": v.status,
        "started_at": js_time(v.started_at), "finished_at": js_time(v.finished_at),
        "duration_ms": _ms(v.started_at, v.finished_at),
    } for sp, v in pairs]
    rows.sort(key=lambda r: (r["started_at"] is None, r["started_at"] or ""))
    return rows


def _artifacts(job: OJob, views: list[StepView]) -> list[dict[str, Any]]:
    first = job.recipe.steps[0].inputs[0][4:]
    items = [{"job_id": job.jid, "name": first, "type": first.split("_")[-1],
              "uri": f"s3://ordo-sim/jobs/{job.jid}/{first}",
              "hash": derived_hex(str(job.jid))[:16],
              "producer_step": None, "metadata": None, "created_at": js_time(job.created)}]
    for sp, v in zip(job.steps, views, strict=True):
        if v.status == "success":
            name = f"{sp.sdef.step_id}.{sp.sdef.output}"
            items.append({"job_id": job.jid, "name": name, "type": sp.sdef.output,
                          "uri": f"s3://ordo-sim/jobs/{job.jid}/{name}",
                          "hash": derived_hex(str(job.jid), name)[:16],
                          "producer_step": sp.sdef.step_id, "metadata": None,
                          "created_at": js_time(v.finished_at)})
    return sorted(items, key=lambda a: str(a["name"]))


def _outputs(job: OJob, now: float, views: list[StepView]) -> list[dict[str, Any]]:
    done = job.status(now) in TERMINAL
    ok = {sp.sdef.step_id for sp, v in zip(job.steps, views, strict=True) if v.status == "success"}
    rows = []
    for ref in sorted(job.recipe.outputs):
        step_id, slot = ref[5:].split(".", 1)
        delivered = done and step_id in ok
        path = f"results/job-{job.jid}/{slot}"
        rows.append({"job_id": job.jid, "artifact_name": ref, "path": path,
                     "delivered_uri": f"s3://delivery/{path}" if delivered else None,
                     "delivered_at": js_time(job.finish) if delivered else None,
                     "created_at": js_time(job.created)})
    return rows


def job_detail(job: OJob, now: float) -> dict[str, Any]:
    """Return the GET /jobs/:id body: job, progress, duration_ms, timeline, steps, ..."""
    views = [step_view(sp, now) for sp in job.steps]
    head = list_item(job, now)
    head["params"] = job.params
    order = sorted(range(len(job.steps)), key=lambda i: job.steps[i].sdef.step_id)
    return {
        "job": head, "progress": _progress(views),
        "duration_ms": _ms(job.started, job.finish) if head["finished_at"] else None,
        "timeline": _timeline(job.steps, views),
        "steps": [_step_json(job, i, job.steps[i], views[i]) for i in order],
        "artifacts": _artifacts(job, views), "outputs": _outputs(job, now, views),
    }


def recipe_json(world: OrdoWorld, rid: int) -> dict[str, Any] | None:
    """Return a recipe row as GET /recipes shows it."""
    for r in world.recipes:
        if r.rid == rid:
            return {"id": r.rid, "name": r.name, "version": r.version,
                    "definition": r.definition(), "created_at": js_time(r.created)}
    return None


def _nest3(c: Counter[tuple[str, str, str]]) -> dict[str, dict[str, dict[str, int]]]:
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (a, b, k), n in sorted(c.items()):
        if n:
            out.setdefault(a, {}).setdefault(b, {})[k] = n
    return out


def ordo_truth(world: OrdoWorld, now: float) -> dict[str, Any]:
    """Return ground truth of the deployment (O(jobs): fine for tests)."""
    jobs: dict[str, dict[str, int]] = {}
    retries: dict[str, dict[str, int]] = {}
    active_steps: Counter[tuple[str, str, str]] = Counter()
    for job in world.jobs:
        status = job.status(now)
        name = job.recipe.name
        per = jobs.setdefault(name, {})
        per[normalized(status)] = per.get(normalized(status), 0) + 1
        for sp in job.steps:
            v = step_view(sp, now)
            kind = retries.setdefault(name, {})
            kind[sp.sdef.step_type] = kind.get(sp.sdef.step_type, 0) + max(v.attempt - 1, 0)
            if status not in TERMINAL:
                active_steps[(name, sp.sdef.step_type, v.status)] += 1
    finished: dict[str, dict[str, int]] = {}
    for (name, status), n in sorted(world.finished.items()):
        finished.setdefault(name, {})[status] = n
    return {
        "jobs": jobs, "finished": finished, "total": len(world.jobs),
        "active_ids": [str(j) for j in world.active],
        "import_items": {"added": 0, "errored": 0},
        "steps_finished": _nest3(world.steps_finished),
        "step_retries": retries, "steps_active": _nest3(active_steps),
    }
