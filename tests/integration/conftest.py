"""Register the markers of the integration tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Declare markers so `-m "not image"` can leave out the slow container-image build."""
    config.addinivalue_line(
        "markers", "image: builds and runs the real container image (buildah; root; ~2 min)"
    )
