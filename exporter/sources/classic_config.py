"""Config rules shared by the vocdoni and ordo kinds (one SourceModel, kind-only keys)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from exporter.config_schema import ErrorList, SourceModel
from exporter.sources.settings import (
    OrgConfig,
    SourceConfig,
    effective,
    org_base,
    resolve_auth,
)

# Keys of SourceModel that only one of the kinds sharing it may use.
KIND_ONLY_KEYS: dict[str, tuple[str, ...]] = {
    "vocdoni": ("api", "organizations"),
    "ordo": ("organization",),
}
Targets = Callable[[str, SourceModel, Mapping[str, Any], ErrorList], tuple[OrgConfig, ...]]


def check_kind_keys(loc: str, src: SourceModel, errs: ErrorList) -> None:
    """Reject the keys that belong to the other kinds sharing SourceModel."""
    given = src.model_fields_set
    for other_kind, keys in KIND_ONLY_KEYS.items():
        if other_kind == src.kind:
            continue
        for key in keys:
            if key in given:
                errs.add(f"{loc}.{key}", f"only allowed on {other_kind} sources, "
                         f"this source is kind {src.kind!r}")


def configurer(
    check: Callable[[str, SourceModel, ErrorList], None], targets: Targets,
    address_of: Callable[[str], str], api: Callable[[SourceModel], str],
) -> Callable[[str, Any, Mapping[str, Any], pathlib.Path, ErrorList], SourceConfig]:
    """Return the `configure` of a kind that uses SourceModel."""

    def configure(loc: str, src: SourceModel, defaults: Mapping[str, Any],
                  base: pathlib.Path, errs: ErrorList) -> SourceConfig:
        """Check one source and merge defaults -> source -> org."""
        check_kind_keys(loc, src, errs)
        check(loc, src, errs)
        token, password = resolve_auth(loc, src, base, errs)
        eff = effective(src, defaults)
        return SourceConfig(
            name=src.name, kind=src.kind, base_url=src.base_url, api=api(src),
            token=token, email=src.auth.email, password=password,
            organizations_auto=src.organizations == "auto",
            orgs=targets(loc, src, org_base(eff), errs),
            status_map=tuple(sorted((src.status_map or {}).items())),
            address_of=address_of, **eff,
        )

    return configure
