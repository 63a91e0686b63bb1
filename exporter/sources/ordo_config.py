"""The ordo kind's config rules and its one target: the org named by `organization`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.config_schema import ErrorList, SourceModel, normalize_address
from exporter.sources.classic_config import configurer
from exporter.sources.settings import OrgConfig


def check(loc: str, src: SourceModel, errs: ErrorList) -> None:
    """Require the org label."""
    if src.organization is None:
        errs.add(f"{loc}.organization", "required for ordo sources: the org label")


def targets(loc: str, src: SourceModel, base: Mapping[str, Any],
            errs: ErrorList) -> tuple[OrgConfig, ...]:
    """Return the single org an Ordo deployment is."""
    name = src.organization or ""
    return (OrgConfig(address=name, label=name, job_types=(), **base),)


configure = configurer(check, targets, normalize_address, lambda src: "auto")
