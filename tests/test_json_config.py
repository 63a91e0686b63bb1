"""Config of `kind: json` sources: presets, overrides, errors with file, location and line."""

from __future__ import annotations

import pathlib
import socket
from typing import Any

import pytest
import yaml

from exporter.config import ConfigError, check_config, load_config
from exporter.scheduler import build_source
from exporter.sources.json_config import JsonSettings
from exporter.sources.json_source import JsonSource

GH = """\
sources:
  - name: gh
    kind: json
    preset: github-actions
    base_url: https://api.github.com
    auth:
      token_file: tok
    organizations:
      - address: octo-org/octo-repo
"""


@pytest.fixture
def gh_file(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "tok").write_text("ghp-secret\n")
    path = tmp_path / "gh.yaml"
    path.write_text(GH)
    return path


@pytest.mark.parametrize("preset", ["github-actions", "gitlab-ci", "airflow"])
def test_check_config_validates_a_preset_without_contacting_anything(
    gh_file: pathlib.Path, monkeypatch: pytest.MonkeyPatch, preset: str
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("check-config opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    gh_file.write_text(GH.replace("github-actions", preset))
    code, text = check_config(gh_file)
    assert code == 0, text
    assert f"json https://api.github.com, preset {preset}, auth token" in text
    assert "ghp-secret" not in text


def test_preset_keys_are_overridable_one_by_one(gh_file: pathlib.Path) -> None:
    gh_file.write_text(GH + "    jobs: {type: display_title, paging: {max_pages: 3}}\n"
                       "    status_map: {stale: failed}\n")
    src = load_config(gh_file).sources[0]
    spec = src.kind_as(JsonSettings).spec
    assert src.token == "ghp-secret" and src.orgs[0].label == (
        "octo-org/octo-repo")
    assert spec.jobs.type == "display_title" and spec.jobs.paging.max_pages == 3
    assert spec.jobs.paging.style == "link" and spec.jobs.path == "/repos/{org}/actions/runs"
    assert spec.status_map["stale"] == "failed" and spec.status_map["success"] == "completed"
    assert isinstance(build_source(src), JsonSource)


@pytest.mark.parametrize(("extra", "loc", "msg"), [
    ("    jobs: {status: 'conclusion ||'}\n", "sources[0].jobs.status",
     "invalid JMESPath expression 'conclusion ||'"),
    ("    jobs: {paging: {style: pages}}\n", "sources[0].jobs.paging.style",
     "expected 'none', 'page', 'offset', 'link' or 'cursor'"),
    ("    jobs: {pagin: {}}\n", "sources[0].jobs.pagin", "unknown key (did you mean 'paging'?)"),
    ("    step_status_map: {queued: waiting}\n", "sources[0].step_status_map",
     "expected one of pending, running"),
    ("    jobs: {incremental: {mode: since}}\n", "sources[0].jobs.incremental",
     "mode since needs since_param"),
])
def test_errors_name_file_location_and_line(gh_file: pathlib.Path, extra: str, loc: str,
                                            msg: str) -> None:
    gh_file.write_text(GH + extra)
    with pytest.raises(ConfigError) as info:
        load_config(gh_file)
    (got_loc, got_msg), = info.value.details
    assert got_loc == loc and msg in got_msg and got_msg.endswith("(line 10)")
    assert str(gh_file) in str(info.value)


def test_a_preset_without_a_token_and_unknown_preset(gh_file: pathlib.Path) -> None:
    gh_file.write_text(GH.replace("preset: github-actions", "preset: jenkins"))
    with pytest.raises(ConfigError) as info:
        load_config(gh_file)
    locs = [loc for loc, _ in info.value.details]
    assert "sources[0].preset" in locs and "sources[0].jobs" in locs  # no preset filled it


GL_DISCOVER = """\
sources:
  - name: gl
    kind: json
    preset: gitlab-ci
    base_url: http://gitlab.test
    auth: {token: glpat}
    interval: 0.05s
    full_resync_interval: 0.1s
    discover: {group: grp}
"""


@pytest.mark.parametrize("broken", [False, True])
def test_gitlab_group_discovery_polls_every_project_by_its_path(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, broken: bool) -> None:
    import asyncio

    import httpx

    from exporter import scheduler as scheduler_mod

    projects = [{"id": 1, "path_with_namespace": "grp/app"},
                {"id": 2, "path_with_namespace": "grp/sub/lib"}]
    polled: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        raw = request.url.raw_path.decode().split("?")[0]
        if raw == "/api/v4/groups/grp/projects":
            assert request.url.params["include_subgroups"] == "true"
            if broken:  # a proxy's login page instead of the project list
                return httpx.Response(200, text="<html>sign in</html>")
            return httpx.Response(200, json=projects)
        polled.append(raw)
        return httpx.Response(200, json=[])

    def build(cfg: Any) -> JsonSource:
        settings = cfg.client_settings()
        return JsonSource(cfg.name, settings, cfg.kind_as(JsonSettings).spec, token=cfg.token,
                          transport=httpx.MockTransport(handle))

    monkeypatch.setattr(scheduler_mod, "build_source", build)
    path = tmp_path / "gl.yaml"
    path.write_text(GL_DISCOVER)
    config = load_config(path)
    assert config.sources[0].organizations_auto and config.sources[0].orgs == ()

    async def scenario() -> Any:
        sched = scheduler_mod.Scheduler(config)
        await sched.start()
        for _ in range(200):
            found = sched.snapshot.discovery.get("gl")
            if (len(sched.snapshot.health) == 2 and len(set(polled)) == 2) or (
                    broken and found is not None and found.errors):
                break
            await asyncio.sleep(0.01)
        await sched.stop()
        return sched.snapshot

    snapshot = asyncio.run(scenario())
    health = snapshot.discovery["gl"]  # asyncjob_discovery_up / _errors_total / _last_success
    if broken:
        assert not health.up and health.last_success is None and dict(health.errors) == {
            "decode": 1}
        assert set(snapshot.health) == set() and polled == []
        return
    assert health.up and health.last_success is not None and not health.errors
    assert set(snapshot.health) == {("gl", "grp/app"), ("gl", "grp/sub/lib")}
    assert set(polled) == {"/api/v4/projects/grp%2Fapp/pipelines",
                           "/api/v4/projects/grp%2Fsub%2Flib/pipelines"}


def test_organizations_and_discover_are_exclusive(gh_file: pathlib.Path) -> None:
    gh_file.write_text(GH + "    discover: {group: octo-org}\n")
    with pytest.raises(ConfigError) as info:
        load_config(gh_file)
    assert "either organizations (a list) or discover" in str(info.value)


def test_readme_example_and_docs_cover_every_preset() -> None:
    repo = pathlib.Path(__file__).resolve().parents[1]
    first = (repo / "README.md").read_text().split("\n\n")[1]
    for name in ("`kind: json`", "GitHub Actions", "GitLab CI", "Apache Airflow"):
        assert name in first, name
    example = yaml.safe_load((repo / "config.example.yaml").read_text())
    shown = {s.get("preset") for s in example["sources"] if s["kind"] == "json"}
    assert shown == {"github-actions", "gitlab-ci", "airflow"}
    for preset in shown:
        page = (repo / "docs" / "sources" / f"{preset}.md").read_text()
        assert "| `job_type` |" in page and "| `step_type` |" in page and "## Request cost" in page
    assert "## `kind: json` sources" in (repo / "docs" / "metrics.md").read_text()
