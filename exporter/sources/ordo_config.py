"""The ordo kind's config rules and its one target: the org named by `organization`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from exporter.config_schema import NonEmptyStr, SourceModel, normalize_address
from exporter.config_yaml import ErrorList
from exporter.sources.classic_config import configurer
from exporter.sources.settings import OrgConfig

ID_WINDOW = 25  # default `id_window`


@dataclass(frozen=True, slots=True)
class OrdoSettings:
    """The ordo kind's own settings."""

    id_window: int = ID_WINDOW  # ids probed past the highest known each poll


class OrdoSourceModel(SourceModel):
    """A `kind: ordo` source: one deployment, one org named by `organization`."""

    organization: NonEmptyStr
    # ids probed past the highest known each poll (burned ids tolerated in a row)
    id_window: Annotated[int, Field(ge=1, le=99)] | None = None


def check(loc: str, src: OrdoSourceModel, errs: ErrorList) -> None:
    """Add no rule: the model already requires the org label."""


def targets(loc: str, src: OrdoSourceModel, base: Mapping[str, Any],
            errs: ErrorList) -> tuple[OrgConfig, ...]:
    """Return the single org an Ordo deployment is."""
    name = src.organization
    return (OrgConfig(address=name, label=name, job_types=(), **base),)


def own(src: OrdoSourceModel, password: str | None) -> OrdoSettings:
    """Return the Ordo-only settings given (the dataclass defaults cover the rest)."""
    return OrdoSettings() if src.id_window is None else OrdoSettings(id_window=src.id_window)


REQUIRED = {"organization": "required for ordo sources: the org label"}
configure = configurer(check, targets, normalize_address, own=own, auto=lambda src: False)
