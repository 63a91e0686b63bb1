"""The whole simulated world: one clock, one lock, and the three mounted APIs' data."""

from __future__ import annotations

import random
import threading
from typing import Any

from exporter.simulator.clock import SimClock
from exporter.simulator.options import SimOptions
from exporter.simulator.ordo_render import ordo_truth
from exporter.simulator.ordo_world import OrdoWorld
from exporter.simulator.vocdoni_world import VocdoniWorld

MOUNTS: tuple[str, ...] = ("vocdoni", "vocdoni-v1", "ordo")


class ControlError(ValueError):
    """A control request named an unknown mount, org or job type."""


class World:
    """Hold every mount's data; callers take `lock` and call `sync()` before reading."""

    def __init__(self, opts: SimOptions, clock: SimClock | None = None) -> None:
        self.opts = opts
        self.clock = clock or SimClock(speed=opts.speed)
        self.lock = threading.Lock()
        start = self.clock.now()
        self.start = start
        self.vocdoni = VocdoniWorld(opts, "new", start)
        self.vocdoni_v1 = VocdoniWorld(opts, "old", start)
        self.ordo = OrdoWorld(opts, start)
        self._control_rng = random.Random(f"{opts.seed}:control")
        self.sync()

    def sync(self) -> float:
        """Advance every mount to the clock's now and return it; hold `lock`."""
        now = self.clock.now()
        self.vocdoni.advance(now)
        self.vocdoni_v1.advance(now)
        self.ordo.advance(now)
        return now

    def vocdoni_mount(self, mount: str) -> VocdoniWorld:
        """Return the Vocdoni world of a mount name."""
        if mount == "vocdoni":
            return self.vocdoni
        if mount == "vocdoni-v1":
            return self.vocdoni_v1
        raise ControlError(f"unknown mount {mount!r}")

    def truth(self) -> dict[str, Any]:
        """Return the ground truth of every mount at the current (maybe frozen) time."""
        with self.lock:
            now = self.sync()
            return {
                "vocdoni": self.vocdoni.truth(),
                "vocdoni-v1": self.vocdoni_v1.truth(),
                "ordo": {"ordo": ordo_truth(self.ordo, now)},
            }

    def add_jobs(
        self, mount: str, org: str | None, job_type: str | None, count: int, fail: bool = False,
    ) -> list[str]:
        """Create jobs now; `fail` makes them end failed within about half a second."""
        if count < 0 or count > 100_000:
            raise ControlError("count must be between 0 and 100000")
        with self.lock:
            now = self.sync()
            if mount == "ordo":
                recipe = self.ordo.recipe_named(job_type)
                if recipe is None:
                    raise ControlError(f"unknown recipe {job_type!r}")
                made = self.ordo.add_jobs(recipe, count, now, self._control_rng, fail)
                return [str(j.jid) for j in made]
            world = self.vocdoni_mount(mount)
            target = world.find_org(org)
            if target is None:
                raise ControlError(f"unknown org {org!r}")
            jtype = job_type or ("publish_process" if fail else world.mix_types[0])
            if jtype not in world.valid_types:
                raise ControlError(f"unknown job type {jtype!r}")
            made_v = world.add_jobs(target, jtype, count, now, self._control_rng, fail)
            return [j.jid for j in made_v]

    def delete_org(self, mount: str, org: str | None) -> int:
        """Make every job of an org vanish (Vocdoni DeleteJobsByOrg); return how many."""
        with self.lock:
            self.sync()
            if mount == "ordo":
                return self.ordo.delete_all()
            world = self.vocdoni_mount(mount)
            target = world.find_org(org)
            if target is None:
                raise ControlError(f"unknown org {org!r}")
            return world.delete_org_jobs(target)
