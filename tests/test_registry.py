"""Tests of exporter.sources.registry: a kind is one module exporting a SourceSpec."""

from __future__ import annotations

import asyncio
import pathlib
import re
import sys

import pytest

import exporter.sources as package
from exporter.cli import main
from exporter.config import ConfigError, load_config
from exporter.config_schema import SourceModel
from exporter.sources import registry
from exporter.sources.base import Discoverer
from exporter.sources.json_config import JsonSourceModel
from exporter.sources.json_source import JsonSource
from exporter.sources.ordo import OrdoSource
from exporter.sources.ordo_config import OrdoSettings
from exporter.sources.settings import SourceConfig
from exporter.sources.vocdoni import VocdoniSource
from exporter.sources.vocdoni_config import VocdoniSettings
from tests.fakes import WriteConfig

REPO = pathlib.Path(__file__).resolve().parent.parent

DEMO_KIND = '''
from exporter.cli import main
from exporter.config import ConfigError, load_config
from exporter.config_schema import SourceModel
from exporter.sources.spec import SourceSpec


def _unused(*args):
    raise AssertionError("not called by the registry scan")


SPEC = SourceSpec(kind="demo", rank=9, model=SourceModel, build=_unused, configure=_unused)
'''


def test_every_source_module_registers_its_kind_in_rank_order() -> None:
    assert registry.KINDS == ("vocdoni", "ordo", "json")
    assert registry.spec_of("json").model is JsonSourceModel
    ordo, vocdoni = registry.spec_of("ordo").model, registry.spec_of("vocdoni").model
    assert issubclass(ordo, SourceModel) and issubclass(vocdoni, SourceModel)
    assert "organization" in ordo.model_fields and "organization" not in vocdoni.model_fields
    assert {"api", "organizations"} <= set(vocdoni.model_fields) - set(ordo.model_fields)
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


# "json" is also a log format (cli.py, log.py) and "vocdoni" a simulator mount (commands.py demo)
NOT_KINDS = {"cli.py", "log.py", "commands.py"}


@pytest.mark.parametrize("module", sorted(
    p.name for p in (REPO / "exporter").glob("*.py") if p.name not in NOT_KINDS))
def test_config_and_scheduler_name_no_kind(module: str) -> None:
    text = (REPO / "exporter" / module).read_text(encoding="utf-8")
    assert re.findall(r'"(?:vocdoni|ordo|json)"', text) == []


def test_source_attributes_are_read_from_the_protocol_not_getattr() -> None:
    for path in sorted((REPO / "exporter").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert re.findall(r"getattr\((?:self\.)?source\b", text) == [], path.name


def test_discovery_is_a_protocol_only_discovering_sources_satisfy() -> None:
    assert issubclass(VocdoniSource, Discoverer)
    assert issubclass(JsonSource, Discoverer)
    assert not issubclass(OrdoSource, Discoverer)


def test_a_key_of_another_kind_names_its_kind(write_config: WriteConfig) -> None:
    path = write_config("sources:\n  - name: g\n    kind: json\n    preset: github-actions\n"
                        "    base_url: https://api.example.org\n    organization: lidar\n"
                        "    organizations: [{address: o/r}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.details == [
        ("sources[0].organization",
         "only allowed on ordo sources, this source is kind 'json' (line 6)")]


def test_an_unknown_kind_reports_the_kind_and_common_keys_only(write_config: WriteConfig) -> None:
    path = write_config("sources:\n  - name: j\n    kind: jenkins\n    base_url: ftp://x\n"
                        "    organization: lidar\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert [loc for loc, _ in info.value.details] == ["sources[0].kind", "sources[0].base_url"]
    assert "expected 'vocdoni', 'ordo' or 'json', got 'jenkins'" in info.value.details[0][1]


def test_syntax_only_check_knows_every_kind(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config("sources:\n  - name: gh\n    kind: json\n    preset: github-actions\n"
                        "    base_url: https://api.github.com\n    auth: {token: '${GH_TOKEN}'}\n"
                        "    organizations: [{address: octo/repo}]\n")
    assert main(["check-config", "--syntax-only", str(path)]) == 0, capsys.readouterr().out
    assert "SYNTAX OK: 1 source(s)" in capsys.readouterr().out


def _example(env: dict[str, str], tmp_path: pathlib.Path, extra: str = "") -> list[SourceConfig]:
    """Load config.example.yaml (every kind) with secrets from env and tmp_path."""
    for name in ("vocdoni-token", "vocdoni-password", "ordo-token"):
        (tmp_path / name).write_text(f"{name}\n", encoding="utf-8")
    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(text + extra, encoding="utf-8")
    base = {"CREDENTIALS_DIRECTORY": str(tmp_path), "VOCDONI_STAGING_TOKEN": "stg",
            "ORDO_TOKEN": "o", "GITHUB_TOKEN": "gh", "AIRFLOW_PASSWORD": "af",
            "GITLAB_TOKEN": "gl"}
    return list(load_config(path, env={**base, **env}).sources)


def test_every_built_source_tells_its_host_and_statuses(tmp_path: pathlib.Path) -> None:
    async def build_all() -> list[tuple[str, str, tuple[str, ...]]]:
        out = []
        for cfg in _example({}, tmp_path):
            source = registry.spec_of(cfg.kind).build(cfg)
            out.append((cfg.kind, source.host, source.job_statuses))
            await source.aclose()
        return out

    built = asyncio.run(build_all())
    assert {kind for kind, _, _ in built} == set(registry.KINDS)
    for kind, host, statuses in built:
        assert host and "/" not in host, kind
        assert "completed" in statuses and "unknown" not in statuses, kind


def test_a_changed_kind_setting_changes_the_identity(tmp_path: pathlib.Path) -> None:
    def identities(env: dict[str, str], extra: str = "") -> dict[str, tuple[object, ...]]:
        sources = _example(env, tmp_path, extra)
        return {s.name: registry.spec_of(s.kind).identity(s) for s in sources}

    ordo = ("  - name: ordo-2\n    kind: ordo\n    base_url: https://o.example.org\n"
            "    auth: {token: t}\n    organization: lidar\n")
    before = identities({}, ordo)
    assert identities({}, ordo) == before  # equal settings: the client is kept
    after = identities({"AIRFLOW_PASSWORD": "rotated"}, ordo + "    id_window: 60\n")
    assert {name for name in before if before[name] != after[name]} == {"airflow", "ordo-2"}


def test_a_source_reads_only_its_own_kind_settings(tmp_path: pathlib.Path) -> None:
    ordo = next(s for s in _example({}, tmp_path) if s.kind == "ordo")
    assert ordo.kind_as(OrdoSettings).id_window == 25
    with pytest.raises(TypeError, match="not VocdoniSettings"):
        ordo.kind_as(VocdoniSettings)
