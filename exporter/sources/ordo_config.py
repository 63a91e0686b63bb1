"""The ordo kind's config rules and its one target: the org named by `organization`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from exporter.config_schema import ErrorList, NonEmptyStr, SourceModel, normalize_address
from exporter.sources.classic_config import configurer
from exporter.sources.settings import OrgConfig


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


REQUIRED = {"organization": "required for ordo sources: the org label"}
def extra(src: OrdoSourceModel) -> dict[str, Any]:
    """Return the Ordo-only settings given (the dataclass defaults cover the rest)."""
    return {} if src.id_window is None else {"id_window": src.id_window}


configure = configurer(check, targets, normalize_address, api=lambda src: "auto",
                       auto=lambda src: False, extra=extra)
