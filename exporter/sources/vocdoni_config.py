"""The vocdoni kind's config rules and its targets: 0x-addressed orgs, listed or discovered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.config_schema import ErrorList, SourceModel, normalize_address
from exporter.sources.classic_config import configurer
from exporter.sources.settings import OrgConfig, SourceConfig, build_org


def check(loc: str, src: SourceModel, errs: ErrorList) -> None:
    """Require the org list (or 'auto', which needs the login)."""
    if src.organizations is None:
        errs.add(f"{loc}.organizations", "required for vocdoni sources: 'auto' or a list")
    if src.organizations == "auto" and src.auth.email is None:
        errs.add(f"{loc}.organizations", "'auto' needs email and password auth "
                 "(discovery goes through the login)")


def targets(loc: str, src: SourceModel, base: Mapping[str, Any],
            errs: ErrorList) -> tuple[OrgConfig, ...]:
    """Merge per-org overrides over the source's settings; check label and address clashes."""
    if not isinstance(src.organizations, list):
        return ()
    orgs: list[OrgConfig] = []
    seen_labels: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    for i, org in enumerate(src.organizations):
        orgs.append(build_org(org, base))
        label, where = orgs[-1].label, f"{loc}.organizations[{i}]"
        if label in seen_labels and org.address not in seen_addresses:
            errs.add(f"{where}.name", f"duplicate org label {label!r} "
                     f"(also organizations[{seen_labels[label]}])")
        if org.address in seen_addresses:
            errs.add(f"{where}.address", f"duplicate address {org.address!r} "
                     f"(also organizations[{seen_addresses[org.address]}])")
        seen_labels.setdefault(label, i)
        seen_addresses.setdefault(org.address, i)
    return tuple(orgs)


def head_text(src: SourceConfig) -> str:
    """Show the API version in the check-config summary."""
    return f", api {src.api}"


configure = configurer(check, targets, normalize_address, lambda src: src.api or "auto")
