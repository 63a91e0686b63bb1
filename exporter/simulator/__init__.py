"""A faithful fake of the Vocdoni (both generations) and Ordo job APIs, for demos and tests."""

from exporter.simulator.clock import SimClock
from exporter.simulator.options import SimOptions
from exporter.simulator.server import SimulatorHandle, run_simulator, start_simulator

__all__ = ["SimClock", "SimOptions", "SimulatorHandle", "run_simulator", "start_simulator"]
