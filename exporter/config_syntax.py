"""`check-config --syntax-only`: structure only, no secret files and no environment (for CI)."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from exporter.config import _build, _validation_details
from exporter.config_yaml import ConfigError, DeferredEnv, ErrorList, parse_yaml
from exporter.sources.registry import FullConfigModel


def _depends_on_env(loc: str, deferred: Iterable[str]) -> bool:
    """Return True when `loc` is (inside) a value that still holds a ${NAME} reference."""
    return any(loc == d or loc.startswith((d + ".", d + "[")) for d in deferred)


def _kept(details: list[tuple[str, str]], env: DeferredEnv) -> list[tuple[str, str]]:
    """Drop the errors that only the environment could settle."""
    return [(loc, msg) for loc, msg in details if not _depends_on_env(loc, env.deferred)]


# Stand-ins for required values that come from the environment, so the rest can be checked;
# optional settings from the environment are left out (their defaults apply).
_STAND_INS: dict[str, str] = {
    "base_url": "https://env.invalid", "token": "env", "password": "env", "name": "env",
    "email": "env@env.invalid", "address": "0x" + "0" * 40, "organization": "env",
    "path": ":memory:",
}
_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _stand_in(data: Any, loc: str) -> None:
    """Replace (or drop) the value at a dotted location that still holds a ${NAME}."""
    parts: list[str | int] = [int(i) if i else k for k, i in _PART_RE.findall(loc)]
    node = data
    for part in parts[:-1]:
        node = node[part]
    last = parts[-1]
    if isinstance(last, str) and last in _STAND_INS:
        node[last] = _STAND_INS[last]
    elif isinstance(node, dict):
        node.pop(last, None)


def check_syntax(path: str | pathlib.Path) -> tuple[int, str]:
    """Validate structure, types and cross-key rules without reading secrets or ${VAR}s."""
    name = str(path)
    env = DeferredEnv()
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
        data, lines = parse_yaml(name, text, env)
        for loc in sorted(env.deferred, reverse=True):  # list items from the end: indexes hold
            _stand_in(data, loc)
        try:
            model = FullConfigModel.model_validate(data)
        except ValidationError as exc:
            errs = ErrorList(lines)
            for loc, msg in _kept(_validation_details(exc), env):
                errs.add(loc, msg)
            if errs.items:
                raise ConfigError(name, errs.items) from None
            return _ok(name, env, "values from the environment not checked")
        try:
            _build(name, model, lines, read_secrets=False)
        except ConfigError as exc:
            kept = _kept(exc.details, env)
            if kept:
                raise ConfigError(name, kept) from None
        return _ok(name, env, f"{len(model.sources)} source(s)")
    except ConfigError as exc:
        return 1, str(exc)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return 1, f"{name}: cannot read config file: {reason}"


def _ok(name: str, env: DeferredEnv, what: str) -> tuple[int, str]:
    """Return the success line, saying what was not checked."""
    refs = f"; {len(env.deferred)} ${{VAR}} value(s) not resolved" if env.deferred else ""
    return 0, f"{name}: SYNTAX OK: {what} (syntax only: secret files not read{refs})"
