"""Read the config file's YAML: ${ENV} interpolation, line numbers for errors, string keys kept."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from exporter.config_schema import SECRET_KEYS

_ENV_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Plain scalars under these keys stay strings even when YAML would read a number or a
# boolean: an unquoted 0x-address is a YAML hex integer, `organization: 2024` an int.
_STRING_KEYS = frozenset({
    "address", "name", "organization", "token", "password", "email", "token_file",
    "password_file", "path", "base_url", "job_types",
})


class ConfigError(Exception):
    """The config file is unusable; `details` are (dotted location, what was expected)."""

    def __init__(
        self, path: str, details: list[tuple[str, str]], mark: tuple[int, int] | None = None
    ) -> None:
        self.path = path
        self.details = details
        self.mark = mark  # (line, column), 1-based, for YAML syntax errors
        super().__init__(str(self))

    def __str__(self) -> str:
        """Render one line per detail: `file: location: message`."""
        if self.mark is not None:
            line, col = self.mark
            return "\n".join(f"{self.path}:{line}:{col}: {msg}" for _, msg in self.details)
        return "\n".join(
            f"{self.path}: {loc}: {msg}" if loc else f"{self.path}: {msg}"
            for loc, msg in self.details
        )


class ErrorList:
    """Collect (location, message) pairs so one run reports every problem."""

    def __init__(self, lines: Mapping[str, int]) -> None:
        self.items: list[tuple[str, str]] = []
        self._lines = lines

    def add(self, loc: str, msg: str, line: int | None = None) -> None:
        """Record a problem, citing the nearest line the location maps to."""
        line = line or _line_of(loc, self._lines)
        self.items.append((loc, f"{msg} (line {line})" if line else msg))


def _line_of(loc: str, lines: Mapping[str, int]) -> int | None:
    """Find the line of a location, falling back to its closest ancestor."""
    while loc:
        if loc in lines:
            return lines[loc]
        cut = max(loc.rfind("."), loc.rfind("["))
        loc = loc[:cut] if cut > 0 else ""
    return None


class DeferredEnv(dict[str, str]):
    """An environment never read (`check-config --syntax-only`): ${NAME} stays as written."""

    def __init__(self) -> None:
        super().__init__()
        self.deferred: set[str] = set()  # locations whose value depends on the environment


def _interpolate(text: str, env: Mapping[str, str], loc: str, errs: ErrorList) -> str:
    """Replace ${NAME} by the environment value and $$ by $."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        if isinstance(env, DeferredEnv):
            env.deferred.add(loc)
            return match.group(0)
        if not _ENV_NAME_RE.fullmatch(name):
            secret = loc.rsplit(".", 1)[-1] in SECRET_KEYS
            errs.add(loc, "invalid variable reference" + ("" if secret else f" ${{{name}}}"))
            return ""
        if name not in env:
            errs.add(loc, f"environment variable {name} is not set")
            return ""
        return env[name]

    return _ENV_RE.sub(repl, text)


def _walk(node: yaml.Node, loc: str, ctx: _WalkContext) -> None:
    """Record lines, reject duplicate keys, interpolate scalars, keep string keys strings."""
    if id(node) in ctx.seen:
        return
    ctx.seen.add(id(node))
    ctx.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        if "$" in node.value:
            node.value = _interpolate(node.value, ctx.env, loc, ctx.errs)
        key = loc.rsplit(".", 1)[-1].split("[", 1)[0]
        if key in _STRING_KEYS and node.style is None and node.tag != ctx.null_tag:
            node.tag = ctx.str_tag
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, f"{loc}[{i}]", ctx)
    elif isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            name = str(key_node.value)
            child = f"{loc}.{name}" if loc else name
            plain = isinstance(key_node, yaml.ScalarNode) and key_node.style is None
            if plain and not key_node.tag.endswith(":merge"):
                key_node.tag = ctx.str_tag  # `1:` or `on:` would not be a string key
            if name in keys and name != "<<":
                ctx.errs.add(child, f"duplicate key {name!r}", key_node.start_mark.line + 1)
            keys.add(name)
            ctx.lines.setdefault(child, key_node.start_mark.line + 1)
            _walk(value_node, child, ctx)


@dataclass
class _WalkContext:
    """State shared by one walk over the YAML node tree."""

    env: Mapping[str, str]
    errs: ErrorList
    lines: dict[str, int]
    seen: set[int] = field(default_factory=set)
    str_tag: str = "tag:yaml.org,2002:str"
    null_tag: str = "tag:yaml.org,2002:null"


def _yaml_problem(problem: str) -> str:
    """Explain PyYAML's problems that are cryptic for a config file's author."""
    if "'\\t'" in problem or "tab character" in problem:
        return "a tab character: YAML indents with spaces only, replace the tab with spaces"
    return problem


def parse_yaml(path: str, text: str, env: Mapping[str, str]) -> tuple[Any, dict[str, int]]:
    """Parse and interpolate; return the data and a location -> line map."""
    loader = yaml.SafeLoader(text)
    lines: dict[str, int] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(path, [("", "file is empty: expected a mapping with 'sources'")])
        ctx = _WalkContext(env=env, errs=ErrorList(lines), lines=lines)
        _walk(node, "", ctx)
        if ctx.errs.items:
            raise ConfigError(path, ctx.errs.items)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = _yaml_problem(exc.problem or exc.context or "invalid YAML")
        pos = (mark.line + 1, mark.column + 1) if mark else None
        raise ConfigError(path, [("", msg)], pos) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [("", f"invalid YAML: {type(exc).__name__}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(path, [("", "expected a mapping with 'sources' at the top level")])
    return data, lines
