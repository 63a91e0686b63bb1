"""The `configure` of the kinds built on SourceModel (vocdoni, ordo): token or email login."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from exporter.config_yaml import ErrorList
from exporter.sources.settings import (
    OrgConfig,
    SourceConfig,
    effective,
    org_base,
    resolve_auth,
)

Targets = Callable[[str, Any, Mapping[str, Any], ErrorList], tuple[OrgConfig, ...]]
# (validated model, password read from the config or its file) -> the kind's own settings
OwnSettings = Callable[[Any, str | None], object]


def configurer(
    check: Callable[[str, Any, ErrorList], None], targets: Targets,
    address_of: Callable[[str], str], *, own: OwnSettings, auto: Callable[[Any], bool],
) -> Callable[[str, Any, Mapping[str, Any], pathlib.Path | None, ErrorList], SourceConfig]:
    """Return the `configure` of a kind whose model subclasses SourceModel."""

    def configure(loc: str, src: Any, defaults: Mapping[str, Any],
                  base: pathlib.Path | None, errs: ErrorList) -> SourceConfig:
        """Check one source and merge defaults -> source -> org."""
        check(loc, src, errs)
        token, password = resolve_auth(loc, src, base, errs)
        eff = effective(src, defaults)
        return SourceConfig(
            name=src.name, kind=src.kind, base_url=src.base_url, token=token,
            kind_settings=own(src, password), organizations_auto=auto(src),
            orgs=targets(loc, src, org_base(eff), errs),
            status_map=tuple(sorted((src.status_map or {}).items())),
            address_of=address_of, **eff,
        )

    return configure
