"""Effective settings of one source and its orgs, and the helpers every kind builds them with."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from exporter.config_schema import (
    BUILTIN_DEFAULTS,
    ORG_SETTING_KEYS,
    SOURCE_SETTING_KEYS,
    normalize_address,
)
from exporter.config_yaml import ErrorList
from exporter.sources.base import ClientSettings

KindSettings = TypeVar("KindSettings")


@dataclass(frozen=True, slots=True)
class OrgConfig:
    """One organization to poll with its effective settings; compares by value for reloads."""

    address: str
    label: str
    job_types: tuple[str, ...]
    interval: float
    timeout: float
    full_resync_interval: float
    failed_job_retention: float
    jitter: float
    max_job_types_per_org: int
    max_step_types_per_org: int
    max_job_series_per_org: int
    duration_buckets: tuple[float, ...] = BUILTIN_DEFAULTS["duration_buckets"]
    step_duration_buckets: tuple[float, ...] = BUILTIN_DEFAULTS["step_duration_buckets"]


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One API endpoint, its token and effective settings; repr hides secrets."""

    name: str
    kind: str  # a key of exporter.sources.registry.SPECS
    base_url: str  # no trailing slash; may carry a path prefix
    token: str | None = field(repr=False)
    organizations_auto: bool
    orgs: tuple[OrgConfig, ...]
    interval: float
    timeout: float
    concurrency: int
    max_requests_per_second: float
    full_resync_interval: float
    failed_job_retention: float
    jitter: float
    retries: int
    max_job_types_per_org: int
    max_step_types_per_org: int
    max_job_series_per_org: int
    max_response_bytes: int = BUILTIN_DEFAULTS["max_response_bytes"]
    max_retry_after: float = BUILTIN_DEFAULTS["max_retry_after"]
    resync_budget: float = BUILTIN_DEFAULTS["resync_budget"]  # share of the rate, trickled resync
    # raw API status (lowercased) -> normalized status, as the operator configured it
    status_map: tuple[tuple[str, str], ...] = ()
    duration_buckets: tuple[float, ...] = BUILTIN_DEFAULTS["duration_buckets"]
    step_duration_buckets: tuple[float, ...] = BUILTIN_DEFAULTS["step_duration_buckets"]
    # the kind's own settings (a frozen value its `configure` builds; its repr hides secrets)
    kind_settings: object = None
    # how the kind checks and spells a discovered org's address (default: the 0x form)
    address_of: Callable[[str], str] = field(default=normalize_address, repr=False,
                                             compare=False)

    def kind_as(self, cls: type[KindSettings]) -> KindSettings:
        """Return the kind's own settings typed, so a source reads only its own keys."""
        if not isinstance(self.kind_settings, cls):
            raise TypeError(f"source {self.name!r}: kind settings are not {cls.__name__}")
        return self.kind_settings

    def client_settings(self) -> ClientSettings:
        """Return the HTTP policy of this source."""
        return ClientSettings(
            base_url=self.base_url, timeout=self.timeout, concurrency=self.concurrency,
            max_requests_per_second=self.max_requests_per_second, retries=self.retries,
            max_response_bytes=self.max_response_bytes, max_retry_after=self.max_retry_after,
        )

    def discovered_org(self, address: str) -> OrgConfig:
        """Return settings for an org found by `organizations: auto` (source-level values)."""
        addr = self.address_of(address)
        values = {k: getattr(self, k) for k in ORG_SETTING_KEYS}
        return OrgConfig(address=addr, label=addr, job_types=(), **values)

    def identity(self) -> tuple[Any, ...]:
        """Return what forces a new HTTP client when it changes on reload."""
        return (self.kind, self.base_url, self.token, self.kind_settings,
                self.timeout, self.concurrency, self.max_requests_per_second, self.retries,
                self.max_response_bytes, self.max_retry_after, self.status_map)


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Apply layers left to right; None means inherit."""
    out: dict[str, Any] = {}
    for layer in layers:
        out.update({k: v for k, v in layer.items() if v is not None})
    return out


def settings_of(model: Any, keys: frozenset[str]) -> dict[str, Any]:
    """Return the settings a model sets explicitly."""
    return {k: getattr(model, k) for k in keys}


def effective(src: BaseModel, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the defaults under a source's own settings."""
    return merge(defaults, settings_of(src, SOURCE_SETTING_KEYS))


def org_base(eff: Mapping[str, Any]) -> dict[str, Any]:
    """Return the source-level values an org inherits."""
    return {k: eff[k] for k in ORG_SETTING_KEYS}


def build_org(org: Any, base: Mapping[str, Any]) -> OrgConfig:
    """Return one org's effective settings (org model: address, name, job_types, settings)."""
    values = merge(base, settings_of(org, ORG_SETTING_KEYS))
    job_types = tuple(dict.fromkeys(org.job_types or ()))
    return OrgConfig(address=org.address, label=org.name or org.address,
                     job_types=job_types, **values)


def _read_secret(loc: str, file: str, base: pathlib.Path, errs: ErrorList) -> str | None:
    """Read a *_file secret relative to the config's directory; strip the trailing newline."""
    target = base / os.path.expanduser(file)
    try:
        value = target.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        errs.add(loc, f"cannot read {file}: {exc.strerror or type(exc).__name__}")
        return None
    except UnicodeDecodeError:
        errs.add(loc, f"cannot read {file}: not UTF-8 text")
        return None
    if not value:
        errs.add(loc, f"{file} is empty")
        return None
    return value


def resolve_auth(
    loc: str, src: Any, base: pathlib.Path | None, errs: ErrorList
) -> tuple[str | None, str | None]:
    """Return (token, password) with files read (unless base is None) and env already applied."""
    auth = src.auth
    token = auth.token.get_secret_value() if auth.token is not None else None
    password = auth.password.get_secret_value() if auth.password is not None else None
    if base is None:  # --syntax-only: secret files are never opened
        return token, password
    if auth.token_file is not None:
        token = _read_secret(f"{loc}.auth.token_file", auth.token_file, base, errs)
    if auth.password_file is not None:
        password = _read_secret(f"{loc}.auth.password_file", auth.password_file, base, errs)
    if auth.token is not None and not token:
        errs.add(f"{loc}.auth.token", "token is empty")
    if auth.password is not None and not password:
        errs.add(f"{loc}.auth.password", "password is empty")
    return token, password


def auth_text(src: SourceConfig) -> str:
    """Name a source's auth method for `check-config`, without the secret."""
    return "token" if src.token is not None else "email+password"


def no_api_text(src: SourceConfig) -> str:
    """Describe nothing kind-specific."""
    return ""
