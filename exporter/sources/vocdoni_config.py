"""The vocdoni kind's config rules and its targets: 0x-addressed orgs, listed or discovered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from exporter.config_schema import Organizations, SourceModel, normalize_address
from exporter.config_yaml import ErrorList
from exporter.sources.classic_config import configurer
from exporter.sources.settings import OrgConfig, SourceConfig, build_org


@dataclass(frozen=True, slots=True)
class VocdoniSettings:
    """The vocdoni kind's own settings: API generation and login; repr hides the password."""

    api: str = "auto"  # "auto", "v2" or "v1"
    email: str | None = None
    password: str | None = field(default=None, repr=False)


class VocdoniSourceModel(SourceModel):
    """A `kind: vocdoni` source: its API generation and its orgs (listed or 'auto')."""

    api: Literal["auto", "v2", "v1"] | None = None
    organizations: Organizations


def check(loc: str, src: VocdoniSourceModel, errs: ErrorList) -> None:
    """Refuse 'auto' without the login discovery goes through."""
    if src.organizations == "auto" and src.auth.email is None:
        errs.add(f"{loc}.organizations", "'auto' needs email and password auth "
                 "(discovery goes through the login)")


def targets(loc: str, src: VocdoniSourceModel, base: Mapping[str, Any],
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
    return f", api {src.kind_as(VocdoniSettings).api}"


def own(src: VocdoniSourceModel, password: str | None) -> VocdoniSettings:
    """Return the API generation and the login of one source."""
    return VocdoniSettings(api=src.api or "auto", email=src.auth.email, password=password)


REQUIRED = {"organizations": "required for vocdoni sources: 'auto' or a list"}
configure = configurer(check, targets, normalize_address, own=own,
                       auto=lambda src: src.organizations == "auto")
