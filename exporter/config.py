"""Load the YAML config into frozen, fully merged settings; every failure is a ConfigError."""

from __future__ import annotations

import difflib
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from exporter.config_schema import (
    BUILTIN_DEFAULTS,
    SECRET_KEYS,
    SOURCE_SETTING_KEYS,
    AuthModel,
    ConfigModel,
    OrgModel,
    SourceCommon,
    SourceModel,
    SourceSettings,
    StateModel,
    format_duration,
)
from exporter.config_yaml import ConfigError, ErrorList, parse_yaml
from exporter.sources.registry import KINDS, SPEC_MODELS, SPECS, TAGS, FullConfigModel, spec_of
from exporter.sources.settings import OrgConfig, SourceConfig, merge, settings_of

__all__ = ["Config", "ConfigError", "OrgConfig", "SourceConfig", "check_config", "load_config"]


@dataclass(frozen=True, slots=True)
class Config:
    """The loaded config file."""

    path: str
    state_path: str
    sources: tuple[SourceConfig, ...]


_MODELS: tuple[type[BaseModel], ...] = (
    ConfigModel, StateModel, SourceCommon, AuthModel, OrgModel, SourceSettings,
)
ALL_KEYS: frozenset[str] = frozenset(k for m in (*_MODELS, *SPEC_MODELS) for k in m.model_fields)
# Where each key may appear, for "allowed only in ..." when a key is used at the wrong level.
_PLACES: tuple[tuple[str, tuple[type[BaseModel], ...]], ...] = (
    ("the top level", (ConfigModel,)), ("state", (StateModel,)), ("defaults", (SourceSettings,)),
    ("a source", tuple(s.model for s in SPECS.values() if issubclass(s.model, SourceModel))),
    ("a source's auth", (AuthModel,)), ("an organization", (OrgModel,)),
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
        elif part in TAGS and i > 1 and loc[i - 2] == "sources":
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
    if kind == "missing":
        return _required(tuple(err["loc"])) or texts["missing"]
    if kind == "extra_forbidden":
        return _other_kinds(tuple(err["loc"])) or _misplaced(key)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        if key in _UNION_TAGS:
            return "expected 'auto' or a list of organizations"
        return f"expected {ctx.get('expected')}, got {err.get('input')!r}"
    text = texts.get(kind, str(err["msg"]))
    echo = kind.startswith(("greater", "less", "int_", "float_")) and key not in SECRET_KEYS
    return f"{text}, got {err.get('input')!r}" if echo else text


def _required(loc: tuple[int | str, ...]) -> str | None:
    """Say why a kind needs a key, where its spec says so."""
    if len(loc) != 4 or loc[0] != "sources" or loc[2] not in KINDS:
        return None
    return spec_of(str(loc[2])).required.get(str(loc[3]))


def _other_kinds(loc: tuple[int | str, ...]) -> str | None:
    """Name the kind a source key belongs to when this source is of another kind."""
    if len(loc) != 4 or loc[0] != "sources" or loc[2] not in KINDS:
        return None
    key, kind = str(loc[3]), str(loc[2])
    owners = [k for k, spec in SPECS.items() if k != kind and key in spec.model.model_fields]
    if not owners:
        return None
    return f"only allowed on {owners[0]} sources, this source is kind {kind!r}"


def _misplaced(key: str) -> str:
    """Say where a rejected key is allowed, or that it is unknown (with a close match)."""
    places = [place for place, models in _PLACES if any(key in m.model_fields for m in models)]
    if places:
        return "allowed only in " + " or ".join(places)
    close = difflib.get_close_matches(key, ALL_KEYS, n=1)
    return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")


def _validation_details(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic errors into (location, message) pairs that never echo a secret."""
    return [(format_location(tuple(e["loc"])), _expected_text(e)) for e in exc.errors()]


def _build(path: str, model: ConfigModel, lines: Mapping[str, int],
           read_secrets: bool = True) -> Config:
    """Apply cross-field rules, read secret files, and freeze the result."""
    errs = ErrorList(lines)
    base = pathlib.Path(path).resolve().parent if read_secrets else None
    defaults = merge(BUILTIN_DEFAULTS, settings_of(model.defaults, SOURCE_SETTING_KEYS))
    sources: list[SourceConfig] = []
    first_index: dict[str, int] = {}
    for i, src in enumerate(model.sources):
        if src.name in first_index:
            errs.add(f"sources[{i}].name", f"duplicate source name {src.name!r} "
                     f"(also sources[{first_index[src.name]}])")
        first_index.setdefault(src.name, i)
        sources.append(spec_of(src.kind).configure(f"sources[{i}]", src, defaults, base, errs))
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
    spec = spec_of(src.kind)
    auth, api = spec.auth_text(src), spec.head_text(src)
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
