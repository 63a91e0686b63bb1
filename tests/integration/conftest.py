"""Register the markers of the integration tests; run the real Ordo service for a session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
