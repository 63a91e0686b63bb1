"""JSON shapes of Vocdoni jobs, new (main) and old (v2.9.0) generations, at a given time."""

from __future__ import annotations

import random
from typing import Any

from exporter.simulator.util import derived_hex, go_time
from exporter.simulator.vocdoni_world import VJob

EVICT_AFTER_S = 60.0  # v2.9.0 drops the in-memory import entry 60 s after a poll saw 100
_FIRST = ("jane", "john", "maria", "jordi", "aiko", "lucas", "fatima", "olga")
_LAST = ("doe", "smith", "garcia", "puig", "tanaka", "martin", "haddad", "ivanova")
_ROW_PROBLEMS = (
    "member {mail}: invalid phone +34 6{n:02d} {m:03d} {k:03d}",
    "member {mail}: invalid birth date 19{n:02d}-13-{k:02d}",
    "member {mail}: duplicate email",
    "member row {m}: invalid national id {n:02d}{m:06d}Z for {mail}",
)
_TX_FAILURES = (
    "tx queue full",
    "chain tx failed: transaction rejected by the sequencer",
    "process not found",
    "timeout waiting for the transaction to be mined",
)
_PROCESS_STATUS = ("READY", "PAUSED", "ENDED", "CANCELED")


def import_errors(job: VJob, upto: int | None = None) -> list[str]:
    """Return the job's row errors: they look like members' personal data, on purpose."""
    rng = random.Random(job.jid)
    out = []
    for _ in range(job.n_err if upto is None else min(upto, job.n_err)):
        mail = f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}@example.org"
        tmpl = rng.choice(_ROW_PROBLEMS)
        out.append(tmpl.format(mail=mail, n=rng.randint(0, 99), m=rng.randint(0, 999),
                               k=rng.randint(0, 999)))
    return out


def tx_error(job: VJob) -> str:
    """Return the single stored `error` of a failed tx job."""
    if job.jtype == "relay_votes":
        return f"{job.n_err} of {job.total} votes failed"
    return random.Random(job.jid).choice(_TX_FAILURES)


def job_errors(job: VJob, now: float) -> list[str]:
    """Return what the new API folds into `errors` (empty while pending)."""
    status = job.status(now)
    if status == "pending":
        return []
    if job.is_import:
        return import_errors(job)
    return [tx_error(job)] if status == "failed" else []


def _votes(job: VJob) -> list[dict[str, Any]]:
    rng = random.Random(job.jid + ":votes")
    failed = set(rng.sample(range(job.total), job.n_err))
    pid = derived_hex(job.jid, "process")
    votes: list[dict[str, Any]] = []
    for i in range(job.total):
        vote: dict[str, Any] = {"processId": pid, "nullifier": derived_hex(job.jid, str(i))}
        if i in failed:
            vote |= {"status": "failed", "error": "vote rejected: nullifier already used"}
        else:
            vote |= {"voteID": vote["nullifier"], "status": "completed"}
        votes.append(vote)
    return votes


def _tx_result(job: VJob) -> dict[str, Any]:
    pid = derived_hex(job.jid, "process")
    if job.jtype == "publish_process":
        return {"address": derived_hex(job.jid, "election")}
    if job.jtype == "set_process_status":
        return {"status": random.Random(job.jid).choice(_PROCESS_STATUS), "processId": pid}
    if job.jtype == "relay_vote":
        nullifier = derived_hex(job.jid, "nullifier")
        return {"processId": pid, "nullifier": nullifier, "voteID": nullifier}
    if job.jtype == "publish_voting_process":
        return {"address": derived_hex(job.jid, "election"), "processId": pid}
    if job.jtype == "set_process_census":
        return {"processId": pid}
    return {"address": derived_hex(job.jid, "address")}  # unknown (hostile) types


def unified_result(job: VJob, now: float) -> dict[str, Any]:
    """Return UnifiedJobResult with Go omitempty: zero counts and empty strings are absent."""
    status = job.status(now)
    result: dict[str, Any] = {}
    if status == "completed" and not job.is_import and job.jtype != "relay_votes":
        result = _tx_result(job)
    if job.jtype == "relay_votes" and status != "pending":
        result["votes"] = _votes(job)
    if job.total:
        added = job.added(now)
        result |= {"added": added, "progress": added * 100 // job.total, "total": job.total}
    return {k: v for k, v in result.items() if v not in (0, "", None, [])}


def render_new(job: VJob, now: float, with_errors: bool) -> dict[str, Any]:
    """Return JobResponse as GET /jobs and GET /jobs/{id} of the new generation send it."""
    out: dict[str, Any] = {"jobId": job.jid, "type": job.jtype, "status": job.status(now)}
    errors = job_errors(job, now)
    if errors and (with_errors or not job.is_import):
        out["errors"] = errors
    result = unified_result(job, now)
    if result:
        out["result"] = result
    return out


def render_v1_item(job: VJob, now: float) -> dict[str, Any]:
    """Return v2.9.0 JobInfo: timestamps and counts, but no status."""
    done = job.finish is not None and now >= job.finish
    errors: list[str] | None = import_errors(job) if (done and job.is_import) else []
    if not errors and job.null_errors:
        errors = None
    return {
        "jobId": job.jid, "type": job.jtype,
        "total": job.total if job.is_import else 0,
        "added": job.added(now) if job.is_import else 0,
        "errors": errors,
        "createdAt": go_time(job.created),
        "completedAt": go_time(job.finish if done else None),
        "completed": done,
    }


def render_v1_status(job: VJob, now: float) -> dict[str, Any]:
    """Return v2.9.0 JobStatusResponse: import jobs never set status, so it is ""."""
    if job.is_import:
        return {"jobId": job.jid, "type": job.jtype, "status": ""}
    status = job.status(now)
    out: dict[str, Any] = {"jobId": job.jid, "type": job.jtype, "status": status}
    if status == "completed":
        full = _tx_result(job)
        result = {k: full[k] for k in ("address", "status", "voteID") if full.get(k)}
        if result:
            out["result"] = result
    elif status == "failed":
        out["error"] = tx_error(job)
    return out


def render_members_job(job: VJob, now: float) -> dict[str, Any]:
    """Return v2.9.0 AddMembersJobResponse, from memory while held, else the Mongo row."""
    if job.live and job.is_import and (job.seen100 is None or now < job.seen100 + EVICT_AFTER_S):
        frac = job.fraction(now)
        processed = int(job.total * frac)
        progress = int(frac * 100) if frac < 1.0 else 100
        if progress >= 100 and job.seen100 is None:
            job.seen100 = now
        errors = import_errors(job, upto=int(job.n_err * frac))
        added = job.added(now)
        return {"added": min(added, processed), "errors": errors, "progress": progress,
                "total": job.total}
    done = job.finish is not None and now >= job.finish
    row_errors = import_errors(job) if done and job.is_import else []
    # Evicted (or from before a restart): progress is hard-coded to 100, even if never done.
    return {"added": job.added(now) if job.is_import else 0, "errors": row_errors or None,
            "progress": 100, "total": job.total if job.is_import else 0}
