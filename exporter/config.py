"""Load the YAML config into frozen, fully merged settings; every failure is a ConfigError."""

from __future__ import annotations

import difflib
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from exporter.config_schema import (
    BUILTIN_DEFAULTS,
    ORDO_ONLY_KEYS,
    ORG_SETTING_KEYS,
    SECRET_KEYS,
    SOURCE_SETTING_KEYS,
    VOCDONI_ONLY_KEYS,
    AuthModel,
    ConfigError,
    ConfigModel,
    ErrorList,
    OrgModel,
    SourceModel,
    SourceSettings,
    StateModel,
    format_duration,
    normalize_address,
    parse_yaml,
)
from exporter.sources.base import ClientSettings
from exporter.sources.json_config import (
    JSON_MODELS,
    SOURCE_TAGS,
    FullConfigModel,
    JsonOrgModel,
    JsonSourceModel,
)
from exporter.state.snapshot import DURATION_BUCKETS

__all__ = ["Config", "ConfigError", "OrgConfig", "SourceConfig", "check_config", "load_config"]


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
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS
    step_duration_buckets: tuple[float, ...] = DURATION_BUCKETS


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One API endpoint, its credentials and effective settings; repr hides secrets."""

    name: str
    kind: str  # "vocdoni" | "ordo"
    base_url: str  # no trailing slash; may carry a path prefix
    api: str  # "auto" | "v2" | "v1"; always "auto" for ordo (unused there)
    token: str | None = field(repr=False)
    email: str | None
    password: str | None = field(repr=False)
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
    # raw API status (lowercased) -> normalized status, as the operator configured it
    status_map: tuple[tuple[str, str], ...] = ()
    # kind json: the validated model with its preset applied (requests, paging, mappings)
    json_spec: JsonSourceModel | None = field(default=None, repr=False)
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS
    step_duration_buckets: tuple[float, ...] = DURATION_BUCKETS
    id_window: int = 25  # Ordo: ids probed past the highest known

    def client_settings(self) -> ClientSettings:
        """Return the HTTP policy of this source."""
        return ClientSettings(
            base_url=self.base_url, timeout=self.timeout, concurrency=self.concurrency,
            max_requests_per_second=self.max_requests_per_second, retries=self.retries,
            max_response_bytes=self.max_response_bytes, max_retry_after=self.max_retry_after,
        )

    def discovered_org(self, address: str) -> OrgConfig:
        """Return settings for an org found by `organizations: auto` (source-level values)."""
        addr = normalize_address(address) if self.json_spec is None else address
        values = {k: getattr(self, k) for k in ORG_SETTING_KEYS}
        return OrgConfig(address=addr, label=addr, job_types=(), **values)


@dataclass(frozen=True, slots=True)
class Config:
    """The loaded config file."""

    path: str
    state_path: str
    sources: tuple[SourceConfig, ...]


_MODELS: tuple[type[BaseModel], ...] = (
    ConfigModel, StateModel, SourceModel, AuthModel, OrgModel, SourceSettings,
)
ALL_KEYS: frozenset[str] = frozenset(k for m in (*_MODELS, *JSON_MODELS) for k in m.model_fields)
# Where each key may appear, for "allowed only in ..." when a key is used at the wrong level.
_PLACES: tuple[tuple[str, type[BaseModel]], ...] = (
    ("the top level", ConfigModel), ("state", StateModel), ("defaults", SourceSettings),
    ("a source", SourceModel), ("a source's auth", AuthModel), ("an organization", OrgModel),
)
# Union branch tags pydantic puts into error locations; they are not config keys.
_UNION_TAGS = frozenset({"auto", "list"})


def format_location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as `sources[1].organizations[0].address`."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS and i > 0 and loc[i - 1] == "organizations":
            continue
        elif part in SOURCE_TAGS and i > 1 and loc[i - 2] == "sources":
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _expected_text(err: Any) -> str:
    """Say what was expected, in the config's vocabulary rather than pydantic's."""
    kind, ctx = err["type"], err.get("ctx") or {}
    key = str(err["loc"][-1]) if err["loc"] else ""
    texts = {
        "missing": "required key is missing",
        "string_type": "expected a string",
        "list_type": "expected a list",
        "model_type": "expected a mapping",
        "dict_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
        "int_type": "expected an integer",
        "int_parsing": "expected an integer",
        "int_from_float": "expected an integer",
        "float_type": "expected a number",
        "float_parsing": "expected a number",
        "bool_parsing": "expected true or false",
        "too_short": "expected at least one entry",
        "string_too_short": "expected a non-empty string",
        "greater_than": f"expected a number > {ctx.get('gt', 0):g}",
        "greater_than_equal": f"expected a number >= {ctx.get('ge', 0):g}",
        "less_than": f"expected a number < {ctx.get('lt', 0):g}",
        "less_than_equal": f"expected a number <= {ctx.get('le', 0):g}",
    }
    if kind == "extra_forbidden":
        return _misplaced(key)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        if key in _UNION_TAGS:
            return "expected 'auto' or a list of organizations"
        return f"expected {ctx.get('expected')}, got {err.get('input')!r}"
    text = texts.get(kind, str(err["msg"]))
    echo = kind.startswith(("greater", "less", "int_", "float_")) and key not in SECRET_KEYS
    return f"{text}, got {err.get('input')!r}" if echo else text


def _misplaced(key: str) -> str:
    """Say where a rejected key is allowed, or that it is unknown (with a close match)."""
    places = [place for place, model in _PLACES if key in model.model_fields]
    if places:
        return "allowed only in " + " or ".join(places)
    close = difflib.get_close_matches(key, ALL_KEYS, n=1)
    return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")


def _validation_details(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic errors into (location, message) pairs that never echo a secret."""
    return [(format_location(tuple(e["loc"])), _expected_text(e)) for e in exc.errors()]


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


def _resolve_auth(
    loc: str, src: SourceModel | JsonSourceModel, base: pathlib.Path | None, errs: ErrorList
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


def _check_kind_keys(loc: str, src: SourceModel, errs: ErrorList) -> None:
    """Reject keys of the other API kind and require the kind's own keys."""
    given = src.model_fields_set
    other, other_kind = (
        (ORDO_ONLY_KEYS, "ordo") if src.kind == "vocdoni" else (VOCDONI_ONLY_KEYS, "vocdoni")
    )
    for key in other:
        if key in given:
            errs.add(f"{loc}.{key}", f"only allowed on {other_kind} sources, "
                     f"this source is kind {src.kind!r}")
    if src.kind == "ordo" and src.organization is None:
        errs.add(f"{loc}.organization", "required for ordo sources: the org label")
    if src.kind == "vocdoni" and src.organizations is None:
        errs.add(f"{loc}.organizations", "required for vocdoni sources: 'auto' or a list")
    if src.kind == "vocdoni" and src.organizations == "auto" and src.auth.email is None:
        errs.add(f"{loc}.organizations", "'auto' needs email and password auth "
                 "(discovery goes through the login)")


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Apply layers left to right; None means inherit."""
    out: dict[str, Any] = {}
    for layer in layers:
        out.update({k: v for k, v in layer.items() if v is not None})
    return out


def _settings(model: Any, keys: frozenset[str]) -> dict[str, Any]:
    """Return the settings a model sets explicitly."""
    return {k: getattr(model, k) for k in keys}


def _build_orgs(loc: str, src: SourceModel, eff: Mapping[str, Any],
                errs: ErrorList) -> tuple[OrgConfig, ...]:
    """Merge per-org overrides over the source's effective settings; check label clashes."""
    base = {k: eff[k] for k in ORG_SETTING_KEYS}
    if src.kind == "ordo":
        name = src.organization or ""
        return (OrgConfig(address=name, label=name, job_types=(), **base),)
    if not isinstance(src.organizations, list):
        return ()
    orgs: list[OrgConfig] = []
    seen_labels: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    for i, org in enumerate(src.organizations):
        orgs.append(_build_org(org, base))
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


def _build_org(org: OrgModel | JsonOrgModel, base: Mapping[str, Any]) -> OrgConfig:
    """Return one org's effective settings."""
    values = _merge(base, _settings(org, ORG_SETTING_KEYS))
    job_types = tuple(dict.fromkeys(org.job_types or ()))
    return OrgConfig(address=org.address, label=org.name or org.address,
                     job_types=job_types, **values)


def _build_source(i: int, src: SourceModel, defaults: Mapping[str, Any],
                  base: pathlib.Path | None, errs: ErrorList) -> SourceConfig:
    """Check one source and merge defaults -> source -> org."""
    loc = f"sources[{i}]"
    _check_kind_keys(loc, src, errs)
    token, password = _resolve_auth(loc, src, base, errs)
    eff = _merge(defaults, _settings(src, SOURCE_SETTING_KEYS))
    return SourceConfig(
        name=src.name, kind=src.kind, base_url=src.base_url, api=src.api or "auto",
        token=token, email=src.auth.email, password=password,
        organizations_auto=src.organizations == "auto",
        orgs=_build_orgs(loc, src, eff, errs),
        status_map=tuple(sorted((src.status_map or {}).items())), **eff,
        **_ordo_keys(src),
    )


def _ordo_keys(src: SourceModel) -> dict[str, Any]:
    """Return the Ordo-only settings given (the dataclass defaults cover the rest)."""
    return {} if src.id_window is None else {"id_window": src.id_window}


def _build_json_source(i: int, src: JsonSourceModel, defaults: Mapping[str, Any],
                       base: pathlib.Path, errs: ErrorList) -> SourceConfig:
    """Check a kind json source and merge defaults -> source -> org."""
    loc = f"sources[{i}]"
    token, password = _resolve_auth(loc, src, base, errs)
    eff = _merge(defaults, _settings(src, SOURCE_SETTING_KEYS))
    org_base = {k: eff[k] for k in ORG_SETTING_KEYS}
    orgs = tuple(_build_org(org, org_base) for org in src.organizations or ())
    seen: dict[str, int] = {}
    for j, org in enumerate(orgs):
        if org.label in seen:
            errs.add(f"{loc}.organizations[{j}]", f"duplicate org {org.label!r} "
                     f"(also organizations[{seen[org.label]}])")
        seen.setdefault(org.label, j)
    return SourceConfig(
        name=src.name, kind=src.kind, base_url=src.base_url, api="auto", token=token,
        email=src.auth.username, password=password,
        organizations_auto=src.discover is not None, orgs=orgs,
        status_map=tuple(sorted(src.status_map.items())), json_spec=src, **eff,
    )


def _build(path: str, model: ConfigModel, lines: Mapping[str, int],
           read_secrets: bool = True) -> Config:
    """Apply cross-field rules, read secret files, and freeze the result."""
    errs = ErrorList(lines)
    base = pathlib.Path(path).resolve().parent if read_secrets else None
    defaults = _merge(BUILTIN_DEFAULTS, _settings(model.defaults, SOURCE_SETTING_KEYS))
    sources: list[SourceConfig] = []
    first_index: dict[str, int] = {}
    for i, src in enumerate(model.sources):
        if src.name in first_index:
            errs.add(f"sources[{i}].name", f"duplicate source name {src.name!r} "
                     f"(also sources[{first_index[src.name]}])")
        first_index.setdefault(src.name, i)
        if isinstance(src, JsonSourceModel):
            sources.append(_build_json_source(i, src, defaults, base, errs))
        else:
            sources.append(_build_source(i, src, defaults, base, errs))
    if errs.items:
        raise ConfigError(path, errs.items)
    return Config(path=path, state_path=model.state.path, sources=tuple(sources))


def load_config(path: str | pathlib.Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate, validate and merge the config file; raise ConfigError if unusable."""
    name = str(path)
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(name, [("", f"cannot read config file: {reason}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(name, [("", "cannot read config file: not UTF-8 text")]) from None
    data, lines = parse_yaml(name, text, os.environ if env is None else env)
    try:
        model = FullConfigModel.model_validate(data)
    except ValidationError as exc:
        errs = ErrorList(lines)
        for loc, msg in _validation_details(exc):
            errs.add(loc, msg)
        raise ConfigError(name, errs.items) from None
    return _build(name, model, lines)


def _describe_source(src: SourceConfig) -> list[str]:
    """Summarize one source without secrets."""
    auth = "token" if src.token is not None else "email+password"
    api = f", api {src.api}" if src.kind == "vocdoni" else ""
    if src.json_spec is not None:
        auth = "token" if src.token is not None else "none" if src.email is None else "password"
        api = f", preset {src.json_spec.preset}" if src.json_spec.preset else ""
    head = (f"source {src.name}: {src.kind} {src.base_url}{api}, auth {auth}, "
            f"interval {format_duration(src.interval)}, timeout {format_duration(src.timeout)}, "
            f"concurrency {src.concurrency}, {src.max_requests_per_second:g} req/s")
    out = [head]
    if src.organizations_auto:
        out.append("  orgs: auto (discovered at login)")
    for org in src.orgs:
        types = ",".join(org.job_types) or "all"
        addr = f" ({org.address})" if org.address != org.label else ""
        out.append(f"  org {org.label}{addr}: interval {format_duration(org.interval)}, "
                   f"job types {types}")
    return out


def check_config(path: str | pathlib.Path) -> tuple[int, str]:
    """Validate a config file for `check-config`: (exit code, text to print)."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return 1, str(exc)
    n_orgs = sum(len(s.orgs) for s in cfg.sources)
    lines = [f"{path}: OK: {len(cfg.sources)} source(s), {n_orgs} configured org(s), "
             f"state {cfg.state_path}"]
    for src in cfg.sources:
        lines.extend(_describe_source(src))
    return 0, "\n".join(lines)
