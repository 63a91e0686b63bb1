"""What a source module declares so the config, the scheduler and the CLI never name its kind."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from exporter.config_yaml import ErrorList
from exporter.sources.base import Source
from exporter.sources.settings import SourceConfig, auth_text, no_api_text

# (loc "sources[i]", validated model, merged defaults, config directory, errors) -> settings
Configure = Callable[[str, Any, Mapping[str, Any], pathlib.Path | None, ErrorList], SourceConfig]


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One `kind`: its config model, how to check and merge it, and how to build its client."""

    kind: str
    rank: int  # position when kinds are listed ("expected 'a', 'b' or 'c'")
    model: type[BaseModel]  # a `sources[i]` entry of this kind; carries the targets (orgs)
    configure: Configure  # kind rules, secrets, targets (orgs), merged settings
    build: Callable[[SourceConfig], Source]
    # key -> message when a key the kind requires is missing ("required for ... sources")
    required: Mapping[str, str] = field(default_factory=dict)
    # every model whose keys a source of this kind may use, for "did you mean"
    models: tuple[type[BaseModel], ...] = ()
    # the kind's part of the check-config summary: auth method and a ", api v2" suffix
    auth_text: Callable[[SourceConfig], str] = auth_text
    head_text: Callable[[SourceConfig], str] = no_api_text
    # what forces a new HTTP client when it changes on reload
    identity: Callable[[SourceConfig], tuple[Any, ...]] = SourceConfig.identity
