"""Every source kind, found by the `SPEC` its module under exporter/sources/ exports."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

import exporter.sources as package
from exporter.config_schema import ConfigModel, SourceCommon
from exporter.sources.spec import SourceSpec


def _find_specs() -> dict[str, SourceSpec]:
    """Import every module of the package and keep the specs they export, in rank order."""
    found: list[SourceSpec] = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, SourceSpec):
            found.append(spec)
    found.sort(key=lambda s: (s.rank, s.kind))
    return {spec.kind: spec for spec in found}


SPECS: dict[str, SourceSpec] = _find_specs()
KINDS: tuple[str, ...] = tuple(SPECS)
SPEC_MODELS: tuple[type[BaseModel], ...] = tuple(
    dict.fromkeys(m for s in SPECS.values() for m in (s.model, *s.models)))


def spec_of(kind: str) -> SourceSpec:
    """Return the spec of a configured (hence known) kind."""
    return SPECS[kind]


UNKNOWN_KIND = "unknown-kind"  # the union branch of a source whose kind is missing or unknown
TAGS: frozenset[str] = frozenset({*KINDS, UNKNOWN_KIND})


class UnknownKindModel(SourceCommon):
    """A source of no known kind: check the common keys; which others apply is unknowable."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _kind_tag(value: object) -> str:
    """Route a source to its kind's model, so errors come from that one branch only."""
    kind = value.get("kind") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) and kind in SPECS else UNKNOWN_KIND


_BRANCHES = (*(Annotated[s.model, Tag(k)] for k, s in SPECS.items()),
             Annotated[UnknownKindModel, Tag(UNKNOWN_KIND)])
AnySource: Any = Annotated[Union[_BRANCHES], Discriminator(_kind_tag)]  # noqa: UP007


class FullConfigModel(ConfigModel):
    """The config file with every registered source kind."""

    sources: Annotated[list[AnySource], Field(min_length=1)]
