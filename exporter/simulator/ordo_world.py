"""Ordo world: recipes with step DAGs and jobs whose steps run, retry, hang, fail or skip."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.options import SimOptions
from exporter.simulator.util import HOSTILE_LABELS

FINALIZE_S = 0.5  # n8n finalizer delay after the last step ends
STEP_ERRORS = (
    "PDAL pipeline exited with code 1", "S3 upload timed out", "out of memory (exit 137)",
    "input CRS not recognised", "worker lost heartbeat",
)


@dataclass(frozen=True, slots=True)
class StepDef:
    """One recipe step: its DAG inputs and the artifact slot it produces."""

    step_id: str
    step_type: str
    inputs: tuple[str, ...]  # "job:<name>" or "step:<id>.<slot>"
    output: str
    max_concurrency: int | None = None

    @property
    def deps(self) -> tuple[str, ...]:
        """Return ids of steps this one waits for."""
        return tuple(ref[5:].split(".")[0] for ref in self.inputs if ref.startswith("step:"))


@dataclass(frozen=True, slots=True)
class Recipe:
    """A recipe (the Ordo job type); `steps` are in topological order."""

    rid: int
    name: str
    version: str
    steps: tuple[StepDef, ...]
    outputs: tuple[str, ...]
    created: float
    weight: float

    def definition(self) -> dict[str, Any]:
        """Return the jsonb definition GET /recipes shows."""
        steps = []
        for s in self.steps:
            item: dict[str, Any] = {"id": s.step_id, "type": s.step_type,
                                    "inputs": {f"in{i}": ref for i, ref in enumerate(s.inputs)}}
            if s.max_concurrency is not None:
                item["max_concurrency"] = s.max_concurrency
            steps.append(item)
        return {"steps": steps, "outputs": list(self.outputs)}


def make_recipes(opts: SimOptions, start: float) -> list[Recipe]:
    """Return the deployment's recipes; a hostile one when label-safety tests ask for it."""
    t = start - 86400.0
    recipes = [
        Recipe(1, "lidar-ept", "1.2.0", (
            StepDef("reproject", "REPROJECT_LAS", ("job:input_las",), "output_las"),
            StepDef("build_ept", "BUILD_EPT", ("step:reproject.output_las",), "output_ept", 2),
            StepDef("dem", "GENERATE_DEM", ("step:reproject.output_las",), "output_dem", 2),
        ), ("step:build_ept.output_ept", "step:dem.output_dem"), t, 0.5),
        Recipe(2, "ortho-mosaic", "0.9.1", (
            StepDef("ingest", "INGEST_IMAGES", ("job:images",), "images"),
            StepDef("align", "ALIGN_PHOTOS", ("step:ingest.images",), "model", 1),
            StepDef("mosaic", "BUILD_MOSAIC", ("step:align.model",), "output_tif"),
            StepDef("tiles", "GENERATE_TILES", ("step:mosaic.output_tif",), "tiles", 4),
        ), ("step:tiles.tiles",), t + 60, 0.3),
        Recipe(3, "vector-import", "2.0.0", (
            StepDef("validate", "VALIDATE_VECTOR", ("job:input_gpkg",), "clean"),
            StepDef("load", "LOAD_POSTGIS", ("step:validate.clean",), "table"),
        ), ("step:load.table",), t + 120, 0.2),
    ]
    if opts.hostile_labels:
        a, b, c, d, e = HOSTILE_LABELS
        recipes.append(Recipe(4, a + b, "0.0.1", (
            StepDef("s1", c, ("job:blob",), "o1"),
            StepDef("s2", d, ("step:s1.o1",), "o2"),
            StepDef("s3", e, ("step:s1.o1",), "o3"),
        ), ("step:s2.o2",), t + 180, 0.2))
    return recipes


@dataclass(slots=True)
class StepPlan:
    """One step's future: claim/end times per attempt and the final outcome."""

    sdef: StepDef
    outcome: str | None = None  # success / failed / skipped; None: job never starts
    attempts: list[tuple[float, float]] = field(default_factory=list)  # (claimed, ended)
    finish: float | None = None
    stale: bool = False  # last attempt hangs without detailing updates
    worker: str = ""
    errors: tuple[str, ...] = ()  # per attempt that failed


@dataclass(slots=True)
class OJob:
    """One Ordo job's plan; its visible state derives from the clock."""

    jid: int
    recipe: Recipe
    created: float
    steps: list[StepPlan]
    started: float | None = None
    finish: float | None = None  # None = stuck pending forever
    outcome: str | None = None  # success / failed / partial
    params: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False

    def status(self, now: float) -> str:
        """Return the raw Ordo job status at `now`."""
        if self.started is None or now < self.started:
            return "pending"
        if self.finish is None or now < self.finish or self.outcome is None:
            return "running"
        return self.outcome


def _plan_step(sp: StepPlan, ready: float, rng: random.Random, mean: float, p_fail: float) -> None:
    sp.worker = f"n8n-worker-{rng.randint(1, 6)}"
    retries = 2 if rng.random() < 0.03 else (1 if rng.random() < 0.12 else 0)
    claim = ready + rng.uniform(0.05, 0.5)
    errors = []
    for _ in range(retries):
        end = claim + max(0.2, rng.expovariate(2.0 / mean))
        sp.attempts.append((claim, end))
        errors.append(rng.choice(STEP_ERRORS))
        claim = end + rng.uniform(1.0, 3.0)  # blocked_until cooldown
    duration = max(0.3, rng.expovariate(1.0 / mean))
    sp.stale = rng.random() < 0.04
    if sp.stale:
        duration = duration * 10 + 60.0
    sp.attempts.append((claim, claim + duration))
    sp.finish = claim + duration
    sp.outcome = "failed" if rng.random() < p_fail else "success"
    if sp.outcome == "failed":
        errors.append(rng.choice(STEP_ERRORS))
    sp.errors = tuple(errors)


def plan_job(
    jid: int, recipe: Recipe, created: float, rng: random.Random, opts: SimOptions,
    allow_stuck: bool = True, force_fail: bool = False,
) -> OJob:
    """Draw a job's whole future now, so its state is a function of time only."""
    steps = [StepPlan(s) for s in recipe.steps]
    job = OJob(jid, recipe, created, steps)
    if recipe.name == "lidar-ept":
        job.params = {"dem": {"resolution": rng.choice((0.5, 1, 2))}}
    mean = max(opts.job_duration_s, 0.01)
    p_fail = 1.0 - (1.0 - min(max(opts.failure_ratio, 0.0), 1.0)) ** (1.0 / len(steps))
    if allow_stuck and rng.random() < opts.stuck_ratio:
        return job
    start = created + (0.1 if force_fail else rng.expovariate(5.0 / mean))
    ends: dict[str, StepPlan] = {}
    for i, sp in enumerate(steps):
        deps = [ends[d] for d in sp.sdef.deps]
        broken = [d for d in deps if d.outcome != "success"]
        if broken:
            sp.outcome = "skipped"
            sp.finish = max(d.finish or start for d in broken)
        elif force_fail and i == 0:
            sp.worker, sp.outcome = "n8n-worker-1", "failed"
            sp.attempts, sp.finish = [(start, start + 0.2)], start + 0.2
            sp.errors = (rng.choice(STEP_ERRORS),)
        else:
            _plan_step(sp, max([start] + [d.finish or start for d in deps]), rng, mean, p_fail)
        ends[sp.sdef.step_id] = sp
    job.started = min(sp.attempts[0][0] for sp in steps if sp.attempts)
    job.finish = max(sp.finish or start for sp in steps) + FINALIZE_S
    outcomes = [sp.outcome for sp in steps]
    if all(o == "success" for o in outcomes):
        job.outcome = "success"
    else:
        job.outcome = "partial" if "success" in outcomes else "failed"
    return job


def normalized(status: str) -> str:
    """Map Ordo's success to the exporter's completed (the metrics contract)."""
    return "completed" if status == "success" else status


class OrdoWorld:
    """The single Ordo deployment: jobs with integer ids, newest id last."""

    def __init__(self, opts: SimOptions, start: float) -> None:
        self.opts = opts
        self.rng = random.Random(f"{opts.seed}:ordo")
        self.recipes = make_recipes(opts, start)
        self.jobs: list[OJob] = []
        self.by_id: dict[int, OJob] = {}
        self.active: dict[int, OJob] = {}
        self.finished: Counter[tuple[str, str]] = Counter()
        self.steps_finished: Counter[tuple[str, str, str]] = Counter()
        self._heap: list[tuple[float, int, int, OJob]] = []  # (time, job id, step idx or -1)
        self._next_id = 1
        self.next_at = start + self._gap()
        self._make_history(start)

    def _gap(self) -> float:
        rate = self.opts.ordo_job_rate
        return self.rng.expovariate(rate) if rate > 0 else float("inf")

    def _make_history(self, start: float) -> None:
        rate = self.opts.ordo_job_rate if self.opts.ordo_job_rate > 0 else 0.2
        horizon = max(self.opts.job_duration_s, 1.0) * 40 + 600.0  # finishes well before start
        created = start - horizon
        stamps = []
        for _ in range(self.opts.ordo_history):
            created -= self.rng.expovariate(rate)
            stamps.append(created)
        for created in reversed(stamps):
            job = plan_job(self._next_id, self.pick_recipe(self.rng), created, self.rng,
                           self.opts, allow_stuck=False)
            self._insert(job)

    def pick_recipe(self, rng: random.Random) -> Recipe:
        """Return a recipe drawn by weight."""
        return rng.choices(self.recipes, [r.weight for r in self.recipes])[0]

    def recipe_named(self, name: str | None) -> Recipe | None:
        """Return the recipe with that name (the first one for None)."""
        if name is None:
            return self.recipes[0]
        return next((r for r in self.recipes if r.name == name), None)

    def _insert(self, job: OJob) -> None:
        self._next_id = job.jid + 1
        self.jobs.append(job)
        self.by_id[job.jid] = job
        self.active[job.jid] = job
        if job.finish is not None:
            heapq.heappush(self._heap, (job.finish, job.jid, -1, job))
        for idx, sp in enumerate(job.steps):
            if sp.finish is not None:
                heapq.heappush(self._heap, (sp.finish, job.jid, idx, job))

    def advance(self, now: float) -> None:
        """Create arrivals and settle step and job finishes up to `now`."""
        while self.next_at <= now:
            job = plan_job(self._next_id, self.pick_recipe(self.rng), self.next_at, self.rng,
                           self.opts)
            self._insert(job)
            self.next_at += self._gap()
        while self._heap and self._heap[0][0] <= now:
            _, _, idx, job = heapq.heappop(self._heap)
            if job.deleted:
                continue
            if idx < 0:
                self.active.pop(job.jid, None)
                self.finished[(job.recipe.name, normalized(job.status(now)))] += 1
            else:
                sp = job.steps[idx]
                self.steps_finished[(job.recipe.name, sp.sdef.step_type, sp.outcome or "")] += 1

    def add_jobs(
        self, recipe: Recipe, count: int, now: float, rng: random.Random, fail: bool = False,
    ) -> list[OJob]:
        """Create jobs at `now` (control endpoint); `fail` makes them fail within 0.5 s."""
        made = []
        for _ in range(count):
            job = plan_job(self._next_id, recipe, now, rng, self.opts,
                           allow_stuck=not fail, force_fail=fail)
            self._insert(job)
            made.append(job)
        return made

    def delete_all(self) -> int:
        """Drop every job (the deployment is the org); finish counters stay."""
        for job in self.jobs:
            job.deleted = True
        gone = len(self.jobs)
        self.jobs, self.by_id, self.active = [], {}, {}
        return gone
