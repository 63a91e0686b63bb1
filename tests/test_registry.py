"""Tests of exporter.sources.registry: a kind is one module exporting a SourceSpec."""

from __future__ import annotations

import pathlib
import re
import sys

import pytest

import exporter.sources as package
from exporter.config_schema import SourceModel
from exporter.sources import registry
from exporter.sources.base import Discoverer
from exporter.sources.json_config import JsonSourceModel
from exporter.sources.json_source import JsonSource
from exporter.sources.ordo import OrdoSource
from exporter.sources.vocdoni import VocdoniSource

REPO = pathlib.Path(__file__).resolve().parent.parent

DEMO_KIND = '''
from exporter.config_schema import SourceModel
from exporter.sources.spec import SourceSpec


def _unused(*args):
    raise AssertionError("not called by the registry scan")


SPEC = SourceSpec(kind="demo", rank=9, model=SourceModel, build=_unused, configure=_unused)
'''


def test_every_source_module_registers_its_kind_in_rank_order() -> None:
    assert registry.KINDS == ("vocdoni", "ordo", "json")
    assert registry.spec_of("json").model is JsonSourceModel
    assert registry.spec_of("ordo").model is SourceModel
    assert JsonSourceModel in registry.SPEC_MODELS


def test_a_new_module_with_a_spec_is_a_new_kind(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "demo_kind.py").write_text(DEMO_KIND, encoding="utf-8")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    try:
        specs = registry._find_specs()
    finally:
        sys.modules.pop("exporter.sources.demo_kind", None)
    assert tuple(specs) == ("vocdoni", "ordo", "json", "demo")


@pytest.mark.parametrize("module", ["config.py", "config_schema.py", "scheduler.py"])
def test_config_and_scheduler_name_no_kind(module: str) -> None:
    text = (REPO / "exporter" / module).read_text(encoding="utf-8")
    assert re.findall(r'"(?:vocdoni|ordo|json)"', text) == []


def test_discovery_is_a_protocol_only_discovering_sources_satisfy() -> None:
    assert issubclass(VocdoniSource, Discoverer)
    assert issubclass(JsonSource, Discoverer)
    assert not issubclass(OrdoSource, Discoverer)
