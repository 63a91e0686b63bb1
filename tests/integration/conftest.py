"""Markers of the integration tests; the fixtures several modules share (real Ordo, simulator)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import STEADY_KNOBS, simulator
from tests.integration.ordo_upstream import OrdoService, real_ordo_service


def pytest_configure(config: pytest.Config) -> None:
    """Declare markers so `-m "not image"` can leave out the slow container-image build."""
    config.addinivalue_line(
        "markers", "image: builds and runs the real container image (buildah; root; ~2 min)"
    )


@pytest.fixture(scope="session")
def real_ordo() -> Iterator[OrdoService]:
    """Run the real Ordo service and its PostgreSQL once per session; fail if they cannot run."""
    with real_ordo_service() as service:
        yield service


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One simulator of a steady world per module (a module may define its own `sim`)."""
    with simulator(tmp_path_factory.mktemp("sim"), *STEADY_KNOBS) as url:
        yield url
