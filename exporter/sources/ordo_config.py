"""The ordo kind's config rules and its one target: the org named by `organization`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.config_schema import ErrorList, NonEmptyStr, SourceModel, normalize_address
from exporter.sources.classic_config import configurer
from exporter.sources.settings import OrgConfig


class OrdoSourceModel(SourceModel):
    """A `kind: ordo` source: one deployment, one org named by `organization`."""

    organization: NonEmptyStr


def check(loc: str, src: OrdoSourceModel, errs: ErrorList) -> None:
    """Add no rule: the model already requires the org label."""


def targets(loc: str, src: OrdoSourceModel, base: Mapping[str, Any],
            errs: ErrorList) -> tuple[OrgConfig, ...]:
    """Return the single org an Ordo deployment is."""
    name = src.organization
    return (OrgConfig(address=name, label=name, job_types=(), **base),)


REQUIRED = {"organization": "required for ordo sources: the org label"}
configure = configurer(check, targets, normalize_address, api=lambda src: "auto",
                       auto=lambda src: False)
